"""Reading and seeding an Agent Lightning store through its own client, as APO and runners do."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RolloutRef:
    rollout_id: str
    attempt_id: str


def store_client(store_url: str) -> Any:
    import agentlightning as agl  # heavy (~5 s): imported only when a test needs the store client

    return agl.LightningStoreClient(store_url, retry_delays=(0.5, 1.0), request_timeout=30.0)


async def aenqueue_rollouts(store_url: str, n: int, mode: str = "train") -> list[RolloutRef]:
    """Create ``n`` rollouts, each with a running attempt, so the store accepts spans naming them.

    ``start_rollout`` rather than ``enqueue_rollout``: the store checks that a span's attempt exists,
    and an enqueued rollout has no attempt until a runner dequeues it.
    """
    client = store_client(store_url)
    try:
        refs = []
        for i in range(n):
            rollout = await client.start_rollout(input={"pipeline_test": i}, mode=mode)
            refs.append(RolloutRef(rollout.rollout_id, rollout.attempt.attempt_id))
        return refs
    finally:
        await client.close()


def enqueue_rollouts(store_url: str, n: int, mode: str = "train") -> list[RolloutRef]:
    return asyncio.run(aenqueue_rollouts(store_url, n, mode))


async def astore_spans(store_url: str, rollout_id: str) -> list[Any]:
    client = store_client(store_url)
    try:
        return list(await client.query_spans(rollout_id))
    finally:
        await client.close()


def store_spans(store_url: str, rollout_id: str) -> list[Any]:
    """The store's spans of one rollout (``agentlightning.Span``: span_id, parent_id, trace_id, name...)."""
    return asyncio.run(astore_spans(store_url, rollout_id))


async def astore_statistics(store_url: str) -> dict[str, Any]:
    client = store_client(store_url)
    try:
        return dict(await client.statistics())
    finally:
        await client.close()


def store_statistics(store_url: str) -> dict[str, Any]:
    """``total_spans``, ``total_rollouts``... of the whole store."""
    return asyncio.run(astore_statistics(store_url))
