"""Reading traces back from Jaeger's query API (the one the UI uses)."""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from tests.support.net import http_get


def jaeger_services(query_url: str) -> list[str]:
    data = json.loads(http_get(f"{query_url}/api/services"))
    return list(data.get("data") or [])


def jaeger_traces(
    query_url: str, service: str, tags: dict[str, str] | None = None, limit: int = 100_000
) -> list[dict[str, Any]]:
    """Traces of ``service`` (optionally having a span with all ``tags``) from the Jaeger query API."""
    params: dict[str, str] = {"service": service, "limit": str(limit)}
    if tags:
        params["tags"] = json.dumps(tags)
    data = json.loads(http_get(f"{query_url}/api/traces?{urllib.parse.urlencode(params)}", timeout=30))
    if data.get("errors"):
        raise RuntimeError(f"jaeger query errors: {data['errors']}")
    return list(data.get("data") or [])


def jaeger_spans(query_url: str, service: str, tags: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Every span of the matching traces (Jaeger JSON: spanID, operationName, references, tags...)."""
    return [span for trace in jaeger_traces(query_url, service, tags) for span in trace.get("spans", [])]


def jaeger_parent(span: dict[str, Any]) -> str | None:
    for ref in span.get("references") or []:
        if ref.get("refType") == "CHILD_OF":
            return str(ref.get("spanID"))
    return None


def jaeger_tag(span: dict[str, Any], key: str) -> Any:
    for tag in span.get("tags") or []:
        if tag.get("key") == key:
            return tag.get("value")
    return None
