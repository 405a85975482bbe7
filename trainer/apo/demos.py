"""Where a training's demonstrations come from, and how a candidate's set of them is chosen.

Two sources feed one pool (``DEMO_SOURCE``):

- *bootstrapped*: train rollouts that earned reward 1, read back from the store's spans (the
  conversation on the rollout's root span, the same one people browse in Jaeger), harvested from
  the train batches APO runs anyway;
- *gold*: the data set's own worked solutions (``solution`` of a train problem).

Only train problems ever enter the pool: val scores prompts and test reports on them, so a val or
test question shown as an example would be scored on its own answer. The pool knows those
questions and refuses any demonstration of one (it cannot happen through APO, which only runs
train batches in ``train`` mode; the check keeps it that way).

:class:`ExampleSearch` turns the pool into candidates: a new demonstration set for a parent's
instruction, or the best instruction with the best set found so far. Its draws use a generator
of their own, seeded from ``SEED``, so a run's example candidates do not depend on how many
random numbers APO drew.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from trainer.agent.prompt import DEMO_SOURCES, Demo, DemoSource, Prompt
from trainer.apo.plan import BranchKind, branch_kinds
from trainer.apo.span_reads import demo_from_result
from trainer.task import Problem

logger = logging.getLogger(__name__)

DemoSourceSetting = Literal["both", "bootstrapped", "gold"]
# How often a draw retries to find a set no candidate had yet before taking a repeated one.
_DRAW_TRIES = 20


def _key(question: str) -> str:
    return " ".join(question.split()).casefold()


def gold_demos(problems: Iterable[Problem]) -> list[Demo]:
    """The worked solutions the problems carry, as demonstrations."""
    return [
        Demo(problem["id"], problem["question"], solution, "gold")
        for problem in problems
        if (solution := problem.get("solution"))
    ]


class DemoPool:
    """The demonstrations a training may show: one per train problem, from the allowed sources."""

    def __init__(self, sources: DemoSourceSetting, forbidden_questions: Iterable[str]) -> None:
        self.sources: tuple[DemoSource, ...] = DEMO_SOURCES if sources == "both" else (sources,)
        self._forbidden = {_key(q) for q in forbidden_questions}
        self._demos: dict[tuple[DemoSource, str], Demo] = {}
        self.refused = 0

    @classmethod
    def for_splits(cls, sources: DemoSourceSetting, train: Sequence[Problem], held_out: Iterable[Problem]) -> DemoPool:
        """A pool with the train split's gold demonstrations; ``held_out`` (val and test) never enter it."""
        pool = cls(sources, (p["question"] for p in held_out))
        for demo in gold_demos(train):
            pool.add(demo)
        return pool

    def add(self, demo: Demo) -> bool:
        """Keep ``demo`` if its source is allowed and its problem has none from that source yet."""
        if demo.source not in self.sources:
            return False
        if _key(demo.question) in self._forbidden:
            self.refused += 1
            logger.warning("demonstration of problem %s refused: its question is in the val or test split",
                           demo.problem_id)  # fmt: skip
            return False
        key = (demo.source, demo.problem_id)
        if key in self._demos:
            return False
        self._demos[key] = demo
        return True

    def harvest(self, results: Iterable[dict[str, Any]]) -> int:
        """Bootstrapped demonstrations out of train rollout results; how many were new."""
        return sum(self.add(demo) for result in results if (demo := demo_from_result(result)) is not None)

    def demos(self) -> list[Demo]:
        return list(self._demos.values())

    def count(self, source: DemoSource) -> int:
        return sum(1 for demo in self._demos.values() if demo.source == source)

    def draw(self, k: int, rng: random.Random, avoid: Iterable[tuple[str, ...]] = ()) -> tuple[Demo, ...]:
        """``k`` demonstrations of ``k`` different problems (fewer if the pool is smaller), uniformly,
        preferring a set of problems not in ``avoid``; empty if the pool is."""
        by_problem: dict[str, list[Demo]] = {}
        for demo in self._demos.values():
            by_problem.setdefault(demo.problem_id, []).append(demo)
        problems = sorted(by_problem)
        if not problems:
            return ()
        size = min(k, len(problems))
        taken = {tuple(sorted(ids)) for ids in avoid}
        chosen: list[str] = []
        for _ in range(_DRAW_TRIES):
            chosen = rng.sample(problems, size)
            if tuple(sorted(chosen)) not in taken:
                break
        return tuple(rng.choice(by_problem[problem]) for problem in chosen)


class ExampleSearch:
    """Demonstration candidates for the tracked APO: which branch does what, and the new prompts."""

    def __init__(self, pool: DemoPool, k: int, seed: int, *, edits: bool = True) -> None:
        self.pool = pool
        self.k = k
        self.edits = edits  # False: no branch asks the optimizer for an instruction edit
        self._rng = random.Random(seed)
        self._tried: list[tuple[str, ...]] = []
        self.train_batches_skipped = 0

    def skips_train_batch(self, branches: int, round_number: int, index: int, parent: Prompt) -> bool:
        """True (and counted) when the ``index``-th branch need not run ``parent`` on a train batch.

        An examples or combine branch never shows its parent's train rollouts to the optimizer; they
        only feed the pool. Once every allowed source holds DEMOS problems and the pool has a set of
        DEMOS problems no candidate had yet, the draw needs none of them, and those rollouts would
        be spent on nothing the search uses. Until then the batch runs and its rewarded rollouts are
        bootstrapped, so ``DEMO_SOURCE=bootstrapped`` (or both) still fills the pool first.
        """
        if self.branch_kind(branches, round_number, index) == "instruction":
            return False
        if any(self.pool.count(source) < self.k for source in self.pool.sources):
            return False
        problems = len({demo.problem_id for demo in self.pool.demos()})
        sets = {tuple(sorted(ids)) for ids in [*self._tried, parent.demo_ids] if ids}
        if math.comb(problems, self.k) <= len(sets):
            return False
        self.train_batches_skipped += 1
        return True

    def branch_kind(self, branches: int, round_number: int, index: int) -> BranchKind:
        """What the ``index``-th branch of a round does (trainer.apo.plan.branch_kinds)."""
        kinds = branch_kinds(branches, self.k, round_number, edits=self.edits)
        return kinds[index % len(kinds)]

    def examples_for(self, parent: Prompt) -> Prompt | None:
        """``parent``'s instruction with a newly drawn set; None when the pool is empty."""
        demos = self.pool.draw(self.k, self._rng, avoid=[*self._tried, parent.demo_ids])
        if not demos:
            return None
        self._tried.append(tuple(d.problem_id for d in demos))
        return parent.with_demos(demos)

    @staticmethod
    def combination(ranked: Sequence[Prompt], seen: Iterable[str]) -> Prompt | None:
        """The best demonstration set with the best instruction it has not been tried with.

        ``ranked`` holds scored prompts, best first; ``seen`` the rendered prompts already made.
        None when no prompt has demonstrations yet or every pairing was tried.
        """
        best_set = next((p.demos for p in ranked if p.demos), None)
        if best_set is None:
            return None
        made = {" ".join(text.split()) for text in seen}
        for prompt in ranked:
            candidate = prompt.with_demos(best_set)
            if " ".join(candidate.render().split()) not in made:
                return candidate
        return None
