"""Hostile requests to the store-dashboard proxy, sent as raw bytes the way an attacker would.

``http.client`` and browsers only send well-formed origin-form targets, so these tests write request
lines on a plain socket: a request target that is not a path must never pick the upstream's port or
host, a ``Host`` the proxy does not serve (a DNS-rebinding page) gets 421, and a client that sends
nothing is dropped without starving anyone else. Upstreams are small recording HTTP servers, plus a
real ``agl store`` for the port-injection and rebinding cases.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support import REPO
from tests.support.env import trainer_env
from tests.support.pipeline import StoreServer, agl_store
from tests.support.requirements import require
from trainer.serving.store_dashboard import ReadOnlyProxy
from trainer.testing import closed_port

IO_TIMEOUT = 5.0  # no socket read in these tests may wait longer


class Upstream:
    """A loopback HTTP server that records every request it gets and answers 200 with CORS open."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str | None]] = []  # (request target, Host)
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                upstream.requests.append((self.path, self.headers.get("Host")))
                body = b"upstream says hello"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Access-Control-Allow-Origin", "*")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Upstream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` on a fresh connection and read until the proxy closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def status_of(response: bytes) -> int:
    assert response, "the proxy closed the connection without an answer"
    return int(response.split(b" ", 2)[1])


def get(port: int, target: str, host: str | None = None, extra: str = "") -> bytes:
    """A raw GET of ``target`` (``Host`` default: the proxy's own 127.0.0.1:port)."""
    host_line = "" if host is None and extra else f"Host: {host or f'127.0.0.1:{port}'}\r\n"
    return exchange(port, f"GET {target} HTTP/1.1\r\n{host_line}{extra}Connection: close\r\n\r\n".encode("latin-1"))


@pytest.fixture
def victim() -> Iterator[Upstream]:
    """A server on the store's host that the proxy must never reach."""
    with Upstream() as server:
        yield server


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with Upstream() as server:
        yield server


@pytest.mark.parametrize(
    "target",
    [
        ":{victim}/secret",  # once: http://127.0.0.1 + :PORT/secret, any port of the store host
        "0/x",  # once: http://store:4747 + 0/x is port 47470 (and 127.0.0.1 + 0/x is 127.0.0.10)
        ".evil/x",  # once: an invalid URL, and the connection dropped with a traceback
        "@127.0.0.1:{victim}/secret",  # userinfo: the store's host becomes a user name
        "http://127.0.0.1:{victim}/secret",  # absolute-form
        "127.0.0.1:{victim}",  # authority-form
        "*",  # asterisk-form
        "/caf\xe9",  # raw non-ASCII byte
        "/x#fragment",
    ],
)
def test_a_target_that_is_not_a_path_is_a_400_and_reaches_nothing(
    target: str, victim: Upstream, upstream: Upstream
) -> None:
    for store_url in ("http://127.0.0.1", upstream.url):  # with and without a port in STORE_URL
        with ReadOnlyProxy(store_url) as proxy:
            response = get(proxy.port, target.format(victim=victim.port))
        assert status_of(response) == 400, (store_url, response[:200])
        assert b"origin-form" in response
    assert victim.requests == [] and upstream.requests == []


def test_paths_and_queries_reach_the_configured_origin_only(victim: Upstream, upstream: Upstream) -> None:
    targets = ["/", "/v1/agl/rollouts?limit=5&status_in=running", f"//127.0.0.1:{victim.port}/secret",
               "/assets/a%20b.js?v={1}|[2]"]  # fmt: skip
    with ReadOnlyProxy(upstream.url) as proxy:
        responses = [get(proxy.port, target) for target in targets]
    for response in responses:
        assert status_of(response) == 200 and response.endswith(b"upstream says hello")
        assert b"access-control-" not in response.lower()  # same-origin dashboard: CORS never leaves
    # http.server (proxy and upstream alike) folds leading slashes into one: "//host/x" is a path.
    expected = ["/" + target.lstrip("/") for target in targets]
    assert upstream.requests == [(target, f"127.0.0.1:{upstream.port}") for target in expected]
    assert victim.requests == []


def test_a_store_url_with_a_path_prefixes_every_target(upstream: Upstream) -> None:
    with ReadOnlyProxy(upstream.url + "/store/") as proxy:
        assert status_of(get(proxy.port, "/v1/agl/health?x=1")) == 200
    assert upstream.requests == [("/store/v1/agl/health?x=1", f"127.0.0.1:{upstream.port}")]


@pytest.mark.parametrize("url", ["http://127.0.0.1:1?x=1", "http://u:p@127.0.0.1:1", "http://127.0.0.1:port"])
def test_an_upstream_url_with_more_than_an_origin_and_path_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="upstream"):
        ReadOnlyProxy(url)


