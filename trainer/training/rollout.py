"""The bridge between Agent Lightning and the agent: one rollout = one graded answer, traced.

APO hands a candidate prompt template; the rollout runs :func:`trainer.agent.solve.solve` inside the
rollout's root span, records the conversation on that span (what APO's critique reads back), appends
the outcome to the run's ledger and returns the reward, or no reward at all when the endpoint failed
(trainer.agent.faults): such a rollout is no data point about the prompt.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import TYPE_CHECKING

from trainer.agent.solve import RolloutConfig
from trainer.apo.resources import label_of
from trainer.records.ledger import RunLedgers
from trainer.records.rollout_cache import RolloutCaches, solve_cached
from trainer.task import Problem
from trainer.telemetry.otlp import spans_ended_in_current_rollout
from trainer.telemetry.spans import rollout_span

if TYPE_CHECKING:
    import agentlightning as agl

logger = logging.getLogger(__name__)


def make_rollout(
    config: RolloutConfig, ledgers: RunLedgers | None = None, caches: RolloutCaches | None = None
) -> agl.LitAgent[Problem]:
    """The ``@agl.rollout`` agent APO's runners execute, bound to ``config``.

    With ``ledgers``, each outcome is appended to the ledger of the run that enqueued the task; with
    ``caches``, a (prompt, task) pair already evaluated reuses its outcome (trainer.records.rollout_cache).
    """
    import agentlightning as agl  # heavy: only processes that run rollouts pay for it

    @agl.rollout
    async def math_rollout(task: Problem, prompt_template: agl.PromptTemplate, rollout: agl.Rollout) -> float | None:
        attempt_id = rollout.attempt.attempt_id if rollout.attempt else None
        with rollout_span(
            **{
                "agentlightning.rollout_id": rollout.rollout_id,
                "agentlightning.attempt_id": attempt_id,
                "trainer.task_id": task["id"],
                "trainer.mode": rollout.mode,
                "trainer.prompt_version": label_of(rollout.resources_id),
            }
        ) as span:
            cache = caches.for_task(task) if caches is not None else None
            outcome = await solve_cached(
                task, prompt_template.template, config, cache, rollout_id=rollout.rollout_id, trace_id=span.trace_id
            )
            outcome.trace_id, outcome.span_id = span.trace_id, span.span_id
            reply = outcome.reply if outcome.status == "ok" else f"[{outcome.status}] {outcome.reason}"
            span.record_conversation(outcome.system_prompt, task["question"], reply)
            if outcome.status != "ok":
                span.fail(f"{outcome.status}: {outcome.reason}")
            span.set(
                **{
                    "trainer.reward": outcome.reward,
                    "trainer.status": outcome.status,
                    "trainer.expected": outcome.expected,
                    "trainer.cache_hit": outcome.cache_hit,
                    "trainer.cached_from": outcome.cached_from,  # the rollout whose answer this one reuses
                    "trainer.extracted": outcome.extracted,
                    "gen_ai.usage.input_tokens": outcome.input_tokens,
                    "gen_ai.usage.output_tokens": outcome.output_tokens,
                    # Lets a reader of the store tell whether it sees the whole rollout.
                    "trainer.child_spans": spans_ended_in_current_rollout(),
                }
            )
        outcome.spans = spans_ended_in_current_rollout() or 0
        outcome.rollout_id = rollout.rollout_id
        outcome.attempt_id = attempt_id
        outcome.mode = rollout.mode
        outcome.prompt_version = label_of(rollout.resources_id)
        # Read per call: runner processes are forked after this module is imported.
        outcome.runner = f"{socket.gethostname()}:{os.getpid()}"
        if outcome.status != "ok":
            logger.warning("rollout %s %s: %s", rollout.rollout_id, outcome.status, outcome.reason[:200])
        ledger = ledgers.for_task(task) if ledgers is not None else None
        if ledger is not None:
            ledger.append(outcome)
        return None if outcome.is_fault else outcome.reward

    return math_rollout
