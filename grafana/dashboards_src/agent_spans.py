"""The "APO agent spans" dashboard: rate, errors and latency of every span, from the collector's span metrics.

Four groups of spans get the same three panels (rate and errors, latency, error share), so they are
one function over a span-name matcher. The outcomes a failed rollout's root span carries in
``trainer.status`` are the rollout outcomes of the metric contract: the links and the variable
that pick one are made from that list.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import dashboard as dm

from trainer.telemetry import metric_contract as mc
from trainer.telemetry.spans import ROLLOUT_SPAN_NAME

from .common import (
    JAEGER_UI,
    PROMETHEUS,
    RANGE,
    RATE,
    SERVICE,
    Links,
    PanelBuilder,
    dashboard,
    fixed_color,
    jaeger_table,
    link,
    numbered,
    prom,
    section,
    stat_panel,
    timeseries_panel,
)
from .jaeger import JaegerExploreLink, JaegerSearch

CALLS = "traces_span_metrics_calls_total"
DURATION_BUCKET = "traces_span_metrics_duration_milliseconds_bucket"
ERROR = 'status_code="STATUS_CODE_ERROR"'
BY_SPAN = "service_name, span_name"
ROLLOUT_SPAN = ROLLOUT_SPAN_NAME
FAILURES = tuple(outcome for outcome in mc.ROLLOUT_OUTCOME.values if outcome != "ok")
SEARCH = f"{JAEGER_UI}/search?service=${{service}}"


@dataclass(frozen=True)
class SpanGroup:
    row: str
    title: str  # panel titles start with it
    noun: str  # "rollout root spans": what the descriptions say the panels count
    matcher: str  # the span_name matcher of the group's series
    links: Sequence[db.DashboardLink]


def _failure_links() -> list[db.DashboardLink]:
    return [
        link(
            f"Jaeger: rollouts with trainer.status={status}",
            f"{SEARCH}&operation={ROLLOUT_SPAN}&tags={_quoted_tags({'trainer.status': status})}&limit=20",
        )
        for status in FAILURES
    ]


def _quoted_tags(tags: dict[str, str]) -> str:
    """Jaeger UI's ``tags`` search parameter: a URL-encoded JSON object."""
    return urllib.parse.quote(json.dumps(tags, separators=(",", ":")), safe="")


def _groups() -> list[SpanGroup]:
    agent, llm = r".+\.a?run", r".+\.a?invoke(_stream)?"
    others = "tool spans (named after the tool function) and any other span"
    return [
        SpanGroup(
            f"Rollouts ({ROLLOUT_SPAN})",
            "Rollouts",
            "rollout root spans",
            f"span_name=`{ROLLOUT_SPAN}`",
            [link(f"Jaeger: {ROLLOUT_SPAN}", f"{SEARCH}&operation={ROLLOUT_SPAN}&limit=20"), *_failure_links()],
        ),
        SpanGroup(
            "Agent runs (<agent>.run / .arun, OpenInference AGENT)",
            "Agent runs",
            "agent spans",
            f"span_name=~`{agent}`",
            [link("Jaeger: traces of agent spans", f"{SEARCH}&limit=20")],
        ),
        SpanGroup(
            "LLM calls (<Model>.invoke / .ainvoke, OpenInference LLM)",
            "LLM calls",
            "LLM spans",
            f"span_name=~`{llm}`",
            [link("Jaeger: traces of LLM spans", f"{SEARCH}&limit=20")],
        ),
        SpanGroup(
            "Tools and other spans",
            "Tools and other spans",
            others,
            f"span_name!~`{ROLLOUT_SPAN}|{agent}|{llm}`",
            [link(f"Jaeger: traces of {others}", f"{SEARCH}&limit=20")],
        ),
    ]


def _calls(matcher: str, *extra: str) -> str:
    selector = ", ".join(['service_name=~"$service"', matcher, *extra])
    return f"{CALLS}{{{selector}}}"


def _rate(matcher: str, *extra: str) -> str:
    return f"sum by ({BY_SPAN}) (rate({_calls(matcher, *extra)}{RATE}))"


def _error_rate(matcher: str) -> str:
    """Errors/s, and 0 for series without errors (the span metrics have no ERROR series until one fails)."""
    return f"({_rate(matcher, ERROR)} or {_rate(matcher)} * 0)"


def _latency(q: float, matcher: str) -> str:
    bucket = f'{DURATION_BUCKET}{{service_name=~"$service", {matcher}}}'
    return f"histogram_quantile({q}, sum by (le, {BY_SPAN}) (rate({bucket}{RATE})))"


def _span_data_links() -> Links:
    """On every span series: its traces in the Jaeger UI, and the same search in Explore."""
    service, span = "${__field.labels.service_name}", "${__field.labels.span_name}"
    return [
        link(f"Jaeger UI: traces of {span}", f"{JAEGER_UI}/search?service={service}&operation={span}&limit=20"),
        JaegerExploreLink(f"Explore: {span} in the Jaeger datasource", service, span),
    ]


