"""Waiting for a batch of rollouts in the store: asked often, and a store that went away noticed.

Stock APO sleeps 2 s between asks and waits the whole batch timeout for rollouts a restarted
in-memory store has forgotten. Here a batch asks every BATCH_POLL_SECONDS, checks every
STORE_CHECK_SECONDS that the store still knows its rollouts, and gives up with
:class:`~trainer.apo.scoring.StoreLost` (nothing it held back is scored) when the store forgot them
or has not answered for STORE_UNREACHABLE_SECONDS.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import agentlightning as agl
import aiohttp
from agentlightning.algorithm.apo.apo import RolloutResultForAPO
from agentlightning.emitter.reward import find_final_reward

from trainer.apo.racing import BeamCut
from trainer.apo.scoring import StoreLost
from trainer.apo.span_reads import spans_complete

logger = logging.getLogger(__name__)

# How often a waiting batch asks the store for finished rollouts (stock APO sleeps 2 s between
# asks, which adds a second per batch on average); asking costs one small request.
BATCH_POLL_SECONDS = 0.25
# How often a waiting batch checks that the store still knows its rollouts (a restarted
# in-memory store forgets them, and waiting the whole batch timeout for them helps nobody).
STORE_CHECK_SECONDS = 2.0
# A store that is restarting (or a network blip) answers again within this; one that does not is gone.
STORE_UNREACHABLE_SECONDS = 30.0
# What the store client raises when it cannot reach the store (after its own health-check retries).
STORE_ERRORS = (aiohttp.ClientError, OSError, asyncio.TimeoutError)


@dataclass(frozen=True)
class BatchRun:
    """What one evaluation ran: the finished rollouts' results and tasks (in finishing order), how
    many rollouts count as planned, and how many queued ones were cancelled instead of run."""

    results: list[RolloutResultForAPO]
    task_ids: list[str | None]
    planned: int
    cancelled: int = 0


class HopelessCheck:
    """Asked after each poll: is the candidate hopeless yet (trainer.apo.racing)? Reads each finished
    rollout from the store once, for its reward; ``read`` keeps the complete results, so that the
    batch's results need not read them again."""

    def __init__(self, store: agl.LightningStore, cut: BeamCut, planned: int, adapter: agl.TraceToMessages) -> None:
        self.store, self.cut, self.planned, self.adapter = store, cut, planned, adapter
        self.rewards: dict[str, float | None] = {}
        self.read: dict[str, RolloutResultForAPO] = {}
        self.stopped = False

    async def __call__(self, finished: Sequence[agl.Rollout]) -> bool:
        for rollout in finished:
            if rollout.rollout_id in self.rewards:
                continue
            if rollout.status != "succeeded":
                self.rewards[rollout.rollout_id] = None
                continue
            result = apo_result(rollout, await self.store.query_spans(rollout.rollout_id), self.adapter)
            self.rewards[rollout.rollout_id] = result["final_reward"]
            # An incomplete read (spans still on their way) is read again at the end, as before.
            if result["spans"] and spans_complete(result["spans"]):
                self.read[rollout.rollout_id] = result
        rewards = [r for r in self.rewards.values() if r is not None]  # a fault is no data point
        self.stopped = self.cut.hopeless(rewards, remaining=self.planned - len(finished))
        return self.stopped


def apo_result(rollout: agl.Rollout, spans: Sequence[agl.Span], adapter: agl.TraceToMessages) -> RolloutResultForAPO:
    """What stock ``APO.get_rollout_results`` makes of one rollout's spans (tests/apo pins its shape)."""
    return RolloutResultForAPO(
        status=rollout.status,
        final_reward=find_final_reward(spans),
        spans=[span.model_dump() for span in spans],
        messages=adapter.adapt(spans),
    )


async def cancel_queued(store: agl.LightningStore, ids: Sequence[str], *, timeout: float) -> set[str]:
    """Cancel those of ``ids`` no runner has taken yet (runners skip cancelled rollouts); their ids.

    A runner may take one between the look and the cancel. That one runs anyway and lands in the
    ledger: it is waited for (up to ``timeout``), so the run's records are complete when the
    evaluation ends, but it is not counted, like every other cancelled rollout.
    """
    queued = [r.rollout_id for r in await store.query_rollouts(rollout_id_in=list(ids)) if r.status == "queuing"]
    for rollout_id in queued:
        await store.update_rollout(rollout_id, status="cancelled")
    deadline = time.monotonic() + timeout
    for rollout_id in queued:
        while time.monotonic() < deadline:
            attempts = await store.query_attempts(rollout_id)
            if not attempts or attempts[-1].status not in ("preparing", "running"):
                break
            await asyncio.sleep(BATCH_POLL_SECONDS)
    return set(queued)


async def wait_for_batch(
    store: agl.LightningStore,
    ids: Sequence[str],
    *,
    timeout: float,
    store_name: str,
    stop: Callable[[Sequence[agl.Rollout]], Awaitable[bool]] | None = None,
) -> list[agl.Rollout]:
    """The rollouts of ``ids`` that finished within ``timeout`` seconds (all of them, if they did),
    or those finished when ``stop`` (asked after each poll) said so."""
    deadline = time.monotonic() + timeout
    next_check = time.monotonic() + STORE_CHECK_SECONDS
    finished: list[agl.Rollout] = []
    unreachable_since: float | None = None
    while True:
        try:
            finished = await store.wait_for_rollouts(rollout_ids=list(ids), timeout=0.0)
            if time.monotonic() >= next_check:
                await _check_store_knows(store, ids, store_name)
                next_check = time.monotonic() + STORE_CHECK_SECONDS
        except STORE_ERRORS as exc:
            unreachable_since = _store_unreachable(unreachable_since, exc, store_name)
            next_check = 0.0  # once it answers again: does it still know the batch?
            await asyncio.sleep(BATCH_POLL_SECONDS * 4)
            continue
        unreachable_since = None
        if len(finished) >= len(ids) or time.monotonic() >= deadline:
            return finished
        if stop is not None and await stop(finished):
            return finished
        await asyncio.sleep(BATCH_POLL_SECONDS)


def _store_unreachable(since: float | None, exc: BaseException, store_name: str) -> float:
    """When the store first failed to answer; StoreLost once that is STORE_UNREACHABLE_SECONDS ago."""
    now = time.monotonic()
    if since is None:
        logger.warning("the store at %s does not answer (%r); waiting up to %.0fs", store_name, exc,
                       STORE_UNREACHABLE_SECONDS)  # fmt: skip
        return now
    if now - since >= STORE_UNREACHABLE_SECONDS:
        raise StoreLost(
            f"the store at STORE_URL={store_name} has not answered for {now - since:.0f}s ({exc!r}); "
            "nothing it held back was scored"
        ) from exc
    return since


async def _check_store_knows(store: agl.LightningStore, ids: Sequence[str], store_name: str) -> None:
    known = await store.query_rollouts(rollout_id_in=list(ids))
    if len(known) < len(ids):
        raise StoreLost(
            f"the store at STORE_URL={store_name} no longer knows "
            f"{len(ids) - len(known)} of this batch's {len(ids)} rollouts (did it restart?); "
            "nothing it lost was scored"
        )
