"""Running the real trainer CLI as a subprocess, the way a user does, for the slow tests."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from trainer.math_task import SEED_PROMPT as DEFAULT_SEED_PROMPT

TINY = [
    "--iterations", "1", "--beam-width", "1", "--branch-factor", "2",
    "--train-size", "4", "--gradient-batch-size", "2",
    "--val-size", "6", "--val-batch-size", "6", "--test-size", "6",
    "--runners", "2", "--seed", "11",
]  # fmt: skip


def clean_env(**extra: str) -> dict[str, str]:
    """The user's environment minus anything that would point the trainer elsewhere."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "OPTIMIZER_", "AGENT_", "GRADIENT_", "EDIT_", "STORE_", "OTEL_"))
    }
    env.update({"STORE_PORT": "0", "METRICS_PORT": "0", "PYTHONUNBUFFERED": "1", **extra})
    return env


def run_trainer(args: list[str], cwd: Path, timeout: float = 900, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI; on timeout kill its whole process group (runners and model server included)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainer", *args],
        cwd=cwd,
        env=clean_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def assert_critique_shows_conversations(critique: dict[str, Any], out: Path, run_id: str) -> None:
    """What APO sent to the gradient model holds the agent's conversations: the system prompt,
    the questions it was asked and the answers it gave (rebuilt from the rollouts' spans)."""
    text = "\n".join(str(m.get("content")) for m in critique["messages"])
    assert DEFAULT_SEED_PROMPT in text
    rows = [json.loads(line) for line in (out / "runs" / run_id / "rollouts.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["mode"] == "train" and r["prompt_version"] == "v0" and r["status"] == "ok"]
    assert train_rows, "no successful train rollout to critique"
    shown = [r for r in train_rows if len(_fragment(r["reply"])) >= 8 and _fragment(r["reply"]) in text]
    assert shown, "none of the agent's answers reached the critique"
    from trainer.data.splits import load_splits

    splits = load_splits(None, 4, 6, 6, 11)
    questions = {t["id"]: t["question"] for t in splits.train}
    for row in shown:
        assert _fragment(questions[row["task_id"]]) in text


def _fragment(value: str) -> str:
    """A piece of ``value`` that survives any quoting: no quotes, backslashes or line breaks."""
    return re.split(r'[\n"\\]', value.strip())[0][:60]
