"""The Agent Lightning store as a server, with a bound on the spans it keeps.

``agl store`` keeps every span until its in-memory store's eviction threshold, and that threshold
defaults to 70 % of the *host's* memory (psutil), not of the container's. In the compose stack (a
1 GiB limit on a 24 GB host) it never evicts: the store grows with every training until the kernel
kills it, and the restarted store has forgotten every rollout, the running training's included.

``apo-trainer store`` is the same server (``LightningStoreServer`` over ``InMemoryLightningStore``,
the Prometheus tracker on) with the threshold set from what this process may really use:
``STORE_SPAN_BYTES``, by default 30 % of the memory limit (the cgroup's, else the host's). Measured:
the server alone takes ~330 MiB, and a span ~1.4x the size the store estimates for it, so at 30 %
the spans top out around three quarters of the limit. Past the threshold the store drops the spans
of its oldest rollouts (earlier trainings first) until 80 % of it is left; rollouts, attempts and
prompt resources stay, and a training reads a rollout's spans seconds after it ends.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
DEFAULT_SHARE = 0.3
# cgroup v1 writes "no limit" as a huge page-aligned number, not as "max".
_UNLIMITED = 1 << 60


def memory_limit_bytes(cgroup_root: Path = CGROUP_ROOT) -> int:
    """The memory this process may use: its cgroup's limit (v2 or v1) when there is one, else the host's."""
    host = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in (cgroup_root / "memory.max", cgroup_root / "memory" / "memory.limit_in_bytes"):
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < _UNLIMITED:
            return min(int(text), host)
    return host


def span_budget(configured: int | None, cgroup_root: Path = CGROUP_ROOT) -> int:
    """STORE_SPAN_BYTES when set, else DEFAULT_SHARE of :func:`memory_limit_bytes`."""
    if configured is not None:
        return configured
    return int(memory_limit_bytes(cgroup_root) * DEFAULT_SHARE)


def serve(host: str, port: int, span_bytes: int) -> int:
    """Run the store server until stopped; 1 when it cannot start."""
    from agentlightning.store.client_server import LightningStoreServer
    from agentlightning.store.memory import InMemoryLightningStore
    from agentlightning.utils.metrics import PrometheusMetricsBackend

    tracker = PrometheusMetricsBackend()
    # An int is bytes (a float would be a share of the host's memory); the safe level is 80 % of it.
    store = InMemoryLightningStore(thread_safe=True, tracker=tracker, eviction_memory_threshold=span_bytes)
    server = LightningStoreServer(store, host=host, port=port, launch_mode="asyncio", tracker=tracker)
    logger.info("store at http://%s:%d keeps up to %.0f MiB of spans", host, port, span_bytes / 2**20)
    try:
        asyncio.run(server.run_forever())
    except RuntimeError as exc:
        logger.error("the store server failed to start: %s", exc)
        return 1
    return 0
