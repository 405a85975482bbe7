"""The trainer's metrics pushed over OTLP to the collector, which serves them to Prometheus.

Why push: Prometheus scraping the trainer works only where it can reach the trainer by a fixed
name. A ``docker compose run`` container is not ``train`` (measured: target down, "lookup train: no
such host", every ``apo_*`` panel empty), and neither is a second training or a trainer on another
host. Every training already reaches the collector (its spans go there), so its metrics take the
same way: every ``OTEL_METRIC_EXPORT_INTERVAL`` milliseconds, and once more, synchronously, when the
training ends, so the final values are in the collector before a one-shot trainer exits. The
collector serves them on its trainer-metrics endpoint (collector/config.yaml, :8890), where
Prometheus's ``trainer`` job scrapes them.

Why by hand: the metrics are prometheus_client instruments (the metric contract, the trace-id
exemplars, the local ``/metrics``), and OpenTelemetry Python has no bridge from a prometheus_client
registry (Go's contrib has one). This module is only that bridge, registry -> the SDK's
``MetricsData``; the SDK's OTLP exporter does the encoding, ``OTEL_EXPORTER_OTLP_HEADERS``, the
timeout and the retries.

Each series keeps its Prometheus name and labels (the collector's exporter adds ``_total`` back to
counters); the resource names the run (``service.instance.id`` = run id), so two trainings never
overwrite each other's series. A gauge series the registry dropped (the best prompt moved on) is
sent once more as 0: the collector has no delete and would otherwise serve it until it expires.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterable
from typing import Any, cast

from opentelemetry.sdk.metrics import Exemplar as OtelExemplar
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric as PromFamily
from prometheus_client.samples import Sample

import trainer
from trainer.telemetry.otlp import service_resource

logger = logging.getLogger(__name__)

SCOPE = InstrumentationScope("trainer.telemetry.metrics", trainer.__version__)
SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def _key(name: str, labels: dict[str, str]) -> SeriesKey:
    return name, tuple(sorted(labels.items()))


class RegistryConverter:
    """prometheus_client families -> OTLP metrics (cumulative sums, gauges, explicit-bucket histograms)."""

    def __init__(self, started: float | None = None) -> None:
        self.started = started if started is not None else time.time()
        self._gauges: set[SeriesKey] = set()

    def convert(self, families: Iterable[PromFamily], now: float | None = None) -> list[Metric]:
        now_ns = _ns(now if now is not None else time.time())
        metrics: list[Metric] = []
        gauges_now: set[SeriesKey] = set()
        for family in families:
            if family.type == "counter":
                metrics.append(self._sum(family, now_ns))
            elif family.type == "gauge":
                metrics.append(self._gauge(family, now_ns, gauges_now))
            elif family.type == "histogram":
                metrics.append(self._histogram(family, now_ns))
            # summaries and untyped families are not part of the metric contract: none are sent
        self._gauges = gauges_now
        return [m for m in metrics if m.data.data_points]

    def _created(self, samples: list[Sample], labels: dict[str, str]) -> int:
        for sample in samples:
            if sample.name.endswith("_created") and sample.labels == labels:
                return _ns(sample.value)
        return _ns(self.started)

    def _sum(self, family: PromFamily, now_ns: int) -> Metric:
        total = f"{family.name}_total"
        points = [
            NumberDataPoint(
                attributes=dict(s.labels),
                start_time_unix_nano=self._created(family.samples, s.labels),
                time_unix_nano=now_ns,
                value=s.value,
            )
            for s in family.samples
            if s.name == total
        ]
        data = Sum(data_points=points, aggregation_temporality=AggregationTemporality.CUMULATIVE, is_monotonic=True)
        return Metric(name=family.name, description=family.documentation, unit="", data=data)

    def _gauge(self, family: PromFamily, now_ns: int, seen: set[SeriesKey]) -> Metric:
        points = []
        for s in family.samples:
            seen.add(_key(family.name, s.labels))
            points.append(NumberDataPoint(dict(s.labels), _ns(self.started), now_ns, s.value))
        for name, labels in sorted(self._gauges):
            if name == family.name and (name, labels) not in seen:  # dropped since the last push
                points.append(NumberDataPoint(dict(labels), _ns(self.started), now_ns, 0))
        return Metric(name=family.name, description=family.documentation, unit="", data=Gauge(data_points=points))

    def _histogram(self, family: PromFamily, now_ns: int) -> Metric:
        series: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
        for s in family.samples:
            labels = {k: v for k, v in s.labels.items() if k != "le"}
            entry = series.setdefault(tuple(sorted(labels.items())), {"labels": labels, "buckets": [], "exemplars": []})
            if s.name == f"{family.name}_bucket":
                entry["buckets"].append((float(s.labels["le"]), s.value))
                exemplar = _exemplar(s)
                if exemplar is not None:
                    entry["exemplars"].append(exemplar)
            elif s.name == f"{family.name}_count":
                entry["count"] = int(s.value)
            elif s.name == f"{family.name}_sum":
                entry["sum"] = s.value
        points = [self._histogram_point(family, entry, now_ns) for entry in series.values()]
        data = Histogram(data_points=points, aggregation_temporality=AggregationTemporality.CUMULATIVE)
        return Metric(name=family.name, description=family.documentation, unit="", data=data)

    def _histogram_point(self, family: PromFamily, entry: dict[str, Any], now_ns: int) -> HistogramDataPoint:
        buckets = sorted(entry["buckets"])  # cumulative counts by upper bound, +Inf last
        counts, previous = [], 0.0
        for _bound, cumulative in buckets:
            counts.append(int(cumulative - previous))
            previous = cumulative
        return HistogramDataPoint(
            attributes=entry["labels"],
            start_time_unix_nano=self._created(family.samples, entry["labels"]),
            time_unix_nano=now_ns,
            count=int(entry.get("count", previous)),
            sum=float(entry.get("sum", 0.0)),
            bucket_counts=counts,
            explicit_bounds=[bound for bound, _ in buckets if not math.isinf(bound)],
            # A Prometheus histogram has no min or max: None leaves OTLP's optional fields unset.
            min=cast(float, None),
            max=cast(float, None),
            exemplars=entry["exemplars"],
        )


def _exemplar(sample: Sample) -> OtelExemplar | None:
    """The bucket's exemplar with its trace and span ids, or None (a row of an older run has no span id,
    and the collector's exporter turns an exemplar into trace_id/span_id labels only as a pair)."""
    ex = sample.exemplar
    if ex is None:
        return None
    labels = dict(ex.labels)
    trace_id, span_id = labels.pop("trace_id", None), labels.pop("span_id", None)
    if not (trace_id and span_id):
        return None
    stamp = _ns(float(ex.timestamp)) if ex.timestamp is not None else _ns(time.time())
    return OtelExemplar(labels, ex.value, stamp, span_id=int(span_id, 16), trace_id=int(trace_id, 16))


