"""solve() tells the endpoint's failures from the prompt's, against a scripted server.

Each case is an HTTP answer a real OpenAI-compatible server gives (or a connection it drops or
refuses); the status the outcome gets decides whether the rollout is a data point about the prompt.
"""

from __future__ import annotations

import asyncio

import pytest

from trainer.agent.faults import ENDPOINT_FAULTS, is_endpoint_status
from trainer.agent.model import ModelSpec
from trainer.agent.solve import RolloutConfig, RolloutOutcome, solve
from trainer.math_task import MATH
from trainer.testing import CONTEXT_OVERFLOW, ScriptedLLM
from trainer.testing.server import OVERLOADED, RATE_LIMITED, SERVER_ERROR, Reply, closed_port

PROBLEM = {"id": "p1", "question": "What is 2 + 2?", "answer": "4"}
TEMPLATE = "Solve the problem. {question}"


def spec(base_url: str, timeout: float = 5.0) -> ModelSpec:
    return ModelSpec(base_url, "scripted-agent", None, 0.0, 64, timeout, max_retries=0)


def solve_with(reply: Reply, timeout: float = 5.0) -> tuple[RolloutOutcome, str]:
    with ScriptedLLM(lambda _request: reply) as llm:
        outcome = asyncio.run(solve(PROBLEM, TEMPLATE, RolloutConfig(spec(llm.base_url, timeout), MATH)))
        return outcome, llm.base_url


@pytest.mark.parametrize(
    ("reply", "status"),
    [
        (Reply(500, SERVER_ERROR), "endpoint_error"),
        (Reply(503, OVERLOADED), "endpoint_error"),
        (Reply(429, RATE_LIMITED), "endpoint_error"),
        (Reply(drop=True), "endpoint_error"),
        (Reply(content="4", delay=2.0), "timeout"),
    ],
    ids=["500", "503", "429", "reset", "timeout"],
)
def test_endpoint_failures_are_faults_naming_the_url(reply: Reply, status: str) -> None:
    outcome, url = solve_with(reply, timeout=0.5)
    assert outcome.status == status
    assert outcome.is_fault and outcome.reward == 0.0
    assert outcome.reason.startswith(url), outcome.reason


def test_a_refused_connection_is_a_fault() -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    outcome = asyncio.run(solve(PROBLEM, TEMPLATE, RolloutConfig(spec(url), MATH)))
    assert outcome.status == "endpoint_error" and outcome.is_fault
    assert url in outcome.reason and "ConnectError" in outcome.reason


def test_a_context_overflow_is_the_prompts_fault() -> None:
    # A 400 says the request (the prompt) is wrong: a data point, scored 0.
    outcome, _ = solve_with(Reply(400, CONTEXT_OVERFLOW))
    assert outcome.status == "llm_error" and not outcome.is_fault
    assert "maximum context length" in outcome.reason


def test_answers_right_and_wrong_are_data_points() -> None:
    right, _ = solve_with(Reply(content="2 + 2 = 4"))
    wrong, _ = solve_with(Reply(content="2 + 2 = 5"))
    assert (right.status, right.reward, right.is_fault) == ("ok", 1.0, False)
    assert (wrong.status, wrong.reward, wrong.is_fault) == ("ok", 0.0, False)


def test_a_retry_that_succeeds_is_no_fault() -> None:
    replies = iter([Reply(503, OVERLOADED), Reply(content="4")])
    with ScriptedLLM(lambda _request: next(replies)) as llm:
        config = RolloutConfig(ModelSpec(llm.base_url, "m", None, 0.0, 64, 5.0, max_retries=1), MATH)
        outcome = asyncio.run(solve(PROBLEM, TEMPLATE, config))
    assert (outcome.status, outcome.reward) == ("ok", 1.0)


def test_which_http_statuses_are_the_endpoints() -> None:
    assert [s for s in (400, 401, 404, 408, 422, 429, 500, 502, 503) if is_endpoint_status(s)] == [
        408,
        429,
        500,
        502,
        503,
    ]
    assert {"endpoint_error", "timeout"} == ENDPOINT_FAULTS
