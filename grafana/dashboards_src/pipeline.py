"""The "APO telemetry pipeline" dashboard: spans through the collector into the store and Jaeger.

The metrics are the collector's, the Agent Lightning store's and Jaeger's own, so the PromQL is
written out here as Prometheus will run it; only the repeated shapes (a summed rate, a quantile)
are helpers.
"""

from __future__ import annotations

from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from .common import (
    RANGE,
    RATE,
    Override,
    PanelBuilder,
    dashboard,
    dashed,
    fixed_color,
    numbered,
    prom,
    prop,
    section,
    stat_panel,
    timeseries_panel,
)

COLLECTOR = 'job="collector"'
STORE = 'job="store"'
JAEGER = 'job="jaeger"'
NOT_SCRAPES = 'path!="/v1/prometheus/"'  # Prometheus reading the store's metrics is not store traffic
PUBLIC_METHODS = 'method!~"_.*"'


def _rate(by: str, selector: str) -> str:
    """``sum by (by) (rate(selector[$__rate_interval]))``; ``by=""`` sums everything."""
    summed = f"sum by ({by}) " if by else "sum"
    return f"{summed}(rate({selector}{RATE}))"


def _quantile(q: float, by: str, bucket_selector: str) -> str:
    return f"histogram_quantile({q}, sum by (le{', ' + by if by else ''}) (rate({bucket_selector}{RATE})))"


def _in_red(regexp: str) -> Override:
    return (regexp, [fixed_color("red")])


def _on_right_axis(regexp: str, unit: str) -> Override:
    """A second series of another unit (a latency beside a rate) on its own axis."""
    return (regexp, [prop("unit", unit), prop("custom.axisPlacement", "right")])


def _receiving() -> list[PanelBuilder]:
    spans = "receiver, transport"
    return [
        timeseries_panel(
            "Spans received per receiver",
            "Spans the collector's OTLP receiver accepted, refused (memory limiter: senders retry) and failed, "
            "per transport.",
            "ops",
            [
                prom(
                    _rate(spans, f"otelcol_receiver_{kind}_spans{{{COLLECTOR}}}"),
                    f"{kind} {{{{receiver}}}}/{{{{transport}}}}",
                )
                for kind in ("accepted", "refused", "failed")
            ],
            size=(16, 8),
            overrides=[_in_red("^(refused|failed) .*")],
        ),
        stat_panel(
            "Spans refused or failed at the receiver",
            "Over the dashboard's time range. Refused spans are retried by the sender; nonzero means the "
            "collector was near its memory limit.",
            "short",
            [
                prom(
                    f"sum(increase(otelcol_receiver_refused_spans{{{COLLECTOR}}}{RANGE})) "
                    f"+ sum(increase(otelcol_receiver_failed_spans{{{COLLECTOR}}}{RANGE}))",
                    "refused + failed",
                    instant=True,
                )
            ],
            size=(8, 8),
            steps=((None, "green"), (1, "red")),
            decimals=0,
        ),
    ]


