"""The tracked APO's events as Prometheus metrics: round, candidate scores and what each changed, the best."""

from __future__ import annotations

from trainer.agent.prompt import Change, Prompt
from trainer.apo.observer import APOObserver
from trainer.apo.scoring import ValScore
from trainer.telemetry.metrics import TrainerMetrics


class MetricsObserver(APOObserver):
    """Keeps ``metrics`` in step with the search; every score shown is the prompt's current val score."""

    def __init__(self, metrics: TrainerMetrics) -> None:
        self.metrics = metrics
        self._seed: str | None = None
        # label -> what it changed, heard at creation: the score events that follow do not carry it.
        self._changes: dict[str, Change] = {}

    def prompt_created(
        self, label: str, prompt: Prompt, *, parent: str | None, round_number: int, change: Change
    ) -> None:
        self._changes[label] = change
        if parent is None:
            self._seed = label
        else:
            self.metrics.candidate_proposed(change)

    def rounds_planned(self, rounds: int) -> None:
        self.metrics.rounds_planned.set(rounds)
        self.metrics.set_round(0)

    def round_started(self, round_number: int) -> None:
        self.metrics.set_round(round_number)

    def prompt_rejected(self, label: str, reason: str, *, round_number: int) -> None:
        self.metrics.candidate_rejected(label, round_number, change=self._change(label, round_number))

    def prompt_scored(self, label: str, *, round_number: int, batch: ValScore, current: ValScore, first: bool) -> None:
        # A rescored prompt updates its own series; only a candidate's first score counts it as evaluated.
        self.metrics.candidate_scored(
            label, round_number, current.value, candidate=first and round_number > 0,
            change=self._change(label, round_number),
        )  # fmt: skip
        if label == self._seed:  # its pool grows with every val batch it gets: the one number everywhere
            self.metrics.seed_score.set(current.value)

    def best_changed(self, label: str, score: ValScore) -> None:
        self.metrics.set_best(label, score.value)

    def best_rescored(self, label: str, score: ValScore) -> None:
        self.metrics.set_best(label, score.value)

    def branch_failed(self, parent: str, error: BaseException) -> None:
        self.metrics.failed_branches.inc()

    def _change(self, label: str, round_number: int) -> Change:
        # APO announces every prompt before scoring it; should one slip through, read it as the
        # prompt DB reads rows from before demonstrations: the seed in round 0, an edit after.
        return self._changes.get(label, "seed" if round_number == 0 else "instruction")
