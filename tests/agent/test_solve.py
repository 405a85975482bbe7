"""Tests for trainer.agent.solve.solve: one real Agno agent run per status, against a scripted server.

Every test builds the production config (``RolloutConfig`` + ``ModelSpec``, the MATH task), so the
real Agno ``OpenAILike`` model and the real openai client talk HTTP to ``ScriptedLLM`` on 127.0.0.1;
what the server received (``server.requests``) shows what the agent actually sent. Agno does not
raise on LLM errors: it returns a result with status ``error`` and the message as content, which
``solve`` maps to ``llm_error`` or ``timeout``. ``max_retries=0`` keeps one request per rollout.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from trainer.agent.model import ModelSpec
from trainer.agent.solve import RolloutConfig, RolloutOutcome, solve
from trainer.data.numbers import format_decimal
from trainer.math_task import MATH
from trainer.task import Problem
from trainer.testing import (
    CONTEXT_OVERFLOW,
    SERVER_ERROR,
    Reply,
    ScriptedLLM,
    chat_completion,
    closed_port,
    count_tokens,
    message_text,
    perfect_agent,
    wrong_agent,
    wrong_number,
)

PROBLEM = Problem(
    id="sheep-1",
    question="A farm has 32 animals, and 50% of them are sheep. How many sheep are on the farm?",
    answer="16",
)
TEMPLATE = "You solve math word problems. The problem is: {question} End with: The answer is <number>."
RENDERED = TEMPLATE.replace("{question}", PROBLEM["question"])
MODEL = "agent-model"
# Any test still waiting after this has hung: the longest scripted path takes ~1 s.
TEST_DEADLINE_S = 30.0


def config(base_url: str, *, timeout: float = 5.0, grace_seconds: float = 5.0) -> RolloutConfig:
    spec = ModelSpec(
        base_url=base_url,
        model=MODEL,
        api_key=None,
        temperature=0.0,
        max_tokens=64,
        timeout=timeout,
        max_retries=0,
    )
    return RolloutConfig(model=spec, task=MATH, grace_seconds=grace_seconds)


def run_solve(template: str, cfg: RolloutConfig) -> RolloutOutcome:
    async def main() -> RolloutOutcome:
        return await asyncio.wait_for(solve(PROBLEM, template, cfg), timeout=TEST_DEADLINE_S)

    return asyncio.run(main())


def sent_messages(server: ScriptedLLM) -> list[tuple[str, str]]:
    (request,) = server.requests
    return [(m["role"], message_text(m)) for m in request["messages"]]


def usage_counted_by_server(request: dict[str, Any], reply: str) -> tuple[int, int]:
    # The scripted server bills 3 tokens of framing per message on top of its text (as OpenAI does).
    prompt = sum(3 + count_tokens(message_text(m)) for m in request["messages"])
    return prompt, count_tokens(reply)


def assert_failed(outcome: RolloutOutcome, status: str) -> None:
    assert outcome.status == status
    assert outcome.reward == 0.0
    assert outcome.reply == ""
    assert outcome.extracted is None
    assert outcome.expected == "16"
    assert (outcome.input_tokens, outcome.output_tokens) == (0, 0)


# -- ok --------------------------------------------------------------------------------------------


def test_right_answer_scores_one_and_sends_the_rendered_prompt() -> None:
    with ScriptedLLM(perfect_agent([PROBLEM])) as server:
        outcome = run_solve(TEMPLATE, config(server.base_url))
        (request,) = server.requests
    assert outcome.status == "ok"
    assert outcome.reason == ""
    assert outcome.reward == 1.0
    assert outcome.extracted == "16"
    assert outcome.expected == "16"
    assert outcome.task_id == "sheep-1"
    assert outcome.reply.endswith("so the answer is 16.")
    assert outcome.system_prompt == RENDERED
    # The rendered template is the system message verbatim, the question the user message.
    assert [(m["role"], message_text(m)) for m in request["messages"]] == [
        ("system", RENDERED),
        ("user", PROBLEM["question"]),
    ]
    assert request["model"] == MODEL
    assert request["max_tokens"] == 64
    assert request["temperature"] == 0.0
    assert (outcome.input_tokens, outcome.output_tokens) == usage_counted_by_server(request, outcome.reply)
    assert 0.0 < outcome.llm_seconds <= outcome.wall_seconds < TEST_DEADLINE_S


def test_wrong_answer_scores_zero() -> None:
    with ScriptedLLM(wrong_agent([PROBLEM])) as server:
        outcome = run_solve(TEMPLATE, config(server.base_url))
        assert len(server.requests) == 1
    assert outcome.status == "ok"
    assert outcome.reason == ""
    assert outcome.reward == 0.0
    assert outcome.extracted == format_decimal(wrong_number("16")) == "33"
    assert outcome.reply.endswith("so the answer is 33.")
    assert outcome.output_tokens > 0


def test_tokens_are_the_servers_usage_not_a_local_count() -> None:
    body = chat_completion("So the answer is 16.", model=MODEL, prompt_tokens=123, completion_tokens=45)
    with ScriptedLLM([Reply(body=body)]) as server:
        outcome = run_solve(TEMPLATE, config(server.base_url))
    assert outcome.status == "ok"
    assert outcome.reward == 1.0
    assert (outcome.input_tokens, outcome.output_tokens) == (123, 45)


def test_literal_braces_reach_the_model_as_single_braces() -> None:
    with ScriptedLLM(perfect_agent([PROBLEM])) as server:
        outcome = run_solve('Answer as JSON like {{"answer": 4}}. {question}', config(server.base_url))
        messages = sent_messages(server)
    assert outcome.status == "ok"
    assert messages[0] == ("system", f'Answer as JSON like {{"answer": 4}}. {PROBLEM["question"]}')


# -- llm_error and endpoint_error (tests/agent/test_faults.py has every kind of fault) -------------


def test_http_500_is_an_endpoint_error_with_the_url_and_the_servers_message() -> None:
    with ScriptedLLM([Reply(500, SERVER_ERROR)]) as server:
        url = server.base_url
        outcome = run_solve(TEMPLATE, config(url))
        assert len(server.requests) == 1  # max_retries=0: no second attempt
    assert_failed(outcome, "endpoint_error")
    assert outcome.reason == f"{url}: HTTP 500: {SERVER_ERROR['error']['message']}"
    assert outcome.system_prompt == RENDERED


def test_context_overflow_400_is_an_llm_error() -> None:
    with ScriptedLLM([Reply(400, CONTEXT_OVERFLOW)]) as server:
        outcome = run_solve(TEMPLATE, config(server.base_url))
        assert len(server.requests) == 1
    assert_failed(outcome, "llm_error")
    assert outcome.reason == CONTEXT_OVERFLOW["error"]["message"]
    assert "maximum context length is 8192 tokens" in outcome.reason


def test_refused_connection_is_an_endpoint_error() -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    outcome = run_solve(TEMPLATE, config(url))
    assert_failed(outcome, "endpoint_error")
    assert outcome.reason.startswith(f"{url}: ConnectError") and outcome.reason.endswith("Connection error.")


# -- timeout ---------------------------------------------------------------------------------------


def test_reply_slower_than_the_client_timeout_is_a_timeout() -> None:
    started = time.monotonic()
    with ScriptedLLM([Reply(content="The answer is 16.", delay=5.0)]) as server:
        url = server.base_url
        outcome = run_solve(TEMPLATE, config(url, timeout=0.5))
        assert len(server.requests) == 1
    assert_failed(outcome, "timeout")
    assert outcome.reason == f"{url}: ReadTimeout: Request timed out."
    assert time.monotonic() - started < 4.0  # the client gave up; the 5 s reply was never awaited


def test_solves_own_deadline_turns_a_hang_into_a_timeout() -> None:
    # The deadline is timeout x (retries + 1) + grace; a negative grace is the only way to make it
    # fire before the client's own timeout, i.e. to take solve's asyncio.wait_for branch.
    with ScriptedLLM([Reply(content="The answer is 16.", delay=5.0)]) as server:
        url = server.base_url
        outcome = run_solve(TEMPLATE, config(url, timeout=3.0, grace_seconds=-2.0))
    assert_failed(outcome, "timeout")
    assert outcome.reason == f"{url}: no answer within 1s"
    assert outcome.wall_seconds < 2.5


# -- bad_template ----------------------------------------------------------------------------------

HELP = "(write literal braces as {{ and }})"
ALLOWED = "templates may use only {question}, written bare " + HELP


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        (
            "Solve it { carefully",
            "expected '}' before end of string at line 1, column 10 ('{ carefully') " + HELP,
        ),
        (
            "Solve {question} }",
            "Single '}' encountered in format string at line 1, column 18 ('}') (write literal braces as {{ and }})",
        ),
        (
            "The answer is {answer}. {question}",
            "unknown placeholder {answer} at line 1, column 15; " + ALLOWED,
        ),
        ("Solve {0}", "positional placeholder {0} at line 1, column 7; " + ALLOWED),
        # A spec that once raised MemoryError in the rollout: refused without rendering anything.
        (
            "Solve {question:>1000000000000000}",
            "format spec ':>1000000000000000' in placeholder {question:>1000000000000000} at line 1, column 7; "
            + ALLOWED,
        ),
        (
            "Solve {question.__class__}",
            "attribute access in placeholder {question.__class__} at line 1, column 7; " + ALLOWED,
        ),
    ],
    ids=["stray-open", "stray-close", "unknown-field", "positional", "memory-bomb", "attribute"],
)
def test_bad_template_sends_no_request(template: str, reason: str) -> None:
    with ScriptedLLM(perfect_agent([PROBLEM])) as server:
        outcome = run_solve(template, config(server.base_url))
        assert server.log == []
    assert_failed(outcome, "bad_template")
    assert outcome.reason == reason
    assert outcome.system_prompt == template  # nothing rendered: the template itself is kept
    assert outcome.llm_seconds == 0.0
