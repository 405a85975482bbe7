"""One attempt of the agent at one task with one prompt template: render, ask, grade.

The template may mention the task's template fields (``{question}``); any other placeholder, or a
stray brace, makes it a *bad template*. ``solve`` builds the task's Agno agent with the rendered
prompt as the system message, asks the problem's question as the user message, and grades the reply
the task's way.

It never raises. A failure the prompt caused (a template APO broke, an error reply such as a
context overflow) gives reward 0.0 and a status saying which. A failure of the endpoint (refused or
reset connection, 5xx, 429, timeout: :mod:`trainer.agent.faults`) gets status ``endpoint_error`` or
``timeout``: the rollout then reports no reward at all, because it says nothing about the prompt.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from trainer.agent.faults import ENDPOINT_FAULTS, FaultRecord, recording_faults
from trainer.agent.model import ModelSpec, model_for_current_loop
from trainer.agent.template import TemplateError, render_prompt
from trainer.task import Problem, Task

Status = Literal["ok", "llm_error", "endpoint_error", "timeout", "bad_template"]


@dataclass
class RolloutOutcome:
    """What one rollout did; one JSON line per rollout in the run's ledger."""

    task_id: str
    reward: float
    status: Status
    reason: str = ""
    system_prompt: str = ""
    reply: str = ""
    extracted: str | None = None
    expected: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    llm_seconds: float = 0.0
    wall_seconds: float = 0.0
    rollout_id: str | None = None
    attempt_id: str | None = None
    spans: int = 0  # spans this rollout ended (root included), as counted where they were created
    trace_id: str | None = None
    span_id: str | None = None  # the rollout's root span: with trace_id, the reward's exemplar
    mode: str | None = None
    prompt_version: str | None = None
    runner: str | None = None  # host:pid of the process that ran it (runners may be other containers)
    cache_hit: bool = False  # the outcome of an earlier rollout of the same pair, no model call (rollout_cache)
    cached_from: str | None = None  # that earlier rollout's id
    finished_at: float = field(default_factory=time.time)

    @property
    def is_fault(self) -> bool:
        """The endpoint failed, not the prompt: this outcome is no data point about the prompt."""
        return self.status in ENDPOINT_FAULTS


@dataclass(frozen=True)
class RolloutConfig:
    model: ModelSpec
    task: Task
    use_calculator: bool = False
    # Extra seconds on top of the model's own timeout and retries before we give up on a run.
    grace_seconds: float = 5.0

    @property
    def deadline_seconds(self) -> float:
        return self.model.timeout * (self.model.max_retries + 1) + self.grace_seconds


def _is_timeout(text: str) -> bool:
    lowered = text.lower()
    return "timed out" in lowered or "timeout" in lowered


async def solve(problem: Problem, template: str, config: RolloutConfig) -> RolloutOutcome:
    """Run the agent on one problem with one prompt template; never raises for LLM or template faults."""
    started = time.monotonic()
    task = config.task
    outcome = RolloutOutcome(task_id=problem["id"], reward=0.0, status="ok", expected=problem["answer"])
    try:
        system_prompt = render_prompt(template, problem, task.template_fields)
    except TemplateError as exc:
        outcome.status, outcome.reason = "bad_template", str(exc)
        outcome.system_prompt = template
        outcome.wall_seconds = time.monotonic() - started
        return outcome
    outcome.system_prompt = system_prompt

    model = model_for_current_loop(config.model)
    agent = task.build_agent(system_prompt, model, use_calculator=config.use_calculator)
    llm_started = time.monotonic()
    with recording_faults() as record:
        await _ask(agent, problem, config, outcome, record)
    outcome.llm_seconds = time.monotonic() - llm_started
    outcome.wall_seconds = time.monotonic() - started
    return outcome


async def _ask(
    agent: Any, problem: Problem, config: RolloutConfig, outcome: RolloutOutcome, record: FaultRecord
) -> None:
    """Ask the question and fill ``outcome``: the reply graded, or the failure classified."""
    try:
        result = await asyncio.wait_for(agent.arun(problem["question"]), timeout=config.deadline_seconds)
    except TimeoutError:
        outcome.status = "timeout"
        outcome.reason = f"{config.model.base_url}: no answer within {config.deadline_seconds:g}s"
    except Exception as exc:  # agno normally reports errors in the result; this is the rest
        _failed(outcome, record, f"{type(exc).__name__}: {exc}")
    else:
        content = result.content if isinstance(result.content, str) else str(result.content or "")
        metrics = result.metrics
        if metrics is not None:
            outcome.input_tokens = int(metrics.input_tokens or 0)
            outcome.output_tokens = int(metrics.output_tokens or 0)
        if str(getattr(result.status, "value", result.status)).upper() == "ERROR":
            # agno does not raise on LLM failures: it returns status=error with the message.
            _failed(outcome, record, content)
        else:
            graded = config.task.grade(content, problem)
            outcome.reward = graded.reward
            outcome.reply = content
            outcome.extracted = graded.extracted


def _failed(outcome: RolloutOutcome, record: FaultRecord, message: str) -> None:
    """A failed LLM call: the transport saw what really happened (a status code, a reset), so it
    decides whose fault it is; without an endpoint fault it is the reply the prompt caused."""
    if record.fault is None:
        outcome.status, outcome.reason = "llm_error", message[:500]
    else:
        outcome.status = "timeout" if _is_timeout(record.fault) else "endpoint_error"
        outcome.reason = f"{record.fault}: {message}"[:500]
