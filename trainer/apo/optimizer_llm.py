"""The chat client APO's critique ("gradient") and edit calls go through.

Stock APO sends no output limit: measured on the embedded model, 12 of 72 optimizer calls ran until
the context was full (~250 s each). This client wraps ``AsyncOpenAI`` and adds, for every
``chat.completions.create`` call, a reply cap and token accounting by role (``gradient`` / ``edit``)
for the summary and metrics. Timeout and retries are the SDK's own (see :func:`optimizer_client`).
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from openai import AsyncOpenAI

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


class _Completions:
    def __init__(self, owner: BoundedChatClient) -> None:
        self._owner = owner

    async def create(self, **kwargs: Any) -> Any:
        return await self._owner._create(**kwargs)


class _Chat:
    def __init__(self, owner: BoundedChatClient) -> None:
        self.completions = _Completions(owner)


class BoundedChatClient:
    """Duck-types the part of ``AsyncOpenAI`` that APO uses: ``chat.completions.create``.

    Retries and timeouts are the SDK's (one layer): build it with :func:`optimizer_client`.
    """

    def __init__(
        self,
        client: AsyncOpenAI,
        *,
        max_tokens: int,
        usage: UsageLedger | None = None,
        on_call: Callable[[str, str, int, int, float], None] | None = None,
    ) -> None:
        self._client = client
        self.max_tokens = max_tokens
        self.usage = usage or UsageLedger()
        self.on_call = on_call  # (role, model, input_tokens, output_tokens, seconds), e.g. for metrics
        self.chat = _Chat(self)

    async def close(self) -> None:
        await self._client.close()

    async def _create(self, **kwargs: Any) -> Any:
        kwargs.setdefault("max_tokens", self.max_tokens)
        role, model = _role.get(), str(kwargs.get("model", ""))
        usage = self.usage.get(role, model)
        started = time.monotonic()
        try:
            response = await self._client.chat.completions.create(**kwargs)
        except Exception:
            usage.seconds += time.monotonic() - started
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


def optimizer_client(
    base_url: str,
    api_key: str | None,
    *,
    max_tokens: int,
    timeout: float,
    max_retries: int,
    usage: UsageLedger | None = None,
    on_call: Callable[[str, str, int, int, float], None] | None = None,
) -> BoundedChatClient:
    """The client a training gives APO.

    The openai SDK retries transient failures itself (connection errors, timeouts, 408/409/429/5xx,
    with backoff and ``Retry-After``) and never 4xx otherwise. A second retry loop around it
    multiplied the attempts: one persistent 503 cost 9 requests with ``OPTIMIZER_MAX_RETRIES=2``.
    """
    raw = AsyncOpenAI(base_url=base_url, api_key=api_key or "not-needed", timeout=timeout, max_retries=max_retries)
    return BoundedChatClient(raw, max_tokens=max_tokens, usage=usage, on_call=on_call)
