"""What a person sees: the store's dashboard, opened in a real browser through the read-only proxy.

A real ``agl store`` holds rollouts as a training leaves them (enqueued against a prompt resource,
dequeued by a runner, a reward span, then succeeded or failed; one val rollout still running). The
store is served through ``ReadOnlyProxy`` and its rollouts page is loaded in headless Chromium
(Debian's ``chromium`` package). The test reads the rendered table: each rollout's id, status,
attempt, prompt resources, mode, input and worker, none of which is in the page's HTML, so the
dashboard's scripts ran and fetched them through the proxy. The proxy's own request log shows that
the browser only read, and the store's rollouts and attempts are the same after the page load.

Why ``--dump-dom`` and not the DevTools protocol, chromedriver or playwright: it needs nothing but
the browser (no new Python dependency, no driver process to keep in step with the browser), and
it proved reliable for this single-page app: ``--virtual-time-budget`` lets the browser run the
scripts and their fetches (virtual time waits for pending fetches) before it prints the DOM.
Should the table not be there yet on a loaded machine, the page is loaded again with a longer
budget, a bounded number of times.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

import pytest

from tests.support.net import http_get
from tests.support.pipeline import StoreServer, agl_store
from tests.support.store import store_client
from trainer.serving.store_dashboard import ReadOnlyProxy

pytestmark = pytest.mark.browser

PAGE = "/rollouts"  # the dashboard's router sends "/" there too
PAGE_TITLE = "Agent-lightning Dashboard"
WORKER = "runner-0"
# Virtual time (ms) granted per load; a later load only when the table was not rendered yet.
BUDGETS_MS = (10_000, 20_000, 40_000)
LOAD_TIMEOUT = 90.0  # wall seconds per browser run
# No connection but the page's: the closed network refuses Chromium's own background traffic.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # root in a container
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-proxy-server",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=2560,1440",  # the table drops its last columns (worker, heartbeat...) when narrower
)


@dataclass(frozen=True)
class Expected:
    """One rollout as the dashboard should show it."""

    rollout_id: str
    attempt_id: str
    resources_id: str
    status: str  # the label the dashboard shows
    mode: str
    input: dict[str, Any]


async def _fill(store_url: str) -> list[Expected]:
    """Rollouts as a training leaves them: enqueued, dequeued by a runner, spans, then an end status."""
    import agentlightning as agl
    from opentelemetry.sdk.trace import TracerProvider

    client = store_client(store_url)
    tracer = TracerProvider().get_tracer("tests.dashboard")  # ended spans only, exported nowhere
    expected: list[Expected] = []
    # (question, mode, reward, end status); None: the runner is still at it (its first span arrived)
    plan: list[tuple[str, str, float | None, str | None]] = [
        ("2 + 3?", "train", 1.0, "succeeded"),
        ("7 x 6?", "train", 0.0, "succeeded"),
        ("9 - 4?", "train", None, "failed"),
        ("8 / 2?", "val", None, None),
    ]
    try:
        update = await client.add_resources(
            {"prompt_template": agl.PromptTemplate(template="Solve: {question}", engine="f-string")}
        )
        for question, mode, reward, status in plan:
            task = {"question": question}  # one-word keys: the dashboard shows snake_case keys camelCased
            await client.enqueue_rollout(input=task, mode=mode, resources_id=update.resources_id)
            attempted = await client.dequeue_rollout(worker_id=WORKER)
            assert attempted is not None and attempted.input == task
            ids = (attempted.rollout_id, attempted.attempt.attempt_id)
            step = tracer.start_span("agent.step")
            step.end()
            await client.add_otel_span(*ids, step)
            if reward is not None:
                core = agl.emit_reward(reward, propagate=False)  # the attributes of a reward span
                span = tracer.start_span(core.name, attributes=dict(core.attributes))
                span.end()
                await client.add_otel_span(*ids, span)
            if status is not None:
                await client.update_attempt(*ids, status=status)
            assert agl.find_final_reward(list(await client.query_spans(attempted.rollout_id))) == reward
            label = (status or "running").capitalize()
            expected.append(Expected(*ids, update.resources_id, label, mode, task))
    finally:
        await client.close()
    return expected


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium")
    assert path is not None  # the `browser` marker's requirement
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[StoreServer, list[Expected]]]:
    with agl_store(tmp_path_factory.mktemp("store")) as server:
        rollouts = asyncio.run(_fill(server.url))
        yield server, rollouts


class _Rows(HTMLParser):
    """The text pieces of every table row of a document."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.title = ""
        self._in_row = False
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
            self._in_row = True
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr":
            self._in_row = False
        if tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        text = " ".join(data.split())
        if self._in_title:
            self.title += text
        if self._in_row and text:
            self.rows[-1].append(text)


