"""The rollout ledger under faults: cut-off lines, garbage, unknown keys, short writes, dead writers.

A reader skips what it cannot use and names it (file:line and why) instead of failing: the summary
is written from ``Ledger.read()`` after the test evaluation, and one bad line must not lose it.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from tests.records.test_summary import _summary
from trainer.agent.solve import RolloutOutcome
from trainer.records import ledger as ledger_module
from trainer.records.ledger import Ledger, LedgerFollower, LedgerTail
from trainer.records.summary import LedgerSkips, print_summary


def outcome(task_id: str = "t1", **changes: Any) -> RolloutOutcome:
    fields: dict[str, Any] = {"reward": 1.0, "status": "ok", "input_tokens": 40, "output_tokens": 12, "mode": "val"}
    return RolloutOutcome(task_id=task_id, **{**fields, **changes})


def line(task_id: str = "t1", **extra: Any) -> bytes:
    record = {"task_id": task_id, "reward": 1.0, "status": "ok", "mode": "val", **extra}
    return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")  # as Ledger.append writes


def test_appended_outcomes_read_back(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "runs" / "r" / "rollouts.jsonl")
    assert ledger.read() == [] and ledger.skipped == []  # no file yet
    ledger.append(outcome("a"))
    ledger.append(outcome("b", reply="\ud800"))  # a lone surrogate has no UTF-8 form: escaped, not a crash
    got = ledger.read()
    assert [(o.task_id, o.reply) for o in got] == [("a", ""), ("b", "\ud800")]
    assert ledger.skipped == []


def test_a_truncated_last_line_is_skipped_and_named(tmp_path: Path) -> None:
    path = tmp_path / "rollouts.jsonl"
    path.write_bytes(line("a") + line("b") + line("c")[:25])  # kill -9 or a full disk mid-write
    ledger = Ledger(path)
    assert [o.task_id for o in ledger.read()] == ["a", "b"]
    assert [str(s) for s in ledger.skipped] == [f"{path}:3: cut off: no newline at the end"]


def test_garbage_lines_in_the_middle_cost_only_themselves(tmp_path: Path) -> None:
    path = tmp_path / "rollouts.jsonl"
    path.write_bytes(
        line("a") + b'{"task_id": "x", "rew\n' + b"[1, 2]\n" + b"\xff\xfe{}\n" + b"\n" + line("b")
        + line("c", reward="lots") + b'{"reward": 1.0, "status": "ok"}\n' + line("d", status="exploded") + line("e")
    )  # fmt: skip
    ledger = Ledger(path)
    assert [o.task_id for o in ledger.read()] == ["a", "b", "e"]
    reasons = {s.line: s.reason for s in ledger.skipped}
    assert sorted(reasons) == [2, 3, 4, 7, 8, 9]  # the blank line 5 is nothing, not a bad line
    assert reasons[2].startswith("not JSON")
    assert reasons[3] == "not a JSON object (a list)"
    assert reasons[4] == "not UTF-8"
    assert reasons[7].startswith("reward: ") and "lots" not in reasons[7]  # the field, not its value
    assert reasons[8].startswith("task_id: ")
    assert reasons[9].startswith("status: ")


def test_unknown_keys_are_ignored(tmp_path: Path) -> None:
    """A newer runner's extra keys must not make its lines unreadable (forward compatible)."""
    path = tmp_path / "rollouts.jsonl"
    path.write_bytes(line("a", input_tokens=7, cache_hits=3, nested={"x": [1]}))
    ledger = Ledger(path)
    [got] = ledger.read()
    assert (got.task_id, got.input_tokens, got.mode) == ("a", 7, "val")
    assert ledger.skipped == []


def test_appends_survive_short_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write
    calls = []

    def short_write(fd: int, data: Any) -> int:
        calls.append(len(data))
        return real_write(fd, bytes(data[:7]))  # what a signal or a nearly full disk can do

    monkeypatch.setattr(ledger_module.os, "write", short_write)
    ledger = Ledger(tmp_path / "rollouts.jsonl")
    ledger.append(outcome("a", reply="x" * 100))
    ledger.append(outcome("b"))
    assert len(calls) > 20
    assert [o.task_id for o in ledger.read()] == ["a", "b"] and ledger.skipped == []


def _append_many(path: str, writer: int) -> None:
    ledger = Ledger(Path(path))
    for i in range(40):
        ledger.append(outcome(f"w{writer}-{i}", reply="y" * 3000))