def test_only_the_hosts_the_proxy_serves_are_answered(upstream: Upstream) -> None:
    with ReadOnlyProxy(upstream.url, allowed_hosts=["localhost:14747", "dash.internal"]) as proxy:
        port = proxy.port
        served = [f"127.0.0.1:{port}", f"localhost:{port}", f"LocalHost:{port}", f"[::1]:{port}",
                  "localhost:14747", f"dash.internal:{port}"]  # fmt: skip
        foreign = ["rebind.attacker.example", f"rebind.attacker.example:{port}", f"localhost:{port + 1}",
                   f"127.0.0.1.attacker.example:{port}", "localhost", "dash.internal:14747",
                   f"localhost:{port}@attacker.example", "127.0.0.1:99999999"]  # fmt: skip
        for host in served:
            assert status_of(get(port, "/", host)) == 200, host
        for host in foreign:
            response = get(port, "/", host)
            assert status_of(response) == 421, host
            assert b"does not serve Host" in response
        # No Host, or two of them: a malformed HTTP/1.1 request.
        assert status_of(get(port, "/", extra="Accept: */*\r\n")) == 400
        two = f"Host: 127.0.0.1:{port}\r\nHost: rebind.attacker.example\r\n"
        assert status_of(exchange(port, f"GET / HTTP/1.1\r\n{two}Connection: close\r\n\r\n".encode())) == 400
    assert len(upstream.requests) == len(served)


def test_a_bad_allowed_host_is_refused() -> None:
    with pytest.raises(ValueError, match="allowed host must be HOST"):
        ReadOnlyProxy("http://127.0.0.1:1", allowed_hosts=["http://localhost:4747/"])


def test_idle_and_half_sent_requests_time_out_without_blocking_others(upstream: Upstream) -> None:
    with ReadOnlyProxy(upstream.url, idle_timeout=1.0) as proxy:
        idle = socket.create_connection(("127.0.0.1", proxy.port), timeout=IO_TIMEOUT)
        half = socket.create_connection(("127.0.0.1", proxy.port), timeout=IO_TIMEOUT)
        try:
            half.sendall(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{proxy.port}\r\n".encode())  # no blank line
            started = time.monotonic()
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open(proxy.url + "/", timeout=IO_TIMEOUT) as resp:
                assert resp.status == 200
            assert time.monotonic() - started < 2
            for sock in (idle, half):  # both dropped after ~1 s; recv gives b"" (closed), not a timeout
                assert sock.recv(1024) == b""
            assert time.monotonic() - started < 4
        finally:
            idle.close()
            half.close()


# --- a real store --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreServer]:
    with agl_store(tmp_path_factory.mktemp("store")) as server:
        yield server


def test_a_port_in_the_target_does_not_reach_the_store(store: StoreServer) -> None:
    store_port = urllib.parse.urlsplit(store.url).port
    # STORE_URL without a port: concatenating the target once put the store's port in it.
    with ReadOnlyProxy("http://127.0.0.1") as proxy:
        response = get(proxy.port, f":{store_port}/v1/agl/rollouts")
    assert status_of(response) == 400 and b"items" not in response


def test_a_rebinding_page_cannot_read_the_store(store: StoreServer) -> None:
    with ReadOnlyProxy(store.url) as proxy:
        assert b'"items"' in get(proxy.port, "/v1/agl/rollouts", f"localhost:{proxy.port}")
        response = get(proxy.port, "/v1/agl/rollouts", f"rebind.attacker.example:{proxy.port}")
    assert status_of(response) == 421 and b"items" not in response


def test_compose_serves_the_host_port_the_dashboard_is_published_on(upstream: Upstream) -> None:
    require("compose")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "GF_")) and not k.endswith("_PORT")}
    proc = subprocess.run(
        ["docker", "compose", "--project-directory", str(REPO), "-f", str(REPO / "compose.yaml"),
         "--env-file", "/dev/null", "config", "--format", "json"],
        capture_output=True, text=True, timeout=60, env={**env, "STORE_DASHBOARD_PORT": "14747"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    service = json.loads(proc.stdout)["services"]["store-dashboard"]
    assert [int(p["published"]) for p in service["ports"]] == [14747]
    command = service["command"]
    allowed = [command[i + 1] for i, arg in enumerate(command) if arg == "--allowed-host"]
    assert allowed == ["localhost:14747", "127.0.0.1:14747"]
    # What the browser on the host sends reaches the store; the container's own port still works
    # for the healthcheck (127.0.0.1:4747 inside), and nothing else does.
    with ReadOnlyProxy(upstream.url, allowed_hosts=allowed) as proxy:
        assert status_of(get(proxy.port, "/", "localhost:14747")) == 200
        assert status_of(get(proxy.port, "/", "rebind.attacker.example:14747")) == 421


def test_cli_names_a_bad_allowed_host(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "trainer", "store-dashboard", "--store-url", f"http://127.0.0.1:{closed_port()}",
         "--port", "0", "--allowed-host", "http://x/"],
        env=trainer_env(), capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "allowed host must be HOST[:PORT]" in proc.stderr
