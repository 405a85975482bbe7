"""Prometheus config and Grafana dashboards, checked against a real Prometheus scraping the real pipeline.

- ``promtool check config`` (Debian's Prometheus 2.42) accepts ``prometheus/prometheus.yml``;
- every dashboard parses, has a uid, and uses only datasource uids that the provisioning defines;
- EVERY PromQL expression of every panel target and templating variable is accepted by a real
  Prometheus that runs ``prometheus/prometheus.yml`` (targets moved to loopback) against the real
  store, collector and Jaeger (``tests.support.pipeline``) while spans of rollout shape flow through the
  collector: every target of the agent-spans and pipeline dashboards must return data, and the
  Jaeger panels must find traces;
- the training dashboard's expressions are run against a fake trainer that pushes the agreed
  ``apo_*`` metrics (names, labels and types from the metrics contract, not trainer code) through
  the collector, the way a training sends them.
  ``training_panel_exprs()`` lists them with ``must_have_data`` for a test that scrapes a REAL
  training and asserts the data.

Grafana itself cannot run here (no image, no package): its part is checked structurally.
"""

from __future__ import annotations

import asyncio
import configparser
import contextlib
import json
import math
import re
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry import trace as trace_api
from opentelemetry.trace import Status, StatusCode

from tests.support import REPO
from tests.support.net import http_get
from tests.support.pipeline import ATTEMPT_ATTR, ROLLOUT_ATTR, Pipeline, SpanSender, pipeline
from tests.support.prometheus import (
    PROMETHEUS_CONFIG,
    PROMTOOL_BIN,
    PrometheusServer,
    hostport,
    prometheus,
    render_config,
)
from tests.support.store import store_client
from trainer.telemetry import metric_contract as mc

pytestmark = pytest.mark.slow

GRAFANA = REPO / "grafana"
DASHBOARD_DIR = GRAFANA / "dashboards"
DATASOURCES_FILE = GRAFANA / "provisioning" / "datasources" / "datasources.yaml"
PROVIDERS_FILE = GRAFANA / "provisioning" / "dashboards" / "dashboards.yaml"
GRAFANA_INI = GRAFANA / "grafana.ini"

SERVICE = "apo-trainer"
ROLLOUT_FAILURES = ("llm_error", "timeout", "bad_template")  # trainer.status of a failed rollout
TRAINING_DASHBOARD = "training.json"
DATA_DASHBOARDS = ("agent-spans.json", "pipeline.json")  # every target must return data
DATA_TIMEOUT = 150.0  # span metrics flush every 15 s, scrapes every 5 s, rates need two scrapes
TRAFFIC_MAX_SECONDS = 600.0  # hard bound of the background traffic, whatever the tests do

# Grafana's built-in variables, as a test substitutes them. Any other variable becomes `.*`
# (dashboards use variables only inside =~ / !~ matchers, checked below).
GRAFANA_BUILTINS = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__interval_ms": "15000",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}
_VAR_RE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]|\$(\w+)")
_REGEX_MATCHER_RE = re.compile(r'(=~|!~)\s*"(?:[^"\\]|\\.)*"')


# --------------------------------------------------------------------------- reading dashboards


def load_dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard JSON, by file name."""
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARD_DIR.glob("*.json"))}


def iter_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Panels, including those nested in (collapsed) rows; rows themselves too."""
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels") or [])


def ds_uid(ref: Any) -> str | None:
    """A datasource reference's uid: ``{"type", "uid"}`` objects, or a bare string (legacy name/uid)."""
    if isinstance(ref, dict):
        uid = ref.get("uid")
        return str(uid) if uid is not None else None
    return str(ref) if isinstance(ref, str) else None


@dataclass(frozen=True)
class Query:
    """One query of a dashboard: a panel target or a templating variable's query."""

    dashboard: str  # title
    panel: str  # panel title, or "variable <name>"
    ref_id: str
    datasource: str | None  # uid
    target: dict[str, Any]
    variable: bool = False

    @property
    def raw_expr(self) -> str:
        """The PromQL as written in the dashboard (variables not substituted)."""
        if self.variable:
            q = self.target.get("query")
            return str(q.get("query") if isinstance(q, dict) else q or self.target.get("definition") or "")
        return str(self.target.get("expr") or "")

    def promql(self) -> str:
        expr = substitute(self.raw_expr)
        return variable_promql(expr) if self.variable else expr


