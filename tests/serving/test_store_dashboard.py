"""The read-only door to a real ``agl store``: the dashboard and reads pass, writes never do."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

import pytest

from tests.support.env import trainer_env
from tests.support.pipeline import StoreServer, agl_store
from tests.support.store import store_statistics
from trainer.serving.store_dashboard import ReadOnlyProxy
from trainer.testing import closed_port

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def request(url: str, method: str = "GET", body: bytes | None = None) -> tuple[int, Message, bytes]:
    """Status, headers (names case-insensitive) and body; an HTTP error status is a result too."""
    req = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": "application/json"})
    try:
        with OPENER.open(req, timeout=10) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreServer]:
    with agl_store(tmp_path_factory.mktemp("store")) as server:
        yield server


@pytest.fixture
def proxy(store: StoreServer) -> Iterator[ReadOnlyProxy]:
    with ReadOnlyProxy(store.url) as running:
        yield running


def test_dashboard_and_reads_pass(proxy: ReadOnlyProxy, store: StoreServer) -> None:
    status, headers, body = request(proxy.url + "/")
    assert status == 200 and b"<html" in body.lower()
    assert str(headers["Content-Type"]).startswith("text/html")
    asset = next(
        part.split('"')[0] for part in body.decode().split('src="')[1:] if part.startswith("/assets/")
    )  # the dashboard's script
    status, _, script = request(proxy.url + asset)
    assert status == 200 and len(script) > 1000
    for path in ("/v1/agl/health", "/v1/agl/rollouts", "/v1/agl/workers", "/v1/agl/statistics"):
        status, _, body = request(proxy.url + path)
        direct = request(store.url + path)
        assert status == direct[0] == 200, path
        if path != "/v1/agl/statistics":  # statistics count requests, so two reads differ
            assert json.loads(body) == json.loads(direct[2]), path


def test_writes_are_refused_and_never_reach_the_store(proxy: ReadOnlyProxy, store: StoreServer) -> None:
    before = store_statistics(store.url)["total_rollouts"]
    enqueue = json.dumps({"input": {"question": "1 + 1?"}}).encode()
    for method, path in [
        ("POST", "/v1/agl/queues/rollouts/enqueue"),
        ("POST", "/v1/agl/rollouts"),
        ("POST", "/v1/agl/resources"),
        ("POST", "/v1/traces"),
        ("PUT", "/v1/agl/rollouts"),
        ("PATCH", "/v1/agl/rollouts/x"),
        ("DELETE", "/v1/agl/rollouts/x"),
        ("HEAD", "/v1/agl/rollouts"),
    ]:
        status, headers, body = request(proxy.url + path, method=method, body=enqueue)
        assert status == 405, (method, path, status)
        assert headers["Allow"] == "GET"
        assert method == "HEAD" or b"read-only" in body
    assert store_statistics(store.url)["total_rollouts"] == before


def test_store_errors_pass_through_and_a_dead_store_is_a_502() -> None:
    dead = f"http://127.0.0.1:{closed_port()}"
    with ReadOnlyProxy(dead) as proxy:
        status, _, body = request(proxy.url + "/v1/agl/rollouts")
    assert status == 502
    assert dead.encode() in body and b"unreachable" in body


def test_missing_path_is_the_stores_own_404(proxy: ReadOnlyProxy) -> None:
    status, _, _ = request(proxy.url + "/v1/agl/no-such-thing")
    assert status == 404


def test_upstream_must_be_a_url() -> None:
    with pytest.raises(ValueError, match="upstream must be an http"):
        ReadOnlyProxy("store:4747")


def test_cli_without_store_url_names_the_setting(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "trainer", "store-dashboard"],
        env=trainer_env(), capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "needs STORE_URL (--store-url)" in " ".join(proc.stderr.split())
