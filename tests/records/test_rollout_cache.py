"""Tests for trainer.records.rollout_cache: one agent call per (prompt, task, model, reply settings).

``solve_cached`` runs the real Agno agent against a scripted server; what the server received shows
which evaluations called the model.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from pathlib import Path

import pytest

from trainer.agent.model import ModelSpec
from trainer.agent.solve import RolloutConfig, RolloutOutcome
from trainer.math_task import MATH
from trainer.records.rollout_cache import (
    CACHE_FILE,
    RolloutCache,
    RolloutCacheError,
    RolloutCaches,
    cache_key,
    solve_cached,
)
from trainer.task import Problem
from trainer.testing import SERVER_ERROR, Reply, ScriptedLLM, perfect_agent, wrong_agent

PROBLEM = Problem(id="p1", question="What is 2 + 3?", answer="5")
OTHER = Problem(id="p2", question="What is 4 + 4?", answer="8")
TEMPLATE = "Solve it. End with: The answer is <number>."


def config(base_url: str = "http://127.0.0.1:9/v1", **spec_changes: object) -> RolloutConfig:
    spec = ModelSpec(base_url, "agent-model", None, temperature=0.0, max_tokens=64, timeout=5.0, max_retries=0)
    return RolloutConfig(model=dataclasses.replace(spec, **spec_changes), task=MATH)  # type: ignore[arg-type]


def outcome(**changes: object) -> RolloutOutcome:
    base = RolloutOutcome(task_id="p1", reward=1.0, status="ok", reply="The answer is 5.", extracted="5",
                          expected="5", input_tokens=30, output_tokens=6, rollout_id="ro-1")  # fmt: skip
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_a_hit_is_the_first_outcome_with_no_model_time_and_no_tokens(tmp_path: Path) -> None:
    with RolloutCache(tmp_path / CACHE_FILE) as cache:
        cache.put("k", outcome())
        hit = cache.get("k")
    assert hit is not None and hit.cache_hit and hit.cached_from == "ro-1"
    assert (hit.task_id, hit.reward, hit.status, hit.reply, hit.extracted) == ("p1", 1.0, "ok", "The answer is 5.", "5")
    assert (hit.input_tokens, hit.output_tokens, hit.llm_seconds, hit.rollout_id) == (0, 0, 0.0, None)


def test_the_first_outcome_of_a_pair_wins(tmp_path: Path) -> None:
    with RolloutCache(tmp_path / CACHE_FILE) as cache:
        cache.put("k", outcome(reward=0.0, reply="The answer is 4."))
        cache.put("k", outcome())
        hit = cache.get("k")
        assert hit is not None and hit.reward == 0.0 and cache.count() == 1


@pytest.mark.parametrize("status", ["endpoint_error", "timeout"])
def test_a_fault_is_never_cached(tmp_path: Path, status: str) -> None:
    with RolloutCache(tmp_path / CACHE_FILE) as cache:
        cache.put("k", outcome(status=status, reward=0.0))
        assert cache.get("k") is None and cache.count() == 0


def test_the_key_covers_what_decides_the_reply_and_its_grade() -> None:
    base = cache_key(TEMPLATE, PROBLEM, config())
    assert cache_key(TEMPLATE, PROBLEM, config()) == base
    # The run a task belongs to and where the model is served decide nothing about the reply.
    stamped = Problem(**PROBLEM, run_id="20261202-000000-abcd", run_dir="/x/runs/20261202-000000-abcd")  # type: ignore[typeddict-item]
    assert cache_key(TEMPLATE, stamped, config("http://other:1/v1")) == base
    different = [
        cache_key(TEMPLATE + " Be brief.", PROBLEM, config()),
        cache_key(TEMPLATE, OTHER, config()),
        cache_key(TEMPLATE, Problem(id="p1", question="What is 2 + 3?", answer="6"), config()),
        cache_key(TEMPLATE, PROBLEM, config(model="other-model")),
        cache_key(TEMPLATE, PROBLEM, config(max_tokens=65)),
        cache_key(TEMPLATE, PROBLEM, config(temperature=0.5)),
        cache_key(TEMPLATE, PROBLEM, dataclasses.replace(config(), use_calculator=True)),
    ]
    assert len({base, *different}) == len(different) + 1


def test_a_second_evaluation_of_a_pair_calls_no_model(tmp_path: Path) -> None:
    with ScriptedLLM(wrong_agent([PROBLEM, OTHER])) as server, RolloutCache(tmp_path / CACHE_FILE) as cache:
        cfg = config(server.base_url)
        first = asyncio.run(solve_cached(PROBLEM, TEMPLATE, cfg, cache))
        again = asyncio.run(solve_cached(PROBLEM, TEMPLATE, cfg, cache))
        other = asyncio.run(solve_cached(OTHER, TEMPLATE, cfg, cache))
        assert len(server.requests) == 2  # PROBLEM once, OTHER once
    assert not first.cache_hit and first.input_tokens > 0 and first.reward == 0.0
    assert again.cache_hit and (again.reward, again.reply, again.input_tokens) == (0.0, first.reply, 0)
    assert not other.cache_hit


def test_a_pair_the_endpoint_failed_is_asked_again(tmp_path: Path) -> None:
    script = [Reply(status=500, body=SERVER_ERROR)]
    with ScriptedLLM(script, default=None) as server, RolloutCache(tmp_path / CACHE_FILE) as cache:
        cfg = config(server.base_url)
        failed = asyncio.run(solve_cached(PROBLEM, TEMPLATE, cfg, cache))
        assert failed.is_fault and cache.count() == 0
    with ScriptedLLM(perfect_agent([PROBLEM])) as server, RolloutCache(tmp_path / CACHE_FILE) as cache:
        answered = asyncio.run(solve_cached(PROBLEM, TEMPLATE, config(server.base_url), cache))
        assert not answered.cache_hit and answered.reward == 1.0 and len(server.requests) == 1


def test_a_foreign_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / CACHE_FILE
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE mine (x)")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(RolloutCacheError, match=r"not a rollout cache"):
        RolloutCache(path)
    assert path.read_bytes() == before


def test_a_task_finds_the_cache_of_its_runs_output_dir(tmp_path: Path) -> None:
    run_id = "20261202-101010-beef"
    run_dir = tmp_path / "theirs" / "runs" / run_id
    run_dir.mkdir(parents=True)
    caches = RolloutCaches(tmp_path / "mine")
    try:
        stamped = Problem(**PROBLEM, run_id=run_id, run_dir=str(run_dir))  # type: ignore[typeddict-item]
        caches.for_task(stamped).put("k", outcome())
        assert (tmp_path / "theirs" / CACHE_FILE).is_file()
        caches.for_task(PROBLEM).put("k", outcome())  # no run stamped: the runner's own output dir
        assert (tmp_path / "mine" / CACHE_FILE).is_file()
        assert caches.for_task(stamped) is caches.at(tmp_path / "theirs")  # opened once per process
    finally:
        caches.close()
