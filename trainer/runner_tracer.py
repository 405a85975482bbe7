"""The tracer each rollout runner process installs.

Agent Lightning's ``OtelTracer`` (not the default AgentOps tracer, which prints "session replay"
links to a hosted service on every rollout) plus the OpenInference Agno instrumentor, so each
rollout's trace holds the agent run and its LLM calls next to the root span of ``tracing.py``.
"""

from __future__ import annotations

import os

import agentlightning as agl

# Message lists of long prompts exceed the SDK's default of 128 attributes per span.
SPAN_ATTRIBUTE_LIMIT = "4096"

_instrumented = False


def instrument_agno() -> None:
    """Install the OpenInference Agno instrumentor once per process."""
    global _instrumented
    if _instrumented:
        return
    from openinference.instrumentation.agno import AgnoInstrumentor

    AgnoInstrumentor().instrument()
    _instrumented = True


class RolloutTracer(agl.OtelTracer):
    """``OtelTracer`` with Agno instrumented and the span attribute limit raised."""

    def init_worker(self, worker_id: int, store: agl.LightningStore | None = None) -> None:
        os.environ.setdefault("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", SPAN_ATTRIBUTE_LIMIT)
        super().init_worker(worker_id, store)
        instrument_agno()
