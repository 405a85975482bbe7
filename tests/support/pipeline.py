"""Real telemetry pipeline processes for tests and benchmarks: Agent Lightning store, Jaeger, collector.

Everything runs as a real process on free loopback ports (``tests.support.net.free_port``) and is stopped
when its context manager exits, failure or not:

    with agl_store() as store, jaeger() as jg, collector(store.url, jg.otlp_grpc) as col:
        ...

or all three at once with ``pipeline()`` / the session fixture ``pipeline_services`` (tests/conftest.py).

Binaries: ``.cache/bin/otelcol`` (collector/manifest.yaml) and ``.cache/bin/jaeger`` (Jaeger v2
all-in-one), built by ``make binaries``. Jaeger runs with ``tests/support/jaeger-config.yaml`` (every port
from the environment, memory storage).

Helpers read what arrived where: ``store_spans`` / ``store_statistics`` (Agent Lightning client),
``jaeger_traces`` / ``jaeger_spans`` / ``jaeger_services`` (Jaeger query API), ``prom_metric`` /
``prom_samples`` (Prometheus text format), ``collector_counters`` (the collector's own metrics).
``enqueue_rollouts`` creates rollouts (each with a running attempt) so the store accepts their spans;
``send_spans`` / ``SpanSender`` emit spans with the OpenTelemetry SDK.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

from tests.support import REPO
from tests.support.env import clean_env
from tests.support.net import free_port, http_get, http_ok
from tests.support.requirements import problem
from tests.support.store import RolloutRef

BIN_DIR = REPO / ".cache" / "bin"
OTELCOL_BIN = BIN_DIR / "otelcol"
JAEGER_BIN = BIN_DIR / "jaeger"
COLLECTOR_CONFIG = REPO / "collector" / "config.yaml"
JAEGER_CONFIG = REPO / "tests" / "support" / "jaeger-config.yaml"

HOST = "127.0.0.1"
ROLLOUT_ATTR = "agentlightning.rollout_id"
ATTEMPT_ATTR = "agentlightning.attempt_id"

STORE_START_TIMEOUT = 90.0  # `import agentlightning` alone takes ~5 s
JAEGER_START_TIMEOUT = 30.0
COLLECTOR_START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
START_ATTEMPTS = 3


# --------------------------------------------------------------------------- binaries


class ManagedProcess:
    """One child process with its log file, a readiness probe and a bounded stop."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: dict[str, str],
        log_path: Path,
        ready_url: str,
        start_timeout: float,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = env
        self.log_path = log_path
        self.ready_url = ready_url
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        if self.alive():
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start {self.name}: {' '.join(self.argv)}\n".encode())
            log.flush()
            # Own session: a Ctrl-C in the terminal reaches pytest only, which then stops us in order.
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=REPO,
                start_new_session=True,
            )
        self.paused = False

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while not http_ok(self.ready_url):
            if not self.alive():
                code = self.proc.returncode if self.proc is not None else None
                raise RuntimeError(f"{self.name} exited with code {code} before ready:\n{self.log_tail()}")
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{self.name} not ready at {self.ready_url} after {self.start_timeout:.0f} s:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def pause(self) -> None:
        """SIGSTOP: the process keeps its sockets and state but answers nothing."""
        if self.proc is not None and self.alive():
            os.kill(self.proc.pid, signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        if self.proc is not None and self.alive():
            os.kill(self.proc.pid, signal.SIGCONT)
        self.paused = False

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, wait at most ``timeout`` s, then SIGKILL. Returns the exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            if self.paused:
                self.resume()
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        # Anything it spawned in its own session (it is the group leader).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        self.paused = False
        return proc.returncode

    def port_conflict(self) -> bool:
        """Whether the last start failed because a port was taken."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        last = text.rsplit("===== start ", 1)[-1].lower()
        return "address already in use" in last or "error while attempting to bind" in last

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------- services


class StoreServer(ManagedProcess):
    """``python -m trainer store`` (compose's store: ``agl store``'s server, Prometheus tracker, bounded spans)."""

    def __init__(self, log_dir: Path, port: int | None = None, span_bytes: int | None = None) -> None:
        self.port = port or free_port(HOST)
        self.url = f"http://{HOST}:{self.port}"
        self.health_url = f"{self.url}/v1/agl/health"
        self.metrics_url = f"{self.url}/v1/prometheus/"  # trailing slash required
        self.otlp_url = f"{self.url}/v1/traces"
        argv = [sys.executable, "-m", "trainer", "store", "--host", HOST, "--port", str(self.port)]
        argv += ["--log-level", "WARNING"]
        env = clean_env(**({"STORE_SPAN_BYTES": str(span_bytes)} if span_bytes else {}))
        super().__init__("store", argv, env, log_dir / "store.log", self.health_url, STORE_START_TIMEOUT)


class JaegerServer(ManagedProcess):
    """Jaeger v2 all-in-one with tests/support/jaeger-config.yaml: memory storage, every port free on loopback."""

    def __init__(self, log_dir: Path, config: Path = JAEGER_CONFIG) -> None:
        self.ports = {
            "otlp_grpc": free_port(HOST),
            "otlp_http": free_port(HOST),
            "query_http": free_port(HOST),
            "query_grpc": free_port(HOST),
            "metrics": free_port(HOST),
            "health": free_port(HOST),
        }
        self.otlp_grpc = f"{HOST}:{self.ports['otlp_grpc']}"
        self.otlp_http_url = f"http://{HOST}:{self.ports['otlp_http']}"
        self.query_url = f"http://{HOST}:{self.ports['query_http']}"
        self.query_grpc = f"{HOST}:{self.ports['query_grpc']}"
        self.metrics_url = f"http://{HOST}:{self.ports['metrics']}/metrics"
        self.health_url = f"http://{HOST}:{self.ports['health']}/status"
        env = clean_env(
            **{
                "JAEGER_OTLP_GRPC_PORT": str(self.ports["otlp_grpc"]),
                "JAEGER_OTLP_HTTP_PORT": str(self.ports["otlp_http"]),
                "JAEGER_QUERY_HTTP_PORT": str(self.ports["query_http"]),
                "JAEGER_QUERY_GRPC_PORT": str(self.ports["query_grpc"]),
                "JAEGER_METRICS_PORT": str(self.ports["metrics"]),
                "JAEGER_HEALTH_PORT": str(self.ports["health"]),
            }
        )
        argv = [str(JAEGER_BIN), "--config", str(config)]
        # Ready when the query API answers (storage and query extension both up).
        super().__init__(
            "jaeger", argv, env, log_dir / "jaeger.log", f"{self.query_url}/api/services", JAEGER_START_TIMEOUT
        )


class CollectorServer(ManagedProcess):
    """The project's collector (.cache/bin/otelcol, collector/config.yaml) with every address on loopback."""

    def __init__(
        self,
        log_dir: Path,
        store_url: str,
        jaeger_otlp_grpc: str,
        config: Path = COLLECTOR_CONFIG,
        log_level: str = "info",
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.ports = {
            "otlp_grpc": free_port(HOST),
            "otlp_http": free_port(HOST),
            "prometheus": free_port(HOST),
            "trainer_metrics": free_port(HOST),
            "telemetry": free_port(HOST),
            "health": free_port(HOST),
        }
        self.store_url = store_url
        self.jaeger_otlp_grpc = jaeger_otlp_grpc
        self.otlp_grpc = f"{HOST}:{self.ports['otlp_grpc']}"
        self.otlp_http_url = f"http://{HOST}:{self.ports['otlp_http']}"
        self.prometheus_url = f"http://{HOST}:{self.ports['prometheus']}/metrics"
        self.trainer_metrics_url = f"http://{HOST}:{self.ports['trainer_metrics']}/metrics"
        self.telemetry_url = f"http://{HOST}:{self.ports['telemetry']}/metrics"
        self.health_url = f"http://{HOST}:{self.ports['health']}/"
        self.restarts = 0
        env = clean_env(
            **{
                "OTLP_GRPC_ENDPOINT": self.otlp_grpc,
                "OTLP_HTTP_ENDPOINT": f"{HOST}:{self.ports['otlp_http']}",
                "AGL_STORE_ENDPOINT": store_url,
                "JAEGER_ENDPOINT": jaeger_otlp_grpc,
                "COLLECTOR_PROMETHEUS_ENDPOINT": f"{HOST}:{self.ports['prometheus']}",
                "COLLECTOR_TRAINER_METRICS_ENDPOINT": f"{HOST}:{self.ports['trainer_metrics']}",
                "COLLECTOR_TELEMETRY_HOST": HOST,
                "COLLECTOR_TELEMETRY_PORT": str(self.ports["telemetry"]),
                "HEALTH_CHECK_ENDPOINT": f"{HOST}:{self.ports['health']}",
                "COLLECTOR_LOG_LEVEL": log_level,
                **(extra_env or {}),
            }
        )
        argv = [str(OTELCOL_BIN), "--config", str(config)]
        super().__init__("otelcol", argv, env, log_dir / "collector.log", self.health_url, COLLECTOR_START_TIMEOUT)

    def restart(self, stop_timeout: float = STOP_TIMEOUT) -> float:
        """Graceful stop (SIGTERM, bounded wait) and start again on the SAME ports; returns the downtime (s)."""
        began = time.monotonic()
        self.stop(stop_timeout)
        # The listening ports were just released; retry a few times in case the kernel still holds one.
        for attempt in range(5):
            self.start()
            try:
                self.wait_ready()
                break
            except RuntimeError:
                if attempt == 4:
                    raise
                time.sleep(0.5)
        self.restarts += 1
        return time.monotonic() - began


@contextlib.contextmanager
def _log_dir(log_dir: Path | None) -> Iterator[Path]:
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        yield log_dir
        return
    tmp = Path(tempfile.mkdtemp(prefix="pipeline-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


S = TypeVar("S", bound=ManagedProcess)


def _start(factory: Callable[[], S], wait: bool = True) -> S:
    """Create, start (and wait for) a service; retry with fresh ports if another process took one.

    ``free_port`` only finds a port that is free *now*: a concurrent test session can bind it before
    our process does. Such a start fails fast with "address already in use"; anything else is raised.
    """
    for attempt in range(START_ATTEMPTS):
        server = factory()
        server.start()
        if not wait:
            return server
        try:
            server.wait_ready()
            return server
        except RuntimeError:
            server.stop()
            if attempt == START_ATTEMPTS - 1 or not server.port_conflict():
                raise
    raise AssertionError("unreachable")


@contextlib.contextmanager
def _stopping(server: ManagedProcess) -> Iterator[None]:
    try:
        yield
    finally:
        server.stop()


@contextlib.contextmanager
def agl_store(log_dir: Path | None = None) -> Iterator[StoreServer]:
    """A running store server (``python -m trainer store``) on a free loopback port."""
    with _log_dir(log_dir) as logs:
        server = _start(lambda: StoreServer(logs))
        with _stopping(server):
            yield server


@contextlib.contextmanager
def jaeger(log_dir: Path | None = None, config: Path = JAEGER_CONFIG) -> Iterator[JaegerServer]:
    """A running Jaeger v2 all-in-one (memory storage), every port free on loopback."""
    with _log_dir(log_dir) as logs:
        server = _start(lambda: JaegerServer(logs, config))
        with _stopping(server):
            yield server


@contextlib.contextmanager
def collector(
    store_url: str,
    jaeger_otlp_grpc: str,
    log_dir: Path | None = None,
    config: Path = COLLECTOR_CONFIG,
    log_level: str = "info",
) -> Iterator[CollectorServer]:
    """A running collector exporting to ``store_url`` (OTLP/HTTP) and ``jaeger_otlp_grpc`` (host:port)."""
    with _log_dir(log_dir) as logs:
        server = _start(lambda: CollectorServer(logs, store_url, jaeger_otlp_grpc, config, log_level))
        with _stopping(server):
            yield server


@dataclass
class Pipeline:
    store: StoreServer
    jaeger: JaegerServer
    collector: CollectorServer
    log_dir: Path

    @property
    def store_url(self) -> str:
        return self.store.url

    @property
    def store_metrics_url(self) -> str:
        return self.store.metrics_url

    @property
    def jaeger_query_url(self) -> str:
        return self.jaeger.query_url

    @property
    def jaeger_otlp_grpc(self) -> str:
        return self.jaeger.otlp_grpc

    @property
    def otlp_http_url(self) -> str:
        return self.collector.otlp_http_url

    @property
    def otlp_grpc(self) -> str:
        return self.collector.otlp_grpc

    @property
    def prometheus_url(self) -> str:
        return self.collector.prometheus_url

    @property
    def trainer_metrics_url(self) -> str:
        """Where the collector serves the trainer's pushed apo_* metrics (Prometheus job ``trainer``)."""
        return self.collector.trainer_metrics_url

    @property
    def telemetry_url(self) -> str:
        return self.collector.telemetry_url

    def log_tails(self, lines: int = 30) -> str:
        return "\n".join(
            f"----- {s.name} ({s.log_path}) -----\n{s.log_tail(lines)}"
            for s in (self.store, self.jaeger, self.collector)
        )


@contextlib.contextmanager
def pipeline(
    log_dir: Path | None = None, collector_log_level: str = "info", collector_env: Mapping[str, str] | None = None
) -> Iterator[Pipeline]:
    """Store, Jaeger and collector; the store's slow Python start-up overlaps the other two.

    ``collector_env`` sets the collector's own variables (collector/config.yaml's header lists them).

    Stopped in reverse order (collector first, so it can flush to the sinks), even on failure.
    """
    started: list[ManagedProcess] = []
    with _log_dir(log_dir) as logs:
        try:
            store = _start(lambda: StoreServer(logs), wait=False)
            started.append(store)
            jg = _start(lambda: JaegerServer(logs))
            started.append(jg)

            def new_collector() -> CollectorServer:
                return CollectorServer(
                    logs, store.url, jg.otlp_grpc, log_level=collector_log_level, extra_env=collector_env
                )

            col = _start(new_collector)
            started.append(col)
            try:
                store.wait_ready()
            except RuntimeError:
                store.stop()
                if not store.port_conflict():
                    raise
                # Its port was taken meanwhile: a store on fresh ports, and a collector pointing at it.
                col.stop()
                store = _start(lambda: StoreServer(logs))
                started.append(store)
                col = _start(new_collector)
                started.append(col)
            yield Pipeline(store=store, jaeger=jg, collector=col, log_dir=logs)
        finally:
            for server in reversed(started):
                server.stop()


# --------------------------------------------------------------------------- Prometheus text format

_SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\S+)?\s*$")
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def parse_prom_text(text: str) -> list[Sample]:
    """Samples of a Prometheus text exposition, with their names exactly as exposed (no ``_total`` added)."""
    samples: list[Sample] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE_RE.match(line)
        if m is None:
            continue
        labels = {
            k: v.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
            for k, v in _LABEL_RE.findall(m.group(3) or "")
        }
        try:
            value = float(m.group(4))
        except ValueError:
            continue
        samples.append(Sample(m.group(1), labels, value))
    return samples


def prom_samples(url: str, timeout: float = 5.0) -> list[Sample]:
    return parse_prom_text(http_get(url, timeout).decode())


def _base_name(name: str) -> str:
    return name[: -len("_total")] if name.endswith("_total") else name


def prom_metric(url: str, name: str, labels: dict[str, str] | None = None) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``; 0.0 when none.

    A trailing ``_total`` is optional on both sides: the collector's own counters are exposed
    without it (``otelcol_receiver_accepted_spans``), the span-metrics connector's with it.
    """
    wanted = labels or {}
    base = _base_name(name)
    return sum(
        s.value
        for s in prom_samples(url)
        if _base_name(s.name) == base and all(s.labels.get(k) == v for k, v in wanted.items())
    )


@dataclass
class CollectorCounters:
    """The collector's own span counters, keyed by ``receiver/transport``, ``exporter`` or ``processor``."""

    accepted: dict[str, float] = field(default_factory=dict)
    refused: dict[str, float] = field(default_factory=dict)
    receiver_failed: dict[str, float] = field(default_factory=dict)
    sent: dict[str, float] = field(default_factory=dict)
    send_failed: dict[str, float] = field(default_factory=dict)
    enqueue_failed: dict[str, float] = field(default_factory=dict)
    queue_size: dict[str, float] = field(default_factory=dict)
    in_flight: dict[str, float] = field(default_factory=dict)
    filtered: dict[str, float] = field(default_factory=dict)

    def total(self, kind: str) -> float:
        values: dict[str, float] = getattr(self, kind)
        return sum(values.values())


# Exposed names at collector 0.161.0 (no `_total`); matched on their base name so a `_total` is fine too.
_COUNTER_FIELDS = {
    "otelcol_receiver_accepted_spans": ("accepted", "receiver"),
    "otelcol_receiver_refused_spans": ("refused", "receiver"),
    "otelcol_receiver_failed_spans": ("receiver_failed", "receiver"),
    "otelcol_exporter_sent_spans": ("sent", "exporter"),
    "otelcol_exporter_send_failed_spans": ("send_failed", "exporter"),
    "otelcol_exporter_enqueue_failed_spans": ("enqueue_failed", "exporter"),
    "otelcol_exporter_queue_size": ("queue_size", "exporter"),
    "otelcol_exporter_in_flight_requests": ("in_flight", "exporter"),
    "otelcol_processor_filter_spans_filtered": ("filtered", "filter"),
}


def collector_counters(telemetry_url: str) -> CollectorCounters:
    """Accepted/refused spans per receiver and sent/failed spans per exporter, from the collector's metrics."""
    counters = CollectorCounters()
    for s in prom_samples(telemetry_url):
        entry = _COUNTER_FIELDS.get(_base_name(s.name))
        if entry is None:
            continue
        attr, label = entry
        if attr in ("queue_size", "in_flight") and s.labels.get("data_type", "traces") != "traces":
            continue
        key = s.labels.get(label, "")
        if label == "receiver" and "transport" in s.labels:
            key = f"{key}/{s.labels['transport']}"
        bucket: dict[str, float] = getattr(counters, attr)
        bucket[key] = bucket.get(key, 0.0) + s.value
    return counters


# --------------------------------------------------------------------------- sending spans


@dataclass(frozen=True)
class SpanSpec:
    """``traces`` root spans, each with ``children`` child spans; rollout/attempt ids as span attributes."""

    rollout_id: str | None = None
    attempt_id: str | None = None
    traces: int = 1
    children: int = 1
    root_name: str = "root"
    child_name: str = "child"
    payload: int = 0  # characters of filler on each span (chat messages make real spans kilobytes)

    @classmethod
    def for_rollout(cls, ref: RolloutRef, **kwargs: Any) -> SpanSpec:
        return cls(rollout_id=ref.rollout_id, attempt_id=ref.attempt_id, **kwargs)

    @property
    def span_count(self) -> int:
        return self.traces * (1 + self.children)


@dataclass(frozen=True)
class SentSpan:
    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits
    parent_id: str | None
    name: str
    rollout_id: str | None
    attempt_id: str | None
    end_time_ns: int


class _CountingExporter(SpanExporter):
    """Wraps the OTLP exporter and counts spans it delivered or gave up on (after its own retries)."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.exported = 0
        self.failed = 0
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self.inner.export(spans)
        with self._lock:
            if result == SpanExportResult.SUCCESS:
                self.exported += len(spans)
            else:
                self.failed += len(spans)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return bool(self.inner.force_flush(timeout_millis))


class SpanSender:
    """An OpenTelemetry SDK tracer provider of its own (never the global one) exporting OTLP to ``endpoint``.

    ``endpoint``: ``http://host:port`` (OTLP/HTTP protobuf, ``/v1/traces`` appended) or, with
    ``protocol="grpc"``, ``host:port``. The SDK exporter retries connection errors and 429/502/503/504
    for up to ``export_timeout`` seconds per batch; ``failed`` counts spans it finally gave up on.
    """

    def __init__(
        self,
        endpoint: str,
        service_name: str,
        protocol: str = "http",
        export_timeout: float = 10.0,
        max_queue_size: int = 200_000,
        batch_size: int = 512,
        schedule_delay_millis: int = 100,
        simple: bool = False,
    ) -> None:
        inner: SpanExporter
        if protocol == "http":
            inner = HttpSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces", timeout=export_timeout)
        elif protocol == "grpc":
            target = endpoint.split("://", 1)[-1]
            inner = GrpcSpanExporter(endpoint=target, insecure=True, timeout=export_timeout)
        else:
            raise ValueError(f"protocol must be 'http' or 'grpc', not {protocol!r}")
        self.exporter = _CountingExporter(inner)
        self.provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        processor: SimpleSpanProcessor | BatchSpanProcessor
        if simple:
            processor = SimpleSpanProcessor(self.exporter)
        else:
            processor = BatchSpanProcessor(
                self.exporter,
                max_queue_size=max_queue_size,
                max_export_batch_size=batch_size,
                schedule_delay_millis=schedule_delay_millis,
                export_timeout_millis=int(export_timeout * 1000) + 5_000,
            )
        self.provider.add_span_processor(processor)
        self.tracer = self.provider.get_tracer("tests.support.pipeline")
        self.service_name = service_name
        self.sent = 0

    @property
    def exported(self) -> int:
        return self.exporter.exported

    @property
    def failed(self) -> int:
        return self.exporter.failed

    def send(self, specs: Sequence[SpanSpec]) -> list[SentSpan]:
        """Emit the spans of ``specs`` (ended, handed to the SDK; call ``flush`` to push them out)."""
        sent: list[SentSpan] = []
        for spec in specs:
            attrs: dict[str, str] = {}
            if spec.rollout_id is not None:
                attrs[ROLLOUT_ATTR] = spec.rollout_id
            if spec.attempt_id is not None:
                attrs[ATTEMPT_ATTR] = spec.attempt_id
            if spec.payload:
                attrs["test.payload"] = "x" * spec.payload
            for _ in range(spec.traces):
                root = self.tracer.start_span(spec.root_name, attributes=attrs)
                root_ctx = root.get_span_context()
                parent_context = trace_api.set_span_in_context(root)
                children = []
                for _c in range(spec.children):
                    child = self.tracer.start_span(spec.child_name, context=parent_context, attributes=attrs)
                    child.end()
                    children.append(child)
                root.end()
                trace_id = format(root_ctx.trace_id, "032x")
                root_id = format(root_ctx.span_id, "016x")
                for child in children:
                    sent.append(
                        SentSpan(
                            trace_id,
                            format(child.get_span_context().span_id, "016x"),
                            root_id,
                            spec.child_name,
                            spec.rollout_id,
                            spec.attempt_id,
                            child.end_time or 0,
                        )
                    )
                sent.append(
                    SentSpan(
                        trace_id, root_id, None, spec.root_name, spec.rollout_id, spec.attempt_id, root.end_time or 0
                    )
                )
        self.sent += len(sent)
        return sent

    def flush(self, timeout_millis: int = 60_000) -> bool:
        return bool(self.provider.force_flush(timeout_millis))

    def close(self) -> None:
        self.provider.shutdown()

    def __enter__(self) -> SpanSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def send_spans(
    endpoint: str,
    specs: Sequence[SpanSpec],
    service_name: str = "pipeline-test",
    protocol: str = "http",
    export_timeout: float = 10.0,
) -> list[SentSpan]:
    """Emit ``specs`` through the collector at ``endpoint``, flush, and return the spans' ids.

    Raises ``RuntimeError`` if the SDK exporter gave up on any span (after its own retries).
    """
    with SpanSender(endpoint, service_name, protocol=protocol, export_timeout=export_timeout) as sender:
        sent = sender.send(specs)
        flushed = sender.flush()
    if not flushed or sender.failed:
        raise RuntimeError(
            f"span export incomplete: flushed={flushed}, exported={sender.exported}, failed={sender.failed}, "
            f"sent={len(sent)}"
        )
    return sent


def missing_binaries() -> bool:
    """True when the collector or Jaeger binary is not built (benchmarks skip their pipeline part)."""
    return problem("otelcol") is not None
