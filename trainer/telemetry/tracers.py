"""The tracer each rollout runner process installs.

Two routes for a runner's spans, picked by ``OTEL_EXPORTER_OTLP_ENDPOINT``:

- unset: ``RolloutTracer``, Agent Lightning's ``OtelTracer`` writing spans straight into the store
  (the embedded default; not the default AgentOps tracer, which prints "session replay" links to a
  hosted service on every rollout);
- set: ``CollectorTracer``, exporting OTLP to the collector, which forwards to the store and Jaeger.

Both instrument Agno (OpenInference) so a rollout's trace holds the agent run and its LLM calls
under the rollout's root span, and both stamp the rollout's ids on every span. The collector route
adds a hop between the runner and the store, so ``CollectorTracer`` waits, after each rollout,
until the store shows every span the rollout ended before letting the runner report completion:
APO reads a rollout's spans as soon as it completes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import agentlightning as agl
from agentlightning.tracer.base import with_active_tracer_context
from opentelemetry import trace as trace_api

from trainer.telemetry.otlp import OtlpPipeline, RolloutIds, install_ids_processor, rollout_ids, setup_otlp_exporter

logger = logging.getLogger(__name__)

_instrumented = False
# Seconds between a rollout's asks for its spans in the store: the first retry, and the longest.
VISIBILITY_FIRST_RETRY = 0.005
VISIBILITY_MAX_RETRY = 0.1


def instrument_agno(provider: trace_api.TracerProvider | None = None) -> None:
    """Install the OpenInference Agno instrumentor once per process."""
    global _instrumented
    if _instrumented:
        return
    from openinference.instrumentation.agno import AgnoInstrumentor

    AgnoInstrumentor().instrument(tracer_provider=provider)
    _instrumented = True


class RolloutTracer(agl.OtelTracer):
    """``OtelTracer`` (spans straight into the store) with Agno instrumented and ids stamped."""

    def init_worker(self, worker_id: int, store: agl.LightningStore | None = None) -> None:
        # Message lists of long prompts exceed the SDK's default of 128 attributes per span.
        os.environ.setdefault("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "4096")
        super().init_worker(worker_id, store)
        provider = trace_api.get_tracer_provider()
        if hasattr(provider, "add_span_processor"):
            install_ids_processor(provider)  # type: ignore[arg-type]
        instrument_agno()

    @with_active_tracer_context
    @asynccontextmanager
    async def trace_context(
        self,
        name: str | None = None,
        *,
        store: agl.LightningStore | None = None,
        rollout_id: str | None = None,
        attempt_id: str | None = None,
    ) -> AsyncIterator[Any]:
        inner = super().trace_context.__wrapped__(self, name, store=store, rollout_id=rollout_id, attempt_id=attempt_id)
        if rollout_id is None or attempt_id is None:
            async with inner as tracer:
                yield tracer
            return
        with rollout_ids(rollout_id, attempt_id):
            async with inner as tracer:
                yield tracer


class CollectorTracer(agl.OtelTracer):
    """Exports over OTLP to the collector; a rollout ends only once the store has its spans."""

    def __init__(self, endpoint: str, *, visibility_timeout: float = 15.0) -> None:
        super().__init__()
        self.endpoint = endpoint
        self.visibility_timeout = visibility_timeout
        self._pipeline: OtlpPipeline | None = None

    def init_worker(self, worker_id: int, store: agl.LightningStore | None = None) -> None:
        # Skip OtelTracer's own provider (it would write to the store directly): ours exports OTLP.
        agl.Tracer.init_worker(self, worker_id, store)
        self._pipeline = setup_otlp_exporter(self.endpoint, worker_id=worker_id)
        self._tracer_provider = self._pipeline.provider  # OtelTracer.create_span & co use it
        instrument_agno(self._pipeline.provider)

    def teardown_worker(self, worker_id: int) -> None:
        if self._pipeline is not None:
            self._pipeline.provider.shutdown()  # flushes what is left
        agl.Tracer.teardown_worker(self, worker_id)

    def get_last_trace(self) -> list[agl.Span]:
        return []  # spans travel through the collector; the runner only uses this for its log line

    @with_active_tracer_context
    @asynccontextmanager
    async def trace_context(
        self,
        name: str | None = None,
        *,
        store: agl.LightningStore | None = None,
        rollout_id: str | None = None,
        attempt_id: str | None = None,
    ) -> AsyncIterator[Any]:
        if self._pipeline is None:
            raise RuntimeError("CollectorTracer.init_worker() was not called")
        tracer = trace_api.get_tracer(__name__, tracer_provider=self._pipeline.provider)
        if rollout_id is None or attempt_id is None:
            yield tracer
            return
        with rollout_ids(rollout_id, attempt_id) as ids:
            try:
                yield tracer
            finally:
                await asyncio.to_thread(self._pipeline.flush)
                await self._wait_until_visible(store or self._store, ids)

    async def _wait_until_visible(self, store: agl.LightningStore | None, ids: RolloutIds) -> None:
        assert self._pipeline is not None
        expected = self._pipeline.ids.ended(ids)
        self._pipeline.ids.forget(ids)
        if store is None or expected == 0:
            return
        deadline = time.monotonic() + self.visibility_timeout
        # The collector forwards the store path at once (collector/config.yaml, batch/store), so the
        # spans are usually there on the first ask; then asks come quickly, slower only if they lag.
        delay, seen = VISIBILITY_FIRST_RETRY, 0
        while True:
            spans = await store.query_spans(ids.rollout_id, ids.attempt_id)
            seen = len(spans)
            if seen >= expected:
                return
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, VISIBILITY_MAX_RETRY)
        logger.warning(
            "rollout %s: %d of %d spans visible in the store after %.0fs; completing anyway",
            ids.rollout_id, seen, expected, self.visibility_timeout,
        )  # fmt: skip


class NoTracer(agl.Tracer):
    """Records nothing (TRACING=off): the baseline that tracing overhead is measured against.

    Agent Lightning's own ``DummyTracer`` cannot serve a runner (it has no ``trace_context``).
    """

    @with_active_tracer_context
    @asynccontextmanager
    async def trace_context(
        self,
        name: str | None = None,
        *,
        store: agl.LightningStore | None = None,
        rollout_id: str | None = None,
        attempt_id: str | None = None,
    ) -> AsyncIterator[Any]:
        yield trace_api.NoOpTracer()

    def get_last_trace(self) -> list[agl.Span]:
        return []


def runner_tracer(tracing: str, collector: str | None) -> agl.Tracer:
    """The tracer for the runners of a training (see the module docstring)."""
    if tracing == "off":
        return NoTracer()
    if collector:
        return CollectorTracer(collector)
    return RolloutTracer()
