"""Tests for trainer.agent.template: what a prompt template may contain and how it renders."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from trainer.agent.template import TEMPLATE_FIELDS, TemplateError, check_template, render_prompt

TASK = {"id": "t-1", "question": "What is 2 + 2?", "answer": "4", "kind": "add", "difficulty": 1}
SENTINEL = "SENTINEL-ANSWER-913"  # an answer that can appear nowhere else


def test_question_is_substituted() -> None:
    rendered = render_prompt("Solve: {question}\nAnswer with a number.", TASK)
    assert rendered == "Solve: What is 2 + 2?\nAnswer with a number."


def test_question_may_appear_several_times() -> None:
    assert render_prompt("{question} / {question}", TASK) == "What is 2 + 2? / What is 2 + 2?"


def test_template_without_placeholders_is_unchanged() -> None:
    text = "You solve math word problems. End with: The answer is <number>."
    assert render_prompt(text, TASK) == text
    check_template(text)


def test_missing_question_renders_empty() -> None:
    assert render_prompt("Q: {question}.", {"answer": "4"}) == "Q: ."


def test_question_braces_are_not_reinterpreted() -> None:
    task = {"question": "What is {answer}? Use {0} and }{", "answer": SENTINEL}
    assert render_prompt("Q: {question}", task) == "Q: What is {answer}? Use {0} and }{"


def test_doubled_braces_render_literally() -> None:
    assert render_prompt('Reply as JSON: {{"answer": <number>}} for {question}', TASK) == (
        'Reply as JSON: {"answer": <number>} for What is 2 + 2?'
    )
    assert render_prompt("{{question}}", TASK) == "{question}"
    assert render_prompt("{{{question}}}", TASK) == "{What is 2 + 2?}"


def test_only_question_is_a_field() -> None:
    assert TEMPLATE_FIELDS == ("question",)


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("Reply in JSON like {", "Single '{'"),
        ("Reply in JSON like }", "Single '}'"),
        ("Close {question}}", "Single '}'"),
        ('Reply like {"answer": 4}', 'unknown placeholder {"answer"}'),
        ("The expected answer is {answer}.", "unknown placeholder {answer}"),
        ("Use {} here.", "Replacement index 0"),
        ("Use {0} here.", "Replacement index 0"),
        ("Spaced { question }.", "unknown placeholder { question }"),
        ("Bad spec {question:d}.", "Unknown format code"),
        ("Bad conversion {question!x}.", "conversion"),
    ],
)
def test_bad_templates_raise_template_error_with_help(template: str, fragment: str) -> None:
    with pytest.raises(TemplateError) as info:
        render_prompt(template, TASK)
    message = str(info.value)
    assert fragment in message
    assert "{{ and }}" in message  # tells the user how to write a literal brace
    with pytest.raises(TemplateError):
        check_template(template)


def test_unknown_placeholder_message_lists_the_allowed_ones() -> None:
    with pytest.raises(TemplateError) as info:
        render_prompt("Given {context}, answer {question}", TASK)
    assert "{context}" in str(info.value)
    assert "{question}" in str(info.value)


def test_template_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        check_template("{answer}")


@pytest.mark.parametrize("template", ["Read {question.text} carefully.", "First letter: {question[a]}"])
def test_attribute_and_index_access_raise_template_error(template: str) -> None:
    # Only TemplateError is an expected outcome: anything else crashes the guard, the dry run and
    # every rollout of the candidate.
    with pytest.raises(TemplateError):
        check_template(template)


def test_expected_answer_is_not_injected_by_answer_placeholder() -> None:
    task = {**TASK, "answer": SENTINEL}
    with pytest.raises(TemplateError):
        render_prompt("Hint: the answer is {answer}", task)


_TEMPLATE_TEXT = st.text(alphabet="{}[]!:.0 aqnswertiuo_", max_size=40)


@given(template=_TEMPLATE_TEXT)
@example(template="{answer}")
@example(template="{question}{answer}")
@example(template="{question!r}")
@example(template="{question:>30}")
@settings(max_examples=300, deadline=None)
def test_expected_answer_can_never_be_injected(template: str) -> None:
    task = {"question": "How many apples?", "answer": SENTINEL}
    try:
        rendered = render_prompt(template, task)
    except (TemplateError, AttributeError, TypeError):
        # AttributeError/TypeError are a separate bug (see test_attribute_and_index_access_...);
        # this property is about leaks only.
        return
    assert SENTINEL not in rendered


@given(text=st.text(alphabet=st.characters(blacklist_characters="{}"), max_size=200))
@settings(max_examples=150, deadline=None)
def test_brace_free_text_renders_verbatim(text: str) -> None:
    assert render_prompt(text, TASK) == text
    check_template(text)


@given(text=st.text(max_size=60))
@settings(max_examples=150, deadline=None)
def test_escaped_text_renders_to_itself(text: str) -> None:
    escaped = text.replace("{", "{{").replace("}", "}}")
    assert render_prompt(escaped, TASK) == text
