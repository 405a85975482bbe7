"""The one way tests wait: poll a check, bounded in time, and say what never happened."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    check: Callable[[], T],
    timeout: float,
    *,
    what: str = "condition",
    interval: float = 0.25,
    errors: tuple[type[BaseException], ...] = (),
) -> T:
    """Poll ``check`` until it returns something truthy, and return that.

    An exception of one of ``errors`` counts as "not yet" (a service still starting); after
    ``timeout`` seconds a TimeoutError names ``what`` and the last such error.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except errors as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error is not None else ""
            raise TimeoutError(f"{what}: not true after {timeout:.1f} s{detail}")
        time.sleep(interval)
