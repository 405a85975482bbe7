"""What makes a URL setting usable: its origin (where a key may go) and the checks of its form.

Plain functions over strings, kept apart from the settings so that every URL rule sits in one place.
"""

from __future__ import annotations

from urllib.parse import urlsplit


def url_origin(url: str | None) -> tuple[str, str, int | None] | None:
    """Scheme, host and port of ``url`` (RFC 6454), default port filled in: where its key may go."""
    if not url:
        return None
    parts = urlsplit(url)
    try:
        return parts.scheme.lower(), (parts.hostname or ""), parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:  # no valid port: an origin of its own
        return parts.scheme.lower(), parts.netloc.lower(), None


# What each URL setting looks like, for the error message of a bad one.
URL_EXAMPLES = {
    "openai_base_url": "http://llm:8080/v1",
    "optimizer_base_url": "https://api.openai.com/v1",
    "store_url": "http://store:4747",
    "otel_exporter_otlp_endpoint": "http://collector:4318",
}


def http_url_problem(url: str) -> str | None:
    """Why ``url`` is no http(s) URL the trainer can append a path to, or None if it is one.

    Checked at startup because every failure here is silent later: an OTLP endpoint without a
    scheme (``collector:4318``) makes the exporter drop every span while each rollout waits ~25 s
    for it, and a query or fragment would swallow the path the trainer appends.
    """
    if any(char.isspace() or not char.isprintable() for char in url):
        return "contains whitespace or control characters"
    parts = urlsplit(url)
    if "://" not in url:
        return "has no scheme"
    if parts.scheme.lower() not in ("http", "https"):
        return f"has the scheme {parts.scheme}://, not http:// or https://"
    if not parts.hostname:
        return "has no host"
    try:
        parts.port  # noqa: B018 - the property raises for a port that is not one
    except ValueError as exc:
        return f"has a bad port ({exc})"
    if parts.query or parts.fragment:
        return "has a query or fragment (the trainer appends paths to it)"
    return None
