"""How a local training's runners and store server end (trainer.training.lightning)."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.trainer_cli import TINY, run_trainer, scripted_env
from trainer.serving.probes import free_port
from trainer.testing import ScriptedLLM, ScriptedOptimizer, prompt_rewrites, route, wrong_agent
from trainer.training.lightning import runners_exited, runners_first_strategy


def last_ask(answers: Path) -> Callable[[Any, int, Any], Awaitable[None]]:
    """A runner that polls until told to stop, then asks the store once more (a span flush, a last
    dequeue) and writes down whether the store answered."""

    async def runner(store: Any, worker_id: int, stop_evt: Any) -> None:
        while not stop_evt.is_set():
            await asyncio.sleep(0.05)
        try:
            await store.query_rollouts()
            answers.joinpath(f"runner-{worker_id}").write_text("answered")
        except Exception as exc:  # what stock's order gives: the store is already gone
            answers.joinpath(f"runner-{worker_id}").write_text(f"{type(exc).__name__}: {exc}")

    return runner


async def finish_at_once(store: Any, stop_evt: Any) -> None:
    await store.query_rollouts()  # the store server is up


def test_the_store_answers_the_runners_until_they_have_stopped(tmp_path: Path) -> None:
    import agentlightning as agl

    strategy = runners_first_strategy(role="both", n_runners=2, server_host="127.0.0.1", server_port=free_port(),
                                      graceful_timeout=5.0, terminate_timeout=5.0)  # fmt: skip
    strategy.execute(finish_at_once, last_ask(tmp_path), agl.InMemoryLightningStore())
    answers = {p.name: p.read_text() for p in tmp_path.iterdir()}
    assert answers == {"runner-0": "answered", "runner-1": "answered"}


@pytest.mark.slow
def test_a_finished_training_logs_no_store_error(tmp_path: Path) -> None:
    """Stock stopped the store first: a runner's next poll logged "dequeue_rollout failed"."""
    optimizer = ScriptedOptimizer("- Show the arithmetic.", prompt_rewrites())
    script = route(agent=wrong_agent([]), optimizer=optimizer, optimizer_models=("scripted-critic", "scripted-editor"))
    with ScriptedLLM(script) as llm:
        result = run_trainer(["train", *TINY, "--output", str(tmp_path)], cwd=tmp_path, **scripted_env(llm))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "dequeue_rollout failed" not in result.stderr, result.stderr[-3000:]
    assert "Cannot connect" not in result.stderr, result.stderr[-3000:]
    assert "runners still busy" not in result.stderr  # they stopped on their own, within the wait


def test_the_wait_for_runners_ends_when_they_exit() -> None:
    runner = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(1.0,), name="runner-0")
    runner.start()
    started = time.monotonic()
    assert asyncio.run(runners_exited(timeout=30.0)) is True
    assert not runner.is_alive()
    assert time.monotonic() - started < 20.0  # it returned when the runner exited, not at the timeout


def test_the_wait_for_runners_is_bounded() -> None:
    runner = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(30.0,), name="runner-0")
    runner.start()
    try:
        assert asyncio.run(runners_exited(timeout=0.5)) is False
        assert runner.is_alive()
    finally:
        runner.terminate()
        runner.join(10)


def test_other_children_are_not_waited_for() -> None:
    other = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(30.0,), name="model-server")
    other.start()
    try:
        assert asyncio.run(runners_exited(timeout=5.0)) is True
    finally:
        other.terminate()
        other.join(10)
