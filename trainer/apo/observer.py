"""What the tracked APO tells the rest of a training, as events on one small interface.

``TrackedAPO`` reports every step of its search here (a prompt created, rejected, scored, the best
changing, a branch lost, a round done) and knows nothing about who listens: the prompt DB, the live
progress and the Prometheus metrics are each an :class:`APOObserver`, and :class:`Observers` fans an
event out to all of them in order, the way an OpenTelemetry tracer provider fans spans out to its
span processors. Observers are called on APO's event loop thread: keep them quick, and guard any
state other threads read.

Every score an event carries is the prompt's current val score as APO's bookkeeping has it (the
one number every observer shows), next to the batch that produced it where that matters.
"""

from __future__ import annotations

from collections.abc import Sequence

from trainer.agent.prompt import Change, Prompt
from trainer.apo.scoring import ValScore


class APOObserver:
    """Receives the tracked APO's events; every method is a no-op here, override what you need."""

    def rounds_planned(self, rounds: int) -> None:
        """Once, before anything else: how many beam-search rounds the run will do."""

    def round_started(self, round_number: int) -> None:
        """A round begins (0 is the seed's evaluation, which starts implicitly)."""

    def prompt_created(
        self, label: str, prompt: Prompt, *, parent: str | None, round_number: int, change: Change
    ) -> None:
        """APO made a prompt version: the seed (no parent) or a candidate; ``change`` says what it changed
        (its instruction, its examples or both); ``prompt.render()`` is the template the agent gets."""

    def prompt_rejected(self, label: str, reason: str, *, round_number: int) -> None:
        """The candidate guard refused ``label`` before any rollout: it scores 0 and never enters the beam."""

    def prompt_scored(self, label: str, *, round_number: int, batch: ValScore, current: ValScore, first: bool) -> None:
        """A val evaluation of ``label``: ``batch`` is what this evaluation measured, ``current`` the
        prompt's val score after it; ``first`` is true for a prompt's first evaluation."""

    def prompt_unscored(self, label: str, *, round_number: int, planned: int, reason: str) -> None:
        """A val evaluation of ``label`` gave too few answers to be a score (``reason`` says why)."""

    def best_changed(self, label: str, score: ValScore) -> None:
        """``label`` is the run's best prompt now."""

    def best_rescored(self, label: str, score: ValScore) -> None:
        """The best prompt was evaluated again; ``score`` is its current score (it may not have moved)."""

    def candidate_stopped(self, label: str, *, ran: int, cancelled: int) -> None:
        """A candidate's val batch was cut: ``cancelled`` rollouts could not have put it into the beam."""

    def branch_failed(self, parent: str, error: BaseException) -> None:
        """A critique or edit call failed: the child of ``parent`` is lost, the run goes on."""

    def rollouts_read(self, count: int, incomplete: int) -> None:
        """APO read ``count`` rollouts back from the store, ``incomplete`` of them with spans missing."""

    def round_finished(self, round_number: int, seconds: float) -> None:
        """A round is over: its beam is chosen and the best prompt rescored."""


class Observers(APOObserver):
    """Fans every event out to ``observers``, in order."""

    def __init__(self, observers: Sequence[APOObserver]) -> None:
        self.observers = list(observers)

    def rounds_planned(self, rounds: int) -> None:
        for observer in self.observers:
            observer.rounds_planned(rounds)

    def round_started(self, round_number: int) -> None:
        for observer in self.observers:
            observer.round_started(round_number)

    def prompt_created(
        self, label: str, prompt: Prompt, *, parent: str | None, round_number: int, change: Change
    ) -> None:
        for observer in self.observers:
            observer.prompt_created(label, prompt, parent=parent, round_number=round_number, change=change)

    def prompt_rejected(self, label: str, reason: str, *, round_number: int) -> None:
        for observer in self.observers:
            observer.prompt_rejected(label, reason, round_number=round_number)

    def prompt_scored(self, label: str, *, round_number: int, batch: ValScore, current: ValScore, first: bool) -> None:
        for observer in self.observers:
            observer.prompt_scored(label, round_number=round_number, batch=batch, current=current, first=first)

    def prompt_unscored(self, label: str, *, round_number: int, planned: int, reason: str) -> None:
        for observer in self.observers:
            observer.prompt_unscored(label, round_number=round_number, planned=planned, reason=reason)

    def best_changed(self, label: str, score: ValScore) -> None:
        for observer in self.observers:
            observer.best_changed(label, score)

    def best_rescored(self, label: str, score: ValScore) -> None:
        for observer in self.observers:
            observer.best_rescored(label, score)

    def candidate_stopped(self, label: str, *, ran: int, cancelled: int) -> None:
        for observer in self.observers:
            observer.candidate_stopped(label, ran=ran, cancelled=cancelled)

    def branch_failed(self, parent: str, error: BaseException) -> None:
        for observer in self.observers:
            observer.branch_failed(parent, error)

    def rollouts_read(self, count: int, incomplete: int) -> None:
        for observer in self.observers:
            observer.rollouts_read(count, incomplete)

    def round_finished(self, round_number: int, seconds: float) -> None:
        for observer in self.observers:
            observer.round_finished(round_number, seconds)
