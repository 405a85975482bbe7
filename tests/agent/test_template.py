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
        ('Reply like {"answer": 4}', 'unknown placeholder {"answer": 4} at line 1, column 12'),
        ("The expected answer is {answer}.", "unknown placeholder {answer} at line 1, column 24"),
        ("Use {} here.", "empty placeholder {} at line 1, column 5"),
        ("Use {0} here.", "positional placeholder {0} at line 1, column 5"),
        ("Spaced { question }.", "unknown placeholder { question }"),
        ("Bad spec {question:d}.", "format spec ':d' in placeholder {question:d}"),
        ("Bad conversion {question!x}.", "conversion !x in placeholder {question!x}"),
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
    except TemplateError:
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


# -- only bare fields: no spec, conversion, attribute or index (issue 10) --------------------------


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        # A width spec renders a gigabyte; a bigger one raised MemoryError, which nothing caught.
        ("Q: {question:>1000000000}", "format spec ':>1000000000' in placeholder {question:>1000000000}"),
        ("Q: {question:>1000000000000000}", "format spec ':>1000000000000000'"),
        ("Q: {question:.3}", "format spec ':.3'"),
        ("Q: {question:}", "format spec ':' in placeholder {question:}"),
        ("Q: {question:{question}}", "format spec ':{question}'"),
        ("Q: {question!r}", "conversion !r in placeholder {question!r}"),
        ("Q: {question!s:}", "conversion !s in placeholder {question!s:}"),
        ("Q: {question.__class__}", "attribute access in placeholder {question.__class__}"),
        ("Q: {question.__class__.__init__.__globals__}", "attribute access"),
        ("Q: {question[0]}", "index access in placeholder {question[0]}"),
        ("Q: {question[0].real}", "index access"),
        ("Q: {answer.x}", "attribute access in placeholder {answer.x}"),
        ("Q: {!r}", "empty placeholder {!r}"),
        ("Q: {:>9}", "empty placeholder {:>9}"),
        ("Q: {0:>1000000000}", "positional placeholder {0:>1000000000}"),
    ],
)
def test_anything_but_a_bare_field_is_refused_by_name(template: str, fragment: str) -> None:
    with pytest.raises(TemplateError) as info:
        check_template(template)
    message = str(info.value)
    assert fragment in message
    assert "at line 1, column 4" in message  # where it is
    assert "{question}" in message and "{{ and }}" in message  # what is allowed instead
    with pytest.raises(TemplateError):
        render_prompt(template, TASK)


def test_the_error_names_line_and_column_of_a_multiline_template() -> None:
    template = "You solve problems.\nThink first.\n  Then answer {question!r} briefly."
    with pytest.raises(TemplateError, match=r"\{question!r\} at line 3, column 15"):
        check_template(template)
    with pytest.raises(TemplateError, match=r"Single '\}' encountered in format string at line 2, column 3"):
        check_template("ok {question}\nx } y")


def test_a_huge_placeholder_is_quoted_short() -> None:
    with pytest.raises(TemplateError) as info:
        check_template("{question:" + "9" * 100_000 + "}")
    assert len(str(info.value)) < 500


def test_rendering_is_bounded_however_often_a_field_repeats() -> None:
    # Every placeholder is bare, but 200,000 of them times a long question would be gigabytes.
    template = "{question}" * 200_000
    assert render_prompt(template, {"question": "?"}) == "?" * 200_000
    with pytest.raises(TemplateError, match="rendered prompt would be 2,000,000,000 characters"):
        render_prompt(template, {"question": "x" * 10_000})


def test_rendering_never_calls_str_format() -> None:
    # A str subclass whose format() would blow up: render_prompt joins the pieces itself.
    class NoFormat(str):
        def format(self, *args: object, **kwargs: object) -> str:
            raise AssertionError("str.format called")

    assert render_prompt(NoFormat("Q: {question} {{x}}"), TASK) == "Q: What is 2 + 2? {x}"


def test_non_string_field_values_render_as_text() -> None:
    assert render_prompt("Q: {question}", {"question": 12}) == "Q: 12"


_FIELD_TEXT = st.text(alphabet="{}[]!:.0 aqnswertiuo_>", max_size=40)


@given(template=_FIELD_TEXT)
@example(template="{question:>1000000000}")
@example(template="{question.__class__}")
@example(template="{question:}")
@settings(max_examples=400, deadline=None)
def test_accepted_templates_render_as_str_format_would(template: str) -> None:
    # The accepted subset means the same to Agent Lightning's f-string engine and to render_prompt;
    # anything else is a TemplateError, never another exception.
    values = {"question": "How many apples?"}
    try:
        rendered = render_prompt(template, values)
    except TemplateError:
        return
    assert rendered == template.format(**values)
    assert len(rendered) <= len(template) + len(values["question"]) * template.count("{question}")
