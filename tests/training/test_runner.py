"""Scale-out: a training with RUNNERS=0 and separate ``apo-trainer runner`` processes on one store.

The end-to-end test is the same arrangement as the compose stack's ``runner`` service, on
loopback. Real: an ``agl store``, a training that only runs the algorithm, and two runner processes
(Agno agent included) that take its rollouts. Scripted: the LLM everyone shares, one
``trainer.testing`` server for both roles, with an always-right agent and an optimizer whose two
edits differ, so the training's rollouts are exactly APO's planned count.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from tests.support.env import trainer_env
from tests.support.pipeline import agl_store
from tests.support.store import store_spans
from tests.support.trainer_cli import AGENT_MODEL, EDIT_MODEL, GRADIENT_MODEL, TINY, run_trainer
from tests.support.trainer_cli import TINY_SETTINGS as SETTINGS
from tests.support.trainer_cli import TINY_SPLITS as SPLITS
from trainer.apo.plan import expected_rollouts
from trainer.config import ConfigError, Settings
from trainer.data.problems import MathTask
from trainer.math_task import SEED_PROMPT
from trainer.records.ledger import RunLedgers
from trainer.testing import ScriptedLLM, ScriptedOptimizer, closed_port, perfect_agent, route
from trainer.training.runner import check_runner_settings
from trainer.training.train import for_run, new_run_id

TASK: MathTask = {"id": "t1", "question": "What is 1 + 1?", "answer": "2", "kind": "add", "difficulty": 1}


# --------------------------------------------------------------------------- ledgers by run id


def test_a_task_finds_the_ledger_of_its_run(tmp_path: Path) -> None:
    run_id = new_run_id()
    (task,) = for_run([TASK], run_id, RunLedgers(tmp_path / "elsewhere" / "runs").for_run(run_id))
    # The run's directory does not exist (another container's mount): the runner's own RUNS_DIR.
    ledger = RunLedgers(tmp_path / "runs").for_task(task)
    assert ledger is not None
    assert ledger.path == tmp_path / "runs" / run_id / "rollouts.jsonl"
    assert "run_id" not in TASK, "stamping must not change the split's own tasks"


def test_a_runner_of_another_training_writes_to_the_ledger_of_the_run(tmp_path: Path) -> None:
    """Two trainings on one store take each other's rollouts: the row goes where its run counts it."""
    run_id = new_run_id()
    theirs = RunLedgers(tmp_path / "their-out" / "runs").for_run(run_id)
    theirs.path.parent.mkdir(parents=True)  # the training creates it before its first rollout
    (task,) = for_run([TASK], run_id, theirs)
    ledger = RunLedgers(tmp_path / "my-out" / "runs").for_task(task)
    assert ledger is not None and ledger.path == theirs.path.resolve()
    # A directory that is not that run's own `runs/<run id>` is never written to.
    for bad in ("/etc", str(tmp_path), str(tmp_path / "their-out" / "runs"), "relative/runs/" + run_id):
        other = RunLedgers(tmp_path / "my-out" / "runs").for_task({**task, "run_dir": bad})
        assert other is not None and other.path == tmp_path / "my-out" / "runs" / run_id / "rollouts.jsonl", bad


@pytest.mark.parametrize("run_id", [None, "../../etc", "20260101-000000-abcd/../x", ""])
def test_a_task_without_a_valid_run_id_has_no_ledger(
    tmp_path: Path, run_id: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    task: MathTask = dict(TASK) if run_id is None else {**TASK, "run_id": run_id}  # type: ignore[assignment]
    with caplog.at_level(logging.WARNING):
        assert RunLedgers(tmp_path / "runs").for_task(task) is None
    assert "carries no valid run id" in caplog.text
    assert not (tmp_path / "runs").exists()


def test_for_run_rejects_a_path() -> None:
    with pytest.raises(ValueError, match="not a run id"):
        RunLedgers(Path("/tmp")).for_run("../x")


# --------------------------------------------------------------------------- settings


def test_training_without_runners_needs_a_store() -> None:
    with pytest.raises(ConfigError, match=r"RUNNERS \(--runners\) 0 .* set STORE_URL \(--store-url\)"):
        Settings(runners=0).check_execution()
    Settings(runners=0, store_url="http://store:4747").check_execution()


def test_runner_needs_a_store_and_at_least_one_process() -> None:
    with pytest.raises(ConfigError, match=r"needs STORE_URL \(--store-url\)"):
        check_runner_settings(Settings())
    with pytest.raises(ConfigError, match=r"RUNNERS \(--runners\) must be 1 or more"):
        check_runner_settings(Settings(runners=0, store_url="http://store:4747"))
    assert check_runner_settings(Settings(store_url="http://store:4747")) == "http://store:4747"


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trainer", *args], env=trainer_env(**env), capture_output=True, text=True, timeout=120
    )