class MetricsPusher:
    """Sends a registry's values to an OTLP exporter every ``interval`` seconds and once at ``shutdown``."""

    def __init__(
        self, registry: CollectorRegistry, exporter: MetricExporter, resource: Resource, interval: float
    ) -> None:
        self.registry = registry
        self.exporter = exporter
        self.resource = resource
        self.interval = interval
        self.pushes = 0
        self.failures = 0
        self._converter = RegistryConverter()
        self._failing = False
        self._lock = threading.Lock()  # one export at a time: the loop's and the final one
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="metrics-push", daemon=True)

    def start(self) -> MetricsPusher:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.push()

    def push(self) -> bool:
        with self._lock:
            metrics = self._converter.convert(self.registry.collect())
            data = MetricsData([ResourceMetrics(self.resource, [ScopeMetrics(SCOPE, metrics, "")], "")])
            try:
                ok = self.exporter.export(data) is MetricExportResult.SUCCESS
            except Exception as exc:  # the exporter logs and retries itself; never let a push end the run
                logger.debug("metrics push raised: %r", exc)
                ok = False
            self.pushes += 1
            if not ok:
                self.failures += 1
                if not self._failing:
                    logger.warning("metrics: push to the collector failed; retrying every %.0fs", self.interval)
            elif self._failing:
                logger.info("metrics: pushes to the collector work again")
            self._failing = not ok
            return ok

    def shutdown(self) -> bool:
        """Stop the loop and send the final values (returns whether they were accepted)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)  # wakes at once, unless mid-export (bounded by its timeout)
        ok = self.push()
        if not ok:
            logger.warning("metrics: the final values did not reach the collector")
        self.exporter.shutdown()
        return ok


def otlp_metrics_pusher(registry: CollectorRegistry, endpoint: str, interval_ms: int, run_id: str) -> MetricsPusher:
    """A pusher to the collector's OTLP/HTTP ``endpoint`` (``/v1/metrics``), the run's id as the instance."""
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    endpoint = endpoint.rstrip("/")
    resource = service_resource({"service.version": trainer.__version__, "service.instance.id": run_id})
    exporter = OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics")
    logger.info("metrics push to the collector at %s every %.1fs", endpoint, interval_ms / 1000)
    return MetricsPusher(registry, exporter, resource, interval_ms / 1000).start()
