"""What the three dashboards share: datasources, the dashboard header, and panels with our defaults.

The hand-written JSON repeated some seventy lines of identical options per panel. Here a panel is
one call that names only what differs (title, description, queries, unit, size); the look every
panel of a kind shares (legend as a table, shared crosshair, thresholds...) is set once below.
Panels are placed by the SDK's grid flow: each row of panels fills the 24 columns in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from string import ascii_uppercase

from grafana_foundation_sdk.builders import bargauge, stat, table, timeseries
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus as pb
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as pm

from trainer.telemetry.otlp import DEFAULT_SERVICE_NAME

from .jaeger import JAEGER, JaegerSearch

PROMETHEUS = dm.DataSourceRef(type_val="prometheus", uid="prometheus")
SERVICE = DEFAULT_SERVICE_NAME  # the trainer's OpenTelemetry service.name
JAEGER_UI = "http://localhost:16686"  # as published by compose.yaml, opened by the viewer's browser
RATE = "[$__rate_interval]"
RANGE = "[$__range]"

# (regexp on the series name, the field properties it overrides)
Override = tuple[str, list[dm.DynamicConfigValue]]
Links = Sequence[cogbuilder.Builder[dm.DashboardLink]]
PanelBuilder = cogbuilder.Builder[dm.Panel]


def dashboard(uid: str, title: str, description: str) -> db.Dashboard:
    """A dashboard with the header all three share: read-only, tag ``apo``, links to each other and Jaeger."""
    return (
        db.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["apo"])
        .timezone("browser")
        .readonly()  # provisioned from files: edits in the UI could not be saved anyway
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .version(1)
        .refresh("10s")
        .time("now-1h", "now")
        .timepicker(db.TimePicker().refresh_intervals(["5s", "10s", "30s", "1m", "5m"]))
        .fiscal_year_start_month(0)
        .live_now(False)
        .week_start("")
        .links([dashboards_link(), jaeger_ui_link()])
        .annotations([])
        .variables([])
    )


def dashboards_link() -> db.DashboardLink:
    return (
        db.DashboardLink("APO dashboards")
        .type(dm.DashboardLinkType.DASHBOARDS)
        .tags(["apo"])
        .as_dropdown(False)
        .include_vars(False)
        .keep_time(True)
        .target_blank(False)
        .icon("external link")
        .tooltip("")
        .url("")
    )


def jaeger_ui_link() -> db.DashboardLink:
    return (
        db.DashboardLink("Jaeger UI")
        .type(dm.DashboardLinkType.LINK)
        .url(f"{JAEGER_UI}/search?service={SERVICE}")
        .target_blank(True)
        .icon("external link")
        .tooltip("Search the trainer's traces in Jaeger")
    )


def link(title: str, url: str) -> db.DashboardLink:
    """A panel or data link opening in a new tab."""
    return db.DashboardLink(title).url(url).target_blank(True)


def section(board: db.Dashboard, title: str, panels: Sequence[PanelBuilder]) -> None:
    """An expanded row and the panels under it (top-level panels, as Grafana stores an open row)."""
    board.with_row(db.Row(title).collapsed(False))
    for panel in panels:
        board.with_panel(panel)


def numbered(board: db.Dashboard) -> dm.Dashboard:
    """The built dashboard with panel ids 1, 2, ... in order (the SDK leaves ids to the caller)."""
    built = board.build()
    for number, panel in enumerate(built.panels or [], start=1):
        panel.id_val = number
    return built


def prom(expr: str, legend: str = "", *, instant: bool = False) -> pb.Dataquery:
    """A PromQL target (refIds are given by position when the panel takes its targets)."""
    query = pb.Dataquery().datasource(PROMETHEUS).editor_mode(pm.QueryEditorMode.CODE).expr(expr)
    query = query.legend_format(legend)
    return query.instant() if instant else query.range()


def _targets(queries: Sequence[pb.Dataquery]) -> list[cogbuilder.Builder[cogvariants.Dataquery]]:
    return [query.ref_id(ascii_uppercase[i]) for i, query in enumerate(queries)]


def fixed_color(color: str) -> dm.DynamicConfigValue:
    return dm.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": color})


def prop(name: str, value: object) -> dm.DynamicConfigValue:
    return dm.DynamicConfigValue(id_val=name, value=value)


def dashed() -> dm.DynamicConfigValue:
    return prop("custom.lineStyle", {"fill": "dash", "dash": [10, 10]})


def thresholds(*steps: tuple[float | None, str]) -> db.ThresholdsConfig:
    """Absolute thresholds from (value, color) pairs; the first value is None (from -infinity)."""
    return (
        db.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=value, color=color) for value, color in steps])
    )


def timeseries_panel(
    title: str,
    description: str,
    unit: str,
    queries: Sequence[pb.Dataquery],
    *,
    size: tuple[int, int],
    max_value: float | None = None,
    legend_calcs: Sequence[str] = ("lastNotNull", "max"),
    overrides: Sequence[Override] = (),
    links: Links = (),
    data_links: Links = (),
) -> timeseries.Panel:
    """Lines, one per series, with a table legend; ``size`` is (width, height) in grid units."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .targets(_targets(queries))
        .unit(unit)
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.PALETTE_CLASSIC))
        .draw_style(cm.GraphDrawStyle.LINE)
        .line_width(1)
        .fill_opacity(10)
        .point_size(5)
        .show_points(cm.VisibilityMode.AUTO)
        .span_nulls(False)
        .axis_placement(cm.AxisPlacement.AUTO)
        .stacking(cb.StackingConfig().mode(cm.StackingMode.NONE).group("A"))
        .min(0)
        .legend(_table_legend(legend_calcs))
        .tooltip(cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING))
        .links(list(links))
        .span(size[0])
        .height(size[1])
    )
    if max_value is not None:
        panel = panel.max(max_value)
    if data_links:
        panel = panel.data_links(list(data_links))
    for regexp, properties in overrides:
        panel = panel.override_by_regexp(regexp, properties)
    return panel


