"""The CLI follows the Unix convention: a command's result on stdout, diagnostics on stderr.

Every case runs ``python -m trainer`` as a subprocess with its output piped, as ``| grep`` or ``>
file`` would, against a prompt DB written here and the library's scripted model (the embedded model
never starts).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.env import clean_env
from trainer.data.problems import generate_problems
from trainer.records.prompt_db import PromptDB
from trainer.testing import ScriptedLLM, perfect_agent

RUN = "20260101-000000-abcd"
SEED = "You solve math word problems. End with: The answer is <number>."
CANDIDATE = "Solve the problem in one line. End with: The answer is <number>."
FILE_PROBLEMS = 30


def cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trainer", *args],
        cwd=cwd, env=clean_env(**env), capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL,
    )  # fmt: skip


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An output dir whose prompt DB holds a seed and one scored candidate, the best."""
    out = tmp_path_factory.mktemp("out")
    with PromptDB(out / "prompts.db") as db:
        db.start_run(RUN, "apo", {})
        seed = db.add_prompt(RUN, "v0", SEED, parent_id=None, round=0)
        db.record_evaluation(seed, "val", 0.25, 16)
        best = db.add_prompt(RUN, "v1", CANDIDATE, parent_id=seed, round=1)
        db.record_evaluation(best, "val", 0.5, 16)
        db.mark_best(RUN, best)
        db.finish_run(RUN, "completed")
    return out


def test_prompts_list_is_the_result_on_stdout(out: Path) -> None:
    result = cli("prompts", "list", "--output", str(out), cwd=out)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # What `prompts list | grep v1` finds: the whole row on one line.
    row = [line for line in lines if " v1 " in line]
    assert len(row) == 1 and "0.500" in row[0] and "Solve the problem in one line" in row[0]
    assert any(" v0 " in line and "0.250" in line for line in lines)
    assert "v1" not in result.stderr


def test_prompts_list_and_show_as_json(out: Path) -> None:
    listed = cli("prompts", "list", "--json", "--output", str(out), cwd=out)
    assert listed.returncode == 0, listed.stderr
    records = json.loads(listed.stdout)
    assert [(r["label"], r["val_score"], r["is_best"]) for r in records] == [("v0", 0.25, False), ("v1", 0.5, True)]
    shown = cli("prompts", "show", "v1", "--json", "--output", str(out), cwd=out)
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    assert record["template"] == CANDIDATE
    assert record["lineage_ids"] == [records[0]["id"], records[1]["id"]]


def test_prompts_show_prints_the_template_on_stdout(out: Path) -> None:
    result = cli("prompts", "show", "v1", "--output", str(out), cwd=out)
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith(CANDIDATE)
    assert "round 1 status scored score 0.5 (n=16)" in result.stdout


def test_errors_go_to_stderr_only(tmp_path: Path) -> None:
    result = cli("prompts", "list", "--output", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "no prompt DB at" in result.stderr


def test_report_prints_where_the_curve_is(out: Path) -> None:
    result = cli("report", "--output", str(out), cwd=out)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"reward curve of run {RUN}: {out / 'reward_curve.png'}"
    assert (out / "reward_curve.png").read_bytes()[:4] == b"\x89PNG"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "problems.jsonl"
    problems = generate_problems(FILE_PROBLEMS, seed=5)
    path.write_text("".join(json.dumps({"question": p["question"], "answer": p["answer"]}) + "\n" for p in problems))
    return path


@pytest.fixture(scope="module")
def model(dataset: Path) -> Iterator[ScriptedLLM]:
    tasks = [json.loads(line) for line in dataset.read_text().splitlines()]
    with ScriptedLLM(perfect_agent(tasks)) as server:
        yield server


def test_eval_scores_a_whole_dataset_file(out: Path, dataset: Path, model: ScriptedLLM) -> None:
    before = len(model.requests)
    result = cli("eval", "--prompt", "v1", "--dataset", str(dataset), "--json", "--output", str(out), cwd=out,
                 OPENAI_BASE_URL=model.base_url, AGENT_MODEL="scripted")  # fmt: skip
    assert result.returncode == 0, result.stderr
    score = json.loads(result.stdout)  # stdout is the JSON object and nothing else
    assert (score["n"], score["correct"], score["tasks"]) == (FILE_PROBLEMS, FILE_PROBLEMS, FILE_PROBLEMS)
    assert score["statuses"] == {"ok": FILE_PROBLEMS}
    assert score["prompt"].startswith("prompt #2")
    # The startup probe, then one request per problem, each with the saved prompt as system message.
    agent = [r for r in model.requests[before:] if r["messages"][0]["role"] == "system"]
    assert len(agent) == FILE_PROBLEMS and {r["messages"][0]["content"] for r in agent} == {CANDIDATE}


def test_eval_of_one_split_and_its_table(out: Path, dataset: Path, model: ScriptedLLM) -> None:
    result = cli("eval", "--prompt", "v0", "--dataset", str(dataset), "--split", "test", "--test-size", "7",
                 "--train-size", "3", "--val-size", "5", "--output", str(out), cwd=out,
                 OPENAI_BASE_URL=model.base_url, AGENT_MODEL="scripted")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "tasks:  7 (test split)" in result.stdout
    assert "score:  1.000" in result.stdout and "(7/7)" in result.stdout
    assert "score:" not in result.stderr


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("Solve: {question:>1000000000}", "format spec ':>1000000000' in placeholder {question:>1000000000}"),
        ("Solve: {question.__class__}", "attribute access in placeholder {question.__class__}"),
    ],
)
def test_eval_refuses_a_prompt_file_that_is_not_a_plain_template(
    tmp_path: Path, dataset: Path, model: ScriptedLLM, template: str, problem: str
) -> None:
    prompt = tmp_path / "prompt.txt"
    prompt.write_text(template, encoding="utf-8")
    before = len(model.requests)
    result = cli("eval", "--prompt", str(prompt), "--dataset", str(dataset), "--output", str(tmp_path),
                 cwd=tmp_path, OPENAI_BASE_URL=model.base_url, AGENT_MODEL="scripted")  # fmt: skip
    assert result.returncode == 2, result.stderr
    message = " ".join(result.stderr.split())
    assert "--prompt" in message and str(prompt) in message
    assert f"{problem} at line 1, column 8" in message
    assert len(model.requests) == before  # refused before the endpoint is even probed


def test_every_command_prints_its_help() -> None:
    """Each flag's help is its setting's description: a "%" in one must not break argparse's formatting."""
    import argparse

    from trainer.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name, command in commands.items():
        nested = [a for a in command._actions if isinstance(a, argparse._SubParsersAction)]
        for sub in [command, *(c for a in nested for c in a.choices.values())]:
            assert sub.format_help().strip(), name
    assert "30% of its memory limit" in commands["store"].format_help()
