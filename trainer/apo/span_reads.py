"""What APO reads back from a rollout's spans: whether they are all there, what a critique sees, and
the worked example a rewarded train rollout makes.

Kept apart from the tracked APO (and so from Agent Lightning's import) because these are plain
functions over span dicts, checked on their own.
"""

from __future__ import annotations

from typing import Any

from trainer.agent.prompt import Demo
from trainer.telemetry.spans import ROLLOUT_SPAN_NAME


def worth_critiquing(span: dict[str, Any]) -> bool:
    name = str(span.get("name", ""))
    return name == ROLLOUT_SPAN_NAME or name.startswith(("agentlightning.reward", "agentlightning.annotation"))


def spans_complete(spans: list[dict[str, Any]]) -> bool:
    """Does the store hold every span the rollout ended? Its root span says how many came before it."""
    root = next((s for s in spans if s.get("name") == ROLLOUT_SPAN_NAME), None)
    if root is None:
        return False
    children = (root.get("attributes") or {}).get("trainer.child_spans")
    if not isinstance(children, int):
        return True  # written by a runner that does not count; nothing to compare with
    own = [s for s in spans if not str(s.get("name", "")).startswith("agentlightning.")]
    return len(own) >= children + 1


def compact_span(span: dict[str, Any]) -> dict[str, Any]:
    """Name, attributes, status and its error text: ids, timings and resources mean nothing to a critique."""
    status = span.get("status") or {}
    compact = {
        "name": span.get("name"),
        "attributes": span.get("attributes") or {},
        "status": status.get("status_code"),
    }
    if status.get("description"):
        compact["error"] = status["description"]
    return compact


def demo_from_result(result: dict[str, Any]) -> Demo | None:
    """A bootstrapped demonstration out of a train rollout that earned reward 1, else None.

    The question and the reply are the conversation the rollout's root span records (full or as
    :func:`compact_span` keeps it); a rollout traced without it gives none.
    """
    if result.get("status") != "succeeded" or result.get("final_reward") != 1:
        return None
    root = next((s for s in result.get("spans") or [] if s.get("name") == ROLLOUT_SPAN_NAME), None)
    attributes = (root or {}).get("attributes") or {}
    if attributes.get("trainer.mode") != "train":
        return None
    problem_id, question, reply = (
        attributes.get(key) for key in ("trainer.task_id", "gen_ai.prompt.1.content", "gen_ai.completion.0.content")
    )
    if not (isinstance(problem_id, str) and isinstance(question, str) and isinstance(reply, str)):
        return None
    if not question.strip() or not reply.strip():
        return None
    return Demo(problem_id, question, reply.strip(), "bootstrapped")
