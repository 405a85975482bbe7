"""A store that forgets the run's rollouts (an in-memory store restarted) stops the run within seconds.

In-process: TrackedAPO's batch loop against Agent Lightning's own in-memory store, with no runner,
so every rollout stays queued; the store then "restarts" (forgets everything it was told).
"""

from __future__ import annotations

import trainer  # noqa: F401  (sets LITELLM_LOCAL_MODEL_COST_MAP before Agent Lightning imports litellm)

# isort: split
import asyncio
import time
from typing import Any

import agentlightning as agl
import aiohttp
import pytest
from agentlightning.algorithm.apo.apo import VersionedPromptTemplate

from trainer.apo.algorithm import TrackedAPO
from trainer.apo.batch_wait import STORE_CHECK_SECONDS
from trainer.apo.observer import APOObserver
from trainer.apo.resources import label_of, resources_id
from trainer.apo.scoring import StoreLost

STORE_URL = "http://store.example:4747"
BATCH_TIMEOUT = 60.0
TASKS = [{"id": f"t{i}", "question": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(3)]


class RestartingStore(agl.InMemoryLightningStore):
    """Forgets every rollout once ``restart()`` is called, as a restarted in-memory store does."""

    def __init__(self) -> None:
        super().__init__()
        self.restarted = False

    def restart(self) -> None:
        self.restarted = True

    async def query_rollouts(self, **kwargs: Any) -> Any:
        return [] if self.restarted else await super().query_rollouts(**kwargs)


def algorithm(store: agl.LightningStore) -> TrackedAPO:
    apo = TrackedAPO(
        object(), observer=APOObserver(), guard=None, run_id="run-a", store_url=STORE_URL,
        rollout_batch_timeout=BATCH_TIMEOUT,
    )  # fmt: skip
    apo.set_store(store)
    return apo


def prompt() -> VersionedPromptTemplate:
    return VersionedPromptTemplate("v0", agl.PromptTemplate(template="Solve: {question}", engine="f-string"))


def test_a_forgotten_batch_stops_within_seconds_naming_the_store() -> None:
    async def scenario() -> float:
        store = RestartingStore()
        apo = algorithm(store)
        asyncio.get_running_loop().call_later(0.5, store.restart)
        started = time.monotonic()
        with pytest.raises(StoreLost, match=r"store at STORE_URL=http://store\.example:4747 no longer knows 3 of .* 3"):
            await apo._run_batch(prompt(), "prompt_template", TASKS, "val")
        return time.monotonic() - started

    seconds = asyncio.run(scenario())
    assert seconds < STORE_CHECK_SECONDS + 3.0 < BATCH_TIMEOUT


def test_a_store_that_remembers_is_waited_for() -> None:
    async def scenario() -> None:
        store = RestartingStore()
        apo = algorithm(store)
        apo.rollout_batch_timeout = STORE_CHECK_SECONDS + 1.0  # long enough for one check
        run = await apo._run_batch(prompt(), "prompt_template", TASKS, "val")
        assert run.results == run.task_ids == []  # nothing ran them: no results, and no false alarm
        resources = await store.get_resources_by_id(resources_id("run-a", "v0"))
        assert resources is not None  # the run's own name, not APO's bare "v0"

    asyncio.run(scenario())


class UnreachableStore(RestartingStore):
    """Refuses connections (as a stopped store server does) for ``down`` polls, or for ever (None)."""

    def __init__(self, down: int | None) -> None:
        super().__init__()
        self.down = down
        self.polls = 0

    async def wait_for_rollouts(self, **kwargs: Any) -> Any:
        self.polls += 1
        if self.down is None or self.polls <= self.down:
            raise aiohttp.ClientConnectorError(aiohttp.client_reqrep.ConnectionKey(
                "store.example", 4747, False, True, None, None, None), OSError(111, "Connection refused"))  # fmt: skip
        return await super().wait_for_rollouts(**kwargs)


def test_a_store_that_stops_answering_stops_the_run_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("trainer.apo.batch_wait.STORE_UNREACHABLE_SECONDS", 1.5)

    async def scenario() -> float:
        apo = algorithm(UnreachableStore(down=None))
        started = time.monotonic()
        with pytest.raises(StoreLost, match=r"STORE_URL=http://store\.example:4747 has not answered for [12]s"):
            await apo._run_batch(prompt(), "prompt_template", TASKS, "val")
        return time.monotonic() - started

    assert 1.5 <= asyncio.run(scenario()) < 5.0


def test_a_short_blip_is_waited_out() -> None:
    async def scenario() -> int:
        store = UnreachableStore(down=3)  # refused for ~3 s of polls, then back, remembering everything
        apo = algorithm(store)
        apo.rollout_batch_timeout = 5.0
        run = await apo._run_batch(prompt(), "prompt_template", TASKS, "val")
        assert (run.results, run.planned) == ([], len(TASKS))
        return store.polls

    assert asyncio.run(scenario()) > 3


def test_resource_names_carry_the_run_and_give_back_the_label() -> None:
    assert resources_id("20261202-031000-ab12", "v3") != resources_id("20261202-031001-cd34", "v3")
    assert label_of(resources_id("20261202-031000-ab12", "v3")) == "v3"
    assert label_of("v3") == "v3" and label_of(None) is None
    assert "/" not in resources_id("r", "v0")  # it goes into the store's URL paths
