"""The bridge between Agent Lightning and the agent: one rollout = one graded answer.

APO hands a candidate prompt template; the rollout renders it (the template may mention
``{question}``; any other placeholder, or a stray brace, makes it a *bad template*), builds an Agno
agent with it as the system message, asks the task's question as the user message, grades the
reply and returns the reward.

A rollout never raises: an LLM error, a timeout or a template APO broke all give reward 0.0 and a
status saying which. Raising would fail the rollout in the store, and APO would then score the
prompt on fewer tasks than the others, which is a silent bias; a 0.0 keeps the comparison fair and
the status keeps it honest.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from trainer.agent import ModelSpec, create_agent_with_prompt, model_for_current_loop
from trainer.dataset import MathTask
from trainer.grader import grade
from trainer.otlp import spans_ended_in_current_rollout
from trainer.template import TemplateError, render_prompt
from trainer.tracing import flush_spans, rollout_span

if TYPE_CHECKING:
    import agentlightning as agl

logger = logging.getLogger(__name__)

Status = Literal["ok", "llm_error", "timeout", "bad_template"]
STATUSES: tuple[Status, ...] = ("ok", "llm_error", "timeout", "bad_template")


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
    mode: str | None = None
    prompt_version: str | None = None
    runner: str | None = None  # host:pid of the process that ran it (runners may be other containers)
    finished_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class RolloutConfig:
    model: ModelSpec
    use_calculator: bool = False
    # Extra seconds on top of the model's own timeout and retries before we give up on a run.
    grace_seconds: float = 5.0

    @property
    def deadline_seconds(self) -> float:
        return self.model.timeout * (self.model.max_retries + 1) + self.grace_seconds


def _is_timeout(text: str) -> bool:
    lowered = text.lower()
    return "timed out" in lowered or "timeout" in lowered


async def solve(task: MathTask, template: str, config: RolloutConfig) -> RolloutOutcome:
    """Run the agent on one task with one prompt template; never raises for LLM or template faults."""
    started = time.monotonic()
    outcome = RolloutOutcome(task_id=task["id"], reward=0.0, status="ok", expected=task["answer"])
    try:
        system_prompt = render_prompt(template, task)
    except TemplateError as exc:
        outcome.status, outcome.reason = "bad_template", str(exc)
        outcome.system_prompt = template
        outcome.wall_seconds = time.monotonic() - started
        return outcome
    outcome.system_prompt = system_prompt

    model = model_for_current_loop(config.model)
    agent = create_agent_with_prompt(system_prompt, model, use_calculator=config.use_calculator)
    llm_started = time.monotonic()
    try:
        result = await asyncio.wait_for(agent.arun(task["question"]), timeout=config.deadline_seconds)
    except TimeoutError:
        outcome.status = "timeout"
        outcome.reason = f"no answer within {config.deadline_seconds:.0f}s"
    except Exception as exc:  # agno normally reports errors in the result; this is the rest
        outcome.status, outcome.reason = "llm_error", f"{type(exc).__name__}: {exc}"[:500]
    else:
        content = result.content if isinstance(result.content, str) else str(result.content or "")
        metrics = result.metrics
        if metrics is not None:
            outcome.input_tokens = int(metrics.input_tokens or 0)
            outcome.output_tokens = int(metrics.output_tokens or 0)
        if str(getattr(result.status, "value", result.status)).upper() == "ERROR":
            # agno does not raise on LLM failures: it returns status=error with the message.
            outcome.status = "timeout" if _is_timeout(content) else "llm_error"
            outcome.reason = content[:500]
        else:
            graded = grade(content, task["answer"])
            outcome.reward = graded.reward
            outcome.reply = content
            outcome.extracted = graded.extracted
    outcome.llm_seconds = time.monotonic() - llm_started
    outcome.wall_seconds = time.monotonic() - started
    return outcome


class Ledger:
    """Append-only JSONL of rollout outcomes, shared by all runner processes of a run.

    Each outcome is one ``write`` on an ``O_APPEND`` descriptor, so lines from concurrent
    processes never interleave. The ledger is what the summary counts rollouts and tokens from.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, outcome: RolloutOutcome) -> None:
        record = asdict(outcome)
        record["system_prompt"] = ""  # the prompt DB has every template; don't repeat it per rollout
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def tail(self) -> LedgerTail:
        return LedgerTail(self.path)

    def read(self) -> list[RolloutOutcome]:
        if not self.path.exists():
            return []
        outcomes = []
        with self.path.open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    outcomes.append(RolloutOutcome(**json.loads(line)))
        return outcomes


