"""The chat client APO's critique ("gradient") and edit calls go through.

Stock APO sends no output limit and no retry: measured on the embedded model, 12 of 72 optimizer
calls ran until the context was full (~250 s each). This client wraps ``AsyncOpenAI`` and adds, for
every ``chat.completions.create`` call: a reply cap, a timeout, retries with backoff for transient
failures (connection errors, timeouts, HTTP 429 and 5xx; never 4xx, which a retry cannot fix), and
token accounting by role (``gradient`` / ``edit``) for the summary and metrics.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import openai
from openai import AsyncOpenAI

logger = logging.getLogger(__name__)

_role: contextvars.ContextVar[str] = contextvars.ContextVar("optimizer_role", default="optimizer")


@contextmanager
def optimizer_role(role: str) -> Iterator[None]:
    """Attribute the optimizer calls made inside this block to ``role``."""
    token = _role.set(role)
    try:
        yield
    finally:
        _role.reset(token)


@dataclass
class RoleUsage:
    calls: int = 0
    failures: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    seconds: float = 0.0
    truncated: int = 0  # replies cut by the cap (finish_reason == "length")


@dataclass
class UsageLedger:
    by_role: dict[tuple[str, str], RoleUsage] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, role: str, model: str) -> RoleUsage:
        with self._lock:
            return self.by_role.setdefault((role, model), RoleUsage())

    @property
    def total_tokens(self) -> int:
        return sum(u.input_tokens + u.output_tokens for u in self.by_role.values())

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {f"{role}:{model}": vars(u).copy() for (role, model), u in self.by_role.items()}


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, (openai.APIConnectionError, openai.APITimeoutError, openai.RateLimitError)):
        return True
    return isinstance(exc, openai.APIStatusError) and exc.status_code >= 500


class _Completions:
    def __init__(self, owner: BoundedChatClient) -> None:
        self._owner = owner

    async def create(self, **kwargs: Any) -> Any:
        return await self._owner._create(**kwargs)


class _Chat:
    def __init__(self, owner: BoundedChatClient) -> None:
        self.completions = _Completions(owner)


class BoundedChatClient:
    """Duck-types the part of ``AsyncOpenAI`` that APO uses: ``chat.completions.create``."""

    def __init__(
        self,
        client: AsyncOpenAI,
        *,
        max_tokens: int,
        timeout: float,
        max_retries: int,
        usage: UsageLedger | None = None,
        backoff_seconds: float = 1.0,
        on_call: Callable[[str, str, int, int, float], None] | None = None,
    ) -> None:
        self._client = client
        self.max_tokens = max_tokens
        self.timeout = timeout
        self.max_retries = max_retries
        self.usage = usage or UsageLedger()
        self.backoff_seconds = backoff_seconds
        self.on_call = on_call  # (role, model, input_tokens, output_tokens, seconds), e.g. for metrics
        self.chat = _Chat(self)

    async def _create(self, **kwargs: Any) -> Any:
        kwargs.setdefault("max_tokens", self.max_tokens)
        kwargs.setdefault("timeout", self.timeout)
        role, model = _role.get(), str(kwargs.get("model", ""))
        usage = self.usage.get(role, model)
        attempt = 0
        while True:
            started = time.monotonic()
            try:
                response = await self._client.chat.completions.create(**kwargs)
            except Exception as exc:
                usage.seconds += time.monotonic() - started
                if attempt < self.max_retries and _transient(exc):
                    delay = self.backoff_seconds * (2**attempt)
                    attempt += 1
                    logger.warning(
                        "%s call to %s failed (%s); retry %d/%d in %.0fs",
                        role,
                        model,
                        type(exc).__name__,
                        attempt,
                        self.max_retries,
                        delay,
                    )
                    await asyncio.sleep(delay)
                    continue
                usage.failures += 1
                raise
            elapsed = time.monotonic() - started
            usage.seconds += elapsed
            usage.calls += 1
            input_tokens = output_tokens = 0
            if response.usage is not None:
                input_tokens = int(response.usage.prompt_tokens or 0)
                output_tokens = int(response.usage.completion_tokens or 0)
                usage.input_tokens += input_tokens
                usage.output_tokens += output_tokens
            if self.on_call is not None:
                self.on_call(role, model, input_tokens, output_tokens, elapsed)
            if response.choices and response.choices[0].finish_reason == "length":
                usage.truncated += 1
            return response