def _span_rate_panel(group: SpanGroup) -> PanelBuilder:
    return timeseries_panel(
        f"{group.title}: spans/s and errors/s",
        f"Rate of {group.noun} and of those with status ERROR, by span name.",
        "ops",
        [prom(_rate(group.matcher), "{{span_name}}"), prom(_error_rate(group.matcher), "{{span_name}} errors")],
        size=(9, 7),
        overrides=[(".* errors$", [fixed_color("red")])],
        links=group.links,
        data_links=_span_data_links(),
    )


def _span_latency_panel(group: SpanGroup) -> PanelBuilder:
    return timeseries_panel(
        f"{group.title}: latency p50 / p95",
        f"Duration of {group.noun}, by span name.",
        "ms",
        [
            prom(_latency(0.5, group.matcher), "p50 {{span_name}}"),
            prom(_latency(0.95, group.matcher), "p95 {{span_name}}"),
        ],
        size=(9, 7),
        links=group.links,
        data_links=_span_data_links(),
    )


def _error_share_panel(group: SpanGroup) -> PanelBuilder:
    errors = f"sum(increase({_calls(group.matcher, ERROR)}{RANGE}))"
    expr = f"({errors} or vector(0)) / sum(increase({_calls(group.matcher)}{RANGE}))"
    return stat_panel(
        f"{group.title}: error share",
        f"Share of {group.noun} with status ERROR over the dashboard's time range.",
        "percentunit",
        [prom(expr, "error share", instant=True)],
        size=(6, 7),
        steps=((None, "green"), (0.01, "orange"), (0.1, "red")),
        decimals=1,
        links=group.links,
    )


def _all_spans() -> list[PanelBuilder]:
    spans = 'span_name=~"$span_name"'
    return [
        timeseries_panel(
            "Span rate by span name",
            "Spans per second by span name. Click a series for its traces in Jaeger.",
            "ops",
            [prom(_rate(spans), "{{span_name}}")],
            size=(12, 8),
            links=[link("Jaeger: all traces of $service", f"{SEARCH}&limit=20")],
            data_links=_span_data_links(),
        ),
        timeseries_panel(
            "Error share by span name",
            "Share of spans with status ERROR, by span name (0 when there were none).",
            "percentunit",
            [prom(f"{_error_rate(spans)} / {_rate(spans)}", "{{span_name}}")],
            size=(12, 8),
            max_value=1,
            links=_failure_links(),
            data_links=_span_data_links(),
        ),
        *(
            timeseries_panel(
                f"Latency p{round(q * 100)} by span name",
                description,
                "ms",
                [prom(_latency(q, spans), "{{span_name}}")],
                size=(12, 8),
                data_links=_span_data_links(),
            )
            for q, description in (
                (0.5, "Median span duration by span name."),
                (0.95, "95th percentile span duration by span name."),
            )
        ),
    ]


def _recent_traces() -> list[PanelBuilder]:
    return [
        jaeger_table(
            "Recent rollout traces",
            "The latest rollout traces of $service. Click a trace id to open it.",
            JaegerSearch("$service", ROLLOUT_SPAN),
            size=(12, 8),
        ),
        jaeger_table(
            "Recent failed rollouts ($rollout_status)",
            "The latest rollouts of $service whose root span has trainer.status = $rollout_status "
            "(pick the status above).",
            JaegerSearch("$service", ROLLOUT_SPAN).tags("trainer.status=$rollout_status"),
            size=(12, 8),
        ),
    ]


def _label_values_variable(name: str, label: str, query: str) -> db.QueryVariable:
    return (
        db.QueryVariable(name)
        .label(label)
        .datasource(PROMETHEUS)
        .query({"qryType": 1, "query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"})
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .regex("")
        .hide(dm.VariableHide.DONT_HIDE)
        .options([])
    )


def _variables() -> list[cogbuilder.Builder[dm.VariableModel]]:
    service = (
        _label_values_variable("service", "Service", f"label_values({CALLS}, service_name)")
        .current(dm.VariableOption(selected=True, text=SERVICE, value=SERVICE))
        .include_all(False)
        .multi(False)
    )
    span_name = (
        _label_values_variable(
            "span_name", "Span name", f'label_values({CALLS}{{service_name=~"$service"}}, span_name)'
        )
        .current(dm.VariableOption(selected=True, text=["All"], value=["$__all"]))
        .include_all(True)
        .all_value(".*")
        .multi(True)
    )
    status = (
        db.CustomVariable("rollout_status")
        .label("Failed rollout status (Jaeger panel)")
        .values(",".join(FAILURES))
        .current(dm.VariableOption(selected=True, text=FAILURES[0], value=FAILURES[0]))
        .options([dm.VariableOption(selected=i == 0, text=s, value=s) for i, s in enumerate(FAILURES)])
        .include_all(False)
        .multi(False)
        .hide(dm.VariableHide.DONT_HIDE)
    )
    return [service, span_name, status]


def build() -> dm.Dashboard:
    board = dashboard(
        "apo-agent-spans",
        "APO agent spans",
        "Rate, errors and latency of rollout, agent, LLM and tool spans (collector span metrics), "
        "with links to the traces in Jaeger.",
    ).variables(_variables())
    section(board, "All spans of $service (span metrics from the collector's span_metrics connector)", _all_spans())
    for group in _groups():
        section(board, group.row, [_span_rate_panel(group), _span_latency_panel(group), _error_share_panel(group)])
    section(board, "Recent traces (Jaeger)", _recent_traces())
    return numbered(board)
