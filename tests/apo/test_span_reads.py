"""Tests for how TrackedAPO reads a rollout's spans back: completeness, compaction, selection.

Spans are plain dicts shaped like ``agl.Span.model_dump()`` (``name``, ``attributes``,
``status.status_code`` plus ids and timings), which is what APO hands ``get_rollout_results``;
``test_agl_contract.py`` pins that shape against the real ``agl.Span``.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trainer.apo.span_reads import compact_span, spans_complete, worth_critiquing
from trainer.telemetry.spans import ROLLOUT_SPAN_NAME

CHILD_SPANS = "trainer.child_spans"


def span(name: str, attributes: dict[str, Any] | None = None, status: str = "OK") -> dict[str, Any]:
    """A span as ``agl.Span.model_dump()`` gives it, ids and timings included."""
    return {
        "rollout_id": "ro-1",
        "attempt_id": "at-1",
        "sequence_id": 1,
        "trace_id": "0" * 32,
        "span_id": "1" * 16,
        "parent_id": None,
        "name": name,
        "status": {"status_code": status, "description": None},
        "attributes": attributes if attributes is not None else {},
        "events": [],
        "links": [],
        "start_time": 1.0,
        "end_time": 2.0,
        "context": None,
        "parent": None,
        "resource": {"attributes": {"service.name": "x"}, "schema_url": ""},
    }


def root(children: object = None, **attributes: Any) -> dict[str, Any]:
    if children is not None:
        attributes[CHILD_SPANS] = children
    return span(ROLLOUT_SPAN_NAME, attributes)


def own(count: int) -> list[dict[str, Any]]:
    """``count`` spans the rollout itself ended (Agno's run, its LLM calls)."""
    return [span(f"math-solver.arun.{i}") for i in range(count)]


def lightning(count: int) -> list[dict[str, Any]]:
    """Spans Agent Lightning adds on its own (rewards, annotations); the runner never counts them."""
    names = ("agentlightning.reward", "agentlightning.annotation", "agentlightning.operation")
    return [span(names[i % len(names)]) for i in range(count)]


# -- spans_complete ---------------------------------------------------------------------------------


@pytest.mark.parametrize("spans", [[], own(3), lightning(2), [span("rollout"), span("Math_Rollout")]])
def test_no_root_span_means_incomplete(spans: list[dict[str, Any]]) -> None:
    assert spans_complete(spans) is False


@pytest.mark.parametrize("children", [0, 1, 2, 5])
def test_exactly_the_counted_children_is_complete(children: int) -> None:
    assert spans_complete([root(children), *own(children)]) is True


@pytest.mark.parametrize("children", [1, 2, 5])
def test_one_child_missing_is_incomplete(children: int) -> None:
    assert spans_complete([root(children), *own(children - 1)]) is False


def test_more_spans_than_counted_is_complete() -> None:
    # A retried attempt or a late exporter may add spans; more than promised is still everything.
    assert spans_complete([root(2), *own(4)]) is True


def test_root_position_does_not_matter() -> None:
    assert spans_complete([*own(2), root(2)]) is True
    assert spans_complete([*own(1), root(2)]) is False


def test_agentlightning_spans_are_not_counted_as_children() -> None:
    assert spans_complete([root(2), *own(1), *lightning(5)]) is False
    assert spans_complete([root(2), *own(2), *lightning(5)]) is True


@pytest.mark.parametrize("children", [None, "3", 3.0, [3]])
def test_absent_or_non_int_count_is_trusted_as_complete(children: object) -> None:
    # A runner that does not count writes no int: nothing to compare with.
    assert spans_complete([root(children)]) is True


def test_root_without_attributes_is_complete() -> None:
    bare = root()
    bare["attributes"] = None
    assert spans_complete([bare]) is True


@given(children=st.integers(0, 20), present=st.integers(0, 20), extra=st.integers(0, 10))
def test_complete_iff_every_counted_child_is_there(children: int, present: int, extra: int) -> None:
    spans = [*lightning(extra), root(children), *own(present)]
    assert spans_complete(spans) is (present >= children)


# -- compact_span -----------------------------------------------------------------------------------


def test_compact_span_keeps_name_attributes_and_status_code_only() -> None:
    attributes = {"trainer.reward": 1.0, "gen_ai.prompt.0.content": "You solve math word problems."}
    full = span(ROLLOUT_SPAN_NAME, attributes, status="ERROR")
    assert compact_span(full) == {"name": ROLLOUT_SPAN_NAME, "attributes": attributes, "status": "ERROR"}


def test_compact_span_of_a_sparse_span() -> None:
    assert compact_span({"name": "x"}) == {"name": "x", "attributes": {}, "status": None}
    assert compact_span({"name": "x", "attributes": None, "status": None}) == {
        "name": "x",
        "attributes": {},
        "status": None,
    }


def test_compact_span_does_not_copy_ids_or_timings() -> None:
    compact = compact_span(span("n", {"a": 1}))
    assert set(compact) == {"name", "attributes", "status"}


# -- worth_critiquing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [ROLLOUT_SPAN_NAME, "agentlightning.reward", "agentlightning.annotation", "agentlightning.annotation.custom"],
)
def test_rollout_root_rewards_and_annotations_are_critiqued(name: str) -> None:
    assert worth_critiquing({"name": name}) is True


@pytest.mark.parametrize(
    "name",
    ["math-solver.arun", "OpenAI.chat", "agentlightning.operation", "agentlightning.object", "reward", "", None],
)
def test_agent_internals_and_other_spans_are_not_critiqued(name: str | None) -> None:
    assert worth_critiquing({"name": name}) is False


def test_span_without_a_name_is_not_critiqued() -> None:
    assert worth_critiquing({}) is False
