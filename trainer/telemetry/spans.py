"""Spans of a rollout: what the runner records and what APO reads back.

APO critiques prompts from chat messages that ``TraceToMessages`` rebuilds out of
``gen_ai.prompt.N.*`` / ``gen_ai.completion.N.*`` attributes; OpenInference writes
``llm.input_messages.*`` instead, which that adapter ignores. So each rollout gets one root span
that records the exact conversation (rendered system prompt, question, reply) in the
``gen_ai.prompt``/``gen_ai.completion`` form, plus the prompt version, task, reward and status.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace as trace_api

logger = logging.getLogger(__name__)

ROLLOUT_SPAN_NAME = "math_rollout"


class RolloutSpan:
    """Handle on the open root span of one rollout."""

    def __init__(self, span: trace_api.Span) -> None:
        self._span = span

    @property
    def trace_id(self) -> str | None:
        """The W3C trace id (32 hex digits), or None when nothing is being recorded."""
        context = self._span.get_span_context()
        return format(context.trace_id, "032x") if context.is_valid else None

    @property
    def span_id(self) -> str | None:
        """The root span's id (16 hex digits), or None when nothing is being recorded."""
        context = self._span.get_span_context()
        return format(context.span_id, "016x") if context.is_valid else None

    def set(self, **attributes: Any) -> None:
        for key, value in attributes.items():
            if value is not None:
                self._span.set_attribute(key, value)

    def fail(self, description: str) -> None:
        """Mark the rollout's span as an error: span metrics and Jaeger searches then count it."""
        self._span.set_status(trace_api.Status(trace_api.StatusCode.ERROR, description[:200]))

    def record_conversation(self, system_prompt: str, question: str, reply: str) -> None:
        self._span.set_attributes(
            {
                "gen_ai.prompt.0.role": "system",
                "gen_ai.prompt.0.content": system_prompt,
                "gen_ai.prompt.1.role": "user",
                "gen_ai.prompt.1.content": question,
                "gen_ai.completion.0.role": "assistant",
                "gen_ai.completion.0.content": reply,
            }
        )


@contextmanager
def rollout_span(**attributes: Any) -> Iterator[RolloutSpan]:
    """Open the rollout's root span on the globally installed tracer provider."""
    tracer = trace_api.get_tracer("trainer.training.rollout")
    with tracer.start_as_current_span(ROLLOUT_SPAN_NAME) as span:
        handle = RolloutSpan(span)
        handle.set(**attributes)
        yield handle
