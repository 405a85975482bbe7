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

from tests.support.env import trainer_env
from trainer.config import Settings
from trainer.data.splits import load_splits
from trainer.math_task import SEED_PROMPT as DEFAULT_SEED_PROMPT
from trainer.testing import ScriptedLLM

TINY = [
    "--iterations", "1", "--beam-width", "1", "--branch-factor", "2",
    "--train-size", "4", "--gradient-batch-size", "2",
    "--val-size", "6", "--val-batch-size", "6", "--test-size", "6",
    "--runners", "2", "--seed", "11", "--demos", "0", "--no-candidate-cut",
]  # fmt: skip
# Plain APO (instruction edits only): the tests built on TINY script what each edit branch does;
# demonstrations have tests of their own (tests/training/test_demonstrations.py). Every planned
# rollout runs (no cut of hopeless candidates: many of these tests count rollouts, and their agent
# is often always right, which makes every candidate hopeless at once); the cut has tests of its
# own (tests/apo/test_racing.py, tests/training/test_rollout_cache_training.py).

# The scripted model's three roles, told apart by model name (trainer.testing.route).
AGENT_MODEL, GRADIENT_MODEL, EDIT_MODEL = "scripted-agent", "scripted-critic", "scripted-editor"


def tiny_flags() -> dict[str, Any]:
    """TINY as setting names and values (a ``--no-x`` switch is ``x=False``)."""
    flags: dict[str, Any] = {}
    args = iter(TINY)
    for flag in args:
        if flag.startswith("--no-"):
            flags[flag[5:].replace("-", "_")] = False
        else:
            flags[flag[2:].replace("-", "_")] = next(args)
    return flags


def tiny_settings(**changes: Any) -> Settings:
    """The settings a ``train *TINY`` run has (no .env, no environment), with ``changes``."""
    return Settings(_env_file=None, algorithm="apo", **{**tiny_flags(), **changes})


TINY_SETTINGS = tiny_settings()
TINY_SPLITS = load_splits(
    None, TINY_SETTINGS.train_size, TINY_SETTINGS.val_size, TINY_SETTINGS.test_size, TINY_SETTINGS.seed
)
TINY_TASKS = [*TINY_SPLITS.train, *TINY_SPLITS.val, *TINY_SPLITS.test]


def scripted_env(llm: ScriptedLLM) -> dict[str, str]:
    """A trainer's environment with every LLM role on the scripted server ``llm``."""
    return {"OPENAI_BASE_URL": llm.base_url, "AGENT_MODEL": AGENT_MODEL, "GRADIENT_MODEL": GRADIENT_MODEL,
            "EDIT_MODEL": EDIT_MODEL}  # fmt: skip


def run_trainer(args: list[str], cwd: Path, timeout: float = 900, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI; on timeout kill its whole process group (runners and model server included)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainer", *args],
        cwd=cwd,
        env=trainer_env(**env),
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


def assert_critique_shows_conversations(critique: dict[str, Any], out: Path, run_id: str) -> set[str]:
    """What APO sent to the gradient model holds the agent's conversations: the system prompt,
    the questions it was asked and the answers it gave (rebuilt from the rollouts' spans).

    A conversation is shown when its whole question is in the critique, and then its whole reply
    must be there too; returns the ids of the tasks shown. Whole texts, not prefixes: a scripted
    agent's replies all begin alike and differ only in their number."""
    text = "\n".join(str(m.get("content")) for m in critique["messages"])
    assert DEFAULT_SEED_PROMPT in text
    rows = [json.loads(line) for line in (out / "runs" / run_id / "rollouts.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["mode"] == "train" and r["prompt_version"] == "v0" and r["status"] == "ok"]
    assert train_rows, "no successful train rollout to critique"
    from trainer.data.splits import load_splits

    flags = tiny_flags()
    sizes = (int(flags[f"{split}_size"]) for split in ("train", "val", "test"))
    splits = load_splits(None, *sizes, int(flags["seed"]))
    questions = {t["id"]: t["question"] for t in splits.train}

    def shows(value: str) -> bool:
        # The pieces between quotes, backslashes and line breaks survive any quoting APO applies.
        pieces = [piece for piece in re.split(r'[\n"\\]', value) if piece.strip()]
        return bool(pieces) and all(piece in text for piece in pieces)

    shown = [r for r in train_rows if shows(questions[r["task_id"]])]
    assert shown, "none of the questions the agent was asked reached the critique"
    for row in shown:
        assert shows(row["reply"]), f"the critique shows task {row['task_id']} without the agent's answer"
    return {row["task_id"] for row in shown}
