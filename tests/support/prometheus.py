"""A real Prometheus (Debian's ``/usr/bin/prometheus``) scraping loopback targets, for tests.

It runs ``prometheus/prometheus.yml`` with each job's targets replaced by the loopback
``host:port`` addresses a test gives (everything else identical: intervals, metrics paths, job
names), on a free loopback port with its TSDB in a temporary directory:

    with prometheus({"store": [store_hostport], "collector": [...]}) as prom:
        prom.wait_for_scrape("store")
        prom.query('sum(rate(agl_http_total[1m]))')   # -> the result list of /api/v1/query

A job the test gives no targets for keeps its scrape config but scrapes nothing (an empty target
list: no DNS lookups of compose host names); the ``prometheus`` job scrapes this server itself.

Install the binary with ``apt-get install -y --no-install-recommends prometheus`` (Debian 12:
Prometheus 2.42, ``/usr/bin/prometheus`` and ``/usr/bin/promtool``). Without it tests skip with a
message, or fail when ``CI`` is set. The package's own service is never used.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from tests.support import REPO
from tests.support.net import free_port
from tests.support.pipeline import HOST, ManagedProcess
from tests.support.requirements import require
from tests.support.waiting import wait_until

PROMETHEUS_BIN = Path(os.environ.get("PROMETHEUS_BIN", "/usr/bin/prometheus"))
PROMTOOL_BIN = Path(os.environ.get("PROMTOOL_BIN", "/usr/bin/promtool"))
PROMETHEUS_CONFIG = REPO / "prometheus" / "prometheus.yml"
INSTALL_HINT = "apt-get update && apt-get install -y --no-install-recommends prometheus"

START_TIMEOUT = 30.0
START_ATTEMPTS = 3
SCRAPE_TIMEOUT = 60.0  # first scrape ~5 s after start; a few intervals of slack
SELF_JOB = "prometheus"


class PromQLError(RuntimeError):
    """Prometheus refused an expression (bad syntax, bad function...); the message is its error text."""


def render_config(
    targets: Mapping[str, Sequence[str]], source: Path = PROMETHEUS_CONFIG, self_address: str | None = None
) -> dict[str, Any]:
    """``source`` with each job's targets replaced by ``targets[job]`` (an empty list for jobs not given).

    The ``prometheus`` job scrapes ``self_address`` unless ``targets`` names it. Only the
    ``targets`` of ``static_configs`` change (their ``labels`` are kept); a job with another kind of
    service discovery, or a job name in ``targets`` that the file lacks, raises ``ValueError``.
    """
    config = yaml.safe_load(source.read_text())
    out = copy.deepcopy(config)
    wanted = dict(targets)
    if self_address is not None:
        wanted.setdefault(SELF_JOB, [self_address])
    jobs = [sc["job_name"] for sc in out.get("scrape_configs") or []]
    unknown = sorted(set(wanted) - set(jobs))
    if unknown:
        raise ValueError(f"no such job in {source}: {', '.join(unknown)} (jobs: {', '.join(jobs)})")
    for scrape in out.get("scrape_configs") or []:
        other_sd = [k for k in scrape if k.endswith("_sd_configs")]
        if other_sd:
            raise ValueError(f"job {scrape['job_name']}: only static_configs can be retargeted, not {other_sd}")
        static = scrape.get("static_configs") or [{}]
        labels = static[0].get("labels")
        new_static: dict[str, Any] = {"targets": list(wanted.get(scrape["job_name"], []))}
        if labels:
            new_static["labels"] = labels
        scrape["static_configs"] = [new_static]
    return dict(out)


def _parse_time(text: str) -> float:
    """RFC 3339 with up to nanoseconds (as the targets API writes it) -> epoch seconds."""
    m = re.match(r"^(.*T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", text)
    if m is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    frac = (m.group(2) or ".0")[:7]
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    return datetime.fromisoformat(f"{m.group(1)}{frac}{zone}").timestamp()


class PrometheusServer(ManagedProcess):
    """``/usr/bin/prometheus`` on a free loopback port, config and TSDB under ``work_dir``."""

    def __init__(self, work_dir: Path, targets: Mapping[str, Sequence[str]], source: Path = PROMETHEUS_CONFIG) -> None:
        self.port = free_port(HOST)
        self.address = f"{HOST}:{self.port}"
        self.url = f"http://{self.address}"
        self.config_path = work_dir / "prometheus.yml"
        self.data_dir = work_dir / "data"
        self.config = render_config(targets, source, self_address=self.address)
        self.config_path.write_text(
            f"# Generated from {source} by tests/support/prometheus.py: only targets differ.\n"
            + yaml.safe_dump(self.config, sort_keys=False)
        )
        argv = [
            str(PROMETHEUS_BIN),
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.data_dir}",
            f"--web.listen-address={self.address}",
            "--storage.tsdb.retention.time=1d",
            "--enable-feature=exemplar-storage",  # as compose.yaml: reward -> trace exemplars
            "--log.level=warn",
        ]
        super().__init__("prometheus", argv, dict(os.environ), work_dir / "prometheus.log", f"{self.url}/-/ready",
                         START_TIMEOUT)  # fmt: skip

    # ------------------------------------------------------------------ HTTP API

    def _api(self, path: str, params: Mapping[str, str] | None = None, timeout: float = 30.0) -> Any:
        url = f"{self.url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                body = json.loads(resp.read())
        except urllib.error.HTTPError as exc:  # 400 bad_data / 422 execution: JSON with the error text
            try:
                body = json.loads(exc.read())
            except ValueError:
                raise PromQLError(f"HTTP {exc.code} from {path}") from exc
        if body.get("status") != "success":
            raise PromQLError(f"{body.get('errorType', 'error')}: {body.get('error', body)}")
        return body.get("data")

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query; the ``result`` list (a scalar or string result becomes one unlabelled item).

        Raises ``PromQLError`` with Prometheus' error text for an invalid expression.
        """
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self._api("/api/v1/query", params)
        result = data.get("result")
        if data.get("resultType") in ("scalar", "string"):
            return [{"metric": {}, "value": result}]
        return list(result or [])

    def query_range(self, expr: str, start: float, end: float, step: float = 5.0) -> list[dict[str, Any]]:
        """Range query (what a Grafana time series panel sends); the ``result`` list of series."""
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        return list(self._api("/api/v1/query_range", params).get("result") or [])

    def exemplars(self, expr: str, start: float, end: float) -> list[dict[str, Any]]:
        """``/api/v1/query_exemplars``: [{seriesLabels, exemplars: [{labels, value, timestamp}]}]."""
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}"}
        return list(self._api("/api/v1/query_exemplars", params) or [])

    def targets(self, job: str) -> list[dict[str, Any]]:
        """The active targets of ``job`` (``health``, ``lastScrape``, ``lastError``, ``scrapeUrl``...)."""
        data = self._api("/api/v1/targets", {"state": "active"})
        return [t for t in data.get("activeTargets") or [] if t.get("scrapePool") == job]

    def wait_for_scrape(self, job: str, after: float | None = None, timeout: float = SCRAPE_TIMEOUT) -> float:
        """Wait until every target of ``job`` is up with a scrape (later than epoch ``after``, if given).

        Returns the oldest of those scrapes' times (epoch seconds), so a second call with
        ``after=<that>`` waits for the next round of scrapes. Raises ``TimeoutError`` naming the
        targets' last errors.
        """
        last: list[dict[str, Any]] = []

        def scraped() -> bool:
            nonlocal last
            last = self.targets(job)
            if not last:
                return False
            for t in last:
                stamp = t.get("lastScrape") or ""
                if t.get("health") != "up" or stamp.startswith("0001-"):
                    return False
                if after is not None and _parse_time(stamp) <= after:
                    return False
            return True

        try:
            wait_until(scraped, timeout, interval=0.5, what=f"scrape of job {job!r}")
        except TimeoutError as exc:
            detail = "; ".join(
                f"{t.get('scrapeUrl')}: health={t.get('health')} lastScrape={t.get('lastScrape')} "
                f"lastError={t.get('lastError')!r}"
                for t in last
            )
            raise TimeoutError(f"{exc} ({detail or 'no active targets'})\n{self.log_tail()}") from None
        return min(_parse_time(t["lastScrape"]) for t in last)

    def metric_names(self, job: str | None = None) -> list[str]:
        """Every metric name stored (of one job), from the label values API."""
        params = {"match[]": f'{{job="{job}"}}'} if job else None
        return sorted(self._api("/api/v1/label/__name__/values", params) or [])


