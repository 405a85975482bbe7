"""Live progress of a training: round, rollouts done, best score so far.

On a terminal it is a status line that redraws in place under the log; elsewhere (CI, containers)
it is one log line every ``interval`` seconds, and only when something changed.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.text import Text

from trainer.apo.algorithm import Progress
from trainer.records.ledger import LedgerTail

logger = logging.getLogger(__name__)


def describe(progress: Progress, rollouts: int, expected: int | None, started: float) -> str:
    with progress.lock:
        rnd, total = progress.round, progress.total_rounds
        best, label = progress.best_score, progress.best_label
        seed, rejected, candidates = progress.seed_score, progress.rejected, progress.candidates
    phase = "seed evaluation" if rnd == 0 else f"round {rnd}/{total}"
    done = f"{rollouts}/{expected}" if expected else str(rollouts)
    best_text = f"{best:.3f} ({label})" if best is not None else "-"
    seed_text = f"{seed:.3f}" if seed is not None else "-"
    return (
        f"{phase} | rollouts {done} | best {best_text} | seed {seed_text} | "
        f"candidates {candidates} ({rejected} rejected) | {time.monotonic() - started:.0f}s"
    )


class ProgressDisplay:
    def __init__(
        self,
        progress: Progress,
        ledger_path: Path,
        *,
        expected_rollouts: int | None,
        console: Console,
        interval: float = 15.0,
    ) -> None:
        self.progress = progress
        self.tail = LedgerTail(ledger_path)
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
        self.tail.read_new()
        return describe(self.progress, self.tail.count, self.expected, self._started)

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
