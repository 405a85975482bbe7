"""The task seam: a task of the user's own, named by --task package.module:NAME, trains end to end.

The second task is tiny and not math (capital cities, graded by a substring match), in a module of
its own outside the package, as a user would write it. The agent and the optimizer are the
library's scripted model; the store is a real ``agl store`` (so the run also shows it ends cleanly
with --store-url).
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.pipeline import agl_store
from tests.support.trainer_cli import run_trainer
from trainer.config import ConfigError, load_settings
from trainer.records.prompt_db import PromptDB
from trainer.records.summary import Summary
from trainer.task import Task, load_task
from trainer.testing import ScriptedLLM, ScriptedOptimizer, agent_when, prompt_rewrites, route

CAPITALS = {
    "France": "Paris", "Japan": "Tokyo", "Kenya": "Nairobi", "Peru": "Lima", "Norway": "Oslo",
    "Egypt": "Cairo", "Canada": "Ottawa", "India": "New Delhi", "Chile": "Santiago", "Spain": "Madrid",
    "Ghana": "Accra", "Poland": "Warsaw",
}  # fmt: skip

TASK_MODULE = '''
"""A task of a user's own: capital cities."""
from trainer.task import Grade, Problem, Task

CAPITALS = {capitals!r}


class Capitals(Task):
    name = "capitals"
    agent_name = "capital-finder"
    seed_prompt = "Name the capital city of the country in the question."

    def problems(self, settings):
        return [Problem(id=f"cap-{{country}}", question=f"What is the capital of {{country}}?", answer=city)
                for country, city in CAPITALS.items()]

    def grade(self, reply, problem):
        right = problem["answer"].lower() in reply.lower()
        return Grade(reward=1.0 if right else 0.0, extracted=reply.strip()[:80] or None, correct=right)


TASK = Capitals()
NOT_A_TASK = 42
'''

SIZES = ["--train-size", "4", "--val-size", "4", "--test-size", "4", "--gradient-batch-size", "2",
         "--val-batch-size", "4", "--iterations", "1", "--beam-width", "1", "--branch-factor", "2",
         "--runners", "1", "--seed", "3"]  # fmt: skip
# The scripted optimizer adds this hint; the scripted agent answers right only with it in its prompt.
HINT = "Answer with the city's name."


@pytest.fixture
def task_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "capitals_task.py").write_text(textwrap.dedent(TASK_MODULE.format(capitals=CAPITALS)))
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_load_task_names_the_builtin_and_a_users_module(task_dir: Path) -> None:
    assert load_task("math").name == "math"
    capitals = load_task("capitals_task:TASK")
    assert isinstance(capitals, Task) and capitals.name == "capitals"
    problems = capitals.problems(load_settings())
    assert len(problems) == len(CAPITALS)
    assert capitals.grade("It is Paris.", problems[0]).reward == 1.0
    assert capitals.grade("It is Lyon.", problems[0]).reward == 0.0


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("capitals", "give a built-in task (math) or package.module:NAME"),
        ("no_such_module_here:TASK", "cannot import no_such_module_here"),
        ("capitals_task:MISSING", "capitals_task.MISSING is nothing, not a trainer.task.Task"),
        ("capitals_task:NOT_A_TASK", "capitals_task.NOT_A_TASK is int, not a trainer.task.Task"),
    ],
)
def test_a_bad_task_is_a_clear_error(task_dir: Path, spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match="TASK \\(--task\\)") as info:
        load_task(spec)
    assert message in str(info.value)


@pytest.fixture
def scripted() -> Iterator[tuple[ScriptedLLM, ScriptedOptimizer]]:
    tasks = [{"question": f"What is the capital of {c}?", "answer": city} for c, city in CAPITALS.items()]
    optimizer = ScriptedOptimizer("- Say only the city.", prompt_rewrites((HINT,)))
    agent = agent_when(tasks, lambda system, question: HINT in system)
    with ScriptedLLM(route(agent=agent, optimizer=optimizer, optimizer_models=("critic",))) as server:
        yield server, optimizer


@pytest.mark.slow
def test_a_second_task_trains_end_to_end(
    task_dir: Path, scripted: tuple[ScriptedLLM, ScriptedOptimizer], tmp_path: Path
) -> None:
    server, optimizer = scripted
    out = tmp_path / "out"
    with agl_store(tmp_path / "store-logs") as store:
        result = run_trainer(
            ["train", "--task", "capitals_task:TASK", *SIZES, "--output", str(out), "--store-url", store.url],
            cwd=tmp_path,
            timeout=600,
            OPENAI_BASE_URL=server.base_url,
            AGENT_MODEL="scripted-agent",
            GRADIENT_MODEL="critic",
            PYTHONPATH=str(task_dir),
        )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Unclosed" not in result.stderr  # the store client's sessions are closed on their own loop
    summary = Summary.load(out / "summary.json")
    # The seed lacks the hint (0 of 4 right); the optimizer's edit adds it (4 of 4): a real gain.
    assert summary.seed_val is not None and summary.seed_val.correct == 0
    # The best's val score: its beam batch, all right; its full-set rescoring repeated the same 4 val
    # tasks (the rollout cache answered them) and a repeated outcome is no new data point.
    assert summary.best_val is not None and summary.best_val.correct == summary.best_val.n == 4
    assert summary.cache is not None and summary.cache.training_hits >= 4
    assert summary.best_test.correct == 4 and summary.seed_test.correct == 0
    assert summary.best_prompt_version != "v0"
    assert HINT in (out / "best_prompt.txt").read_text()
    with PromptDB(out / "prompts.db") as db:
        seed = next(p for p in db.list(summary.run_id) if p.round == 0)
        run = db.runs()[-1]
    assert seed.template == "Name the capital city of the country in the question."
    assert json.loads(run.config_json)["task"] == "capitals_task:TASK"
    rows = [json.loads(line) for line in (out / "runs" / summary.run_id / "rollouts.jsonl").read_text().splitlines()]
    assert rows and all(row["task_id"].startswith("cap-") for row in rows)
    assert {call.kind for call in optimizer.calls} == {"gradient", "edit"}
    # Every agent request carried the rendered prompt and one of the task's own questions.
    agent_requests = [r for r in server.requests if r["model"] == "scripted-agent" and len(r["messages"]) == 2]
    assert agent_requests and all(r["messages"][1]["content"].startswith("What is the capital") for r in agent_requests)
