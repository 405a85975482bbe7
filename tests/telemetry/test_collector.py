"""The collector pipeline, end to end, with real processes: OTLP in -> collector -> Agent Lightning store,
Jaeger v2 and the span-metrics Prometheus endpoint.

Needs `.cache/bin/otelcol` and `.cache/bin/jaeger` (`make binaries`): skipped without them, except when
CI is set, where their absence fails. The store, Jaeger and the collector are started once per session
(``pipeline_services``) on free loopback ports and stopped at the end, even on failure.

Sink outage: the store and Jaeger both keep their data in memory, so restarting either forgets the
rollouts (the store would then answer 500 to every span of them, which the collector treats as
permanent) and the spans already stored: a restart cannot show "nothing lost". A sink *stall* can:
both sinks are frozen with SIGSTOP for a few seconds (sockets stay bound, the kernel still accepts
connections, nothing answers), then resumed with SIGCONT; the collector must hold the data in its
sending queue meanwhile and deliver all of it afterwards.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.jaeger import jaeger_parent, jaeger_services, jaeger_spans, jaeger_tag
from tests.support.pipeline import (
    COLLECTOR_CONFIG,
    OTELCOL_BIN,
    REPO,
    ROLLOUT_ATTR,
    CollectorCounters,
    Pipeline,
    SentSpan,
    SpanSender,
    SpanSpec,
    collector_counters,
    prom_metric,
    prom_samples,
    send_spans,
)
from tests.support.store import RolloutRef, enqueue_rollouts, store_spans, store_statistics

pytestmark = [pytest.mark.otelcol, pytest.mark.slow]

STORE_EXPORTER = "otlp_http/store"
JAEGER_EXPORTER = "otlp_grpc/jaeger"
ARRIVAL_TIMEOUT = 60.0  # seconds to wait for spans to land in the sinks
SPAN_METRICS_TIMEOUT = 45.0  # the span_metrics connector flushes every 15 s


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def poll(check: Callable[[], bool], timeout: float, interval: float = 0.5) -> bool:
    """Call ``check`` until it returns True or ``timeout`` seconds pass; returns its last answer."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def store_ids(p: Pipeline, refs: list[RolloutRef]) -> dict[str, list[str]]:
    return {ref.rollout_id: [s.span_id for s in store_spans(p.store_url, ref.rollout_id)] for ref in refs}


def jaeger_ids(p: Pipeline, service: str) -> list[str]:
    return [s["spanID"] for s in jaeger_spans(p.jaeger_query_url, service)]


def delta(after: dict[str, float], before: dict[str, float], key: str) -> float:
    return after.get(key, 0.0) - before.get(key, 0.0)


# --------------------------------------------------------------------------- (a) config validation