def test_concurrent_writers_with_short_writes_never_interleave(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runner processes append to one ledger at once; even when each write() takes only part of a
    line, the ledger's lock keeps one writer's pieces together."""
    real_write = os.write
    monkeypatch.setattr(ledger_module.os, "write", lambda fd, data: real_write(fd, bytes(data[:500])))
    path = tmp_path / "rollouts.jsonl"
    ctx = multiprocessing.get_context("fork")  # the children inherit the short writes
    workers = [ctx.Process(target=_append_many, args=(str(path), w)) for w in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    ledger = Ledger(path)
    assert sorted(o.task_id for o in ledger.read()) == sorted(f"w{w}-{i}" for w in range(4) for i in range(40))
    assert ledger.skipped == []


def test_a_dead_writers_partial_line_is_ended_before_the_next_append(tmp_path: Path) -> None:
    path = tmp_path / "rollouts.jsonl"
    path.write_bytes(line("a") + line("b")[:30])  # a runner killed mid-line
    tail = LedgerTail(path)
    assert [r["task_id"] for r in tail.read_new()] == ["a"]  # the partial line waits for its newline
    ledger = Ledger(path)
    ledger.append(outcome("c"))  # another runner goes on
    ledger.append(outcome("d"))
    assert path.read_bytes().startswith(line("a") + line("b")[:30] + b"\n{")  # not glued onto the remains
    assert [o.task_id for o in ledger.read()] == ["a", "c", "d"]
    assert [(s.line, s.reason.split(" ")[0]) for s in ledger.skipped] == [(2, "not")]
    # The tail that held the partial line back gets the new lines, and skips the remains.
    assert [r["task_id"] for r in tail.read_new()] == ["c", "d"]
    assert (tail.count, tail.skipped) == (3, 1)


def test_a_partial_line_is_tailed_only_once_completed(tmp_path: Path) -> None:
    path = tmp_path / "rollouts.jsonl"
    whole = line("a", reply="é" * 10)  # cut inside a multi-byte character too
    tail = LedgerTail(path)
    assert tail.read_new() == []  # no file yet
    for cut in (5, whole.index("é".encode()) + 1, len(whole) - 1):
        with path.open("wb") as f:
            f.write(whole[:cut])
        assert tail.read_new() == [], cut
        tail = LedgerTail(path)
    with path.open("ab") as f:
        f.write(whole[len(whole) - 1 :])
    assert [r["task_id"] for r in tail.read_new()] == ["a"]
    assert tail.read_new() == []
    assert (tail.count, tail.skipped) == (1, 0)


def test_the_follower_hands_on_every_good_row_whatever_one_bad_row_does(tmp_path: Path) -> None:
    path = tmp_path / "rollouts.jsonl"
    seen: list[str] = []
    rewards: list[float] = []
    follower = LedgerFollower(path, [lambda r: rewards.append(float(r["reward"])), lambda r: seen.append(r["task_id"])])
    path.write_bytes(line("a") + b"garbage\n" + line("b", reward="lots") + line("c"))
    assert follower.poll() == 3
    # The bad reward failed one consumer on one row: the other consumer and the next rows still got theirs.
    assert seen == ["a", "b", "c"] and rewards == [1.0, 1.0]
    with path.open("ab") as f:
        f.write(line("d", reward="lots"))
    follower.start().stop()  # its final poll, in the training's finally, must not raise either
    assert seen == ["a", "b", "c", "d"] and rewards == [1.0, 1.0]


def test_the_summary_reports_skipped_lines(tmp_path: Path) -> None:
    path = tmp_path / "rollouts.jsonl"
    path.write_bytes(line("a") + b"x\n" * 30 + line("b")[:10])
    ledger = Ledger(path)
    ledger.read()
    skips = LedgerSkips.of(ledger.skipped)
    assert skips.count == 31 and len(skips.lines) == LedgerSkips.NAMED
    assert skips.lines[0] == f"{path}:2: not JSON (Expecting value, column 1)"
    summary = _summary(ledger_skipped=skips.model_dump())
    console = Console(record=True, width=400, force_terminal=False)
    print_summary(summary, console)
    assert f"31 (not counted; first: {path}:2: not JSON" in console.export_text()
    # A summary written before the field existed still loads, as "nothing skipped".
    assert _summary().ledger_skipped == LedgerSkips(count=0, lines=[])