def _exporting() -> list[PanelBuilder]:
    sent = _rate("exporter", f"otelcol_exporter_sent_spans{{{COLLECTOR}}}")
    traces = f'{COLLECTOR}, data_type="traces"'
    filter_store = f'{COLLECTOR}, processor="filter/store", otel_signal="traces"'
    return [
        timeseries_panel(
            "Spans sent per exporter",
            "Spans delivered to the Agent Lightning store (otlp_http/store) and Jaeger (otlp_grpc/jaeger).",
            "ops",
            [prom(sent, "{{exporter}}")],
            size=(12, 8),
        ),
        timeseries_panel(
            "Send and enqueue failures per exporter",
            "Spans an exporter gave up on after its retries, and spans dropped because its sending queue was "
            "full (0 when none: the collector only exposes these after a first failure).",
            "ops",
            [
                prom(
                    f"{_rate('exporter', f'otelcol_exporter_send_failed_spans{{{COLLECTOR}}}')} or {sent} * 0",
                    "send failed {{exporter}}",
                ),
                prom(
                    f"{_rate('exporter', f'otelcol_exporter_enqueue_failed_spans{{{COLLECTOR}}}')} or {sent} * 0",
                    "queue full {{exporter}}",
                ),
            ],
            size=(12, 8),
        ),
        timeseries_panel(
            "Exporter sending queue",
            "Batches waiting in each exporter's sending queue, and the queue's capacity. A growing queue means "
            "a sink is slow or down (retries hold the data).",
            "short",
            [
                prom(f"max by (exporter) (otelcol_exporter_queue_size{{{traces}}})", "{{exporter}}"),
                prom(f"max by (exporter) (otelcol_exporter_queue_capacity{{{traces}}})", "capacity {{exporter}}"),
            ],
            size=(12, 8),
            overrides=[("^capacity .*", [dashed(), prop("custom.fillOpacity", 0)])],
        ),
        timeseries_panel(
            "filter/store: spans in, out and dropped",
            "The store only accepts spans naming a rollout: filter/store drops the others before "
            "otlp_http/store (Jaeger still gets every span).",
            "ops",
            [
                prom(_rate("", f"otelcol_processor_incoming_items{{{filter_store}}}"), "in"),
                prom(_rate("", f"otelcol_processor_outgoing_items{{{filter_store}}}"), "out"),
                prom(_rate("filter", f"otelcol_processor_filter_spans_filtered{{{COLLECTOR}}}"), "dropped"),
            ],
            size=(12, 8),
        ),
        timeseries_panel(
            "Collector memory",
            "Resident memory and Go heap of the collector (the memory_limiter refuses data at 80% of the "
            "container's limit).",
            "bytes",
            [
                prom(f"max(otelcol_process_memory_rss{{{COLLECTOR}}})", "RSS"),
                prom(f"max(otelcol_process_runtime_heap_alloc_bytes{{{COLLECTOR}}})", "heap"),
            ],
            size=(12, 8),
        ),
        timeseries_panel(
            "Collector CPU",
            "CPU seconds per second used by the collector.",
            "percentunit",
            [prom(f"rate(otelcol_process_cpu_seconds{{{COLLECTOR}}}{RATE})", "CPU")],
            size=(12, 8),
        ),
    ]


def _store() -> list[PanelBuilder]:
    api = f"{STORE}, {NOT_SCRAPES}"
    otlp = f'{STORE}, path="/v1/traces"'
    methods = f"{STORE}, {PUBLIC_METHODS}"
    return [
        timeseries_panel(
            "Store HTTP requests/s by path",
            "Requests to the store's REST API and OTLP endpoint, by method and path template (Prometheus' own "
            "scrapes of /v1/prometheus/ left out).",
            "reqps",
            [prom(_rate("method, path", f"agl_http_total{{{api}}}"), "{{method}} {{path}}")],
            size=(12, 8),
        ),
        timeseries_panel(
            "Store HTTP responses/s by status",
            "Responses by HTTP status (500 on /v1/traces: a batch named an unknown rollout).",
            "reqps",
            [prom(_rate("status", f"agl_http_total{{{STORE}}}"), "{{status}}")],
            size=(12, 8),
            overrides=[_in_red("^[45]..$")],
        ),
        timeseries_panel(
            "Store HTTP latency p50 / p95 by path",
            "Request latency of the store's API, by path template (scrapes left out).",
            "s",
            [
                prom(
                    _quantile(q, "method, path", f"agl_http_latency_bucket{{{api}}}"),
                    f"{p} {{{{method}}}} {{{{path}}}}",
                )
                for q, p in ((0.5, "p50"), (0.95, "p95"))
            ],
            size=(12, 8),
        ),
        timeseries_panel(
            "OTLP into the store (POST /v1/traces)",
            "Span batches the collector posts to the store, by status, and their p95 latency (right axis).",
            "reqps",
            [
                prom(_rate("status", f"agl_http_total{{{otlp}}}"), "requests {{status}}"),
                prom(_quantile(0.95, "", f"agl_http_latency_bucket{{{otlp}}}"), "p95 latency"),
            ],
            size=(12, 8),
            overrides=[_on_right_axis("^p95 latency$", "s")],
        ),
        timeseries_panel(
            "Store operations/s by method",
            "Calls of the store's public methods (start_rollout, add_many_spans, query_spans, ...).",
            "ops",
            [prom(_rate("method", f"agl_store_total{{{methods}}}"), "{{method}}")],
            size=(12, 8),
        ),
        timeseries_panel(
            "Store operation latency p95 by method",
            "95th percentile duration of the store's public methods.",
            "s",
            [prom(_quantile(0.95, "method", f"agl_store_latency_bucket{{{methods}}}"), "{{method}}")],
            size=(12, 8),
        ),
        timeseries_panel(
            "Rollouts finished in the store",
            "Rollouts reaching a final status per second, by status and mode, and their p95 duration (right axis).",
            "ops",
            [
                prom(_rate("status, mode", f"agl_rollouts_total{{{STORE}}}"), "{{status}} {{mode}}"),
                prom(_quantile(0.95, "", f"agl_rollouts_duration_bucket{{{STORE}}}"), "p95 duration"),
            ],
            size=(24, 8),
            overrides=[_on_right_axis("^p95 duration$", "s")],
        ),
    ]


