"""What APO reads back from a rollout's spans: whether they are all there, and what a critique sees.

Kept apart from the tracked APO (and so from Agent Lightning's import) because these are plain
functions over span dicts, checked on their own.
"""

from __future__ import annotations

from typing import Any

from trainer.telemetry.spans import ROLLOUT_SPAN_NAME


def worth_critiquing(span: dict[str, Any]) -> bool:
    name = str(span.get("name", ""))
    return name == ROLLOUT_SPAN_NAME or name.startswith(("agentlightning.reward", "agentlightning.annotation"))


def spans_complete(spans: list[dict[str, Any]]) -> bool:
    """Does the store hold every span the rollout ended? Its root span says how many came before it."""
    root = next((s for s in spans if s.get("name") == ROLLOUT_SPAN_NAME), None)
    if root is None:
        return False
    children = (root.get("attributes") or {}).get("trainer.child_spans")
    if not isinstance(children, int):
        return True  # written by a runner that does not count; nothing to compare with
    own = [s for s in spans if not str(s.get("name", "")).startswith("agentlightning.")]
    return len(own) >= children + 1


def compact_span(span: dict[str, Any]) -> dict[str, Any]:
    """Name, attributes, status and its error text: ids, timings and resources mean nothing to a critique."""
    status = span.get("status") or {}
    compact = {
        "name": span.get("name"),
        "attributes": span.get("attributes") or {},
        "status": status.get("status_code"),
    }
    if status.get("description"):
        compact["error"] = status["description"]
    return compact
