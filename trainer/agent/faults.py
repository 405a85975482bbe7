"""Telling the endpoint's failures from the prompt's.

A reply the prompt caused (a wrong answer, an empty one, a 400 because the prompt overflows the
context) is a data point about the prompt: it scores 0. A refused or reset connection, a 5xx, a
429 or a timeout says nothing about the prompt, only about the server: such a rollout is an
*endpoint fault* and must not become a score.

Agno reports every LLM failure as ``status=error`` with the message text only, so the status code
is gone by the time :func:`trainer.agent.solve.solve` sees it. The agent's HTTP client therefore
goes through :class:`FaultRecordingTransport`, which notes the outcome of the last HTTP attempt
in the :class:`FaultRecord` of the rollout it serves (a context variable, so concurrent rollouts
on one shared client never mix their records). The OpenAI SDK's retries each pass through it: the
last attempt decides.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import httpx2  # the HTTP library of the openai SDK 3.x (a fork of httpx with the same API)

# Statuses of a rollout outcome that are the endpoint's fault, not the prompt's (see solve.Status).
ENDPOINT_FAULTS: Final = frozenset({"endpoint_error", "timeout"})

# HTTP statuses that say "the server could not answer now" rather than "your request is wrong".
_RETRYABLE_STATUS: Final = frozenset({408, 409, 429})


def is_endpoint_status(status: int) -> bool:
    return status >= 500 or status in _RETRYABLE_STATUS


@dataclass
class FaultRecord:
    """What the last HTTP attempt of one rollout ended with; ``fault`` is None after a usable answer."""

    fault: str | None = None


_current: ContextVar[FaultRecord | None] = ContextVar("trainer_fault_record", default=None)


@contextmanager
def recording_faults() -> Iterator[FaultRecord]:
    """A fresh record for the HTTP calls made inside this block (and the tasks it starts)."""
    record = FaultRecord()
    token = _current.set(record)
    try:
        yield record
    finally:
        _current.reset(token)


def recording_http_client(base_url: str) -> httpx2.AsyncClient:
    """The agent's HTTP client: the OpenAI SDK's defaults, every attempt noted in the current record."""
    import httpx2
    from openai import DefaultAsyncHttpxClient

    inner = httpx2.AsyncHTTPTransport()

    class FaultRecordingTransport(httpx2.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
            record = _current.get()
            try:
                response = await inner.handle_async_request(request)
            except httpx2.TransportError as exc:  # refused, reset, timed out, protocol garbage
                if record is not None:
                    record.fault = f"{base_url}: {type(exc).__name__}: {exc}".rstrip(": ")
                raise
            if record is not None:
                status = response.status_code
                record.fault = f"{base_url}: HTTP {status}" if is_endpoint_status(status) else None
            return response

        async def aclose(self) -> None:
            await inner.aclose()

    return DefaultAsyncHttpxClient(transport=FaultRecordingTransport())
