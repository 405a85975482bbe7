"""Tests for trainer.apo.guard: which APO candidates are rejected before any rollout."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trainer.apo.guard import GuardLimits, normalize, rejection_reason

LIMITS = GuardLimits(max_chars=4000, max_growth=4.0, growth_floor=1000)
SEED = "You solve math word problems. End with: The answer is <number>."


def reason(
    template: str | None, *, parent: str | None = SEED, seen: tuple[str, ...] = (), limits: GuardLimits = LIMITS
) -> str | None:
    return rejection_reason(template, parent=parent, seen=seen, limits=limits)


# -- accepted ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "Compute carefully. End with: The answer is <number>.",
        "Question: {question}\nThink, then write: The answer is <number>.",
        'Reply as JSON like {{"answer": 4}}.',
        "x",
    ],
)
def test_good_candidate_is_accepted(template: str) -> None:
    assert reason(template, seen=(SEED,)) is None


def test_seed_without_parent_is_accepted() -> None:
    assert reason(SEED, parent=None) is None


# -- empty -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("template", [None, "", " ", "\n\n\t ", "\u00a0\u2003"])
def test_empty_or_whitespace_is_rejected(template: str | None) -> None:
    assert reason(template) == "empty"


# -- too long ------------------------------------------------------------------------------------


def test_absolute_length_limit() -> None:
    limits = GuardLimits(max_chars=100, max_growth=100.0)
    assert reason("a" * 100, limits=limits) is None
    rejected = reason("a" * 101, limits=limits)
    assert rejected is not None
    assert rejected.startswith("too long")
    assert "101" in rejected
    assert "100" in rejected


def test_absolute_limit_applies_without_a_parent() -> None:
    limits = GuardLimits(max_chars=100, max_growth=100.0)
    rejected = reason("b" * 150, parent=None, limits=limits)
    assert rejected is not None and rejected.startswith("too long")


def test_relative_length_limit() -> None:
    parent = "p" * 300
    limits = GuardLimits(max_chars=10_000, max_growth=2.0, growth_floor=100)
    assert reason("c" * 600, parent=parent, limits=limits) is None  # exactly 2 x parent
    rejected = reason("c" * 601, parent=parent, limits=limits)
    assert rejected is not None
    assert rejected.startswith("too long")
    assert "601" in rejected
    assert "300" in rejected  # names the parent's length


def test_short_parent_may_grow_to_the_floor() -> None:
    parent = "Solve it."  # 9 chars: 4 x parent would allow only 36
    limits = GuardLimits(max_chars=4000, max_growth=4.0, growth_floor=1000)
    assert reason("d" * 1000, parent=parent, limits=limits) is None
    rejected = reason("d" * 1001, parent=parent, limits=limits)
    assert rejected is not None
    assert rejected.startswith("too long")
    assert "1001" in rejected


def test_floor_never_lifts_the_absolute_limit() -> None:
    limits = GuardLimits(max_chars=500, max_growth=4.0, growth_floor=1000)
    rejected = reason("e" * 800, parent="short", limits=limits)
    assert rejected is not None
    assert rejected.startswith("too long")
    assert "500" in rejected


def test_empty_parent_means_no_relative_limit() -> None:
    assert reason("f" * 3000, parent="") is None


@given(
    parent_len=st.integers(min_value=1, max_value=2000),
    growth=st.floats(min_value=1.0, max_value=8.0),
    floor=st.integers(min_value=0, max_value=1500),
    length=st.integers(min_value=1, max_value=6000),
)
@settings(max_examples=150, deadline=None)
def test_length_rules_match_their_definition(parent_len: int, growth: float, floor: int, length: int) -> None:
    limits = GuardLimits(max_chars=4000, max_growth=growth, growth_floor=floor)
    rejected = reason("g" * length, parent="p" * parent_len, limits=limits)
    too_long = length > 4000 or length > max(growth * parent_len, floor)
    assert (rejected is not None) == too_long
    if rejected is not None:
        assert rejected.startswith("too long")


# -- duplicates ----------------------------------------------------------------------------------


def test_exact_duplicate_is_rejected() -> None:
    other = "Think step by step."
    assert reason(other, seen=(SEED, other)) == "duplicate"


def test_duplicate_ignores_whitespace_differences() -> None:
    seen = ("Think  step\nby step.\n",)
    assert reason("  Think step by\tstep.", seen=seen) == "duplicate"


def test_different_words_or_case_are_not_duplicates() -> None:
    seen = ("Think step by step.",)
    assert reason("think step by step.", seen=seen) is None
    assert reason("Think step by step!", seen=seen) is None
    assert reason("Thinkstep by step.", seen=seen) is None


def test_seen_may_be_a_generator() -> None:
    seen = (t for t in ["A.", "B.", "C."])
    assert rejection_reason("  C. ", parent=SEED, seen=seen, limits=LIMITS) == "duplicate"


_WORD = st.text(
    alphabet=st.characters(blacklist_categories=("Z", "C"), blacklist_characters="{}"), min_size=1, max_size=8
).filter(lambda w: not any(c.isspace() for c in w))
_SPACE = st.text(alphabet=" \t\n\r\u00a0\u2003\u3000", min_size=1, max_size=4)


@given(words=st.lists(_WORD, min_size=1, max_size=12), data=st.data())
@settings(max_examples=150, deadline=None)
def test_any_respacing_of_a_seen_template_is_a_duplicate(words: list[str], data: st.DataObject) -> None:
    seen_template = " ".join(words)
    seps = [data.draw(_SPACE) for _ in range(len(words) - 1)]
    lead = data.draw(st.sampled_from(["", " ", "\n", "\t  "]))
    trail = data.draw(st.sampled_from(["", " ", "\n", " \n\n"]))
    respaced = lead + words[0] + "".join(s + w for s, w in zip(seps, words[1:], strict=True)) + trail
    assert normalize(respaced) == normalize(seen_template)
    assert reason(respaced, parent=None, seen=("unrelated prompt", seen_template)) == "duplicate"


@given(words=st.lists(_WORD, min_size=1, max_size=12))
@settings(max_examples=100, deadline=None)
def test_unseen_brace_free_text_is_accepted(words: list[str]) -> None:
    template = " ".join(words)
    seen = tuple(t for t in ("unrelated prompt", SEED) if normalize(t) != normalize(template))
    assert reason(template, parent=None, seen=seen) is None


# -- unrenderable --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "hint"),
    [
        ("The expected answer is {answer}.", "{answer}"),
        ("Reply in JSON like {", "{{"),
        ("Reply in JSON like }", "}}"),
        ('Reply like {"answer": 4}', "{{"),
        ("Use {} as the slot.", "{{"),
        ("Use {0}.", "{{"),
        ("Use {context} here.", "{context}"),
    ],
)
def test_unrenderable_templates_are_rejected(template: str, hint: str) -> None:
    rejected = reason(template)
    assert rejected is not None
    assert rejected.startswith("unrenderable: ")
    assert hint in rejected


def test_unrenderable_attribute_access_is_rejected_not_raised() -> None:
    # An edit model may write "{question.text}"; the guard must reject it, not crash the APO round.
    rejected = reason("Read {question.text} carefully.")
    assert rejected is not None
    assert rejected.startswith("unrenderable")


# -- first match wins ----------------------------------------------------------------------------


def test_rule_order_is_empty_long_duplicate_unrenderable() -> None:
    limits = GuardLimits(max_chars=60, max_growth=2.0, growth_floor=0)
    parent = "p" * 20
    long_dup_broken = "{answer} " + "x" * 60
    # too long beats duplicate and unrenderable
    rejected = reason(long_dup_broken, parent=parent, seen=(long_dup_broken,), limits=limits)
    assert rejected is not None and rejected.startswith("too long")
    # relative too long beats duplicate
    grown = "{answer} " + "y" * 40  # 49 chars > 2 x 20
    rejected = reason(grown, parent=parent, seen=(grown,), limits=limits)
    assert rejected is not None and rejected.startswith("too long")
    # duplicate beats unrenderable
    broken = "Say {answer}."
    assert reason(broken, parent=parent, seen=(broken,), limits=limits) == "duplicate"
    # and alone it is unrenderable
    rejected = reason(broken, parent=parent, seen=(), limits=limits)
    assert rejected is not None and rejected.startswith("unrenderable")


# -- template bombs (issue 10) -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "hint"),
    [
        # 25 characters that rendered a 1 GB prompt per rollout.
        ("Solve: {question:>1000000000}", "format spec ':>1000000000' in placeholder {question:>1000000000}"),
        # The same with a bigger width raised MemoryError inside the guard and ended the training.
        ("Solve: {question:>1000000000000000}", "format spec ':>1000000000000000'"),
        ("Solve: {question.__class__}", "attribute access in placeholder {question.__class__}"),
        ("Solve: {question[0]}", "index access in placeholder {question[0]}"),
        ("Solve: {question!r}", "conversion !r in placeholder {question!r}"),
        ("Solve: {question:}", "format spec ':' in placeholder {question:}"),
    ],
)
def test_template_bombs_are_rejected_as_unrenderable(template: str, hint: str) -> None:
    rejected = reason(template)
    assert rejected is not None
    assert rejected.startswith("unrenderable: ")
    assert hint in rejected
    assert "at line 1, column 8" in rejected


def test_a_task_with_other_fields_allows_only_those_bare() -> None:
    limits = GuardLimits(max_chars=4000, max_growth=4.0, template_fields=("question", "context"))
    assert reason("Given {context}, answer {question}.", limits=limits) is None
    rejected = reason("Given {context:>99}, answer {question}.", limits=limits)
    assert rejected is not None and "format spec ':>99'" in rejected
