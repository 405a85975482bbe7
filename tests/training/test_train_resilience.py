"""Trainings that go wrong: failing optimizer calls, a killed trainer, resuming after it.

The agent runs on the embedded model; the optimizer endpoint is a loopback stand-in for a hosted
OpenAI-compatible API (the one thing a user brings), scripted to fail the way hosted APIs do.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.trainer_cli import TINY, assert_critique_shows_conversations, clean_env, run_trainer
from trainer.math_task import SEED_PROMPT as DEFAULT_SEED_PROMPT
from trainer.records.prompt_db import PromptDB
from trainer.testing import CONTEXT_OVERFLOW, OVERLOADED, Reply, ScriptedLLM, chat_completion

pytestmark = [pytest.mark.llm, pytest.mark.slow]

EDITED = "You solve math word problems. Think in one short line, then end with: The answer is <number>."


def test_failed_optimizer_calls_cost_only_their_branch(tmp_path: Path) -> None:
    """Branch 1: a transient 503 is retried, then critique and edit succeed -> a scored candidate.
    Branch 2: the critique overflows the context (HTTP 400, never retried) -> that branch is lost,
    the run is not."""
    calls: list[dict[str, Any]] = []
    lock = threading.Lock()

    def script(request: dict[str, Any]) -> Reply:
        if request.get("max_tokens") == 8:  # the startup probe
            return Reply()
        with lock:
            calls.append(request)
            n = len(calls)
        if n == 1:
            return Reply(503, OVERLOADED)
        if n == 2:
            return Reply(200, chat_completion("- End with 'The answer is N'.\n- Keep the working to one line."))
        if n == 3:
            return Reply(200, chat_completion(EDITED))
        return Reply(400, CONTEXT_OVERFLOW)

    with ScriptedLLM(script) as fake:
        result = run_trainer(
            ["train", *TINY, "--output", str(tmp_path)],
            cwd=tmp_path,
            OPTIMIZER_BASE_URL=fake.base_url,
            OPTIMIZER_API_KEY="sk-test-optimizer",
            GRADIENT_MODEL="fake-model",
            OPTIMIZER_MAX_TOKENS="300",
        )
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["failed_optimizer_branches"] == 1
    assert summary["candidates"] == 1 and summary["candidates_rejected"] == 0
    assert len(calls) == 4, [c["messages"][-1]["content"][:80] for c in calls]
    # Stock APO sends no output limit; every optimizer call must carry ours.
    assert all(c.get("max_tokens") == 300 for c in calls)
    with PromptDB(tmp_path / "prompts.db") as prompts:
        records = prompts.list(summary["run_id"])
    candidate = next(p for p in records if p.round == 1)
    assert candidate.template == EDITED
    assert candidate.status == "scored" and candidate.val_n == 6
    assert "optimizer call failed" in result.stderr and "branch dropped" in result.stderr
    assert "sk-test-optimizer" not in result.stderr + result.stdout
    assert_critique_shows_conversations(calls[0], tmp_path, summary["run_id"])


def _wait_for(predicate: Any, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        assert proc.poll() is None, "training exited before the point the test waits for"
        time.sleep(0.5)
    pytest.fail(f"condition not reached within {timeout:.0f}s")


def test_killed_training_keeps_everything_scored_and_resumes(tmp_path: Path) -> None:
    args = [*TINY]
    args[args.index("--iterations") + 1] = "3"
    log = (tmp_path / "train.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainer", "train", *args, "--output", str(tmp_path)],
        cwd=tmp_path,
        env=clean_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # so the kill reaches runners and the model server too
    )
    try:
        # Wait until the seed is scored and a round is under way, then pull the plug.
        _wait_for(lambda: (tmp_path / "best_prompt.json").exists(), 300, proc)
        ledgers = list((tmp_path / "runs").glob("*/rollouts.jsonl"))
        _wait_for(lambda: sum(1 for _ in ledgers[0].open()) >= 8, 300, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        log.close()

    db = tmp_path / "prompts.db"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with PromptDB(db) as prompts:
        run = prompts.runs()[-1]
        best = prompts.best(run.run_id)
        seed = next(p for p in prompts.list(run.run_id) if p.round == 0)
    assert run.status not in ("completed", "failed")  # killed: nobody got to record an ending
    assert seed.val_score is not None and seed.val_n == 6
    assert best is not None
    text = (tmp_path / "best_prompt.txt").read_text()
    meta = json.loads((tmp_path / "best_prompt.json").read_text())
    assert text == best.template and meta["id"] == best.id
    assert meta["template_sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert not list(tmp_path.glob(".*tmp*")), "a temp file survived the kill"

    # --resume picks the killed run's best prompt as the new seed.
    resumed = run_trainer(
        ["train", *TINY, "--algorithm", "baseline", "--resume", "--output", str(tmp_path)], cwd=tmp_path
    )
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    with PromptDB(db) as prompts:
        new_seed = next(p for p in prompts.list(summary["run_id"]) if p.round == 0)
        runs = prompts.runs()
    assert new_seed.template == best.template
    assert summary["candidates"] == 0 and summary["rollouts"] == 6  # baseline: the val split once
    assert len(runs) == 2 and runs[-1].status == "completed"
    assert best.template == DEFAULT_SEED_PROMPT or best.round > 0