def test_runner_cli_errors_name_the_setting() -> None:
    missing = _cli("runner")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "needs STORE_URL (--store-url)" in " ".join(missing.stderr.split())
    url = f"http://127.0.0.1:{closed_port()}"
    closed = _cli("runner", "--store-url", url)
    assert closed.returncode == 2 and "Traceback" not in closed.stderr
    assert url in closed.stderr and "unreachable" in closed.stderr


def test_training_with_zero_runners_and_no_store_fails_before_any_work(tmp_path: Path) -> None:
    result = _cli("train", "--runners", "0", "--output", str(tmp_path / "out"), OPENAI_BASE_URL="http://127.0.0.1:9/v1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "set STORE_URL (--store-url) too" in " ".join(result.stderr.split())
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- two runners, one training


# A reply takes this long: a runner is busy for a while with each rollout, so both take some.
REPLY_LATENCY_S = 0.5


@pytest.fixture(scope="module")
def shared_llm() -> Iterator[str]:
    optimizer = ScriptedOptimizer(
        "- Check the arithmetic once.", [f"{SEED_PROMPT} Check once.", f"{SEED_PROMPT} Be brief."]
    )
    agent = perfect_agent([*SPLITS.train, *SPLITS.val, *SPLITS.test])
    script = route(agent=agent, optimizer=optimizer, optimizer_models=(GRADIENT_MODEL, EDIT_MODEL))
    with ScriptedLLM(script, latency=REPLY_LATENCY_S) as llm:
        yield llm.base_url


@pytest.mark.slow
def test_external_runners_do_the_rollouts_of_a_training(tmp_path: Path, shared_llm: str) -> None:
    out = tmp_path / "out"
    with agl_store(tmp_path) as store, ExitStack() as stack:
        env = {
            "OPENAI_BASE_URL": shared_llm,
            "AGENT_MODEL": AGENT_MODEL,
            "GRADIENT_MODEL": GRADIENT_MODEL,
            "EDIT_MODEL": EDIT_MODEL,
            "STORE_URL": store.url,
            "OUTPUT_DIR": str(out),
        }
        runners = [stack.enter_context(runner_process(tmp_path / f"runner-{i}.log", env)) for i in range(2)]

        def runner_logs() -> str:
            return "\n".join(p.read_text()[-2000:] for p in sorted(tmp_path.glob("runner-*.log")))

        # The last --runners wins: the training starts no runner process of its own.
        result = run_trainer(["train", *TINY, "--runners", "0", "--output", str(out)], cwd=tmp_path, **env)
        assert result.returncode == 0, f"{result.stderr[-4000:]}\n{runner_logs()}"
        assert "rollouts wait in" in result.stderr

        summary = json.loads((out / "summary.json").read_text())
        rows = [json.loads(x) for x in (out / "runs" / summary["run_id"] / "rollouts.jsonl").read_text().splitlines()]
        assert len(rows) == summary["rollouts"] > 0
        # Both candidates differ and are evaluated: exactly APO's planned rollouts, all by the runners.
        assert len(rows) == expected_rollouts(SETTINGS, SPLITS)["training_rollouts"] == 34
        assert Counter((r["status"], r["reward"]) for r in rows) == {("ok", 1.0): 34}
        assert (summary["candidates"], summary["best_val_score"], summary["best_test_score"]) == (2, 1.0, 1.0)
        by_runner = Counter(row["runner"] for row in rows)
        assert {name.rsplit(":", 1)[1] for name in by_runner} == {str(p.pid) for p in runners}, by_runner
        assert sum(by_runner.values()) == 34
        print(f"rollouts by runner process: {dict(by_runner)}")

        # Runners outlive a training; SIGTERM (what `docker stop` sends) ends them cleanly.
        assert all(p.poll() is None for p in runners), runner_logs()
        for p in runners:
            p.send_signal(signal.SIGTERM)
        assert [p.wait(timeout=60) for p in runners] == [0, 0], runner_logs()


@contextmanager
def runner_process(log_path: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m trainer runner`` with one runner process; killed with its group if still alive."""
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "trainer", "runner", "--runners", "1"],
            env=trainer_env(**env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            yield proc
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


# --------------------------------------------------------------------------- two trainings, one store


@pytest.mark.slow
def test_two_trainings_on_one_store_keep_their_prompts_and_rollouts_apart(tmp_path: Path) -> None:
    """Two concurrent trainings (own output dirs, own in-process runners) on one store.

    Each has its own seed prompt and its own scripted optimizer, whose edits carry the run's
    marker; the store's queue lets either training's runners take either's rollouts. Each run must
    still evaluate only its own prompts (resources named by run) and count every one of its
    rollouts in its own ledger, wherever it ran.
    """
    import threading

    markers = ("Run A.", "Run B.")
    with agl_store(tmp_path) as store, ExitStack() as stack:
        results: dict[str, subprocess.CompletedProcess[str]] = {}

        def train(marker: str) -> None:
            seed = f"{marker} {SEED_PROMPT}"
            optimizer = ScriptedOptimizer("- Check once.", [f"{seed} Check once.", f"{seed} Be brief."])
            script = route(agent=perfect_agent([*SPLITS.train, *SPLITS.val, *SPLITS.test]), optimizer=optimizer,
                           optimizer_models=(GRADIENT_MODEL, EDIT_MODEL))  # fmt: skip
            llm = stack.enter_context(ScriptedLLM(script, latency=REPLY_LATENCY_S / 2))
            results[marker] = run_trainer(
                ["train", *TINY, "--output", str(tmp_path / marker)],
                cwd=tmp_path, OPENAI_BASE_URL=llm.base_url, AGENT_MODEL=AGENT_MODEL, GRADIENT_MODEL=GRADIENT_MODEL,
                EDIT_MODEL=EDIT_MODEL, STORE_URL=store.url, SEED_PROMPT=seed,
            )  # fmt: skip

        threads = [threading.Thread(target=train, args=(marker,)) for marker in markers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=900)
        by_runner: dict[str, Counter[str]] = {}
        for marker in markers:
            result = results[marker]
            assert result.returncode == 0, result.stderr[-4000:]
            out = tmp_path / marker
            summary = json.loads((out / "summary.json").read_text())
            rows = [
                json.loads(x) for x in (out / "runs" / summary["run_id"] / "rollouts.jsonl").read_text().splitlines()
            ]
            # Every rollout of the run is in its own ledger, and ran with its own prompts only (the
            # conversation on its root span in the store, whichever training's runner ran it).
            assert len(rows) == summary["rollouts"] == expected_rollouts(SETTINGS, SPLITS)["training_rollouts"] == 34
            for row in rows:
                (root,) = [s for s in store_spans(store.url, row["rollout_id"]) if s.name == "math_rollout"]
                assert str(root.attributes["gen_ai.prompt.0.content"]).startswith(marker), row["rollout_id"]
            assert Counter((r["status"], r["reward"]) for r in rows) == {("ok", 1.0): 34}
            assert (summary["candidates"], summary["best_val_score"]) == (2, 1.0)
            assert (out / "best_prompt.txt").read_text().startswith(marker)
            by_runner[marker] = Counter(row["runner"] for row in rows)
        print(f"rollouts of each run by runner process: {by_runner}")