def _rows(dom: str) -> _Rows:
    parser = _Rows()
    parser.feed(dom)
    parser.close()
    return parser


def dump_dom(chromium: str, url: str, budget_ms: int) -> str:
    """The DOM of ``url`` after ``budget_ms`` of virtual time, from a fresh profile."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        argv = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}"]
        # Own session: its renderer and helper processes go with it, found by its PID alone.
        proc = subprocess.Popen(
            [*argv, "--dump-dom", url],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        try:
            out, err = proc.communicate(timeout=LOAD_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate(timeout=10)
            raise AssertionError(
                f"chromium did not finish within {LOAD_TIMEOUT:.0f} s:\n{err.decode()[-2000:]}"
            ) from None
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, f"chromium exited with {proc.returncode}:\n{err.decode()[-2000:]}"
    return out.decode()


def _store_state(store_url: str) -> tuple[Any, dict[str, Any]]:
    """Every rollout and every attempt, as the store's API returns them."""
    rollouts = json.loads(http_get(f"{store_url}/v1/agl/rollouts"))
    attempts = {
        r["rollout_id"]: json.loads(http_get(f"{store_url}/v1/agl/rollouts/{r['rollout_id']}/attempts"))
        for r in rollouts["items"]
    }
    return rollouts, attempts


def _proxy_requests(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, int]]:
    """(method, path, status) of every request the proxy answered, from its request log."""
    seen = []
    for record in caplog.records:
        if record.name != "trainer.serving.store_dashboard" or not isinstance(record.args, tuple):
            continue
        args = [str(a) for a in record.args]
        # BaseHTTPRequestHandler.log_request: client, '"%s" %s %s' % (request line, code, size)
        if len(args) == 4 and args[1].count(" ") == 2 and args[2].isdigit():
            method, path, _ = args[1].split(" ")
            seen.append((method, path, int(args[2])))
    return seen


def test_dashboard_in_a_browser_lists_the_rollouts_read_only(
    chromium: str, store: tuple[StoreServer, list[Expected]], caplog: pytest.LogCaptureFixture
) -> None:
    server, expected = store
    before = _store_state(server.url)
    caplog.set_level(logging.DEBUG, logger="trainer.serving.store_dashboard")
    with ReadOnlyProxy(server.url) as proxy:
        html = http_get(proxy.url + PAGE).decode()
        assert "<html" in html.lower() and not any(r.rollout_id in html for r in expected)  # only scripts know them
        caplog.clear()  # from here on, the proxy's log holds the browser's requests only
        for budget in BUDGETS_MS:
            dom = dump_dom(chromium, proxy.url + PAGE, budget)
            page = _rows(dom)
            rows = [row for row in page.rows if row and row[0].startswith("ro-")]
            if len(rows) >= len(expected):
                break
    assert rows, f"no rollout rows after {len(BUDGETS_MS)} loads; page text: {' '.join(dom.split())[-1500:]}"
    assert page.title == PAGE_TITLE
    assert sorted(row[0] for row in rows) == sorted(r.rollout_id for r in expected)  # each once, no other
    header = next(row for row in page.rows if "Rollout" in row)
    assert header[-1] == "Actions" and {"Attempt", "Input", "Status", "Resources", "Mode", "Worker"} <= set(header)
    for rollout in expected:
        row = next(row for row in rows if row[0] == rollout.rollout_id)
        # One text per cell, "—" for an empty one; the actions column is icons only.
        assert len(row) == len(header) - 1, (header, row)
        cells = dict(zip(header, row, strict=False))
        assert cells["Status"] == rollout.status, cells
        assert cells["Mode"] == rollout.mode, cells
        assert cells["Attempt"] == rollout.attempt_id, cells
        assert cells["Resources"] == rollout.resources_id, cells
        assert json.loads(cells["Input"]) == rollout.input, cells
        assert cells["Worker"] == WORKER, cells

    requests = _proxy_requests(caplog)
    assert ("GET", PAGE, 200) in requests, f"the browser's page request is not in the proxy's log: {requests}"
    paths = [urllib.parse.urlsplit(path).path for _, path, _ in requests]
    assert any(p.startswith("/assets/") and p.endswith(".js") for p in paths), requests
    assert "/v1/agl/rollouts" in paths, requests  # the table's data came through the proxy
    assert {method for method, _, _ in requests} == {"GET"}, requests
    assert all(status != 405 for _, _, status in requests), requests
    assert _store_state(server.url) == before  # the page load changed nothing in the store
