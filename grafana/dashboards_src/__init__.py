"""The sources of ``grafana/dashboards/*.json``: one module per dashboard, shared helpers beside them.

The JSON files are what Grafana's provisioning and the tests read, so they stay committed; this
package is what people edit. ``grafana/generate.py`` writes the files from here and, with
``--check``, fails when a committed file is not exactly what the package produces.
"""

from __future__ import annotations

from collections.abc import Callable

from grafana_foundation_sdk.models.dashboard import Dashboard

from . import agent_spans, pipeline, training

# File name under grafana/dashboards/ -> the function that builds it.
DASHBOARDS: dict[str, Callable[[], Dashboard]] = {
    "agent-spans.json": agent_spans.build,
    "pipeline.json": pipeline.build,
    "training.json": training.build,
}
