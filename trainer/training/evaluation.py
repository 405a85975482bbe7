"""Score one prompt on a set of tasks, in-process, without a store.

Used for the held-out test split at the end of training (:func:`score_on_test`) and by ``python -m
trainer eval``. It runs the very same ``solve`` as a rollout, so a score here and a score during
training mean the same, and by the same rule: an outcome the endpoint failed is no data point
(trainer.apo.scoring), and an evaluation where fewer than half the tasks got an answer is no score.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from trainer.agent.solve import RolloutConfig, RolloutOutcome
from trainer.apo.scoring import EndpointDown, RunStopped, too_few_answered
from trainer.config import Settings
from trainer.records.prompt_db import PromptDB, PromptRecord
from trainer.records.rollout_cache import RolloutCache, solve_cached
from trainer.records.stats import Score, wilson
from trainer.task import Problem

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Evaluation:
    outcomes: list[RolloutOutcome]

    @property
    def answered(self) -> list[RolloutOutcome]:
        """The outcomes that are data points (the endpoint answered)."""
        return [o for o in self.outcomes if not o.is_fault]

    @property
    def score(self) -> Score:
        answered = self.answered
        return wilson(sum(1 for o in answered if o.reward >= 1.0), len(answered))

    @property
    def correct(self) -> list[bool | None]:
        """Per task, in task order: right, wrong, or None when the endpoint failed it."""
        return [None if o.is_fault else o.reward >= 1.0 for o in self.outcomes]

    def check_answered(self, what: str) -> None:
        """Raise EndpointDown when fewer than half the tasks got an answer: that is no score."""
        faults = [o for o in self.outcomes if o.is_fault]
        if self.outcomes and too_few_answered(len(self.outcomes) - len(faults), len(self.outcomes)):
            raise EndpointDown(
                f"{what}: {len(faults)} of {len(self.outcomes)} rollouts failed at the agent's endpoint, "
                f"so there is no score; last error: {faults[-1].reason}"
            )

    @property
    def cache_hits(self) -> int:
        return sum(1 for o in self.outcomes if o.cache_hit)

    @property
    def tokens(self) -> int:
        return sum(o.input_tokens + o.output_tokens for o in self.outcomes)

    def status_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for outcome in self.outcomes:
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
        return counts


async def evaluate_async(
    template: str, tasks: Sequence[Problem], config: RolloutConfig, concurrency: int, cache: RolloutCache | None = None
) -> Evaluation:
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(task: Problem) -> RolloutOutcome:
        async with gate:
            return await solve_cached(task, template, config, cache)

    # gather keeps task order, which the paired comparison relies on.
    outcomes = await asyncio.gather(*(one(task) for task in tasks))
    return Evaluation(list(outcomes))


def evaluate(
    template: str, tasks: Sequence[Problem], config: RolloutConfig, concurrency: int, cache: RolloutCache | None = None
) -> Evaluation:
    """``template`` on ``tasks``; with ``cache``, pairs already evaluated reuse their outcome."""
    return asyncio.run(evaluate_async(template, tasks, config, concurrency, cache))


@dataclass(frozen=True)
class TestResults:
    """Seed and best prompt scored on the held-out test split (the same problems, in order)."""

    seed: PromptRecord
    best: PromptRecord
    seed_eval: Evaluation
    best_eval: Evaluation


def score_on_test(
    prompts: PromptDB,
    run_id: str,
    tasks: list[Problem],
    config: RolloutConfig,
    settings: Settings,
    cache: RolloutCache | None = None,
) -> TestResults:
    best = prompts.best(run_id)
    if best is None:
        # Every evaluation was unscored (faults or ROLLOUT_BATCH_TIMEOUT): there is nothing to report.
        raise RunStopped(
            "the training finished without a single scored prompt: every val evaluation was unscored "
            "(the warnings above say why: endpoint faults or rollouts unfinished within ROLLOUT_BATCH_TIMEOUT)"
        )
    seed = next(p for p in prompts.list(run_id) if p.round == 0)
    logger.info("scoring seed and best prompt on %d held-out test problems", len(tasks))
    concurrency = settings.effective_eval_concurrency
    seed_eval = evaluate(seed.template, tasks, config, concurrency, cache)
    seed_eval.check_answered("the seed prompt on the test split")
    best_eval = seed_eval if best.id == seed.id else evaluate(best.template, tasks, config, concurrency, cache)
    best_eval.check_answered("the best prompt on the test split")
    return TestResults(seed, best, seed_eval, best_eval)


def answered_pairs(a: Evaluation, b: Evaluation) -> tuple[list[bool], list[bool]]:
    """The right/wrong lists of two evaluations of the same tasks, over tasks both answered."""
    pairs = [(x, y) for x, y in zip(a.correct, b.correct, strict=True) if x is not None and y is not None]
    return [x for x, _ in pairs], [y for _, y in pairs]