def _table_legend(calcs: Sequence[str]) -> cb.VizLegendOptions:
    return (
        cb.VizLegendOptions()
        .display_mode(cm.LegendDisplayMode.TABLE)
        .placement(cm.LegendPlacement.BOTTOM)
        .show_legend(True)
        .calcs(list(calcs))
    )


def _reduce_last(fields: str = "") -> cb.ReduceDataOptions:
    return cb.ReduceDataOptions().calcs(["lastNotNull"]).fields(fields).values(False)


def stat_panel(
    title: str,
    description: str,
    unit: str,
    queries: Sequence[pb.Dataquery],
    *,
    size: tuple[int, int],
    steps: Sequence[tuple[float | None, str]] = ((None, "blue"),),
    decimals: int | None = None,
    mappings: Sequence[dm.ValueMapping] = (),
    text_mode: cm.BigValueTextMode = cm.BigValueTextMode.AUTO,
    fields: str = "",
    links: Links = (),
) -> stat.Panel:
    """The last value of each series, coloured by thresholds, no sparkline."""
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .targets(_targets(queries))
        .unit(unit)
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
        .thresholds(thresholds(*steps))
        .mappings(list(mappings))
        .reduce_options(_reduce_last(fields))
        .color_mode(cm.BigValueColorMode.VALUE)
        .graph_mode(cm.BigValueGraphMode.NONE)
        .justify_mode(cm.BigValueJustifyMode.AUTO)
        .orientation(cm.VizOrientation.AUTO)
        .text_mode(text_mode)
        .wide_layout(True)
        .links(list(links))
        .span(size[0])
        .height(size[1])
    )
    return panel if decimals is None else panel.decimals(decimals)


def bargauge_panel(
    title: str,
    description: str,
    unit: str,
    query: pb.Dataquery,
    *,
    size: tuple[int, int],
    max_value: float | None = None,
    decimals: int | None = None,
    overrides: Sequence[Override] = (),
) -> bargauge.Panel:
    """Horizontal bars, one per series: totals and per-version scores."""
    panel = (
        bargauge.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .targets(_targets([query]))
        .unit(unit)
        .min(0)
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.CONTINUOUS_BL_YL_RD))
        .thresholds(thresholds((None, "green")))
        .reduce_options(_reduce_last())
        .orientation(cm.VizOrientation.HORIZONTAL)
        .display_mode(cm.BarGaugeDisplayMode.GRADIENT)
        .show_unfilled(True)
        .value_mode(cm.BarGaugeValueMode.COLOR)
        .name_placement(cm.BarGaugeNamePlacement.AUTO)
        .min_viz_height(10)
        .min_viz_width(0)
        .sizing(cm.BarGaugeSizing.AUTO)
        .span(size[0])
        .height(size[1])
    )
    if max_value is not None:
        panel = panel.max(max_value)
    if decimals is not None:
        panel = panel.decimals(decimals)
    for regexp, properties in overrides:
        panel = panel.override_by_regexp(regexp, properties)
    return panel


def table_panel(title: str, description: str, *, size: tuple[int, int]) -> table.Panel:
    """A plain table; the caller adds its datasource and target."""
    return (
        table.Panel()
        .title(title)
        .description(description)
        .align(cm.FieldTextAlignment.AUTO)
        .show_header(True)
        .cell_height(cm.TableCellHeight.SM)
        .footer(cb.TableFooterOptions().show(False))
        .span(size[0])
        .height(size[1])
    )


def jaeger_table(title: str, description: str, search: JaegerSearch, *, size: tuple[int, int]) -> table.Panel:
    """Recent traces found by a Jaeger search; the trace id column opens the trace."""
    return table_panel(title, description, size=size).datasource(JAEGER).with_target(search)