def run_validate(config: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.run(
        [str(OTELCOL_BIN), "validate", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=env,
    )


def test_collector_config_validates() -> None:
    result = run_validate(COLLECTOR_CONFIG)
    assert result.returncode == 0, f"otelcol validate failed:\n{result.stdout}\n{result.stderr}"


BROKEN_CONFIGS = {
    # A pipeline naming an exporter that is not configured.
    "unknown-exporter-in-pipeline": (
        lambda text: text.replace("exporters: [otlp_http/store]", "exporters: [otlp_http/nowhere]"),
        'references exporter "otlp_http/nowhere" which is not configured',
    ),
    # A component type this distribution does not contain.
    "component-not-in-distribution": (
        lambda text: text.replace("\n  debug:\n", "\n  kafka:\n    brokers: [kafka:9092]\n  debug:\n"),
        'unknown type: "kafka"',
    ),
    # Not YAML at all any more.
    "yaml-syntax-error": (
        lambda text: text.replace("\nexporters:\n", "\nexporters:\n  broken: [unclosed\n"),
        "not valid YAML",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN_CONFIGS))
def test_broken_collector_config_is_refused(case: str, tmp_path: Path) -> None:
    mutate, message = BROKEN_CONFIGS[case]
    original = COLLECTOR_CONFIG.read_text()
    broken = mutate(original)
    assert broken != original, f"{case}: the mutation did not apply; collector/config.yaml changed shape"
    path = tmp_path / "config.yaml"
    path.write_text(broken)
    result = run_validate(path)
    output = result.stdout + result.stderr
    assert result.returncode != 0, f"{case}: otelcol validate accepted a broken config:\n{output}"
    assert message in output, f"{case}: expected {message!r} in:\n{output}"


# --------------------------------------------------------------------------- (b) routing


def test_spans_reach_store_and_jaeger(pipeline_services: Pipeline) -> None:
    p = pipeline_services
    service = unique("routing")
    refs = enqueue_rollouts(p.store_url, 3)
    spans_before = store_statistics(p.store_url)["total_spans"]
    filtered_before = collector_counters(p.telemetry_url).filtered

    # Per rollout: 2 traces x (root + 3 children) = 8 spans. Plus 2 traces with no rollout id.
    specs = [SpanSpec.for_rollout(ref, traces=2, children=3) for ref in refs]
    specs.append(SpanSpec(traces=2, children=2, root_name="plain-root", child_name="plain-child"))
    sent = send_spans(p.otlp_http_url, specs, service_name=service)
    by_rollout: dict[str | None, list[SentSpan]] = {}
    for span in sent:
        by_rollout.setdefault(span.rollout_id, []).append(span)
    plain = by_rollout.pop(None)
    assert len(plain) == 6 and all(len(v) == 8 for v in by_rollout.values())

    # Store: exactly the 8 spans of each rollout, ids and parent links as sent.
    def store_complete() -> bool:
        return all(len(store_spans(p.store_url, r.rollout_id)) >= 8 for r in refs)

    poll(store_complete, ARRIVAL_TIMEOUT)
    for ref in refs:
        got = store_spans(p.store_url, ref.rollout_id)
        expected = {s.span_id: s.parent_id for s in by_rollout[ref.rollout_id]}
        assert len(got) == len(expected), f"rollout {ref.rollout_id}: store holds {len(got)} spans, sent 8"
        assert {s.span_id: s.parent_id for s in got} == expected
        assert {s.attempt_id for s in got} == {ref.attempt_id}

    # Jaeger: every span (with or without rollout id), and searchable by the rollout tag.
    poll(lambda: len(jaeger_ids(p, service)) >= len(sent), ARRIVAL_TIMEOUT)
    assert service in jaeger_services(p.jaeger_query_url)
    all_jaeger = jaeger_spans(p.jaeger_query_url, service)
    assert sorted(s["spanID"] for s in all_jaeger) == sorted(s.span_id for s in sent)
    for ref in refs:
        tagged = jaeger_spans(p.jaeger_query_url, service, {ROLLOUT_ATTR: ref.rollout_id})
        assert len(tagged) == 8, f"Jaeger tag search for {ref.rollout_id}: {len(tagged)} spans, expected 8"
        assert {jaeger_tag(s, ROLLOUT_ATTR) for s in tagged} == {ref.rollout_id}
        # Parent/child structure: every child's CHILD_OF reference points at its root's spanID.
        expected_parents = {s.span_id: s.parent_id for s in by_rollout[ref.rollout_id]}
        assert {s["spanID"]: jaeger_parent(s) for s in tagged} == expected_parents
        assert sum(1 for s in tagged if jaeger_parent(s) is None) == 2
    plain_ids = {s.span_id for s in plain}
    plain_in_jaeger = [s for s in all_jaeger if s["spanID"] in plain_ids]
    assert len(plain_in_jaeger) == 6
    assert all(jaeger_tag(s, ROLLOUT_ATTR) is None for s in plain_in_jaeger)

    # Spans without a rollout id never reached the store: the store grew by exactly the 24 rollout
    # spans, and the collector's filter dropped exactly the 6 others from the store pipeline.
    assert store_statistics(p.store_url)["total_spans"] - spans_before == 24
    filtered_after = collector_counters(p.telemetry_url).filtered
    assert delta(filtered_after, filtered_before, "filter/store") == 6


# --------------------------------------------------------------------------- (c) nothing lost


def test_collector_counters_account_for_every_span(pipeline_services: Pipeline) -> None:
    p = pipeline_services
    service = unique("counters")
    refs = enqueue_rollouts(p.store_url, 4)
    before = collector_counters(p.telemetry_url)

    # Both receiver transports: 2 rollouts over OTLP/HTTP, 2 over OTLP/gRPC, plain spans over each.
    http_specs = [SpanSpec.for_rollout(r, traces=5, children=4) for r in refs[:2]] + [SpanSpec(traces=4, children=1)]
    grpc_specs = [SpanSpec.for_rollout(r, traces=3, children=2) for r in refs[2:]] + [SpanSpec(traces=2, children=0)]
    sent_http = send_spans(p.otlp_http_url, http_specs, service_name=service)
    sent_grpc = send_spans(p.otlp_grpc, grpc_specs, service_name=service, protocol="grpc")
    sent = sent_http + sent_grpc
    with_rollout = sum(1 for s in sent if s.rollout_id)
    assert (len(sent_http), len(sent_grpc), with_rollout) == (58, 20, 68)

    def settled() -> tuple[CollectorCounters, bool]:
        now = collector_counters(p.telemetry_url)
        done = (
            delta(now.accepted, before.accepted, "otlp/http") >= len(sent_http)
            and delta(now.accepted, before.accepted, "otlp/grpc") >= len(sent_grpc)
            and delta(now.sent, before.sent, JAEGER_EXPORTER) >= len(sent)
            and delta(now.sent, before.sent, STORE_EXPORTER) >= with_rollout
        )
        return now, done

    # The collector's counters lag the data by up to a few seconds: poll, bounded.
    deadline = time.monotonic() + ARRIVAL_TIMEOUT
    after, done = settled()
    while not done and time.monotonic() < deadline:
        time.sleep(0.5)
        after, done = settled()

    report = {
        "sent (sdk)": len(sent),
        "accepted otlp/http": delta(after.accepted, before.accepted, "otlp/http"),
        "accepted otlp/grpc": delta(after.accepted, before.accepted, "otlp/grpc"),
        "refused": after.total("refused") - before.total("refused"),
        f"sent {STORE_EXPORTER}": delta(after.sent, before.sent, STORE_EXPORTER),
        f"sent {JAEGER_EXPORTER}": delta(after.sent, before.sent, JAEGER_EXPORTER),
        "send_failed": after.total("send_failed") - before.total("send_failed"),
        "enqueue_failed": after.total("enqueue_failed") - before.total("enqueue_failed"),
        "filtered (no rollout id)": delta(after.filtered, before.filtered, "filter/store"),
    }
    print("collector counters (deltas):", report)
    assert report["accepted otlp/http"] == len(sent_http)
    assert report["accepted otlp/grpc"] == len(sent_grpc)
    assert report["refused"] == 0
    assert report[f"sent {JAEGER_EXPORTER}"] == len(sent)
    assert report[f"sent {STORE_EXPORTER}"] == with_rollout
    assert report["filtered (no rollout id)"] == len(sent) - with_rollout
    assert report["send_failed"] == 0
    assert report["enqueue_failed"] == 0
    assert after.total("receiver_failed") - before.total("receiver_failed") == 0


# --------------------------------------------------------------------------- (d) span metrics


def test_span_metrics_on_prometheus_endpoint(pipeline_services: Pipeline) -> None:
    p = pipeline_services
    service = unique("spanmetrics")
    send_spans(
        p.otlp_http_url,
        [SpanSpec(traces=3, children=2, root_name="sm-root", child_name="sm-child")],
        service_name=service,
    )
    name = "traces_span_metrics_calls_total"

    def calls(span_name: str) -> float:
        return prom_metric(p.prometheus_url, name, {"service_name": service, "span_name": span_name})

    poll(lambda: calls("sm-root") >= 3 and calls("sm-child") >= 6, SPAN_METRICS_TIMEOUT, interval=1.0)
    assert calls("sm-root") == 3, f"{name}{{span_name=sm-root}} = {calls('sm-root')}"
    assert calls("sm-child") == 6
    samples = [s for s in prom_samples(p.prometheus_url) if s.labels.get("service_name") == service]
    names = {s.name for s in samples}
    assert "traces_span_metrics_duration_milliseconds_count" in names, sorted(names)
    root = [s for s in samples if s.name == name and s.labels.get("span_name") == "sm-root"]
    assert root and root[0].labels.get("span_kind") == "SPAN_KIND_INTERNAL"
    assert root[0].labels.get("status_code") == "STATUS_CODE_UNSET"


# --------------------------------------------------------------------------- (e) restarts and stalls


class Stream:
    """Background sender: ``batches`` batches, one every ``interval`` s, each flushed before the next.

    A batch is one trace (root + 2 children) per rollout plus one trace without a rollout id. The SDK
    exporter retries connection errors and 503s for up to ``export_timeout`` s per export.
    """

    def __init__(self, p: Pipeline, service: str, refs: list[RolloutRef], batches: int, interval: float) -> None:
        self.sender = SpanSender(p.otlp_http_url, service, export_timeout=30.0, schedule_delay_millis=50)
        self.specs = [SpanSpec.for_rollout(r, traces=1, children=2) for r in refs] + [SpanSpec(traces=1, children=2)]
        self.batches = batches
        self.interval = interval
        self.sent: list[SentSpan] = []
        self.done_batches = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="span-stream", daemon=True)

    def _run(self) -> None:
        try:
            start = time.monotonic()
            for i in range(self.batches):
                self.sent += self.sender.send(self.specs)
                self.sender.flush(timeout_millis=60_000)
                self.done_batches = i + 1
                time.sleep(max(0.0, start + (i + 1) * self.interval - time.monotonic()))
        except BaseException as exc:  # surfaced by join()
            self.error = exc

    def start(self) -> None:
        self.thread.start()

    def wait_batches(self, n: int, timeout: float = 60.0) -> None:
        assert poll(lambda: self.done_batches >= n or not self.thread.is_alive(), timeout, 0.05)

    def join(self, timeout: float = 180.0) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "span stream did not finish in time"
        self.sender.flush()
        self.sender.close()
        if self.error is not None:
            raise self.error


def account(p: Pipeline, service: str, refs: list[RolloutRef], sent: list[SentSpan]) -> dict[str, int]:
    """Wait (bounded) until the sinks hold what was sent, then count: lost and duplicated per sink."""
    expected_store = {s.span_id for s in sent if s.rollout_id}
    expected_all = {s.span_id for s in sent}

    def complete() -> bool:
        in_store = {i for ids in store_ids(p, refs).values() for i in ids}
        return expected_store <= in_store and expected_all <= set(jaeger_ids(p, service))

    poll(complete, ARRIVAL_TIMEOUT, interval=1.0)
    store_list = [i for ids in store_ids(p, refs).values() for i in ids]
    jaeger_list = jaeger_ids(p, service)
    return {
        "sent": len(expected_all),
        "sent_with_rollout": len(expected_store),
        "store_lost": len(expected_store - set(store_list)),
        "store_duplicates": sum(c - 1 for c in Counter(store_list).values()),
        "jaeger_lost": len(expected_all - set(jaeger_list)),
        "jaeger_duplicates": sum(c - 1 for c in Counter(jaeger_list).values()),
    }


class RetryLog(logging.Handler):
    """Counts the OTLP/HTTP exporter's "Transient error ..., retrying" warnings (its own retries)."""

    LOGGER = "opentelemetry.exporter.otlp.proto.http.trace_exporter"

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.retries = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "retrying" in record.getMessage():
            self.retries += 1

    def __enter__(self) -> RetryLog:
        logging.getLogger(self.LOGGER).addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger(self.LOGGER).removeHandler(self)


def test_collector_restart_mid_stream_loses_nothing(pipeline_services: Pipeline) -> None:
    p = pipeline_services
    service = unique("restart")
    refs = enqueue_rollouts(p.store_url, 3)
    # 100 batches x 12 spans, one every 50 ms: several exports hit the restart window.
    stream = Stream(p, service, refs, batches=100, interval=0.05)
    with RetryLog() as retries:
        stream.start()
        try:
            stream.wait_batches(30)
            at_batch = stream.done_batches
            downtime = p.collector.restart()
        finally:
            stream.join()
    counts = account(p, service, refs, stream.sent)
    report = {
        **counts,
        "collector_downtime_s": round(downtime, 2),
        "restarted_after_batch": at_batch,
        "sdk_export_retries": retries.retries,
        "sdk_failed": stream.sender.failed,
    }
    print("collector restart mid-stream:", report)
    assert stream.sender.failed == 0, f"the sender gave up on spans: {report}"
    assert counts["store_lost"] == 0, report
    assert counts["jaeger_lost"] == 0, report
    assert counts["store_duplicates"] == 0, report


def test_sink_stall_is_absorbed_by_collector_queue(pipeline_services: Pipeline) -> None:
    p = pipeline_services
    service = unique("stall")
    refs = enqueue_rollouts(p.store_url, 3)
    before = collector_counters(p.telemetry_url)
    stall_seconds = 5.0
    held: dict[str, float] = {STORE_EXPORTER: 0.0, JAEGER_EXPORTER: 0.0}
    stream = Stream(p, service, refs, batches=60, interval=0.15)  # ~9 s, stall in the middle
    stream.start()
    try:
        stream.wait_batches(10)
        p.store.pause()
        p.jaeger.pause()
        try:
            stall_end = time.monotonic() + stall_seconds
            while time.monotonic() < stall_end:
                c = collector_counters(p.telemetry_url)
                for exporter in held:
                    now = c.queue_size.get(exporter, 0.0) + c.in_flight.get(exporter, 0.0)
                    held[exporter] = max(held[exporter], now)
                time.sleep(0.25)
        finally:
            p.store.resume()
            p.jaeger.resume()
    finally:
        stream.join()
    counts = account(p, service, refs, stream.sent)
    after = collector_counters(p.telemetry_url)
    report = {
        **counts,
        "stall_s": stall_seconds,
        "max_held_by_exporter (queued+in-flight requests)": held,
        "send_failed": after.total("send_failed") - before.total("send_failed"),
        "enqueue_failed": after.total("enqueue_failed") - before.total("enqueue_failed"),
        "sdk_failed": stream.sender.failed,
    }
    print("sinks stalled (SIGSTOP) mid-stream:", report)
    # The collector really held data for the frozen sinks (the test is not vacuous)...
    assert held[STORE_EXPORTER] > 0 and held[JAEGER_EXPORTER] > 0, report
    # ...and delivered every span once they came back.
    assert counts["store_lost"] == 0 and counts["jaeger_lost"] == 0, report
    assert counts["store_duplicates"] == 0, report
    assert report["send_failed"] == 0 and report["enqueue_failed"] == 0, report
    assert stream.sender.failed == 0, report


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for pid {pid}")


# A small Jaeger queue, so that this test overflows it within seconds; compose keeps the
# config's 64 MiB, and the figure that matters is the same: the queue never outgrows its bound.
OUTAGE_QUEUE_BYTES = 4 * 1024 * 1024
COLLECTOR_MEMORY_LIMIT_MIB = 512  # compose.yaml's COLLECTOR_MEMORY_LIMIT default


def test_long_jaeger_outage_costs_the_store_nothing_and_the_queue_stays_bounded(tmp_path: Path) -> None:
    """Jaeger is gone for the whole stream (far longer than its queue lasts), then comes back.

    Big spans without a rollout id (kilobytes of chat messages, as real ones carry) go to Jaeger
    only; rollout spans go to both. The store must get every rollout span once, the sender must
    never be refused, the Jaeger queue must stay within its byte bound (dropping what does not
    fit, and saying so in its counters), the collector's peak memory must stay far under its
    compose limit, and Jaeger must get new spans again once it is back.
    """
    from tests.support.pipeline import pipeline

    env = {"COLLECTOR_JAEGER_QUEUE_BYTES": str(OUTAGE_QUEUE_BYTES)}
    with pipeline(tmp_path / "logs", collector_env=env) as p:
        service = unique("jaeger-outage")
        refs = enqueue_rollouts(p.store_url, 3)
        p.jaeger.stop()
        stream = Stream(p, service, refs, batches=80, interval=0.1)
        stream.specs = [SpanSpec.for_rollout(r, traces=1, children=2) for r in refs] + [
            SpanSpec(traces=4, children=3, payload=32_000)  # ~0.5 MB a batch for Jaeger alone
        ]
        peak_queue = 0.0
        stream.start()
        try:
            while stream.thread.is_alive():
                c = collector_counters(p.telemetry_url)
                peak_queue = max(peak_queue, c.queue_size.get(JAEGER_EXPORTER, 0.0))
                time.sleep(0.2)
        finally:
            stream.join()
        counters = collector_counters(p.telemetry_url)
        assert p.collector.pid is not None
        peak_mib = peak_rss_mib(p.collector.pid)

        # The store path: every rollout span, once.
        expected = {s.span_id for s in stream.sent if s.rollout_id}
        assert poll(lambda: expected <= {i for ids in store_ids(p, refs).values() for i in ids}, ARRIVAL_TIMEOUT)
        in_store = [i for ids in store_ids(p, refs).values() for i in ids]

        # Jaeger back: spans sent from now on reach it.
        p.jaeger.start()
        p.jaeger.wait_ready()
        after = SpanSender(p.otlp_http_url, service)
        late = after.send([SpanSpec(traces=1, children=1)])
        after.flush()
        after.close()
        late_ids = {s.span_id for s in late}
        arrived = poll(lambda: late_ids <= set(jaeger_ids(p, service)), ARRIVAL_TIMEOUT)

    report = {
        "sent": len(stream.sent),
        "sent_with_rollout": len(expected),
        "store_lost": len(expected - set(in_store)),
        "store_duplicates": sum(c - 1 for c in Counter(in_store).values()),
        "sdk_failed": stream.sender.failed,
        "refused": counters.total("refused"),
        "jaeger_enqueue_failed": counters.enqueue_failed.get(JAEGER_EXPORTER, 0.0),
        "jaeger_peak_queue_bytes": peak_queue,
        "collector_peak_rss_mib": round(peak_mib, 1),
        "jaeger_back": arrived,
    }
    print("long Jaeger outage:", report)
    assert report["store_lost"] == 0 and report["store_duplicates"] == 0, report
    assert report["sdk_failed"] == 0 and report["refused"] == 0, report  # a full queue is no error to senders
    assert report["jaeger_enqueue_failed"] > 0, report  # the outage outlasted the queue: the test is not vacuous
    assert 0 < peak_queue <= OUTAGE_QUEUE_BYTES, report
    assert peak_mib < COLLECTOR_MEMORY_LIMIT_MIB / 2, report
    assert arrived, report