class RunLedgers:
    """The ledgers of every run under one directory: ``RUNS_DIR/<run id>/rollouts.jsonl``.

    A runner serves whichever training enqueued the task, so it finds the ledger from the run id the
    training stamped on the task. Runners in other containers reach the same files through a shared
    OUTPUT_DIR volume.
    """

    # The shape of train.new_run_id(): a run id from a task never escapes RUNS_DIR.
    RUN_ID = re.compile(r"^[0-9]{8}-[0-9]{6}-[0-9a-f]{4}$")

    def __init__(self, runs_dir: Path) -> None:
        self.runs_dir = runs_dir

    def for_run(self, run_id: str) -> Ledger:
        if not self.RUN_ID.match(run_id):
            raise ValueError(f"not a run id: {run_id!r}")
        return Ledger(self.runs_dir / run_id / "rollouts.jsonl")

    def for_task(self, task: MathTask) -> Ledger | None:
        """The ledger of the run that enqueued ``task``; None (and a warning) when it names none."""
        run_id = task.get("run_id")
        if run_id is None or not self.RUN_ID.match(run_id):
            logger.warning("task %s carries no valid run id (%r): its rollout is not in any ledger", task["id"], run_id)
            return None
        return self.for_run(run_id)


class LedgerTail:
    """Reads a ledger as it grows: each call returns the lines completed since the previous one.

    A line still being written (no newline yet) is held back until it is complete.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""
        self.count = 0

    def read_new(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except FileNotFoundError:
            return []
        self._offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        rows = [json.loads(line) for line in lines if line.strip()]
        self.count += len(rows)
        return rows


def make_rollout(config: RolloutConfig, ledgers: RunLedgers | None = None) -> agl.LitAgent[MathTask]:
    """The ``@agl.rollout`` agent APO's runners execute, bound to ``config``.

    With ``ledgers``, each outcome is appended to the ledger of the run that enqueued the task.
    """
    import agentlightning as agl  # heavy: only processes that run rollouts pay for it

    @agl.rollout
    async def math_rollout(task: MathTask, prompt_template: agl.PromptTemplate, rollout: agl.Rollout) -> float:
        attempt_id = rollout.attempt.attempt_id if rollout.attempt else None
        with rollout_span(
            **{
                "agentlightning.rollout_id": rollout.rollout_id,
                "agentlightning.attempt_id": attempt_id,
                "trainer.task_id": task["id"],
                "trainer.mode": rollout.mode,
                "trainer.prompt_version": rollout.resources_id,
            }
        ) as span:
            outcome = await solve(task, prompt_template.template, config)
            outcome.trace_id = span.trace_id
            reply = outcome.reply if outcome.status == "ok" else f"[{outcome.status}] {outcome.reason}"
            span.record_conversation(outcome.system_prompt, task["question"], reply)
            if outcome.status != "ok":
                span.fail(f"{outcome.status}: {outcome.reason}")
            span.set(
                **{
                    "trainer.reward": outcome.reward,
                    "trainer.status": outcome.status,
                    "trainer.expected": outcome.expected,
                    "trainer.extracted": outcome.extracted,
                    "gen_ai.usage.input_tokens": outcome.input_tokens,
                    "gen_ai.usage.output_tokens": outcome.output_tokens,
                    # Lets a reader of the store tell whether it sees the whole rollout.
                    "trainer.child_spans": spans_ended_in_current_rollout(),
                }
            )
        outcome.spans = spans_ended_in_current_rollout() or 0
        flush_spans()
        outcome.rollout_id = rollout.rollout_id
        outcome.attempt_id = attempt_id
        outcome.mode = rollout.mode
        outcome.prompt_version = rollout.resources_id
        # Read per call: runner processes are forked after this module is imported.
        outcome.runner = f"{socket.gethostname()}:{os.getpid()}"
        if outcome.status != "ok":
            logger.warning("rollout %s %s: %s", rollout.rollout_id, outcome.status, outcome.reason[:200])
        ledger = ledgers.for_task(task) if ledgers is not None else None
        if ledger is not None:
            ledger.append(outcome)
        return outcome.reward

    return math_rollout
