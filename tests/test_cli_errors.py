"""The real CLI (``python -m trainer train --dry-run``) against bad input: exit 2 and one clear message.

Every case runs the CLI as a subprocess, with no trainer setting inherited from the developer's
environment and ``OPENAI_BASE_URL`` pointing at a fake OpenAI-compatible server on 127.0.0.1, so the
embedded model never starts. The subprocesses run concurrently (each spends ~1.5 s importing) in a
module fixture whose results the tests below share.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support import REPO
from tests.support.env import clean_env
from trainer.config import EMBEDDED_MODEL_NAME
from trainer.testing import ScriptedLLM, closed_port

REPO_ROOT = REPO
CASE_TIMEOUT_S = 90.0
# A small valid plan: 1 round, beam 1, 2 candidates, splits 4/4/3.
OK_ARGS = [
    "--iterations", "1", "--beam-width", "1", "--branch-factor", "2", "--train-size", "4", "--val-size", "4",
    "--val-batch-size", "2", "--gradient-batch-size", "2", "--test-size", "3",
]  # fmt: skip


@dataclass
class Case:
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    llm: str = "fake"  # which endpoint OPENAI_BASE_URL points at: "fake", "ok" or an explicit URL


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def text(self) -> str:
        """stdout + stderr with every whitespace run collapsed (the console wraps long lines)."""
        return " ".join((self.stdout + "\n" + self.stderr).split())


def norm(text: str) -> str:
    return " ".join(text.split())


def base_env() -> dict[str, str]:
    return clean_env(PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))


@dataclass
class World:
    results: dict[str, Result]
    paths: dict[str, Path]
    urls: dict[str, str]
    fake_requests: list[Any]
    ok_requests: list[Any]
    cwds: dict[str, Path]


def _line(question: str, answer: Any) -> str:
    return json.dumps({"question": question, "answer": answer})


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("cli")
    data = root / "data"
    data.mkdir()
    paths = {
        "missing": data / "missing.jsonl",
        "malformed": data / "malformed.jsonl",
        "non_numeric": data / "non_numeric.jsonl",
        "empty": data / "empty.jsonl",
        "small": data / "small.jsonl",
        "seed_braces": data / "seed_braces.txt",
        "seed_bomb": data / "seed_bomb.txt",
        "surrogate": data / "surrogate.jsonl",
        "duplicate": data / "duplicate.jsonl",
        "bracket_dir": data / "[v2]" / "train.jsonl",
    }
    truncated = '{"question": "What is 3 + 3?", "answer": 6'  # line 3: the closing brace is missing
    paths["malformed"].write_text(
        _line("What is 1 + 1?", 2) + "\n" + _line("What is 2 + 2?", 4) + "\n" + truncated + "\n", encoding="utf-8"
    )
    paths["non_numeric"].write_text(
        _line("What is 1 + 1?", 2) + "\n" + _line("What is 2 + 2?", "four") + "\n", encoding="utf-8"
    )
    paths["empty"].write_text("", encoding="utf-8")
    paths["small"].write_text("".join(_line(f"What is {i} + 1?", i + 1) + "\n" for i in range(5)), encoding="utf-8")
    paths["seed_braces"].write_text("Solve it. The expected answer is {answer}.\n", encoding="utf-8")
    # Line 2 is a lone surrogate: valid JSON, but no UTF-8 ledger, request or span can hold it.
    paths["surrogate"].write_text(
        _line("What is 1 + 1?", 2) + "\n" + '{"question": "What is \\ud800?", "answer": 1}\n', encoding="utf-8"
    )
    paths["duplicate"].write_text(
        "".join(_line(q, 2) + "\n" for q in ("What is 1 + 1?", "What is 0 + 2?", " What is 1 + 1? ")), encoding="utf-8"
    )
    # Renders a 1 GB system prompt with str.format: refused before anything starts.
    paths["seed_bomb"].write_text("Solve it.\nQuestion: {question:>1000000000}\n", encoding="utf-8")

    store_url = f"http://127.0.0.1:{closed_port()}"
    dead_llm = f"http://127.0.0.1:{closed_port()}/v1"
    dead_collector = f"http://127.0.0.1:{closed_port()}"
    cases: dict[str, Case] = {
        "missing_dataset": Case(["--dataset", str(paths["missing"])]),
        "malformed_line": Case(["--dataset", str(paths["malformed"])]),
        "non_numeric_answer": Case(["--dataset", str(paths["non_numeric"])]),
        "empty_dataset": Case(["--dataset", str(paths["empty"])]),
        "splits_too_small": Case(["--dataset", str(paths["small"])]),
        "env_not_a_number": Case([], env={"VAL_SIZE": "abc"}),
        "flag_negative": Case(["--iterations", "-1"]),
        "unreachable_llm": Case([], llm=dead_llm),
        "seed_prompt_braces": Case(["--seed-prompt-file", str(paths["seed_braces"])]),
        "dataset_surrogate": Case(["--dataset", str(paths["surrogate"])]),
        "dataset_duplicate": Case(["--dataset", str(paths["duplicate"])]),
        "seed_prompt_bomb": Case(["--seed-prompt-file", str(paths["seed_bomb"])]),
        "seed_prompt_attribute": Case([], env={"SEED_PROMPT": "Solve {question.__class__}"}),
        "store_closed": Case(["--store-url", store_url]),
        "collector_closed": Case([], env={"OTEL_EXPORTER_OTLP_ENDPOINT": dead_collector}),
        "otlp_endpoint_no_host": Case([], env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://:4318"}),
        "timeout_inf": Case([], env={"LLM_TIMEOUT": "inf"}),
        "dataset_path_with_brackets": Case(["--dataset", str(paths["bracket_dir"])]),
        "ok": Case(OK_ARGS, llm="ok"),
    }
    env0 = base_env()
    workers = min(len(cases), 2 * (os.cpu_count() or 1))
    with ScriptedLLM() as fake, ScriptedLLM() as ok_fake:
        urls = {"fake": fake.base_url, "ok": ok_fake.base_url, "dead_llm": dead_llm, "store": store_url,
                "collector": dead_collector}  # fmt: skip
        cwds = {name: root / name for name in cases}

        def run(name: str) -> Result:
            case = cases[name]
            cwds[name].mkdir()
            env = {**env0, **case.env, "OPENAI_BASE_URL": urls.get(case.llm, case.llm)}
            return run_cli(["train", "--dry-run", *case.args], cwd=cwds[name], env=env)

        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = dict(zip(cases, pool.map(run, cases), strict=True))
        yield World(results, paths, urls, fake.requests, ok_fake.requests, cwds)


def run_cli(args: list[str], *, cwd: Path, env: dict[str, str]) -> Result:
    """``python -m trainer ARGS``; killed (and reported as such) after CASE_TIMEOUT_S."""
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "trainer", *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=CASE_TIMEOUT_S,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        return Result(-9, out, err + f"\n[killed after {CASE_TIMEOUT_S:.0f}s]", time.monotonic() - started)
    return Result(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)


def assert_user_error(result: Result, *fragments: str) -> None:
    """Exit status 2, no traceback, and every fragment in the (whitespace-normalised) output."""
    assert result.returncode == 2, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    assert "error:" in result.stderr
    for fragment in fragments:
        assert norm(fragment) in result.text, f"{fragment!r} not in:\n{result.stderr}"


# -- dataset -------------------------------------------------------------------------------------


def test_missing_dataset_names_the_path(world: World) -> None:
    assert_user_error(world.results["missing_dataset"], str(world.paths["missing"]), "not found")


def test_malformed_line_names_file_and_line(world: World) -> None:
    assert_user_error(world.results["malformed_line"], f"{world.paths['malformed']}:3", "invalid JSON")


def test_non_numeric_answer_names_file_and_line(world: World) -> None:
    assert_user_error(world.results["non_numeric_answer"], f"{world.paths['non_numeric']}:2", "'four'", "not a number")


def test_empty_dataset_names_the_path(world: World) -> None:
    assert_user_error(world.results["empty_dataset"], str(world.paths["empty"]), "no tasks")


def test_splits_too_small_name_the_settings_to_change(world: World) -> None:
    assert_user_error(
        world.results["splits_too_small"],
        str(world.paths["small"]),
        "only 5",
        "TRAIN_SIZE",
        "VAL_SIZE",
        "TEST_SIZE",
        "--train-size",
    )


def test_lone_surrogate_names_file_and_line(world: World) -> None:
    assert_user_error(world.results["dataset_surrogate"], f"{world.paths['surrogate']}:2:", "lone surrogate \\ud800")


def test_duplicate_question_names_both_lines(world: World) -> None:
    assert_user_error(world.results["dataset_duplicate"], f"{world.paths['duplicate']}:3: duplicate of line 1")


def test_dataset_path_with_brackets_is_printed_verbatim(world: World) -> None:
    # The console must not read the message as markup: "[v2]" is part of the path.
    assert_user_error(world.results["dataset_path_with_brackets"], str(world.paths["bracket_dir"]))


# -- settings ------------------------------------------------------------------------------------


def test_env_value_not_a_number(world: World) -> None:
    assert_user_error(world.results["env_not_a_number"], "VAL_SIZE (--val-size)", "'abc'")


def test_flag_value_out_of_range(world: World) -> None:
    assert_user_error(world.results["flag_negative"], "ITERATIONS (--iterations)", "-1")


def test_seed_prompt_file_with_bad_braces_names_the_file(world: World) -> None:
    assert_user_error(
        world.results["seed_prompt_braces"], "SEED_PROMPT_FILE", str(world.paths["seed_braces"]), "{answer}"
    )


def test_seed_prompt_with_a_format_spec_is_refused_naming_it(world: World) -> None:
    assert_user_error(
        world.results["seed_prompt_bomb"],
        "SEED_PROMPT_FILE",
        str(world.paths["seed_bomb"]),
        "format spec ':>1000000000' in placeholder {question:>1000000000} at line 2, column 11",
    )


def test_seed_prompt_with_attribute_access_is_refused_naming_it(world: World) -> None:
    assert_user_error(
        world.results["seed_prompt_attribute"], "SEED_PROMPT", "attribute access in placeholder {question.__class__}"
    )


# -- endpoints -----------------------------------------------------------------------------------


def test_unreachable_llm_fails_fast_and_names_the_url(world: World) -> None:
    result = world.results["unreachable_llm"]
    assert_user_error(result, world.urls["dead_llm"], "unreachable")
    assert result.seconds < 20


def test_closed_store_names_the_url(world: World) -> None:
    assert_user_error(world.results["store_closed"], "STORE_URL", world.urls["store"], "unreachable")


def test_closed_collector_is_named_like_any_unreachable_endpoint(world: World) -> None:
    result = world.results["collector_closed"]
    assert_user_error(result, "OTEL_EXPORTER_OTLP_ENDPOINT", world.urls["collector"], "unreachable")
    assert result.seconds < 20


def test_otlp_endpoint_without_a_host_is_refused(world: World) -> None:
    assert_user_error(world.results["otlp_endpoint_no_host"], "OTEL_EXPORTER_OTLP_ENDPOINT", "has no host")


def test_infinite_timeout_is_refused(world: World) -> None:
    assert_user_error(world.results["timeout_inf"], "LLM_TIMEOUT", "finite number", "'inf'")


def test_cheap_checks_fail_before_any_llm_call(world: World) -> None:
    # Settings, dataset, seed prompt and store are checked before the endpoint is probed.
    assert world.fake_requests == []


# -- a valid dry run -----------------------------------------------------------------------------


def test_valid_dry_run_prints_the_plan(world: World) -> None:
    result = world.results["ok"]
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    text = result.text
    assert "dry run OK" in text
    assert "{'train': 4, 'val': 4, 'test': 3}" in text
    # 4 (seed on val) + 1x2 critiques x 2 train rollouts + (1 + 2) x 2 val + 4 (leader rescored)
    assert "training_rollouts 18" in text
    assert "test_rollouts 6" in text
    assert "agent_llm_calls 24" in text
    # With the default demonstrations, one of the two branches draws examples instead of an edit.
    assert "optimizer_llm_calls 2" in text
    assert "instruction_edits 1" in text and "example_draws 1" in text and "example_combinations 0" in text
    assert "demonstrations 3 per prompt from both: 4 gold worked solutions in train" in text
    assert world.urls["ok"] in text
    # Exactly one probe reached the endpoint, for the agent's model.
    assert len(world.ok_requests) == 1
    probe = world.ok_requests[0]
    assert probe["model"] == EMBEDDED_MODEL_NAME  # AGENT_MODEL's default
    assert probe["messages"][0]["role"] == "user"
    # No embedded model was started (it would log to OUTPUT_DIR/llm.log) and nothing was written.
    assert list(world.cwds["ok"].iterdir()) == []