def dashboard_queries(board: dict[str, Any]) -> list[Query]:
    title = str(board.get("title"))
    queries: list[Query] = []
    for panel in iter_panels(board.get("panels") or []):
        for target in panel.get("targets") or []:
            uid = ds_uid(target.get("datasource")) or ds_uid(panel.get("datasource"))
            queries.append(Query(title, str(panel.get("title")), str(target.get("refId")), uid, target))
    for var in (board.get("templating") or {}).get("list") or []:
        if var.get("type") == "query":
            queries.append(
                Query(title, f"variable {var.get('name')}", "var", ds_uid(var.get("datasource")), var, variable=True)
            )
    return queries


def custom_variables(board: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(v["name"]): v for v in (board.get("templating") or {}).get("list") or []}


def substitute(expr: str, values: dict[str, str] | None = None) -> str:
    """Grafana variables -> test values: built-ins per ``GRAFANA_BUILTINS``, others ``values`` or ``.*``."""
    values = values or {}

    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name in GRAFANA_BUILTINS:
            return GRAFANA_BUILTINS[name]
        return values.get(name, ".*")

    return _VAR_RE.sub(repl, expr)


def variable_promql(query: str) -> str:
    """A Prometheus variable query as PromQL with the same selector (Grafana's functions translated)."""
    query = query.strip()
    m = re.fullmatch(r"label_values\((.*)\)", query, re.S)
    if m:
        args = m.group(1)
        if "," in args:
            selector, label = args.rsplit(",", 1)
            return f"group by ({label.strip()}) ({selector.strip()})"
        label = args.strip()
        return f'group by ({label}) ({{{label}=~".+"}})'
    m = re.fullmatch(r"query_result\((.*)\)", query, re.S)
    if m:
        return m.group(1)
    m = re.fullmatch(r"metrics\((.*)\)", query, re.S)
    if m:
        return f'group by (__name__) ({{__name__=~"{m.group(1).strip()}"}})'
    return query


def prom_queries(names: tuple[str, ...] | None = None) -> list[Query]:
    boards = load_dashboards()
    return [
        q
        for name, board in boards.items()
        if names is None or name in names
        for q in dashboard_queries(board)
        if q.datasource == "prometheus"
    ]


# --------------------------------------------------------------------------- training dashboard

# (panel title, refId) of training-dashboard targets that may legitimately be empty after a
# complete tiny APO training, with the reason. Everything else must have data then.
TRAINING_MAY_BE_EMPTY: dict[tuple[str, str], str] = {}


def training_panel_exprs() -> list[tuple[str, str, str, bool]]:
    """[(dashboard title, panel title, PromQL with variables substituted, must_have_data)] of the training dashboard.

    For a test that scrapes a real (tiny, complete) training: every expression must be valid, and
    those with ``must_have_data`` must return at least one sample once the trainer's final values
    were scraped. Grafana's ``$__rate_interval`` becomes ``1m``: query within a minute or so of the
    training's end (rates over a window with no new samples are 0, still data).
    """
    board = load_dashboards()[TRAINING_DASHBOARD]
    out = []
    for q in dashboard_queries(board):
        if q.datasource != "prometheus":
            continue
        out.append((q.dashboard, q.panel, q.promql(), (q.panel, q.ref_id) not in TRAINING_MAY_BE_EMPTY))
    return out


def training_panels_without_data(query: Callable[[str], list[dict[str, Any]]]) -> list[str]:
    """Runs every training-dashboard expression through ``query`` (which raises on an invalid one) and
    names those that must have data but returned no finite sample."""
    return [
        f"{dashboard} / {panel}: {expr}"
        for dashboard, panel, expr, must_have_data in training_panel_exprs()
        if not _has_finite(query(expr)) and must_have_data
    ]


