"""HTTP and ports for tests: loopback only, never through a proxy from the environment."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from trainer.serving.probes import free_port
from trainer.testing import closed_port

__all__ = ["closed_port", "free_port", "http_get", "http_json", "http_ok"]

# An HTTP(S)_PROXY in a developer's shell must not send loopback requests elsewhere.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(url: str, timeout: float = 10.0) -> bytes:
    with _OPENER.open(url, timeout=timeout) as resp:
        return bytes(resp.read())


def http_json(url: str, timeout: float = 10.0) -> Any:
    return json.loads(http_get(url, timeout))


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with _OPENER.open(url, timeout=timeout) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False
