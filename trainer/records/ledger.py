"""The run's rollout ledger: one JSON line per rollout, appended by every runner process.

It is what the summary counts rollouts and tokens from, and what progress and metrics follow live.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from trainer.agent.solve import RolloutOutcome
from trainer.task import Problem

logger = logging.getLogger(__name__)


class Ledger:
    """Append-only JSONL of rollout outcomes, shared by all runner processes of a run.

    Each outcome is one ``write`` on an ``O_APPEND`` descriptor, so lines from concurrent
    processes never interleave. The ledger is what the summary counts rollouts and tokens from.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, outcome: RolloutOutcome) -> None:
        record = asdict(outcome)
        record["system_prompt"] = ""  # the prompt DB has every template; don't repeat it per rollout
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def read(self) -> list[RolloutOutcome]:
        if not self.path.exists():
            return []
        outcomes = []
        with self.path.open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    outcomes.append(RolloutOutcome(**json.loads(line)))
        return outcomes


class RunLedgers:
    """The ledgers of every run under one directory: ``RUNS_DIR/<run id>/rollouts.jsonl``.

    A runner serves whichever training enqueued the task, so it finds the ledger from the run id the
    training stamped on the task. Runners in other containers reach the same files through a shared
    OUTPUT_DIR volume.
    """

    # The shape of train.new_run_id(): a run id from a task never escapes RUNS_DIR.
    RUN_ID = re.compile(r"^[0-9]{8}-[0-9]{6}-[0-9a-f]{4}$")

    def __init__(self, runs_dir: Path) -> None:
        self.runs_dir = runs_dir

    def for_run(self, run_id: str) -> Ledger:
        if not self.RUN_ID.match(run_id):
            raise ValueError(f"not a run id: {run_id!r}")
        return Ledger(self.runs_dir / run_id / "rollouts.jsonl")

    def for_task(self, task: Problem) -> Ledger | None:
        """The ledger of the run that enqueued ``task``; None (and a warning) when it names none."""
        run_id = task.get("run_id")
        if run_id is None or not self.RUN_ID.match(run_id):
            logger.warning("task %s carries no valid run id (%r): its rollout is not in any ledger", task["id"], run_id)
            return None
        return self.for_run(run_id)


class LedgerTail:
    """Reads a ledger as it grows: each call returns the lines completed since the previous one.

    A line still being written (no newline yet) is held back until it is complete.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""
        self.count = 0

    def read_new(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except FileNotFoundError:
            return []
        self._offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        rows = [json.loads(line) for line in lines if line.strip()]
        self.count += len(rows)
        return rows


class LedgerFollower:
    """Hands each new line of a ledger, once, to every consumer, on a background thread.

    One follower per run feeds both the live progress and the metrics, so they count the same rows.
    """

    def __init__(self, path: Path, consumers: Sequence[Callable[[dict[str, Any]], None]], interval: float = 0.5):
        self.consumers = list(consumers)
        self.interval = interval
        self._tail = LedgerTail(path)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ledger-follower", daemon=True)

    def poll(self) -> int:
        """Hand on what was appended since the last call; returns how many rollouts."""
        rows = self._tail.read_new()
        for row in rows:
            for consume in self.consumers:
                consume(row)
        return len(rows)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except Exception:  # a display or metrics hiccup must never stop a training
                logger.exception("following the rollout ledger failed")

    def start(self) -> LedgerFollower:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.poll()  # what the runners wrote last
