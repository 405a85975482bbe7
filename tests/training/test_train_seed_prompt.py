"""Tests for trainer.training.train.seed_prompt_for: where a training's seed prompt comes from."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.agent.prompt import Demo, Prompt
from trainer.config import ConfigError, Settings
from trainer.math_task import MATH, SEED_PROMPT
from trainer.records.prompt_db import PromptDB
from trainer.training.train import seed_prompt_for


def settings(out: Path, **changes: object) -> Settings:
    return Settings(_env_file=None, output_dir=out, **changes)  # type: ignore[call-arg]


def test_the_task_seed_has_no_demonstrations(tmp_path: Path) -> None:
    seed, source = seed_prompt_for(settings(tmp_path), MATH)
    assert seed == Prompt(SEED_PROMPT) and "math task" in source


def test_resume_keeps_the_best_prompts_instruction_and_demonstrations_apart(tmp_path: Path) -> None:
    best = Prompt("Solve it.", (Demo("p1", "What is {1} + 1?", "1 + 1 = 2. The answer is 2.", "gold"),))
    with PromptDB(tmp_path / "prompts.db") as db:
        db.start_run("r", "apo", {})
        pid = db.add_prompt("r", "v3", best.render(), parent_id=None, round=0, prompt=best, change="seed")
        db.record_evaluation(pid, "val", 0.5, 4)
        db.mark_best("r", pid)
    seed, source = seed_prompt_for(settings(tmp_path, resume=True), MATH)
    assert seed == best and source == f"--resume: best prompt #{pid} of run r"


def test_resume_from_a_bare_best_prompt_file_takes_it_all_as_instruction(tmp_path: Path) -> None:
    (tmp_path / "best_prompt.txt").write_text("Solve.\n\nWorked examples:\n\nQuestion: a\nAnswer: b")
    seed, _ = seed_prompt_for(settings(tmp_path, resume=True), MATH)
    assert seed.demos == () and seed.instruction.startswith("Solve.")


def test_resume_with_nothing_saved_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--resume: no saved prompt"):
        seed_prompt_for(settings(tmp_path, resume=True), MATH)
