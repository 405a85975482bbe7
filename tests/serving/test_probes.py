"""Tests for trainer.serving.probes' collector probe: ``--dry-run`` checks the OTLP endpoint too.

A fake OTLP/HTTP receiver on loopback answers what each test needs; a closed port stands for a
collector that is not running.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from trainer.serving.probes import CollectorUnreachable, check_collector
from trainer.testing import closed_port


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeReceiver:
    status: int
    requests: list[Received] = field(default_factory=list)
    url: str = ""


@contextmanager
def receiver(status: int = 200) -> Iterator[FakeReceiver]:
    fake = FakeReceiver(status)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            fake.requests.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(fake.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:  # keep the test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


def test_a_collector_that_accepts_spans_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20t0ken,x-tenant=a")
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", raising=False)
    with receiver() as fake:
        check_collector(fake.url + "/")
    (request,) = fake.requests
    # An empty ExportTraceServiceRequest: nothing is stored, the endpoint is proven to take OTLP/HTTP.
    assert (request.path, request.body) == ("/v1/traces", b"")
    assert request.headers["content-type"] == "application/x-protobuf"
    # The exporter's headers go along, so an authenticated collector is probed as it will be used.
    assert request.headers["authorization"] == "Bearer t0ken"
    assert request.headers["x-tenant"] == "a"


def test_an_unreachable_collector_is_named() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(CollectorUnreachable) as info:
        check_collector(url)
    message = str(info.value)
    assert message.startswith(f"OTEL_EXPORTER_OTLP_ENDPOINT: OpenTelemetry Collector at {url} is unreachable")
    assert f"{url}/v1/traces" in message


@pytest.mark.parametrize(
    ("status", "hint"), [(404, "no OTLP/HTTP receiver there"), (401, "HTTP 401"), (503, "HTTP 503")]
)
def test_a_collector_that_refuses_spans_is_named(status: int, hint: str) -> None:
    with receiver(status) as fake, pytest.raises(CollectorUnreachable) as info:
        check_collector(fake.url)
    message = str(info.value)
    assert f"OpenTelemetry Collector at {fake.url} refused spans: HTTP {status}" in message
    assert hint in message
