"""/metrics under clients that never finish: Prometheus's scrape must still get through at once.

Raw sockets stand in for a port scanner or a half-open connection: one connects and sends nothing,
one sends half a request. Every wait is bounded, so a regression fails in seconds, never hangs.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest

from trainer.serving.probes import free_port
from trainer.telemetry.metrics import MetricsServer, TrainerMetrics

IO_TIMEOUT = 5.0
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def scrape(server: MetricsServer, timeout: float = 3.0) -> str:
    with OPENER.open(f"http://127.0.0.1:{server.port}/metrics", timeout=timeout) as resp:
        return str(resp.read().decode())


def stuck_clients(port: int) -> list[socket.socket]:
    """One connection that sends nothing and one that stops halfway through its request."""
    idle = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
    half = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
    half.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no blank line: headers never end
    return [idle, half]


@pytest.fixture
def metrics() -> TrainerMetrics:
    metrics = TrainerMetrics()
    metrics.set_round(3)
    return metrics


@pytest.fixture
def server(metrics: TrainerMetrics) -> Iterator[MetricsServer]:
    running = MetricsServer(metrics, "127.0.0.1", free_port()).start()  # the default timeout, as trainings run
    yield running
    stopped = time.monotonic()
    running.stop()
    assert time.monotonic() - stopped < 3, "stop() waited for a stuck client"


def test_stuck_clients_do_not_starve_a_scrape(server: MetricsServer, metrics: TrainerMetrics) -> None:
    clients = stuck_clients(server.port)
    try:
        started = time.monotonic()
        assert "apo_round 3.0" in scrape(server)
        assert time.monotonic() - started < 2
        # The final-scrape wait of a one-shot trainer works with them still connected.
        metrics.set_round(4)
        later = threading.Timer(0.3, lambda: scrape(server))
        later.start()
        assert server.wait_for_final_scrape(5) is True
        later.join(IO_TIMEOUT)
        assert "apo_round 4.0" in scrape(server)
    finally:
        for sock in clients:
            sock.close()


def test_stuck_clients_are_closed_after_the_idle_timeout(metrics: TrainerMetrics) -> None:
    server = MetricsServer(metrics, "127.0.0.1", free_port(), idle_timeout=1.0).start()
    clients = stuck_clients(server.port)
    try:
        started = time.monotonic()
        for sock in clients:
            assert sock.recv(1024) == b"", "closed by the server, not answered"  # raises on IO_TIMEOUT
        assert time.monotonic() - started < 3
        assert "apo_round 3.0" in scrape(server)
    finally:
        for sock in clients:
            sock.close()
        server.stop()
