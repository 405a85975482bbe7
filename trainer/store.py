"""The external Agent Lightning store a training may use instead of its in-process one."""

from __future__ import annotations

import urllib.error
import urllib.request

HEALTH_PATH = "/v1/agl/health"


class StoreUnreachable(RuntimeError):
    """STORE_URL does not answer as an Agent Lightning store."""


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
