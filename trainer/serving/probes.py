"""Probes of the endpoints a run depends on: is it up, does it answer like what it claims to be.

Every command checks its endpoints before any work (a wrong URL or key fails in seconds, naming the
URL), and the embedded model and the tests wait for a server to become healthy with the same code.
"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request


class LLMError(RuntimeError):
    """The embedded model could not be started or an endpoint did not answer."""


class StoreUnreachable(RuntimeError):
    """STORE_URL does not answer as an Agent Lightning store."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _root(base_url: str) -> str:
    return base_url[: -len("/v1")] if base_url.endswith("/v1") else base_url


def wait_healthy(base_url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(_root(base_url) + "/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last = exc
        time.sleep(0.1)
    raise LLMError(f"model server at {base_url} not healthy after {timeout:.0f}s: {last}")


def probe_chat(base_url: str, model: str, api_key: str | None, timeout: float = 30.0) -> str:
    """Send one tiny chat request; return the reply or raise LLMError naming the URL.

    Used by ``--dry-run`` and at startup so a wrong URL or key fails in seconds, not after the
    first batch of rollouts has timed out.
    """
    body = json.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": "Reply with the number 4."}],
            "max_tokens": 8,
            "temperature": 0,
        }
    ).encode()
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    url = base_url.rstrip("/") + "/chat/completions"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            payload = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:300].decode("utf-8", "replace")
        raise LLMError(f"LLM endpoint {url} answered HTTP {exc.code}: {detail}") from exc
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise LLMError(f"LLM endpoint {url} is unreachable: {reason}") from exc
    except json.JSONDecodeError as exc:
        raise LLMError(f"LLM endpoint {url} did not answer JSON: {exc}") from exc
    try:
        return str(payload["choices"][0]["message"]["content"] or "")
    except (KeyError, IndexError, TypeError) as exc:
        raise LLMError(f"LLM endpoint {url} answered an unexpected shape: {str(payload)[:200]}") from exc


HEALTH_PATH = "/v1/agl/health"


def check_store(url: str, timeout: float = 5.0) -> None:
    health = url.rstrip("/") + HEALTH_PATH
    try:
        with urllib.request.urlopen(health, timeout=timeout) as resp:
            if resp.status != 200:
                raise StoreUnreachable(f"STORE_URL: store at {url} answered HTTP {resp.status} on {health}")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise StoreUnreachable(
            f"STORE_URL: Agent Lightning store at {url} is unreachable ({health}: {reason})"
        ) from exc


class CollectorUnreachable(RuntimeError):
    """OTEL_EXPORTER_OTLP_ENDPOINT does not accept OTLP/HTTP spans."""


OTLP_TRACES_PATH = "/v1/traces"


def check_collector(endpoint: str, timeout: float = 5.0) -> None:
    """Export an empty batch of spans to the collector at ``endpoint``; raise naming it unless accepted.

    Without this a wrong endpoint shows only mid-run: the exporter drops every span and each rollout
    waits for its flush. An empty ``ExportTraceServiceRequest`` is an empty protobuf body, which an
    OTLP/HTTP receiver answers 200 without storing anything. The headers the exporter would send
    (``OTEL_EXPORTER_OTLP_HEADERS``, ``..._TRACES_HEADERS``) go along, so an authenticated collector
    is probed as it will be used.
    """
    from opentelemetry.util.re import parse_env_headers

    url = endpoint.rstrip("/") + OTLP_TRACES_PATH
    headers = {"Content-Type": "application/x-protobuf"}
    for variable in ("OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"):
        headers.update(parse_env_headers(os.environ.get(variable, ""), liberal=True))
    request = urllib.request.Request(url, data=b"", headers=headers, method="POST")
    where = f"OTEL_EXPORTER_OTLP_ENDPOINT: OpenTelemetry Collector at {endpoint}"
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:200].decode("utf-8", "replace").strip()
        hint = " (no OTLP/HTTP receiver there: the collector's is on port 4318)" if exc.code in (404, 405) else ""
        raise CollectorUnreachable(f"{where} refused spans: HTTP {exc.code} on {url}{hint} {detail}".rstrip()) from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CollectorUnreachable(f"{where} is unreachable ({url}: {reason})") from exc
