"""What the model server does alone: a run's agent requests replayed straight at it.

The ceiling a training's rollouts/s is compared with: the same requests (system prompt, question,
temperature 0, reply cap) sent by one asyncio client at a fixed concurrency, with no runner, store,
tracing or APO in between.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import httpx


def agent_requests(rows: Sequence[dict[str, Any]], questions: dict[str, str]) -> list[tuple[str, str]]:
    """(system prompt, question) of each ledger row that called the model."""
    return [
        (row["system_prompt"], questions[row["task_id"]])
        for row in rows
        if not row.get("cache_hit") and row["status"] != "bad_template" and row["task_id"] in questions
    ]


def replay(base_url: str, model: str, requests: Sequence[tuple[str, str]], concurrency: int, max_tokens: int) -> float:
    """Requests per second the server answers ``requests`` at ``concurrency``."""

    async def run() -> float:
        gate = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(base_url=base_url, timeout=120.0) as client:

            async def one(system: str, question: str) -> None:
                body = {
                    "model": model,
                    "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}],
                    "temperature": 0.0,
                    "max_tokens": max_tokens,
                }
                async with gate:
                    (await client.post("/chat/completions", json=body)).raise_for_status()

            started = time.monotonic()
            await asyncio.gather(*(one(system, question) for system, question in requests))
            return len(requests) / (time.monotonic() - started)

    return asyncio.run(run())