class SpecTrainer:
    """Pushes the contract's ``apo_*`` metrics (``trainer/telemetry/metric_contract.py``) with moving values
    to the collector at ``otlp_url``, every second, as a training pushes its own.

    Not the trainer's metrics code: a stand-in so the training dashboard is checked against the
    metric contract here; a test with a real training checks it against the real thing.
    """

    def __init__(self, otlp_url: str) -> None:
        from prometheus_client import CollectorRegistry

        from trainer.telemetry.metrics_push import otlp_metrics_pusher

        r = self.registry = CollectorRegistry()
        self.reward = mc.ROLLOUT_REWARD.register(r)
        self.rollouts = mc.ROLLOUTS.register(r)
        self.cache_hits = mc.ROLLOUT_CACHE_HITS.register(r)
        self.duration = mc.ROLLOUT_DURATION.register(r)
        self.tokens = mc.LLM_TOKENS.register(r)
        self.llm_duration = mc.LLM_REQUEST_DURATION.register(r)
        self.round = mc.ROUND_NUMBER.register(r)
        self.rounds_planned = mc.ROUNDS_PLANNED.register(r)
        self.candidate = mc.CANDIDATE_VAL_SCORE.register(r)
        self.seed = mc.SEED_VAL_SCORE.register(r)
        self.best = mc.BEST_VAL_SCORE.register(r)
        self.best_info = mc.BEST_PROMPT_INFO.register(r)
        self.candidates = mc.CANDIDATES.register(r)
        self.candidates_proposed = mc.CANDIDATES_PROPOSED.register(r)
        self.failed_branches = mc.OPTIMIZER_FAILED_BRANCHES.register(r)
        self.test_score = mc.TEST_SCORE.register(r)
        self.run_info = mc.RUN_INFO.register(r)
        self.round.set(1)
        self.rounds_planned.set(2)
        self.seed.set(0.25)
        self.candidate.labels(prompt_version="v0", round="0", change="seed").set(0.25)
        self.candidate.labels(prompt_version="v1", round="1", change="instruction").set(0.4)
        self.candidate.labels(prompt_version="v2", round="1", change="examples").set(0.0)
        self.best.set(0.4)
        self.best_info.labels(prompt_version="v1").set(1)
        self.candidates.labels(outcome="evaluated").inc(1)
        self.candidates.labels(outcome="rejected").inc(1)
        self.candidates_proposed.labels(change="instruction").inc(1)
        self.candidates_proposed.labels(change="examples").inc(1)
        self.test_score.labels(prompt="seed").set(0.2)
        self.test_score.labels(prompt="best").set(0.35)
        self.run_info.labels(
            run_id="spec-run", algorithm="apo", agent_model="m", gradient_model="m", edit_model="m", dataset="gen"
        ).set(1)
        self.step_count = 0
        self.step()
        self.pusher = otlp_metrics_pusher(r, otlp_url, 1000, "spec-run")

    def step(self) -> None:
        """One more rollout of each split and one optimizer call: every rate moves."""
        self.step_count += 1
        for split in mc.SPLIT.values:
            self.reward.labels(split=split, prompt_version="v1").observe(float(self.step_count % 2))
            self.rollouts.labels(split=split, outcome="ok" if self.step_count % 3 else "llm_error").inc()
            self.cache_hits.labels(split=split).inc(self.step_count % 2)
            self.duration.labels(split=split).observe(0.4 + 0.1 * (self.step_count % 5))
        for role in mc.ROLE.values:
            self.tokens.labels(role=role, model="m", kind="input").inc(100)
            self.tokens.labels(role=role, model="m", kind="output").inc(20)
            self.llm_duration.labels(role=role, model="m").observe(0.3)

    def close(self) -> None:
        self.pusher.shutdown()


# --------------------------------------------------------------------------- traffic


