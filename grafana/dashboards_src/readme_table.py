"""The README's table of the trainer's metrics, rendered from the metric contract.

The table is what people read to write their own queries; generated, it cannot fall behind the
metrics the trainer registers. It sits between two marker comments in README.md, and only that
region is ever rewritten.
"""

from __future__ import annotations

from collections.abc import Iterable

from trainer.telemetry.metric_contract import HistogramMetric, Label, Metric

START = "<!-- metrics-table:start -->"
END = "<!-- metrics-table:end -->"
HEADER = ("| metric | type | labels | what |", "| --- | --- | --- | --- |")


class MarkersMissing(ValueError):
    pass


def _type(metric: Metric) -> str:
    if isinstance(metric, HistogramMetric):
        return f"histogram ({', '.join(f'{bucket:g}' for bucket in metric.buckets)})"
    return f"{metric.type} (1)" if metric.info else metric.type


def _label(label: Label) -> str:
    if not label.values:
        return f"`{label.name}`"
    return f"`{label.name}` ({', '.join(f'`{value}`' for value in label.values)})"


def _row(*cells: str) -> str:
    return "|" + "|".join(f" {cell} " if cell else " " for cell in cells) + "|"


def render(metrics: Iterable[Metric]) -> str:
    rows = [_row(f"`{m.name}`", _type(m), ", ".join(_label(label) for label in m.labels), m.doc) for m in metrics]
    return "\n".join([*HEADER, *rows])


def replace(readme: str, table: str) -> str:
    """``readme`` with the text between the markers replaced by ``table``."""
    start, end = readme.find(START), readme.find(END)
    if start < 0 or end < start:
        raise MarkersMissing(f"README.md needs the markers {START} and {END}, in that order, around the metrics table")
    # Blank lines around the table: GitHub ends the comment and the table blocks there.
    return f"{readme[: start + len(START)]}\n\n{table}\n\n{readme[end:]}"