def _jaeger() -> list[PanelBuilder]:
    received = f"otelcol_receiver_accepted_spans_total{{{JAEGER}}}"
    return [
        timeseries_panel(
            "Jaeger ingestion",
            "Spans Jaeger's OTLP receiver accepted or refused, and spans its storage exporter wrote or failed "
            "to write.",
            "ops",
            [
                prom(_rate("receiver, transport", received), "accepted {{receiver}}/{{transport}}"),
                prom(
                    _rate("receiver, transport", f"otelcol_receiver_refused_spans_total{{{JAEGER}}}"),
                    "refused {{receiver}}/{{transport}}",
                ),
                prom(_rate("exporter", f"otelcol_exporter_sent_spans_total{{{JAEGER}}}"), "stored ({{exporter}})"),
                prom(
                    _rate("exporter", f"otelcol_exporter_send_failed_spans_total{{{JAEGER}}}"),
                    "store failed ({{exporter}})",
                ),
            ],
            size=(12, 8),
            overrides=[_in_red("^(refused|store failed) .*")],
        ),
        timeseries_panel(
            "Collector → Jaeger: sent vs received",
            "Spans/s the collector's otlp_grpc/jaeger exporter sent and Jaeger's receiver accepted: the lines "
            "should overlap.",
            "ops",
            [
                prom(
                    _rate("", f'otelcol_exporter_sent_spans{{{COLLECTOR}, exporter="otlp_grpc/jaeger"}}'),
                    "collector sent",
                ),
                prom(_rate("", received), "Jaeger received"),
            ],
            size=(12, 8),
        ),
        timeseries_panel(
            "Jaeger query API latency p95 by route",
            "Latency of Jaeger's HTTP query API (UI searches, Grafana's Jaeger datasource).",
            "s",
            [
                prom(
                    _quantile(0.95, "http_route", f"http_server_request_duration_seconds_bucket{{{JAEGER}}}"),
                    "{{http_route}}",
                )
            ],
            size=(12, 8),
        ),
        timeseries_panel(
            "Jaeger storage requests/s",
            "Reads of Jaeger's trace storage by operation and result.",
            "ops",
            [
                prom(
                    _rate("operation, result", f"jaeger_storage_requests_total{{{JAEGER}}}"), "{{operation}} {{result}}"
                )
            ],
            size=(12, 8),
        ),
    ]


def _targets_up() -> PanelBuilder:
    up_down = dm.ValueMap(
        options={
            "0": dm.ValueMappingResult(text="DOWN", color="red"),
            "1": dm.ValueMappingResult(text="UP", color="green"),
        }
    )
    return stat_panel(
        "Targets up",
        "Every target Prometheus scrapes (trainer is down between trainings).",
        "short",
        [prom("up", "{{job}} {{instance}}", instant=True)],
        size=(24, 5),
        steps=((None, "red"), (1, "green")),
        mappings=[up_down],
        text_mode=cm.BigValueTextMode.VALUE_AND_NAME,
    )


def build() -> dm.Dashboard:
    board = dashboard(
        "apo-pipeline",
        "APO telemetry pipeline",
        "Spans through the OpenTelemetry Collector into the Agent Lightning store and Jaeger: accepted, "
        "refused, sent, failed, queued, filtered; store and Jaeger health.",
    )
    section(board, "Collector: receiving", _receiving())
    section(board, "Collector: exporting", _exporting())
    section(board, "Agent Lightning store", _store())
    section(board, "Jaeger", _jaeger())
    section(board, "Scrape targets", [_targets_up()])
    return numbered(board)