class Traffic:
    """Rollout-shaped spans through the collector, finished rollouts in the store, Jaeger queries.

    Per second: one rollout started in the store and its trace (``math_rollout`` ->
    ``math_solver.arun`` (AGENT) -> ``OpenAILike.ainvoke`` (LLM) and a ``calculator`` tool span;
    every third one failed, cycling through the failure statuses, an ``llm_error`` with an ERROR
    LLM span), a span without rollout id (dropped by filter/store), the
    rollout of three iterations ago finished, a Jaeger search. Runs until stopped or
    ``TRAFFIC_MAX_SECONDS``.
    """

    def __init__(self, services: Pipeline, trainer: SpecTrainer) -> None:
        self.services = services
        self.trainer = trainer
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.iterations = 0
        self.thread = threading.Thread(target=self._run, name="dashboard-traffic", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=60)

    def _run(self) -> None:
        try:
            asyncio.run(self._loop())
        except BaseException as exc:  # reported by the tests that need the traffic
            self.error = exc

    def _trace(self, sender: SpanSender, rollout_id: str, attempt_id: str, status: str) -> None:
        tracer = sender.tracer
        ids = {ROLLOUT_ATTR: rollout_id, ATTEMPT_ATTR: attempt_id}
        # As trainer/training/rollout.py: the rollout's outcome is the root's `trainer.status` attribute.
        root = tracer.start_span("math_rollout", attributes={**ids, "trainer.status": status, "trainer.reward": 0.0})
        root_ctx = trace_api.set_span_in_context(root)
        agent = tracer.start_span(
            "math_solver.arun", context=root_ctx, attributes={**ids, "openinference.span.kind": "AGENT"}
        )
        agent_ctx = trace_api.set_span_in_context(agent)
        tool = tracer.start_span("calculator", context=agent_ctx, attributes={**ids, "openinference.span.kind": "TOOL"})
        tool.end()
        llm = tracer.start_span(
            "OpenAILike.ainvoke", context=agent_ctx, attributes={**ids, "openinference.span.kind": "LLM"}
        )
        if status == "llm_error":
            llm.set_status(Status(StatusCode.ERROR, "llm_error"))
        llm.end()
        agent.end()
        root.end()
        # No rollout id: Jaeger and span metrics get it, filter/store drops it.
        tracer.start_span("unattributed").end()

    async def _loop(self) -> None:
        client = store_client(self.services.store_url)
        sender = SpanSender(self.services.otlp_http_url, SERVICE)
        open_rollouts: list[tuple[str, str]] = []
        deadline = time.monotonic() + TRAFFIC_MAX_SECONDS
        query = self.services.jaeger_query_url
        try:
            while not self.stop_event.is_set() and time.monotonic() < deadline:
                i = self.iterations
                rollout = await client.start_rollout(input={"dashboards": i}, mode="val" if i % 2 else "train")
                ref = (rollout.rollout_id, rollout.attempt.attempt_id)
                status = ROLLOUT_FAILURES[(i // 3) % len(ROLLOUT_FAILURES)] if i % 3 == 2 else "ok"
                self._trace(sender, *ref, status)
                open_rollouts.append(ref)
                if len(open_rollouts) > 3:  # its spans are long delivered
                    rid, aid = open_rollouts.pop(0)
                    await client.update_attempt(rid, aid, status="failed" if i % 4 == 0 else "succeeded")
                params = urllib.parse.urlencode({"service": SERVICE, "operation": "math_rollout", "limit": "5"})
                await asyncio.to_thread(http_get, f"{query}/api/traces?{params}", 10.0)
                self.trainer.step()
                self.iterations += 1
                await asyncio.to_thread(self.stop_event.wait, 1.0)
        finally:
            sender.close()
            await client.close()


@dataclass
class Observed:
    services: Pipeline
    prom: PrometheusServer
    trainer: SpecTrainer
    traffic: Traffic

    def check_traffic(self) -> None:
        if self.traffic.error is not None:
            raise AssertionError(f"background traffic failed: {self.traffic.error!r}") from self.traffic.error


@pytest.fixture(scope="module")
def observed() -> Iterator[Observed]:
    """Real store + Jaeger + collector + spec trainer, a real Prometheus scraping them all, traffic flowing."""
    with contextlib.ExitStack() as stack:
        services = stack.enter_context(pipeline())
        trainer = SpecTrainer(services.otlp_http_url)
        stack.callback(trainer.close)
        targets = {
            "trainer": [hostport(services.trainer_metrics_url)],
            "store": [hostport(services.store_metrics_url)],
            "collector": [hostport(services.telemetry_url)],
            "collector-spanmetrics": [hostport(services.prometheus_url)],
            "jaeger": [hostport(services.jaeger.metrics_url)],
        }
        prom = stack.enter_context(prometheus(targets))
        traffic = Traffic(services, trainer)
        traffic.start()
        stack.callback(traffic.stop)
        for job in [*targets, "prometheus"]:
            prom.wait_for_scrape(job)
        yield Observed(services, prom, trainer, traffic)


def _has_finite(result: list[dict[str, Any]]) -> bool:
    for item in result:
        value = item.get("value") or [None, "NaN"]
        with contextlib.suppress(TypeError, ValueError):
            if math.isfinite(float(value[1])):
                return True
    return False


def _wait_all_have_data(prom: PrometheusServer, exprs: dict[str, str], timeout: float) -> dict[str, str]:
    """Poll until each expression returns a finite sample; returns {label: expr} of those that never did."""
    missing = dict(exprs)
    deadline = time.monotonic() + timeout
    while missing and time.monotonic() < deadline:
        for label, expr in list(missing.items()):
            if _has_finite(prom.query(expr)):
                del missing[label]
        if missing:
            time.sleep(2.0)
    return missing


# --------------------------------------------------------------------------- config files


@pytest.mark.prometheus
def test_promtool_accepts_the_prometheus_config() -> None:
    proc = subprocess.run(
        [str(PROMTOOL_BIN), "check", "config", str(PROMETHEUS_CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_prometheus_config_jobs_and_interval() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert config["global"]["scrape_interval"] == "5s"
    jobs = {sc["job_name"]: sc for sc in config["scrape_configs"]}
    expected = {
        "trainer": ["collector:8890"],
        "store": ["store:4747"],
        "collector": ["collector:8888"],
        "collector-spanmetrics": ["collector:8889"],
        "jaeger": ["jaeger:8888"],
        "prometheus": ["localhost:9090"],
    }
    assert {name: sc["static_configs"][0]["targets"] for name, sc in jobs.items()} == expected
    assert jobs["store"]["metrics_path"] == "/v1/prometheus/"


def test_rendered_test_config_only_moves_targets() -> None:
    source = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    rendered = render_config({"store": ["127.0.0.1:1"]}, self_address="127.0.0.1:2")
    assert rendered["global"] == source["global"]
    for before, after in zip(source["scrape_configs"], rendered["scrape_configs"], strict=True):
        assert {k: v for k, v in before.items() if k != "static_configs"} == {
            k: v for k, v in after.items() if k != "static_configs"
        }
    targets = {sc["job_name"]: sc["static_configs"][0]["targets"] for sc in rendered["scrape_configs"]}
    assert targets["store"] == ["127.0.0.1:1"]
    assert targets["prometheus"] == ["127.0.0.1:2"]
    assert targets["trainer"] == []  # not given: scrapes nothing, no DNS lookup of compose names
    with pytest.raises(ValueError, match="no such job"):
        render_config({"nope": ["127.0.0.1:3"]})


def test_datasource_provisioning() -> None:
    data = yaml.safe_load(DATASOURCES_FILE.read_text())
    by_uid = {ds["uid"]: ds for ds in data["datasources"]}
    assert set(by_uid) == {"prometheus", "jaeger"}
    assert by_uid["prometheus"]["type"] == "prometheus"
    assert by_uid["prometheus"]["url"] == "http://prometheus:9090"
    assert by_uid["jaeger"]["type"] == "jaeger"
    assert by_uid["jaeger"]["url"] == "http://jaeger:16686"
    assert [uid for uid, ds in by_uid.items() if ds.get("isDefault")] == ["prometheus"]
    for dest in by_uid["prometheus"].get("jsonData", {}).get("exemplarTraceIdDestinations", []):
        assert dest["datasourceUid"] in by_uid


def test_dashboard_provider_and_grafana_ini() -> None:
    providers = yaml.safe_load(PROVIDERS_FILE.read_text())["providers"]
    assert len(providers) == 1
    assert providers[0]["type"] == "file"
    assert providers[0]["folder"] == "APO"
    assert providers[0]["options"]["path"] == "/var/lib/grafana/dashboards"

    ini = configparser.ConfigParser(inline_comment_prefixes=None)
    ini.read_string(GRAFANA_INI.read_text())
    assert ini.getboolean("auth.anonymous", "enabled")
    assert ini.get("auth.anonymous", "org_role") == "Viewer"
    # The password comes from GF_SECURITY_ADMIN_PASSWORD (compose), never from this file.
    assert not ini.has_option("security", "admin_password")
    home = ini.get("dashboards", "default_home_dashboard_path")
    assert (DASHBOARD_DIR / Path(home).name).is_file()


def test_dashboards_parse_with_uids_and_known_datasources() -> None:
    known = {ds["uid"] for ds in yaml.safe_load(DATASOURCES_FILE.read_text())["datasources"]}
    boards = load_dashboards()
    assert {"training.json", "agent-spans.json", "pipeline.json"} <= set(boards)
    uids = [b.get("uid") for b in boards.values()]
    assert all(isinstance(u, str) and 0 < len(u) <= 40 for u in uids), uids
    assert len(set(uids)) == len(uids), uids
    problems = []
    for name, board in boards.items():
        assert isinstance(board.get("schemaVersion"), int) and board["schemaVersion"] >= 36, name
        panels = list(iter_panels(board.get("panels") or []))
        ids = [p.get("id") for p in panels]
        assert len(set(ids)) == len(ids), f"{name}: duplicate panel ids"
        for panel in panels:
            where = f"{name} / {panel.get('title')!r}"
            if "gridPos" not in panel:
                problems.append(f"{where}: no gridPos")
            refs = [panel.get("datasource"), *[t.get("datasource") for t in panel.get("targets") or []]]
            for link in (panel.get("fieldConfig") or {}).get("defaults", {}).get("links") or []:
                if "internal" in link:
                    refs.append({"uid": link["internal"].get("datasourceUid")})
            for ref in refs:
                uid = ds_uid(ref)
                if ref is not None and uid not in known:
                    problems.append(f"{where}: unknown datasource {ref!r}")
            if panel.get("type") != "row" and not panel.get("targets"):
                problems.append(f"{where}: no targets")
        for var in (board.get("templating") or {}).get("list") or []:
            if "datasource" in var and ds_uid(var["datasource"]) not in known:
                problems.append(f"{name} / variable {var.get('name')}: unknown datasource {var['datasource']!r}")
    assert not problems, "\n".join(problems)


def test_variables_are_only_used_in_regex_matchers() -> None:
    """Tests substitute ``.*`` for a variable: right only inside ``=~``/``!~`` (also right for "All")."""
    problems = []
    for board in load_dashboards().values():
        custom = set(custom_variables(board))
        for q in dashboard_queries(board):
            if q.datasource != "prometheus":
                continue
            outside = _REGEX_MATCHER_RE.sub("", q.raw_expr)
            for m in _VAR_RE.finditer(outside):
                name = m.group(1) or m.group(2) or m.group(3)
                if name in custom:
                    problems.append(f"{q.dashboard} / {q.panel} {q.ref_id}: ${name} outside =~/!~: {q.raw_expr}")
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------- against Prometheus


@pytest.mark.otelcol
@pytest.mark.prometheus
def test_every_dashboard_expression_is_valid(observed: Observed) -> None:
    queries = prom_queries()
    assert len(queries) > 50
    errors = []
    for q in queries:
        try:
            observed.prom.query(q.promql())
        except Exception as exc:
            errors.append(f"{q.dashboard} / {q.panel} {q.ref_id}: {exc}\n    {q.promql()}")
    assert not errors, "\n".join(errors)


@pytest.mark.otelcol
@pytest.mark.prometheus
def test_every_agent_span_and_pipeline_panel_returns_data(observed: Observed) -> None:
    exprs = {f"{q.dashboard} / {q.panel} {q.ref_id}": q.promql() for q in prom_queries(DATA_DASHBOARDS)}
    missing = _wait_all_have_data(observed.prom, exprs, DATA_TIMEOUT)
    observed.check_traffic()
    assert not missing, "no data (or only NaN) for:\n" + "\n".join(f"{k}\n    {v}" for k, v in missing.items())


def _jaeger_find(query_url: str, params: dict[str, str], timeout: float = 60.0) -> list[Any]:
    """Traces of a Jaeger search (the query API the UI and Grafana's datasource use), polled until found."""
    url = f"{query_url}/api/traces?{urllib.parse.urlencode(params)}"
    deadline = time.monotonic() + timeout
    while True:
        traces: list[Any] = json.loads(http_get(url, timeout=30)).get("data") or []
        if traces or time.monotonic() >= deadline:
            return traces
        time.sleep(1.0)


@pytest.mark.otelcol
@pytest.mark.prometheus
def test_jaeger_panels_find_traces(observed: Observed) -> None:
    boards = load_dashboards()
    checked = 0
    for name in DATA_DASHBOARDS:
        board = boards[name]
        current = {n: str((v.get("current") or {}).get("value")) for n, v in custom_variables(board).items()}
        for q in dashboard_queries(board):
            if q.datasource != "jaeger":
                continue
            t = q.target
            assert t.get("queryType") == "search", q
            params = {"service": substitute(str(t["service"]), current), "limit": str(t.get("limit", 20))}
            if t.get("operation"):
                params["operation"] = substitute(str(t["operation"]), current)
            if t.get("tags"):  # Grafana's logfmt "k=v k2=v2" -> the API's JSON object
                tags = substitute(str(t["tags"]), current)
                params["tags"] = json.dumps(dict(kv.split("=", 1) for kv in tags.split()))
            traces = _jaeger_find(observed.services.jaeger_query_url, params)
            assert traces, f"{q.dashboard} / {q.panel}: no traces for {params}"
            checked += 1
    assert checked >= 2


@pytest.mark.otelcol
@pytest.mark.prometheus
def test_jaeger_links_find_traces(observed: Observed) -> None:
    """Every link to the Jaeger UI's search, run as the same search on the real Jaeger's API."""
    field_labels = {"__field.labels.service_name": SERVICE, "__field.labels.span_name": "math_solver.arun"}
    links: dict[str, str] = {}
    for name in DATA_DASHBOARDS:
        board = load_dashboards()[name]
        current = {n: str((v.get("current") or {}).get("value")) for n, v in custom_variables(board).items()}
        for panel in iter_panels(board.get("panels") or []):
            data_links = (panel.get("fieldConfig") or {}).get("defaults", {}).get("links") or []
            for link in [*(panel.get("links") or []), *data_links]:
                url = str(link.get("url") or "")
                if "/search?" not in url:
                    continue
                url = re.sub(r"\$\{(__field\.labels\.\w+)\}", lambda m: field_labels[m.group(1)], url)
                links[f"{name} / {panel['title']} / {link['title']}"] = substitute(url, current)
    assert len(links) >= 5
    for label, url in links.items():
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
        assert query.get("service") == SERVICE, label
        assert _jaeger_find(observed.services.jaeger_query_url, query), f"{label}: no traces for {query}"


@pytest.mark.otelcol
@pytest.mark.prometheus
def test_training_dashboard_expressions_against_the_metric_contract(observed: Observed) -> None:
    rows = training_panel_exprs()
    assert rows and {r[0] for r in rows} == {"APO training"}
    for _dash, _panel, expr, _must in rows:
        observed.prom.query(expr)  # raises PromQLError with Prometheus' message if invalid
    needed = {f"{panel}: {expr}": expr for _dash, panel, expr, must in rows if must}
    missing = _wait_all_have_data(observed.prom, needed, DATA_TIMEOUT)
    observed.check_traffic()
    assert not missing, "no data from the spec trainer for:\n" + "\n".join(missing)
