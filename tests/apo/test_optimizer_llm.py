"""Tests for trainer.apo.optimizer_llm: the bounded, token-counting client APO calls.

Every test builds the client with the production constructor (``optimizer_client``, as a training
does), talking HTTP to the scripted OpenAI-compatible server on 127.0.0.1 (``trainer.testing``), so
request bodies, status codes, retries and error bodies go through the real openai library exactly as
with a hosted endpoint. Retries are the SDK's alone: a request count shows there is one layer.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any

import openai
import pytest
from openai import AsyncOpenAI

from trainer.apo.optimizer_llm import BoundedChatClient, UsageLedger, optimizer_client, optimizer_role
from trainer.testing import (
    CONTEXT_OVERFLOW,
    OVERLOADED,
    RATE_LIMITED,
    SERVER_ERROR,
    Reply,
    ScriptedLLM,
    chat_completion,
    closed_port,
    error_body,
)

MODEL = "critic-model"
MESSAGES = [{"role": "user", "content": "Improve this prompt: You solve math problems."}]


def run_with_client(
    fake: ScriptedLLM,
    body: Callable[[BoundedChatClient], Awaitable[Any]],
    *,
    max_tokens: int = 64,
    timeout: float = 5.0,
    max_retries: int = 2,
    usage: UsageLedger | None = None,
) -> Any:
    """Run ``body(client)`` on a fresh event loop with the production client pointed at ``fake``."""

    async def main() -> Any:
        client = optimizer_client(
            fake.base_url, "x", max_tokens=max_tokens, timeout=timeout, max_retries=max_retries, usage=usage
        )
        try:
            return await asyncio.wait_for(body(client), timeout=30)
        finally:
            await client.close()

    return asyncio.run(main())


async def _call(client: BoundedChatClient, **extra: Any) -> Any:
    return await client.chat.completions.create(model=MODEL, messages=MESSAGES, **extra)


# -- reply cap ---------------------------------------------------------------------------------


def test_injects_max_tokens_and_returns_the_completion() -> None:
    with ScriptedLLM() as fake:
        response = run_with_client(fake, _call, max_tokens=77)
        seen = fake.requests
    assert len(seen) == 1
    assert seen[0]["max_tokens"] == 77
    assert seen[0]["model"] == MODEL
    assert seen[0]["messages"] == MESSAGES
    # The per-request timeout is a client option, never a field of the JSON body.
    assert "timeout" not in seen[0]
    assert response.choices[0].message.content == "The answer is 4."


def test_caller_max_tokens_wins() -> None:
    with ScriptedLLM() as fake:
        run_with_client(fake, lambda c: _call(c, max_tokens=9), max_tokens=77)
        seen = fake.requests
    assert [r["max_tokens"] for r in seen] == [9]


def test_caller_temperature_passes_through() -> None:
    with ScriptedLLM() as fake:
        run_with_client(fake, lambda c: _call(c, temperature=1.0))
        seen = fake.requests
    assert seen[0]["temperature"] == 1.0


# -- retries -------------------------------------------------------------------------------------


def test_retries_5xx_and_429_then_succeeds() -> None:
    script = [Reply(500, SERVER_ERROR), Reply(503, OVERLOADED), Reply(429, RATE_LIMITED, headers={"retry-after": "0"})]
    usage = UsageLedger()
    with ScriptedLLM(script) as fake:
        response = run_with_client(fake, _call, max_retries=3, usage=usage)
        seen = fake.requests
    assert len(seen) == 4
    assert response.choices[0].message.content == "The answer is 4."
    stats = usage.get("optimizer", MODEL)
    assert (stats.calls, stats.failures) == (1, 0)
    # Only the successful reply's usage counts.
    assert (stats.input_tokens, stats.output_tokens) == (12, 5)
    # Every attempt sends the same request.
    assert all(r == seen[0] for r in seen)


def test_retries_dropped_connection_then_succeeds() -> None:
    usage = UsageLedger()
    with ScriptedLLM([Reply(drop=True), Reply(drop=True)]) as fake:
        response = run_with_client(fake, _call, max_retries=2, usage=usage)
        seen = fake.requests
    assert len(seen) == 3
    assert response.choices[0].finish_reason == "stop"
    stats = usage.get("optimizer", MODEL)
    assert (stats.calls, stats.failures) == (1, 0)


def test_connection_refused_ends_in_a_connection_error() -> None:
    async def main() -> None:
        url = f"http://127.0.0.1:{closed_port()}/v1"
        client = optimizer_client(url, "x", max_tokens=8, timeout=2.0, max_retries=2, usage=usage)
        try:
            with pytest.raises(openai.APIConnectionError):
                await asyncio.wait_for(_call(client), timeout=30)
        finally:
            await client.close()

    usage = UsageLedger()
    asyncio.run(main())
    stats = usage.get("optimizer", MODEL)
    assert (stats.calls, stats.failures) == (0, 1)


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (400, CONTEXT_OVERFLOW, openai.BadRequestError),
        (401, error_body("Incorrect API key provided: x.", code="invalid_api_key"), openai.AuthenticationError),
        (404, error_body("The model `critic-model` does not exist", code="model_not_found"), openai.NotFoundError),
    ],
)
def test_client_errors_are_not_retried(status: int, body: dict[str, Any], error: type[Exception]) -> None:
    usage = UsageLedger()
    with ScriptedLLM([Reply(status, body)]) as fake:
        with pytest.raises(error) as info:
            run_with_client(fake, _call, max_retries=5, usage=usage)
        seen = fake.requests
    assert len(seen) == 1
    assert body["error"]["message"] in str(info.value)
    stats = usage.get("optimizer", MODEL)
    assert (stats.calls, stats.failures) == (0, 1)


def test_context_overflow_is_a_bad_request_with_openai_code() -> None:
    with ScriptedLLM([Reply(400, CONTEXT_OVERFLOW)]) as fake:
        with pytest.raises(openai.BadRequestError) as info:
            run_with_client(fake, _call, max_retries=3)
        assert len(fake.requests) == 1
    assert info.value.status_code == 400
    assert info.value.code == "context_length_exceeded"


def test_gives_up_after_max_retries() -> None:
    usage = UsageLedger()
    with ScriptedLLM(default=Reply(503, OVERLOADED)) as fake:
        started = time.monotonic()
        with pytest.raises(openai.InternalServerError):
            run_with_client(fake, _call, max_retries=2, usage=usage)
        elapsed = time.monotonic() - started
        seen = fake.requests
    assert len(seen) == 3  # the first attempt and two retries: one layer (stacked, it was 9)
    stats = usage.get("optimizer", MODEL)
    assert (stats.calls, stats.failures) == (0, 1)
    assert elapsed < 10


def test_zero_retries_means_one_attempt() -> None:
    with ScriptedLLM(default=Reply(500, SERVER_ERROR)) as fake:
        with pytest.raises(openai.InternalServerError):
            run_with_client(fake, _call, max_retries=0)
        assert len(fake.requests) == 1


def test_backoff_grows_between_retries() -> None:
    arrivals: list[float] = []

    def script(_body: dict[str, Any]) -> Reply:
        arrivals.append(time.monotonic())
        return Reply(503, OVERLOADED) if len(arrivals) <= 3 else Reply()

    with ScriptedLLM(script) as fake:
        run_with_client(fake, _call, max_retries=3)
        assert len(fake.requests) == 4
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    # The SDK backs off 0.5, 1 and 2 s, each with up to 25% jitter off: every gap at least its backoff.
    assert gaps[0] >= 0.37
    assert gaps[1] >= 0.74
    assert gaps[2] >= 1.49
    assert gaps[0] < gaps[1] < gaps[2]


# -- accounting ----------------------------------------------------------------------------------


def test_tokens_are_counted_by_role() -> None:
    def script(body: dict[str, Any]) -> Reply:
        if body["model"] == "grad-model":
            return Reply(body=chat_completion("critique", model="grad-model", prompt_tokens=100, completion_tokens=40))
        return Reply(body=chat_completion("new prompt", model="edit-model", prompt_tokens=30, completion_tokens=7))

    async def body(client: BoundedChatClient) -> None:
        with optimizer_role("gradient"):
            await client.chat.completions.create(model="grad-model", messages=MESSAGES)
            await client.chat.completions.create(model="grad-model", messages=MESSAGES)
        with optimizer_role("edit"):
            await client.chat.completions.create(model="edit-model", messages=MESSAGES)
        await client.chat.completions.create(model="edit-model", messages=MESSAGES)  # outside any role

    usage = UsageLedger()
    with ScriptedLLM(script) as fake:
        run_with_client(fake, body, usage=usage)
        assert len(fake.requests) == 4
    gradient = usage.get("gradient", "grad-model")
    edit = usage.get("edit", "edit-model")
    default = usage.get("optimizer", "edit-model")
    assert (gradient.calls, gradient.input_tokens, gradient.output_tokens) == (2, 200, 80)
    assert (edit.calls, edit.input_tokens, edit.output_tokens) == (1, 30, 7)
    assert (default.calls, default.input_tokens, default.output_tokens) == (1, 30, 7)
    assert usage.total_tokens == 280 + 37 + 37
    as_dict = usage.as_dict()
    assert set(as_dict) == {"gradient:grad-model", "edit:edit-model", "optimizer:edit-model"}
    assert as_dict["gradient:grad-model"]["input_tokens"] == 200
    assert gradient.seconds > 0


def test_roles_stay_separate_across_concurrent_calls() -> None:
    # APO runs gradient and edit calls of different beam branches concurrently.
    def script(body: dict[str, Any]) -> Reply:
        tokens = 10 if body["model"] == "g" else 1
        completion = chat_completion(model=body["model"], prompt_tokens=tokens, completion_tokens=tokens)
        return Reply(body=completion, delay=0.1)

    async def in_role(client: BoundedChatClient, role: str, model: str) -> None:
        with optimizer_role(role):
            await asyncio.sleep(0)
            await client.chat.completions.create(model=model, messages=MESSAGES)

    async def body(client: BoundedChatClient) -> None:
        await asyncio.gather(*(in_role(client, "gradient", "g") for _ in range(3)),
                             *(in_role(client, "edit", "e") for _ in range(3)))  # fmt: skip

    usage = UsageLedger()
    with ScriptedLLM(script) as fake:
        run_with_client(fake, body, usage=usage)
        assert len(fake.requests) == 6
    assert usage.get("gradient", "g").input_tokens == 30
    assert usage.get("edit", "e").input_tokens == 3
    assert set(usage.as_dict()) == {"gradient:g", "edit:e"}


def test_role_is_restored_after_block() -> None:
    async def body(client: BoundedChatClient) -> None:
        with optimizer_role("gradient"):
            with optimizer_role("edit"):
                await _call(client)
            await _call(client)
        await _call(client)

    usage = UsageLedger()
    with ScriptedLLM() as fake:
        run_with_client(fake, body, usage=usage)
    assert {k: v["calls"] for k, v in usage.as_dict().items()} == {
        f"edit:{MODEL}": 1,
        f"gradient:{MODEL}": 1,
        f"optimizer:{MODEL}": 1,
    }


def test_truncated_replies_are_counted() -> None:
    script = [
        Reply(body=chat_completion("You solve math word problems and", finish_reason="length", completion_tokens=64)),
        Reply(body=chat_completion("short", finish_reason="stop")),
    ]
    usage = UsageLedger()

    async def body(client: BoundedChatClient) -> None:
        with optimizer_role("edit"):
            await _call(client)
            await _call(client)

    with ScriptedLLM(script) as fake:
        run_with_client(fake, body, usage=usage)
    stats = usage.get("edit", MODEL)
    assert (stats.calls, stats.truncated, stats.output_tokens) == (2, 1, 69)


def test_reply_without_usage_counts_the_call_but_no_tokens() -> None:
    usage = UsageLedger()
    with ScriptedLLM([Reply(body=chat_completion(include_usage=False))]) as fake:
        run_with_client(fake, _call, usage=usage)
    stats = usage.get("optimizer", MODEL)
    assert (stats.calls, stats.input_tokens, stats.output_tokens) == (1, 0, 0)


# -- timeout -------------------------------------------------------------------------------------


def test_timeout_is_honoured() -> None:
    usage = UsageLedger()
    with ScriptedLLM([Reply(delay=10.0)]) as fake:
        started = time.monotonic()
        with pytest.raises(openai.APITimeoutError):
            run_with_client(fake, _call, timeout=0.3, max_retries=0, usage=usage)
        elapsed = time.monotonic() - started
        assert len(fake.requests) == 1
    assert 0.25 <= elapsed < 5  # the reply would take 10 s
    assert usage.get("optimizer", MODEL).failures == 1


def test_timeout_is_retried_like_any_transient_failure() -> None:
    usage = UsageLedger()
    with ScriptedLLM([Reply(delay=10.0)]) as fake:
        started = time.monotonic()
        response = run_with_client(fake, _call, timeout=0.3, max_retries=1, usage=usage)
        elapsed = time.monotonic() - started
        assert len(fake.requests) == 2
    assert response.choices[0].message.content == "The answer is 4."
    assert elapsed < 5
    stats = usage.get("optimizer", MODEL)
    assert (stats.calls, stats.failures) == (1, 0)


def test_caller_timeout_wins() -> None:
    with ScriptedLLM([Reply(delay=10.0)]) as fake:
        started = time.monotonic()
        with pytest.raises(openai.APITimeoutError):
            run_with_client(fake, lambda c: _call(c, timeout=0.2), timeout=60.0, max_retries=0)
        assert time.monotonic() - started < 5


# -- the fake itself -----------------------------------------------------------------------------


def test_fake_server_answers_like_openai() -> None:
    """The fake must look like a hosted endpoint to the real client, or the tests above prove nothing."""

    async def main(base_url: str) -> tuple[list[str], str, int]:
        raw = AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0)
        try:
            models = [m.id async for m in raw.models.list()]
            with pytest.raises(openai.NotFoundError) as info:
                await raw.embeddings.create(model="fake-model", input="hi")
            completion = await raw.chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
            assert completion.usage is not None
            return models, str(info.value), completion.usage.total_tokens
        finally:
            await raw.close()

    with ScriptedLLM() as fake:
        models, not_found, total = asyncio.run(main(fake.base_url))
        assert [(r.method, r.path) for r in fake.log] == [
            ("GET", "/v1/models"),
            ("POST", "/v1/embeddings"),
            ("POST", "/v1/chat/completions"),
        ]
        assert fake.log[0].headers.get("authorization") == "Bearer x"
    assert models == ["fake-model"]
    assert "Invalid URL" in not_found
    assert total == 17
