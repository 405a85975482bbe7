"""Live progress of a training: round, rollouts done, best score so far.

:class:`Progress` is an APO observer (and a sink of the ledger follower) holding the run's counters;
APO's loop writes them while the display thread and the summary read them, so every access holds
its lock and readers take a :meth:`Progress.snapshot`. On a terminal :class:`ProgressDisplay` is a
status line that redraws in place under the log; elsewhere (CI, containers) it is one log line every
``interval`` seconds, and only when something changed.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.text import Text

from trainer.agent.prompt import Change, Prompt
from trainer.apo.observer import APOObserver
from trainer.apo.scoring import ValScore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProgressState:
    """The counters of a run at one moment."""

    total_rounds: int = 0
    round: int = 0
    best_score: float | None = None
    best_label: str | None = None
    seed_label: str | None = None  # the prompt with no parent
    seed_score: float | None = None  # its pooled val score, as every other view shows it
    candidates: int = 0
    candidate_changes: dict[str, int] = field(default_factory=dict)  # what they changed: instruction, examples, both
    rejected: int = 0
    rejected_reasons: dict[str, int] = field(default_factory=dict)
    failed_branches: int = 0
    stopped_early: int = 0  # candidates whose val batch was cut: they could no longer reach the beam
    rollouts_cancelled: int = 0  # ... the queued rollouts that cut spared
    round_seconds: dict[int, float] = field(default_factory=dict)
    rollouts: int = 0  # rollouts in the run's ledger
    rollouts_read: int = 0  # rollouts APO read back from the store
    incomplete_reads: int = 0  # ... whose spans were not all in the store yet


class Progress(APOObserver):
    """The run's counters, updated from APO's events and the ledger, read from any thread."""

    def __init__(self) -> None:
        self._state = ProgressState()
        self._lock = threading.Lock()

    def snapshot(self) -> ProgressState:
        with self._lock:
            state = self._state
        return replace(state, rejected_reasons=dict(state.rejected_reasons), round_seconds=dict(state.round_seconds))

    def _update(self, **changes: Any) -> None:
        with self._lock:
            self._state = replace(self._state, **changes)

    def rollout_done(self, row: dict[str, Any]) -> None:
        with self._lock:
            self._state = replace(self._state, rollouts=self._state.rollouts + 1)

    def rounds_planned(self, rounds: int) -> None:
        self._update(total_rounds=rounds)

    def round_started(self, round_number: int) -> None:
        self._update(round=round_number)

    def prompt_created(
        self, label: str, prompt: Prompt, *, parent: str | None, round_number: int, change: Change
    ) -> None:
        with self._lock:
            if parent is None:
                self._state = replace(self._state, seed_label=label)
            else:
                changes = dict(self._state.candidate_changes)
                changes[change] = changes.get(change, 0) + 1
                self._state = replace(self._state, candidates=self._state.candidates + 1, candidate_changes=changes)

    def prompt_rejected(self, label: str, reason: str, *, round_number: int) -> None:
        kind = reason.split(":")[0]
        with self._lock:
            reasons = dict(self._state.rejected_reasons)
            reasons[kind] = reasons.get(kind, 0) + 1
            self._state = replace(self._state, rejected=self._state.rejected + 1, rejected_reasons=reasons)

    def candidate_stopped(self, label: str, *, ran: int, cancelled: int) -> None:
        with self._lock:
            state = self._state
            self._state = replace(state, stopped_early=state.stopped_early + 1,
                                  rollouts_cancelled=state.rollouts_cancelled + cancelled)  # fmt: skip

    def prompt_scored(self, label: str, *, round_number: int, batch: ValScore, current: ValScore, first: bool) -> None:
        with self._lock:
            if label == self._state.seed_label:  # its pool grows with every val batch it gets
                self._state = replace(self._state, seed_score=current.value)

    def best_changed(self, label: str, score: ValScore) -> None:
        self._update(best_score=score.value, best_label=label)

    def best_rescored(self, label: str, score: ValScore) -> None:
        self._update(best_score=score.value, best_label=label)

    def branch_failed(self, parent: str, error: BaseException) -> None:
        with self._lock:
            self._state = replace(self._state, failed_branches=self._state.failed_branches + 1)

    def rollouts_read(self, count: int, incomplete: int) -> None:
        with self._lock:
            state = self._state
            self._state = replace(
                state, rollouts_read=state.rollouts_read + count, incomplete_reads=state.incomplete_reads + incomplete
            )

    def round_finished(self, round_number: int, seconds: float) -> None:
        with self._lock:
            self._state = replace(self._state, round_seconds={**self._state.round_seconds, round_number: seconds})


def describe(state: ProgressState, expected: int | None, started: float) -> str:
    phase = "seed evaluation" if state.round == 0 else f"round {state.round}/{state.total_rounds}"
    done = f"{state.rollouts}/{expected}" if expected else str(state.rollouts)
    best_text = f"{state.best_score:.3f} ({state.best_label})" if state.best_score is not None else "-"
    seed_text = f"{state.seed_score:.3f}" if state.seed_score is not None else "-"
    return (
        f"{phase} | rollouts {done} | best {best_text} | seed {seed_text} | "
        f"candidates {state.candidates} ({state.rejected} rejected) | {time.monotonic() - started:.0f}s"
    )


class ProgressDisplay:
    def __init__(
        self, progress: Progress, *, expected_rollouts: int | None, console: Console, interval: float = 15.0
    ) -> None:
        self.progress = progress
        self.expected = expected_rollouts
        self.console = console
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = time.monotonic()

    def _run_live(self) -> None:
        with Live(console=self.console, refresh_per_second=2, transient=True) as live:
            while not self._stop.wait(0.5):
                live.update(Text(self._line(), style="bold cyan"))

    def _run_logged(self) -> None:
        last = ""
        while not self._stop.wait(self.interval):
            line = self._line()
            # The elapsed-time suffix always changes; compare the rest.
            if line.rsplit("|", 1)[0] != last:
                logger.info("progress: %s", line)
                last = line.rsplit("|", 1)[0]

    def _line(self) -> str:
        return describe(self.progress.snapshot(), self.expected, self._started)

    def __enter__(self) -> ProgressDisplay:
        target = self._run_live if self.console.is_terminal else self._run_logged
        self._thread = threading.Thread(target=target, name="progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
