"""Exporting a rollout runner's spans over OTLP to an OpenTelemetry Collector.

The collector fans the spans out to Agent Lightning's store (where APO reads them) and to Jaeger
(where people browse them). The endpoint is the setting
``OTEL_EXPORTER_OTLP_ENDPOINT`` (e.g. ``http://collector:4318``; OTLP/HTTP protobuf), so ``.env`` can
set it like any other; the SDK reads the rest of its ``OTEL_*`` variables itself. Unset endpoint = no
collector: spans go straight into the store instead.

The store files a span under a rollout only if the span itself names the rollout, so every span a
runner emits inside a rollout is stamped with ``agentlightning.rollout_id`` and
``agentlightning.attempt_id`` from a context variable: concurrent rollouts (separate asyncio tasks)
each see their own ids and can never mix them.
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from opentelemetry import trace as trace_api
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

import trainer

logger = logging.getLogger(__name__)

DEFAULT_SERVICE_NAME = "apo-trainer"
ROLLOUT_ID = "agentlightning.rollout_id"
ATTEMPT_ID = "agentlightning.attempt_id"
# Chat message lists exceed the SDK's default of 128 attributes per span.
MAX_SPAN_ATTRIBUTES = 4096


@dataclass(frozen=True)
class RolloutIds:
    rollout_id: str
    attempt_id: str


_current: contextvars.ContextVar[RolloutIds | None] = contextvars.ContextVar("rollout_ids", default=None)
_active: RolloutIdsProcessor | None = None


class RolloutIdsProcessor(SpanProcessor):
    """Stamps the current rollout's ids on every span and counts the spans each rollout ended."""

    def __init__(self) -> None:
        self._ended: dict[RolloutIds, int] = {}
        self._lock = threading.Lock()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        ids = _current.get()
        if ids is not None:
            span.set_attribute(ROLLOUT_ID, ids.rollout_id)
            span.set_attribute(ATTEMPT_ID, ids.attempt_id)

    def on_end(self, span: ReadableSpan) -> None:
        attributes = span.attributes or {}
        rollout_id, attempt_id = attributes.get(ROLLOUT_ID), attributes.get(ATTEMPT_ID)
        if isinstance(rollout_id, str) and isinstance(attempt_id, str):
            key = RolloutIds(rollout_id, attempt_id)
            with self._lock:
                self._ended[key] = self._ended.get(key, 0) + 1

    def ended(self, ids: RolloutIds) -> int:
        with self._lock:
            return self._ended.get(ids, 0)

    def forget(self, ids: RolloutIds) -> None:
        with self._lock:
            self._ended.pop(ids, None)


def install_ids_processor(provider: TracerProvider) -> RolloutIdsProcessor:
    """Add the id-stamping processor to ``provider``; it must come before any exporting processor."""
    global _active
    processor = RolloutIdsProcessor()
    provider.add_span_processor(processor)
    _active = processor
    return processor


def spans_ended_in_current_rollout() -> int | None:
    """How many spans the current rollout has ended so far (None outside a rollout)."""
    ids = _current.get()
    if ids is None or _active is None:
        return None
    return _active.ended(ids)


@contextmanager
def rollout_ids(rollout_id: str, attempt_id: str) -> Iterator[RolloutIds]:
    ids = RolloutIds(rollout_id, attempt_id)
    token = _current.set(ids)
    try:
        yield ids
    finally:
        _current.reset(token)


@dataclass
class OtlpPipeline:
    provider: TracerProvider
    ids: RolloutIdsProcessor
    endpoint: str

    def flush(self, timeout_millis: int = 10_000) -> bool:
        return bool(self.provider.force_flush(timeout_millis))


def service_resource(attributes: dict[str, str | int]) -> Resource:
    """The SDK's resource (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES) with our default service name.

    An attribute passed to ``Resource.create`` beats the environment, so the default is merged in
    only where the environment named no service.
    """
    resource = Resource.create(attributes)
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": DEFAULT_SERVICE_NAME}))
    return resource


def setup_otlp_exporter(endpoint: str, *, worker_id: int | None = None) -> OtlpPipeline:
    """A TracerProvider exporting OTLP/HTTP protobuf to the collector at ``endpoint``.

    Spans are batched and sent in the background; call ``flush()`` when a rollout ends so that
    nothing of it is still in this process when the rollout reports completion. The SDK reads its
    own ``OTEL_*`` variables for the rest: ``OTEL_SERVICE_NAME`` beats the default service name
    here, ``OTEL_EXPORTER_OTLP_HEADERS``/``_TIMEOUT``/``_COMPRESSION`` reach the exporter, and the
    ``OTEL_BSP_*`` variables the batch processor.
    """
    endpoint = endpoint.rstrip("/")
    attributes: dict[str, str | int] = {"service.version": trainer.__version__}
    if worker_id is not None:
        attributes["service.instance.id"] = f"{os.uname().nodename}-{os.getpid()}-runner{worker_id}"
    provider = TracerProvider(
        resource=service_resource(attributes),
        span_limits=SpanLimits(max_span_attributes=MAX_SPAN_ATTRIBUTES, max_event_attributes=MAX_SPAN_ATTRIBUTES),
    )
    # Order matters: ids are stamped (on_start) before the exporter's processor sees the span end.
    ids = install_ids_processor(provider)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces")))
    trace_api.set_tracer_provider(provider)
    logger.info("spans export to the collector at %s", endpoint)
    return OtlpPipeline(provider=provider, ids=ids, endpoint=endpoint)
