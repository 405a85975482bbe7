"""Trainings that go wrong: failing optimizer calls, a killed trainer, resuming after it.

Real: the trainer CLI with its in-process store, runner processes, Agno agent, APO and prompt DB.
Scripted: the LLM, both roles on one ``trainer.testing`` server (what a user brings as a hosted
OpenAI-compatible API), failing the way hosted APIs do. Its deterministic agent and optimizer make
every count exact: rollouts, candidates, failed branches, scores and the killed run's state.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.support.env import trainer_env
from tests.support.trainer_cli import (
    EDIT_MODEL,
    GRADIENT_MODEL,
    TINY,
    assert_critique_shows_conversations,
    run_trainer,
    scripted_env,
)
from tests.support.trainer_cli import TINY_SETTINGS as SETTINGS
from tests.support.trainer_cli import TINY_SPLITS as SPLITS
from tests.support.trainer_cli import TINY_TASKS as TASKS
from trainer.apo.plan import expected_rollouts
from trainer.math_task import SEED_PROMPT as DEFAULT_SEED_PROMPT
from trainer.records.prompt_db import PromptDB
from trainer.testing import (
    CONTEXT_OVERFLOW,
    OVERLOADED,
    Behaviour,
    Reply,
    ScriptedLLM,
    ScriptedOptimizer,
    agent_when,
    is_probe,
    perfect_agent,
    prompt_contains,
    route,
)

pytestmark = [pytest.mark.slow]

EDITED = "You solve math word problems. Think in one short line, then end with: The answer is <number>."
CRITIQUE = "- End with 'The answer is N'.\n- Keep the working to one line."
HINT = "Check the arithmetic once before answering."
HINTED = f"{DEFAULT_SEED_PROMPT} {HINT}"
UNHINTED = f"{DEFAULT_SEED_PROMPT} Keep units out of the final number."


TRAIN_QUESTIONS = {" ".join(t["question"].split()) for t in SPLITS.train}


def ledger_rows(out: Path, run_id: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (out / "runs" / run_id / "rollouts.jsonl").read_text().splitlines() if x]


def test_failed_optimizer_calls_cost_only_their_branch(tmp_path: Path) -> None:
    """Branch 1: a transient 503 is retried, then critique and edit succeed -> a scored candidate.
    Branch 2: the critique overflows the context (HTTP 400, never retried) -> that branch is lost,
    the run is not."""
    calls: list[dict[str, Any]] = []
    lock = threading.Lock()
    optimizer = ScriptedOptimizer(CRITIQUE, [EDITED])

    def flaky(request: dict[str, Any]) -> Reply:
        if is_probe(request):
            return optimizer(request)
        with lock:
            calls.append(request)
            n = len(calls)
        if n == 1:
            return Reply(503, OVERLOADED)
        if n >= 4:
            return Reply(400, CONTEXT_OVERFLOW)
        return optimizer(request)

    script = route(agent=perfect_agent(TASKS), optimizer=flaky, optimizer_models=(GRADIENT_MODEL, EDIT_MODEL))
    with ScriptedLLM(script) as fake:
        result = run_trainer(
            ["train", *TINY, "--output", str(tmp_path)],
            cwd=tmp_path,
            **scripted_env(fake),
            OPTIMIZER_API_KEY="sk-test-optimizer",
            OPTIMIZER_MAX_TOKENS="300",
        )
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["failed_optimizer_branches"] == 1
    assert summary["candidates"] == 1 and summary["candidates_rejected"] == 0
    assert len(calls) == 4, [c["messages"][-1]["content"][:80] for c in calls]
    assert [c["model"] for c in calls] == [GRADIENT_MODEL, GRADIENT_MODEL, EDIT_MODEL, GRADIENT_MODEL]
    assert calls[0] == calls[1], "the 503 was not retried with the same request"
    assert optimizer.kinds == ["gradient", "edit"]  # what got through: the first branch only
    # Stock APO sends no output limit; every optimizer call must carry ours.
    assert all(c.get("max_tokens") == 300 for c in calls)
    usage = summary["tokens"]["optimizer"]
    # The SDK retried the 503 inside one call; the 400 is a failed call of its own.
    assert (usage[f"gradient:{GRADIENT_MODEL}"]["calls"], usage[f"gradient:{GRADIENT_MODEL}"]["failures"]) == (1, 1)
    assert (usage[f"edit:{EDIT_MODEL}"]["calls"], usage[f"edit:{EDIT_MODEL}"]["failures"]) == (1, 0)
    with PromptDB(tmp_path / "prompts.db") as prompts:
        records = prompts.list(summary["run_id"])
    assert [(p.label, p.round) for p in records] == [("v0", 0), ("v1", 1)]
    candidate = next(p for p in records if p.round == 1)
    assert candidate.template == EDITED
    assert candidate.status == "scored" and candidate.val_n == 6
    assert candidate.val_score == 1.0 and records[0].val_score == 1.0  # the agent is always right
    # The lost branch's candidate never runs its val batch: one batch fewer than APO's bound.
    rows = ledger_rows(tmp_path, summary["run_id"])
    assert len(rows) == summary["rollouts"] == expected_rollouts(SETTINGS, SPLITS)["training_rollouts"] - 6 == 28
    assert Counter((r["mode"], r["prompt_version"]) for r in rows) == {
        ("val", "v0"): 18,  # baseline, beam member, beam leader rescored
        ("train", "v0"): 4,  # both branches' critique batches: the second ran before its critique failed
        ("val", "v1"): 6,
    }
    assert "optimizer call failed" in result.stderr and "branch dropped" in result.stderr
    assert "sk-test-optimizer" not in result.stderr + result.stdout
    shown = assert_critique_shows_conversations(calls[0], tmp_path, summary["run_id"])
    first_batch = [r for r in rows if r["mode"] == "train"][: SETTINGS.gradient_batch_size]
    assert shown == {r["task_id"] for r in first_batch}  # the first branch's batch, all of it


class HoldRoundTwo:
    """The agent, with round 2's critique rollouts held: those are the only train questions asked
    with HINTED, which becomes the best prompt in round 1. The hold pins the kill to one state."""

    def __init__(self, agent: Behaviour, hold_s: float = 25.0) -> None:
        self.agent, self.hold_s = agent, hold_s
        self.held = 0
        self._lock = threading.Lock()
        self._release = threading.Event()

    def release(self) -> None:
        self._release.set()

    def __call__(self, request: dict[str, Any]) -> Reply:
        if not is_probe(request):
            system, question = (m.get("content") or "" for m in request["messages"][:2])
            if HINT in system and " ".join(question.split()) in TRAIN_QUESTIONS:
                with self._lock:
                    self.held += 1
                self._release.wait(self.hold_s)
        return self.agent(request)


def _wait_for(predicate: Any, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        assert proc.poll() is None, "training exited before the point the test waits for"
        time.sleep(0.2)
    pytest.fail(f"condition not reached within {timeout:.0f}s")


def test_killed_training_keeps_everything_scored_and_resumes(tmp_path: Path) -> None:
    """Killed in round 2 of 3, with its two critique rollouts in flight: round 1 is complete and
    found HINTED (val 1.0 against the seed's 0.0); --resume must start from it."""
    args = [*TINY]
    args[args.index("--iterations") + 1] = "3"
    agent = HoldRoundTwo(agent_when(TASKS, prompt_contains(HINT)))
    optimizer = ScriptedOptimizer(CRITIQUE, [HINTED, UNHINTED])
    script = route(agent=agent, optimizer=optimizer, optimizer_models=(GRADIENT_MODEL, EDIT_MODEL))
    with ScriptedLLM(script) as llm:
        log = (tmp_path / "train.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "trainer", "train", *args, "--output", str(tmp_path)],
            cwd=tmp_path,
            env=trainer_env(**scripted_env(llm)),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # so the kill reaches the runners too
        )
        try:
            # Round 1 done (the best is HINTED's v1) and round 2's critique batch asked: pull the plug.
            best_json = tmp_path / "best_prompt.json"
            _wait_for(lambda: best_json.exists() and json.loads(best_json.read_text())["label"] == "v1", 300, proc)
            _wait_for(lambda: agent.held == SETTINGS.gradient_batch_size, 60, proc)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            log.close()
            agent.release()

        db = tmp_path / "prompts.db"
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        with PromptDB(db) as prompts:
            run = prompts.runs()[-1]
            best = prompts.best(run.run_id)
            killed = prompts.list(run.run_id)
            seed = next(p for p in killed if p.round == 0)
        assert run.status not in ("completed", "failed")  # killed: nobody got to record an ending
        # The seed's baseline; round 1's beam batch was the same 6 val tasks, answered by the rollout
        # cache, and a repeated outcome is no new data point.
        assert seed.val_score is not None and seed.val_n == 6
        assert best is not None
        # Everything scored before the kill is there, and nothing of round 2 yet.
        assert [(p.label, p.template, p.status, p.val_score, p.val_n, p.is_best) for p in killed] == [
            ("v0", DEFAULT_SEED_PROMPT, "scored", 0.0, 6, False),
            ("v1", HINTED, "scored", 1.0, 6, True),  # its beam batch; its full-set rescoring repeated it
            ("v2", UNHINTED, "scored", 0.0, 6, False),
        ]
        rows = ledger_rows(tmp_path, run.run_id)
        assert len(rows) == 34  # seed 6 + round 1's 4 train, 18 val and 6 for the new leader
        text = (tmp_path / "best_prompt.txt").read_text()
        meta = json.loads((tmp_path / "best_prompt.json").read_text())
        assert text == best.template and meta["id"] == best.id
        assert meta["template_sha256"] == hashlib.sha256(text.encode()).hexdigest()
        assert not list(tmp_path.glob(".*tmp*")), "a temp file survived the kill"

        # --resume picks the killed run's best prompt as the new seed.
        resumed = run_trainer(
            ["train", *TINY, "--algorithm", "baseline", "--resume", "--output", str(tmp_path)],
            cwd=tmp_path,
            **scripted_env(llm),
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
    assert (best.label, best.round, best.template) == ("v1", 1, HINTED)
    # The resumed seed holds the hint: the agent is right on every val and test problem.
    assert (summary["seed_val_score"], summary["seed_test_score"]) == (1.0, 1.0)


class Outage:
    """The agent's endpoint: answers (perfectly) until ``after`` requests, then HTTP 503 until restored."""

    def __init__(self, agent: Behaviour, after: int) -> None:
        self.agent, self.after = agent, after
        self.seen = 0
        self.down = True
        self._lock = threading.Lock()

    def __call__(self, request: dict[str, Any]) -> Reply:
        with self._lock:
            self.seen += 1
            failing = self.down and self.seen > self.after
        return Reply(503, OVERLOADED) if failing else self.agent(request)


def test_endpoint_outage_stops_the_run_and_never_becomes_a_score(tmp_path: Path) -> None:
    """The agent's server answers the probe and the seed's baseline (1 + 6 requests), then 503s.

    A perfect agent: no recorded val score may fall below 1.0. The run must stop with exit 3 after
    MAX_ENDPOINT_FAILURES rollouts in a row, naming the URL; the seed's score, the best-prompt files
    and the DB stay as they were, the run is marked failed, and --resume goes on from there.
    """
    outage = Outage(perfect_agent(TASKS), after=1 + len(SPLITS.val))
    optimizer = ScriptedOptimizer(CRITIQUE, [EDITED])
    script = route(agent=outage, optimizer=optimizer, optimizer_models=(GRADIENT_MODEL, EDIT_MODEL))
    with ScriptedLLM(script) as llm:
        started = time.monotonic()
        result = run_trainer(
            ["train", *TINY, "--output", str(tmp_path)], cwd=tmp_path, **scripted_env(llm),
            MAX_ENDPOINT_FAILURES="3", LLM_MAX_RETRIES="0",
        )  # fmt: skip
        stop_seconds = time.monotonic() - started
        assert result.returncode == 3, result.stderr[-4000:]
        assert "stopped:" in result.stderr and llm.base_url in result.stderr and "HTTP 503" in result.stderr
        assert "MAX_ENDPOINT_FAILURES=3" in result.stderr
        assert not (tmp_path / "summary.json").exists()
        best_before = (tmp_path / "best_prompt.txt").read_bytes()
        with PromptDB(tmp_path / "prompts.db") as prompts:
            run = prompts.runs()[-1]
            records = prompts.list(run.run_id)
            evaluations = [e for p in records for e in prompts.evaluations(p.id)]
        assert run.status == "failed"
        assert (records[0].label, records[0].status, records[0].val_score, records[0].val_n, records[0].is_best) == (
            "v0",
            "scored",
            1.0,
            6,
            True,
        )
        assert evaluations and all(e.score >= 1.0 for e in evaluations), evaluations
        assert best_before.decode() == DEFAULT_SEED_PROMPT
        rows = ledger_rows(tmp_path, run.run_id)
        faults = [r for r in rows if r["status"] == "endpoint_error"]
        assert len(faults) >= 3 and all(llm.base_url in r["reason"] for r in faults)

        outage.down = False  # the server is back
        resumed = run_trainer(
            ["train", *TINY, "--output", str(tmp_path), "--resume"], cwd=tmp_path, **scripted_env(llm)
        )
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["run_id"] != run.run_id
    with PromptDB(tmp_path / "prompts.db") as prompts:
        assert [r.status for r in prompts.runs()] == ["failed", "completed"]
        scores = [p.val_score for p in prompts.list(summary["run_id"]) if p.status == "scored"]
    assert scores and min(scores) >= 1.0
    print(f"outage: exit 3 after {stop_seconds:.1f}s, {len(faults)} faulted rollouts, nothing scored from them")


class Slowdown:
    """The agent's endpoint: answers (perfectly) at once for ``after`` requests, then ``seconds`` late."""

    def __init__(self, agent: Behaviour, after: int, seconds: float) -> None:
        self.agent, self.after, self.seconds = agent, after, seconds
        self.seen = 0
        self._lock = threading.Lock()

    def __call__(self, request: dict[str, Any]) -> Reply:
        with self._lock:
            self.seen += 1
            late = self.seen > self.after
        item = self.agent(request)
        reply = item if isinstance(item, Reply) else Reply(content=str(item))
        return dataclasses.replace(reply, delay=self.seconds) if late else reply


def train_against_slow_agent(tmp_path: Path, *, instant: int, batch_timeout: str) -> subprocess.CompletedProcess[str]:
    """A TINY training whose agent answers ``instant`` requests at once, then each 12 s late."""
    slow = Slowdown(perfect_agent(TASKS), after=instant, seconds=12.0)
    optimizer = ScriptedOptimizer(CRITIQUE, [EDITED, HINTED])
    script = route(agent=slow, optimizer=optimizer, optimizer_models=(GRADIENT_MODEL, EDIT_MODEL))
    with ScriptedLLM(script) as llm:
        return run_trainer(
            ["train", *TINY, "--output", str(tmp_path)], cwd=tmp_path, **scripted_env(llm),
            ROLLOUT_BATCH_TIMEOUT=batch_timeout,
        )  # fmt: skip


def test_a_slow_endpoint_against_a_short_batch_timeout_never_becomes_a_score(tmp_path: Path) -> None:
    """After the seed's baseline every agent reply takes longer than ROLLOUT_BATCH_TIMEOUT.

    APO then ends each later batch with no rollout finished. A perfect agent: no recorded val
    score may fall below 1.0, the seed keeps its full-set score and n, and every such batch is an
    unscored evaluation with its reason, never a number.
    """
    # 5 s for a batch: the seed's instant baseline fits even on a loaded machine; late replies never do.
    result = train_against_slow_agent(tmp_path, instant=1 + len(SPLITS.val), batch_timeout="5")
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    with PromptDB(tmp_path / "prompts.db") as prompts:
        records = prompts.list(summary["run_id"])
        evaluations = [e for p in records for e in prompts.evaluations(p.id)]
        unscored = {p.label: prompts.unscored(p.id) for p in records}
    seed = records[0]
    assert (seed.label, seed.val_score, seed.val_n, seed.is_best) == ("v0", 1.0, len(SPLITS.val), True)
    assert evaluations and all(e.score >= 1.0 for e in evaluations), evaluations
    late = [(label, split, planned, reason) for label, rows in unscored.items() for split, planned, reason in rows]
    assert late, "no batch was cut short: the test did not reach the timeout"
    assert all(reason for *_, reason in late), late
    assert summary["best_val_score"] == 1.0 and summary["best_prompt_version"] == "v0"
    print(f"slow endpoint: {len(late)} unscored evaluations {late}; every recorded score 1.0")


def test_a_run_where_nothing_got_a_score_stops_with_a_message_not_a_traceback(tmp_path: Path) -> None:
    """Every agent reply (after the startup probe) is later than ROLLOUT_BATCH_TIMEOUT: no prompt is scored."""
    result = train_against_slow_agent(tmp_path, instant=1, batch_timeout="1")
    assert result.returncode == 3, result.stderr[-3000:]
    # Runner processes cut off mid-request may log their own tracebacks; the trainer's is a message.
    assert "stopped: the training finished without a single scored prompt" in result.stderr
    assert "ROLLOUT_BATCH_TIMEOUT" in result.stderr and "RuntimeError" not in result.stderr
    with PromptDB(tmp_path / "prompts.db") as prompts:
        records = prompts.list()
        assert all(p.status != "scored" for p in records)
        assert prompts.unscored(records[0].id), "the seed's unfinished baseline is kept as unscored"
        assert prompts.runs()[0].status == "failed"


def test_a_store_restarted_mid_round_stops_the_run_within_seconds(tmp_path: Path) -> None:
    """A real store server, stopped and started again on its port while the seed's baseline runs.

    The new store knows none of the run's rollouts: the training must stop (exit 3) within seconds,
    not after ROLLOUT_BATCH_TIMEOUT (15 min), naming STORE_URL, with nothing recorded as a score.
    """
    from tests.support.pipeline import StoreServer

    store = StoreServer(tmp_path)
    store.start()
    try:
        store.wait_ready()
        script = route(agent=perfect_agent(TASKS), optimizer=ScriptedOptimizer(CRITIQUE, [EDITED]),
                       optimizer_models=(GRADIENT_MODEL, EDIT_MODEL))  # fmt: skip
        with ScriptedLLM(script, latency=0.5) as llm:
            proc = subprocess.Popen(
                [sys.executable, "-m", "trainer", "train", *TINY, "--output", str(tmp_path / "out"),
                 "--store-url", store.url],
                env=trainer_env(**scripted_env(llm)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                start_new_session=True,
            )  # fmt: skip
            try:
                deadline = time.monotonic() + 120
                while not list((tmp_path / "out" / "runs").glob("*/rollouts.jsonl")) and time.monotonic() < deadline:
                    assert proc.poll() is None, proc.communicate()[1][-4000:]
                    time.sleep(0.2)
                store.stop()
                restarted = time.monotonic()
                store.start()
                store.wait_ready()
                _, stderr = proc.communicate(timeout=300)
                stop_seconds = time.monotonic() - restarted
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.communicate()
    finally:
        store.stop()
    (tmp_path / "trainer.stderr").write_text(stderr)
    assert proc.returncode == 3, stderr[-4000:]
    assert "stopped:" in stderr and store.url in stderr and "STORE_URL" in stderr, stderr[-2000:]
    assert stop_seconds < 60, f"the run stopped {stop_seconds:.0f}s after the store restart"
    assert not (tmp_path / "out" / "summary.json").exists()
    with PromptDB(tmp_path / "out" / "prompts.db") as prompts:
        run = prompts.runs()[-1]
        evaluations = [e for p in prompts.list(run.run_id) for e in prompts.evaluations(p.id)]
    assert run.status == "failed"
    assert all(e.score >= 1.0 for e in evaluations), evaluations
    print(f"store restart: exit 3 {stop_seconds:.1f}s after the restart, {len(evaluations)} scores kept (all 1.0)")