@contextlib.contextmanager
def prometheus(
    targets: Mapping[str, Sequence[str]], work_dir: Path | None = None, source: Path = PROMETHEUS_CONFIG
) -> Iterator[PrometheusServer]:
    """A running Prometheus scraping ``targets`` ({job: ["127.0.0.1:port", ...]}); stopped on exit.

    Skips (or fails in CI) when the binary is missing. Retries on fresh ports if another process
    took the chosen one between ``free_port`` and the bind.
    """
    require("prometheus")
    with contextlib.ExitStack() as stack:
        if work_dir is None:
            work_dir = Path(tempfile.mkdtemp(prefix="prometheus-"))
            stack.callback(shutil.rmtree, work_dir, True)
        work_dir.mkdir(parents=True, exist_ok=True)
        server: PrometheusServer | None = None
        for attempt in range(START_ATTEMPTS):
            server = PrometheusServer(work_dir, targets, source)
            server.start()
            try:
                server.wait_ready()
                break
            except RuntimeError:
                server.stop()
                if attempt == START_ATTEMPTS - 1 or not server.port_conflict():
                    raise
                shutil.rmtree(server.data_dir, ignore_errors=True)
        assert server is not None
        stack.callback(server.stop)
        yield server


def hostport(url: str) -> str:
    """``http://127.0.0.1:1234/metrics`` -> ``127.0.0.1:1234`` (a scrape target)."""
    parsed = urllib.parse.urlsplit(url)
    if not parsed.hostname or not parsed.port:
        raise ValueError(f"no host:port in {url!r}")
    return f"{parsed.hostname}:{parsed.port}"


def wait_for_data(server: PrometheusServer, expr: str, timeout: float = SCRAPE_TIMEOUT) -> list[dict[str, Any]]:
    """Poll ``expr`` until it returns at least one sample; bounded by ``timeout``."""
    result: list[dict[str, Any]] = []

    def has_data() -> bool:
        nonlocal result
        result = server.query(expr)
        return bool(result)

    wait_until(has_data, timeout, interval=1.0, what=f"data for {expr!r}")
    return result
