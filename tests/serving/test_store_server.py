"""``apo-trainer store``: the store server with a bound on its spans (``agl store`` evicts only past
70 % of the host's memory, so in a container it grew across trainings until it was killed).

The memory limit is read from fake cgroup trees; the eviction from a real server process, fed
real OTLP spans: the oldest rollouts lose their spans first, the newest keep all of theirs, and
every rollout itself stays.
"""

from __future__ import annotations

import os
from pathlib import Path

import aiohttp
import pytest

from tests.support.pipeline import SpanSender, SpanSpec, StoreServer
from tests.support.store import enqueue_rollouts, store_spans, store_statistics
from tests.support.waiting import wait_until
from trainer.serving.store_server import DEFAULT_SHARE, memory_limit_bytes, span_budget

HOST_MEMORY = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"memory.max": "1073741824\n"}, 1 << 30),  # cgroup v2, compose's 1g
        ({"memory.max": "max\n"}, HOST_MEMORY),  # v2, no limit
        ({"memory/memory.limit_in_bytes": "536870912\n"}, 1 << 29),  # v1 (this machine's Docker)
        ({"memory/memory.limit_in_bytes": "9223372036854771712\n"}, HOST_MEMORY),  # v1, no limit
        ({}, HOST_MEMORY),  # no cgroup files at all
    ],
)
def test_the_memory_limit_is_the_cgroups_when_there_is_one(
    tmp_path: Path, files: dict[str, str], expected: int
) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert memory_limit_bytes(tmp_path) == min(expected, HOST_MEMORY)


def test_the_span_budget_is_the_setting_or_a_share_of_the_limit(tmp_path: Path) -> None:
    (tmp_path / "memory.max").write_text("1073741824\n")
    assert span_budget(None, tmp_path) == int((1 << 30) * DEFAULT_SHARE)
    assert span_budget(5_000_000, tmp_path) == 5_000_000


BUDGET = 2_000_000  # bytes of spans, as the store estimates them
EVICTED = -1


def test_the_store_drops_the_spans_of_its_oldest_rollouts_past_its_budget(tmp_path: Path) -> None:
    store = StoreServer(tmp_path, span_bytes=BUDGET)
    store.start()
    try:
        store.wait_ready()
        refs = enqueue_rollouts(store.url, 8)
        sender = SpanSender(store.otlp_url.removesuffix("/v1/traces"), "store-budget", export_timeout=30)
        # ~0.6 MB of spans per rollout, in rollout order: 8 rollouts are ~2.4x the budget.
        for ref in refs:
            sender.send([SpanSpec.for_rollout(ref, traces=5, children=3, payload=30_000)])
            sender.flush()
        sender.close()
        assert sender.failed == 0

        def spans_of(rollout_id: str) -> int:
            try:
                return len(store_spans(store.url, rollout_id))
            except aiohttp.ClientResponseError as exc:  # the store says so: 500 "... have been evicted"
                assert exc.status == 500
                return EVICTED

        def counts() -> list[int] | None:
            found = [spans_of(ref.rollout_id) for ref in refs]
            return found if found[-1] == 20 else None  # the last rollout's spans all arrived

        found = wait_until(counts, 60, what="the last rollout's spans", interval=0.5)
        stats = store_statistics(store.url)
        print(f"spans per rollout, oldest first: {found}; store statistics: {stats}")
        assert stats["eviction_threshold_bytes"] == BUDGET and stats["total_span_bytes"] <= BUDGET, stats
        assert found[0] == EVICTED, found  # the oldest went first...
        assert found[-2:] == [20, 20], found  # ...and the newest kept every span
        assert stats["total_rollouts"] == 8, stats  # rollouts stay; only spans are dropped
    finally:
        store.stop()
