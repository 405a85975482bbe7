"""The prometheus_client -> OTLP bridge: exact values, exemplars, dropped series, failures, the final push.

The collector round trip (OTLP in, Prometheus exposition out, scraped by a real Prometheus) is
tested with a real training in tests/telemetry/test_training_metrics.py; here an exporter that
records what it was given stands in for the network.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import (
    Gauge,
    Histogram,
    Metric,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    Sum,
)
from opentelemetry.sdk.resources import Resource

from trainer.telemetry import metric_contract as mc
from trainer.telemetry.metrics import TrainerMetrics
from trainer.telemetry.metrics_push import MetricsPusher, RegistryConverter

TRACE = "0123456789abcdef0123456789abcdef"
SPAN = "89abcdef01234567"


class RecordingExporter(MetricExporter):
    def __init__(self, results: list[MetricExportResult] | None = None) -> None:
        super().__init__()
        self.batches: list[MetricsData] = []
        self.results = list(results or [])
        self.shut = False

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        self.batches.append(metrics_data)
        return self.results.pop(0) if self.results else MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.shut = True


def by_name(metrics: list[Metric]) -> dict[str, Metric]:
    names = [m.name for m in metrics]
    assert len(names) == len(set(names)), f"a family sent twice: {names}"
    return {m.name: m for m in metrics}


def points(metric: Metric) -> dict[tuple[tuple[str, Any], ...], Any]:
    return {tuple(sorted((p.attributes or {}).items())): p for p in metric.data.data_points}


def rollout(reward: float, **extra: Any) -> dict[str, Any]:
    return {"mode": "val", "prompt_version": "v1", "reward": reward, "status": "ok", "wall_seconds": 1.5, **extra}


def test_counters_gauges_and_histograms_keep_their_values_and_labels() -> None:
    m = TrainerMetrics()
    m.observe_rollout(rollout(1.0, trace_id=TRACE, span_id=SPAN), "agent-m")
    m.observe_rollout(rollout(0.0), "agent-m")
    m.set_round(2)
    sent = by_name(RegistryConverter().convert(m.registry.collect()))

    rollouts = sent["apo_rollouts"]  # the collector's exporter adds _total back
    assert isinstance(rollouts.data, Sum) and rollouts.data.is_monotonic
    ok_val = points(rollouts)[(("outcome", "ok"), ("split", "val"))]
    assert ok_val.value == 2 and ok_val.start_time_unix_nano <= ok_val.time_unix_nano
    assert points(rollouts)[(("outcome", "timeout"), ("split", "train"))].value == 0  # zero series kept

    assert isinstance(sent[mc.ROUND_NUMBER.name].data, Gauge)
    assert [p.value for p in sent[mc.ROUND_NUMBER.name].data.data_points] == [2]

    reward = sent[mc.ROLLOUT_REWARD.name]
    assert isinstance(reward.data, Histogram)
    (point,) = reward.data.data_points
    assert dict(point.attributes or {}) == {"split": "val", "prompt_version": "v1"}
    assert list(point.explicit_bounds) == [b for b in mc.REWARD_BUCKETS if b != float("inf")]
    assert len(point.bucket_counts) == len(point.explicit_bounds) + 1
    assert (sum(point.bucket_counts), point.count, point.sum) == (2, 2, 1.0)
    assert point.bucket_counts[0] == 1  # reward 0.0 in the first bucket (le 0.0), not cumulative
    (exemplar,) = point.exemplars  # only the rollout with both ids: the collector needs the pair
    assert (exemplar.trace_id, exemplar.span_id, exemplar.value) == (int(TRACE, 16), int(SPAN, 16), 1.0)


def test_a_dropped_gauge_series_is_sent_once_as_zero() -> None:
    m = TrainerMetrics()
    converter = RegistryConverter()
    m.set_best("v0", 0.5)
    converter.convert(m.registry.collect())
    m.set_best("v1", 0.75)
    best = by_name(converter.convert(m.registry.collect()))[mc.BEST_PROMPT_INFO.name]
    assert {p.attributes["prompt_version"]: p.value for p in best.data.data_points} == {"v0": 0, "v1": 1.0}
    assert best.description == mc.BEST_PROMPT_INFO.help
    best = by_name(converter.convert(m.registry.collect()))[mc.BEST_PROMPT_INFO.name]
    assert {p.attributes["prompt_version"]: p.value for p in best.data.data_points} == {"v1": 1.0}


def test_pushes_name_the_run_and_the_final_push_carries_the_last_values() -> None:
    m = TrainerMetrics()
    exporter = RecordingExporter()
    resource = Resource({"service.name": "apo-trainer", "service.instance.id": "run-1"})
    pusher = MetricsPusher(m.registry, exporter, resource, interval=3600).start()  # no timed push in this test
    m.best_score.set(0.25)
    assert pusher.push()
    m.best_score.set(0.75)  # set after the last periodic push: only the final push has it
    assert pusher.shutdown() and exporter.shut
    assert len(exporter.batches) == 2
    (resource_metrics,) = exporter.batches[-1].resource_metrics
    assert resource_metrics.resource.attributes["service.instance.id"] == "run-1"
    sent = by_name(resource_metrics.scope_metrics[0].metrics)
    assert [p.value for p in sent[mc.BEST_VAL_SCORE.name].data.data_points] == [0.75]


def test_failed_pushes_are_counted_and_logged_once_until_they_work_again(caplog: pytest.LogCaptureFixture) -> None:
    failure, success = MetricExportResult.FAILURE, MetricExportResult.SUCCESS
    exporter = RecordingExporter([failure, failure, failure, success, failure])
    pusher = MetricsPusher(TrainerMetrics().registry, exporter, Resource({}), interval=3600)
    with caplog.at_level(logging.INFO, logger="trainer.telemetry.metrics_push"):
        results = [pusher.push() for _ in range(4)]
        assert not pusher.shutdown()  # the final push failed: said, never raised
    assert results == [False, False, False, True] and pusher.failures == 4
    messages = [r.getMessage() for r in caplog.records]
    assert sum("push to the collector failed" in m for m in messages) == 2  # the first of each outage
    assert sum("work again" in m for m in messages) == 1
    assert any("final values did not reach the collector" in m for m in messages)


def test_an_exporter_that_raises_never_ends_the_run() -> None:
    class Raising(RecordingExporter):
        def export(
            self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
        ) -> MetricExportResult:
            raise ConnectionError("collector gone")

    pusher = MetricsPusher(TrainerMetrics().registry, Raising(), Resource({}), interval=3600)
    assert not pusher.push() and pusher.failures == 1
