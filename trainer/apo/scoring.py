"""What a batch of rollouts says about a prompt, and one pooled val score per prompt.

Two rules keep a prompt's score honest when things break:

- Only *data points* count. A rollout is one when it finished and reported a reward; a rollout the
  endpoint failed (it reports no reward, :mod:`trainer.agent.faults`) or that did not finish in
  time says nothing about the prompt. A batch's ``n`` is the number of data points in it, and a
  batch where fewer than half of the rollouts produced one is *unscored*: recorded with why,
  never as a number.
- A prompt has one val score: every data point it ever had on the val split, pooled (the mean
  reward over all of them, with the Wilson interval when rewards are 0/1). llama.cpp's parallel
  slots are not repeatable at temperature 0, so scoring the same prompt twice gives two numbers;
  pooling them is the better estimate, and it is the number APO's beam, the best-prompt choice,
  the prompt DB, the display, the metrics and the summary all use.

Plain functions over APO's result dicts: checked on their own, without Agent Lightning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from trainer.records.stats import Score, wilson
from trainer.telemetry.spans import ROLLOUT_SPAN_NAME


@dataclass(frozen=True)
class ValScore:
    """A prompt's val score and the number of val rollouts (data points) it is computed from."""

    value: float
    n: int

    @property
    def total(self) -> float:
        return self.value * self.n

    def pooled_with(self, other: ValScore) -> ValScore:
        n = self.n + other.n
        return ValScore((self.total + other.total) / n, n) if n else self

    def interval(self) -> Score:
        """The 95 % Wilson interval (rewards counted as correct when they are 1)."""
        return wilson(round(self.total), self.n)


def too_few_answered(answered: int, planned: int) -> bool:
    """The rule for every evaluation: fewer than half of the rollouts gave an answer is no score."""
    return answered == 0 or 2 * answered < planned


@dataclass(frozen=True)
class BatchTally:
    """The rollouts of one evaluation: their rewards, and why the others are no data points."""

    planned: int
    rewards: list[float] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)  # one reason per finished rollout without a reward
    tasks: list[str | None] = field(default_factory=list)  # the task of each reward, where known

    @property
    def unfinished(self) -> int:
        return self.planned - len(self.rewards) - len(self.faults)

    @property
    def score(self) -> ValScore | None:
        """The batch's score over its data points; None when fewer than half the rollouts gave one."""
        if too_few_answered(len(self.rewards), self.planned):
            return None
        return ValScore(sum(self.rewards) / len(self.rewards), len(self.rewards))

    def score_beyond(self, counted: set[str]) -> ValScore | None:
        """The score of the data points on tasks not in ``counted`` (None when there are none).

        With the rollout cache on, a prompt's second rollout on a task is the first one's outcome
        again: pooled, it would count one observation twice.
        """
        new = [r for r, task in zip(self.rewards, self.tasks, strict=True) if task is None or task not in counted]
        return ValScore(sum(new) / len(new), len(new)) if new else None

    def why_unscored(self) -> str:
        parts = [f"{len(self.rewards)} of {self.planned} rollouts gave an answer"]
        if self.faults:
            parts.append(f"{len(self.faults)} failed at the endpoint (last: {self.faults[-1][:200]})")
        if self.unfinished:
            parts.append(f"{self.unfinished} did not finish within ROLLOUT_BATCH_TIMEOUT")
        return "; ".join(parts)


def fault_of(result: dict[str, Any]) -> str | None:
    """Why an APO rollout result is no data point, or None when it is one (finished, rewarded)."""
    if result.get("status") == "succeeded" and result.get("final_reward") is not None:
        return None
    spans = result.get("spans") or []
    root: dict[str, Any] = next((s for s in spans if s.get("name") == ROLLOUT_SPAN_NAME), {})
    status = root.get("status")
    # The root span's error text: raw from the store, or as span_reads.compact_span keeps it.
    description = root.get("error") or (status.get("description") if isinstance(status, dict) else None)
    if description:
        return str(description)
    return f"rollout {result.get('status')} without a reward"


def tally(results: Sequence[dict[str, Any]], planned: int, task_ids: Sequence[str | None] | None = None) -> BatchTally:
    """The tally of ``results`` (the finished rollouts of an evaluation of ``planned`` rollouts).

    ``task_ids``: the task of each result, in the same order.
    """
    batch = BatchTally(planned)
    for i, result in enumerate(results):
        reason = fault_of(result)
        if reason is None:
            batch.rewards.append(float(result["final_reward"]))
            batch.tasks.append(task_ids[i] if task_ids is not None else None)
        else:
            batch.faults.append(reason)
    return batch


class RunStopped(RuntimeError):
    """The training cannot go on: a fault outside the prompt's control, named for the operator."""


class EndpointDown(RunStopped):
    """Too many rollouts in a row failed at the agent's endpoint."""


class StoreLost(RunStopped):
    """The store no longer knows the run's rollouts (it restarted, or it is another store)."""


class EndpointWatch:
    """Counts rollouts that failed at the endpoint in a row (in the order they finished)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_a_row = 0
        self.last: str | None = None

    def observe(self, results: Sequence[dict[str, Any]]) -> None:
        """Raises EndpointDown once ``limit`` faults came in a row; any data point resets the count.

        ``results`` in the order the rollouts finished.
        """
        for result in results:
            reason = fault_of(result)
            if reason is None:
                self.in_a_row = 0
                continue
            self.in_a_row += 1
            self.last = reason
            if self.in_a_row >= self.limit:
                raise EndpointDown(
                    f"{self.in_a_row} rollouts in a row failed at the agent's endpoint "
                    f"(MAX_ENDPOINT_FAILURES={self.limit}); last error: {reason}"
                )
