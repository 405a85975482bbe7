"""The run's rollout ledger: one JSON line per rollout, appended by every runner process.

It is what the summary counts rollouts and tokens from, and what progress and metrics follow live.

A ledger outlives the processes that write it, and any of them may die mid-line (kill -9, OOM, a
full disk). So a line counts only once it ends in a newline; a writer first ends a line a dead
writer left unfinished, so its own line is never glued onto the remains; and a reader skips a line
it cannot use (cut off, garbage, a required field missing or wrong) and names it, instead of
failing: the summary is written after the test evaluation, and one bad line must not lose it.
Keys a reader does not know are ignored, so a newer runner's lines still count.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from trainer.agent.solve import RolloutOutcome
from trainer.task import Problem

logger = logging.getLogger(__name__)

# Validates a line's fields the dataclass's way (required ones present, each of its type) and drops
# keys the dataclass does not have.
_OUTCOME = TypeAdapter(RolloutOutcome)


@dataclass(frozen=True)
class SkippedLine:
    """A ledger line a reader could not use, and why (never its content: it may be huge)."""

    path: Path
    line: int  # 1-based
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


def _row(raw: bytes) -> dict[str, Any] | str:
    """One complete line as a JSON object, or why it is not one."""
    try:
        row = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return "not UTF-8"
    except json.JSONDecodeError as exc:
        return f"not JSON ({exc.msg}, column {exc.colno})"
    if not isinstance(row, dict):
        return f"not a JSON object (a {type(row).__name__})"
    return row


def _outcome(raw: bytes) -> RolloutOutcome | str:
    """One complete line as a rollout outcome, or why it is not one."""
    row = _row(raw)
    if isinstance(row, str):
        return row
    try:
        return _OUTCOME.validate_python(row)
    except ValidationError as exc:
        # Field and message only: pydantic's full text would repeat the offending value.
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'line'}: {e['msg']}" for e in exc.errors())


def _encode(record: dict[str, Any]) -> bytes:
    try:
        return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (from a dataset or a reply) has no UTF-8 form; escaped, it is valid JSON.
        return (json.dumps(record, ensure_ascii=True) + "\n").encode("ascii")


def _write_all(fd: int, data: bytes) -> None:
    # write() may take only part of the buffer (a signal, a nearly full disk): the rest follows, and
    # the lock the caller holds keeps other writers from landing in between.
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written == 0:
            raise OSError(f"no progress writing {len(view)} bytes of a ledger line")
        view = view[written:]


class Ledger:
    """Append-only JSONL of rollout outcomes, shared by all runner processes of a run.

    Appends take turns under an exclusive ``flock`` on the file (runners in other containers share
    the file through a volume, and so the kernel's lock). Under that lock a last line without its
    newline can only be a dead writer's, and the appender ends it before writing its own line.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        # The lines the last read() could not use, for the summary to report.
        self.skipped: list[SkippedLine] = []

    def append(self, outcome: RolloutOutcome) -> None:
        record = asdict(outcome)
        record["system_prompt"] = ""  # the prompt DB has every template; don't repeat it per rollout
        line = _encode(record)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Read access too: the last byte tells whether a dead writer left its line unfinished.
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released by the close below, or by the kernel if we die
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                # Its remains become one bad line of their own (readers skip and name it).
                line = b"\n" + line
            _write_all(fd, line)
        finally:
            os.close(fd)

    def read(self) -> list[RolloutOutcome]:
        """Every complete, valid line; the others are skipped, logged and kept in :attr:`skipped`."""
        self.skipped = []
        if not self.path.exists():
            return []
        outcomes = []
        with self.path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if not raw.endswith(b"\n"):
                    # Only ever the last line. Its writer died or is still writing: either way it is
                    # not a rollout yet (a later append would end it as a bad line of its own).
                    self.skipped.append(SkippedLine(self.path, number, "cut off: no newline at the end"))
                    break
                if not raw.strip():
                    continue
                outcome = _outcome(raw[:-1])  # without its newline, as the tail sees it
                if isinstance(outcome, str):
                    self.skipped.append(SkippedLine(self.path, number, outcome))
                else:
                    outcomes.append(outcome)
        if self.skipped:
            logger.warning(
                "rollout ledger: %d line(s) skipped, not counted: %s",
                len(self.skipped), "; ".join(map(str, self.skipped[:5])) + (" ..." if len(self.skipped) > 5 else ""),
            )  # fmt: skip
        return outcomes


class RunLedgers:
    """The ledgers of every run under one directory: ``RUNS_DIR/<run id>/rollouts.jsonl``.

    A runner serves whichever training enqueued the task, so it finds the ledger from the run id and
    run directory the training stamped on the task. Runners in other containers reach the same files
    through a shared OUTPUT_DIR volume. Two trainings with output dirs of their own can share a store,
    and then each one's runners also take the other's rollouts (Agent Lightning's queue has no
    per-run claim): the rollout's row goes to the directory of the run that enqueued it, so that
    run's metrics, progress and summary count it. Only a directory that exists and is named by the
    run id is written to (a training creates it before its first rollout); elsewhere (another
    container's mount) the runner's own RUNS_DIR is used, as before.
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
        run_dir = self.stamped_run_dir(task)
        if run_dir is not None:
            return RunLedgers(run_dir.parent).for_run(run_id)
        return self.for_run(run_id)

    @classmethod
    def stamped_run_dir(cls, task: Problem) -> Path | None:
        """The run directory the training stamped on ``task``, when it is one this process can use."""
        run_id, run_dir = task.get("run_id"), task.get("run_dir")
        if not (isinstance(run_id, str) and cls.RUN_ID.match(run_id) and isinstance(run_dir, str) and run_dir):
            return None
        path = Path(run_dir)
        if path.is_absolute() and path.name == run_id and path.parent.name == "runs" and path.is_dir():
            return path
        return None


class LedgerTail:
    """Reads a ledger as it grows: each call returns the lines completed since the previous one.

    A line still being written (no newline yet) is held back until it is complete. A complete line
    that is not a JSON object is skipped with a warning naming it (:attr:`skipped` counts them), so
    one bad line never hides the lines after it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""
        self._lines = 0  # complete lines seen, to name a bad one by its line number
        self.count = 0
        self.skipped = 0

    def read_new(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except FileNotFoundError:
            return []
        self._offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()  # b"" when the chunk ended in a newline
        rows = []
        for raw in lines:
            self._lines += 1
            if not raw.strip():
                continue
            row = _row(raw)
            if isinstance(row, str):
                self.skipped += 1
                logger.warning("rollout ledger %s:%d skipped: %s", self.path, self._lines, row)
            else:
                rows.append(row)
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
                try:
                    consume(row)
                except Exception:
                    # One odd row (a field of the wrong type) must cost only itself: the rows after
                    # it, and the other consumers, still get theirs. stop() polls in a finally, too,
                    # where raising would hide why the training ended.
                    logger.exception("rollout ledger %s: a consumer failed on a row", self._tail.path)
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
