"""Tests of trainer.agent.grader: answer extraction rules and grading tolerance."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trainer.agent.grader import TOLERANCE, Grade, extract_answer, grade
from trainer.data.numbers import canonical_number
from trainer.data.problems import generate_problems

F = Fraction


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # plain numbers and their decorations
        ("42", F(42)),
        ("-7", F(-7)),
        ("+7", F(7)),
        ("\u22124", F(-4)),
        ("1,234,567", F(1234567)),
        ("3.50", F(7, 2)),
        (".5", F(1, 2)),
        ("$1,234.50", F(246900, 200)),
        ("€3", F(3)),
        ("£2.25", F(9, 4)),
        ("-$5", F(-5)),
        ("$-5", F(-5)),
        ("\\$5", F(5)),
        ("15%", F(15)),
        ("15\\%", F(15)),
        ("3/4", F(3, 4)),
        ("-1/2", F(-1, 2)),
        ("\\frac{3}{4}", F(3, 4)),
        ("\\dfrac{10}{4}", F(5, 2)),
        ("-\\frac{1}{2}", F(-1, 2)),
        ("1{,}234", F(1234)),
        ("12 apples", F(12)),
        ("45 km/h", F(45)),
        ("3.5 hours", F(7, 2)),
        ("**42**", F(42)),
        ("$$42$$", F(42)),
        ("It is 2.", F(2)),
        ("It is 3.25.", F(13, 4)),
        # what is not a number, or not a separate one
        ("no number here", None),
        ("", None),
        ("1/0", None),
        ("x2", None),
        (" " + "9" * 2000, None),
        ("1,2,3", F(3)),
        ("1,2345", F(2345)),
        ("COVID-19", F(19)),
        ("5-3", F(3)),
        ("x = -7", F(-7)),
        ("12/25/2023", F(12)),
        ("version 1.2.3", F(6, 5)),
        # rule 4: the last number
        ("3 + 4 = 7", F(7)),
        ("She had 5 apples and ate 2, so 3 are left", F(3)),
        ("Total: 12 apples. Each costs $2, so 24", F(24)),
        # rule 3: answer phrases
        ("The answer is 42.", F(42)),
        ("The answer is 42. I used 3 steps.", F(42)),
        ("Answer: 17 (from 10 + 7)", F(17)),
        ("answer = 9, checked with 3 * 3", F(9)),
        ("Final answer: -3.5", F(-7, 2)),
        ("The final answer is: **$12.50**. Hope it helps with step 2!", F(25, 2)),
        ("**Answer:** 8, not 9", F(8)),
        ("**Final Answer**: 17 and 4", F(17)),
        ("Answer:\n42\nWe used 6 and 7.", F(42)),
        ("the answer is $5 because 2 + 3", F(5)),
        ("The answer was 6 yesterday and 8 today", F(6)),
        ("The answer would be 3/4 of 8", F(3, 4)),
        ("The answer is 2 + 3 = 5 apples. Check: 9", F(5)),
        ("The answer is 10 - 4 = 6", F(6)),
        ("The answer is 5, since 2 + 3 = 5 and 9", F(5)),
        ("The answer is 5. Wait, the answer is 6. Then 7", F(6)),
        ("The answer isn't 5, it's 6", F(6)),
        ("The answers are 4 and 5", F(5)),
        ("The answer is <number>. 3 + 4 = 7", F(7)),
        ("x = 5. y = 6", F(6)),
        # rule 2: boxed
        ("We get \\boxed{18} apples; 3 were extra", F(18)),
        ("\\boxed{x = 2 + 3 = 5} then 9", F(5)),
        ("$\\boxed{\\frac{3}{4}}$ of 8", F(3, 4)),
        ("\\boxed{\\$18.50}", F(37, 2)),
        ("\\boxed{1} \\boxed{2} 3", F(2)),
        ("\\boxed{2} \\boxed{none} 3", F(2)),
        ("\\fbox{7} 8", F(7)),
        ("\\boxed{12 and it never closes", F(12)),
        # rule 1: GSM8K marker
        ("48 + 24 = 72\n#### 72", F(72)),
        ("#### 1,234 and then 5", F(1234)),
        ("#### 3 #### 4 then 5", F(4)),
        ("#### 3 ####", F(3)),
        ("#### none", None),
        ("####\n-2", F(-2)),
    ],
)
def test_extract_answer(text: str, expected: Fraction | None) -> None:
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is 6. \\boxed{5}. #### 4. Then 3", F(4)),
        ("The answer is 6. \\boxed{5}. Then 3", F(5)),
        ("The answer is 6. Then 3", F(6)),
        ("#### none here \\boxed{5}", F(5)),
        ("\\boxed{} The answer is 6", F(6)),
        ("The answer is unclear. Maybe 3", F(3)),
    ],
)
def test_rules_apply_in_priority_order(text: str, expected: Fraction) -> None:
    assert extract_answer(text) == expected


# --- round trips: any terminating value written in any supported style ------------------------------

terminating = st.builds(
    lambda numerator, denominator: Fraction(numerator, denominator),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.sampled_from([1, 2, 4, 5, 8, 10, 20, 25, 100, 1000]),
)


def with_commas(value: Fraction) -> str:
    whole, _, digits = canonical_number(f"{value.numerator}/{value.denominator}").partition(".")
    grouped = f"{int(whole):,}" if whole != "-0" else "-0"
    return f"{grouped}.{digits}" if digits else grouped


def money(value: Fraction) -> str:
    sign = "-" if value < 0 else ""
    return f"{sign}${with_commas(abs(value))}"


def two_places(value: Fraction) -> str:
    sign = "-" if value < 0 else ""
    return f"{sign}{abs(value.numerator) // value.denominator:,}.{round(abs(value) * 100) % 100:02d}"


NUMBER_STYLES: list[Callable[[Fraction], str]] = [
    lambda v: canonical_number(f"{v.numerator}/{v.denominator}"),
    with_commas,
    money,
    lambda v: f"{'-' if v < 0 else ''}\\${with_commas(abs(v))}",
    lambda v: f"{v.numerator}/{v.denominator}",
]
SENTENCES: list[Callable[[str], str]] = [
    lambda n: n,
    lambda n: f"The answer is {n}.",
    lambda n: f"First 12 + 7 = 19, then 3 * 4 = 12. The answer is {n}. That took 2 steps.",
    lambda n: f"Answer: {n}",
    lambda n: f"So the final answer: **{n}**",
    lambda n: f"Reasoning with 3 and 4.\n#### {n}",
    lambda n: f"We find $\\boxed{{{n}}}$ after 5 steps.",
    lambda n: f"Adding 7 and 8 gives {n} apples",
    lambda n: f"It takes {n} hours",
    lambda n: f"We need {n}%",
    lambda n: f"The total is {n} km/h.",
]


@given(
    terminating,
    st.sampled_from(range(len(NUMBER_STYLES))),
    st.sampled_from(range(len(SENTENCES))),
)
def test_extraction_round_trips(value: Fraction, style: int, sentence: int) -> None:
    text = SENTENCES[sentence](NUMBER_STYLES[style](value))
    assert extract_answer(text) == value, text


@given(st.integers(min_value=-(10**6), max_value=10**6).map(lambda cents: Fraction(cents, 100)))
def test_money_with_two_places_round_trips(value: Fraction) -> None:
    assert extract_answer(f"The answer is {two_places(value)} dollars.") == value
    assert grade(f"It costs ${two_places(abs(value))}.", canonical_number(str(abs(value)))).correct


@given(st.fractions(max_denominator=10**6), st.booleans())
def test_any_fraction_round_trips(value: Fraction, latex: bool) -> None:
    if latex:
        sign = "-" if value < 0 else ""
        text = f"so \\(x = {sign}\\frac{{{abs(value.numerator)}}}{{{value.denominator}}}\\)"
    else:
        text = f"The answer is {value.numerator}/{value.denominator}."
    assert extract_answer(text) == value, text


@given(st.text())
def test_extract_answer_never_crashes(text: str) -> None:
    result = extract_answer(text)
    assert result is None or isinstance(result, Fraction)


# --- grade -------------------------------------------------------------------------------------------


def test_correct_reply_gets_full_reward() -> None:
    assert grade("Each friend pays $12.50.", "12.5") == Grade(reward=1.0, extracted="12.5", correct=True)


def test_wrong_reply_gets_nothing_but_reports_what_it_read() -> None:
    assert grade("The answer is 12.46", "12.5") == Grade(reward=0.0, extracted="12.46", correct=False)


def test_reply_without_number_gets_nothing() -> None:
    assert grade("I don't know.", "3") == Grade(reward=0.0, extracted=None, correct=False)


def test_non_terminating_extracted_values_are_reported_as_fractions() -> None:
    assert grade("The answer is 1/3", "0.33") == Grade(reward=0.0, extracted="1/3", correct=False)


@pytest.mark.parametrize("expected", ["1,234", "3/4", 42, 0.75, "-7"])
def test_expected_accepts_anything_canonical_number_accepts(expected: str | int | float) -> None:
    reply = f"The answer is {canonical_number(expected)}"
    assert grade(reply, expected).correct


@pytest.mark.parametrize("expected", ["many", "", "1/3"])
def test_invalid_expected_is_a_value_error(expected: str) -> None:
    with pytest.raises(ValueError):
        grade("42", expected)


def test_tolerance_is_one_in_a_million() -> None:
    assert Fraction(1, 1_000_000) == TOLERANCE


@pytest.mark.parametrize(
    ("reply", "expected", "correct"),
    [
        # relative for big values: 1e-6 of 1,000,000 is 1
        ("1000001", "1000000", True),
        ("999999", "1000000", True),
        ("1000001.01", "1000000", False),
        ("999998.99", "1000000", False),
        # absolute below 1
        ("0.500001", "0.5", True),
        ("0.5000011", "0.5", False),
        ("0.000001", "0", True),
        ("-0.000001", "0", True),
        ("0.0000011", "0", False),
        ("-1.000001", "-1", True),
        ("-1.0000011", "-1", False),
        # no rounding leniency
        ("12.5", "12.50", True),
        ("12.49", "12.5", False),
        ("13", "12.5", False),
        ("0.33", "0.333", False),
    ],
)
def test_tolerance_boundaries(reply: str, expected: str, correct: bool) -> None:
    result = grade(reply, expected)
    assert result.correct is correct
    assert result.reward == (1.0 if correct else 0.0)


def test_grade_is_frozen() -> None:
    result = grade("1", "1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.reward = 0.0  # type: ignore[misc]


def test_generated_answers_grade_as_correct_and_off_by_one_as_wrong() -> None:
    for task in generate_problems(200, seed=21):
        answer = Fraction(task["answer"])
        reply = f"{task['question']}\nLet me think. The answer is {task['answer']}."
        assert grade(reply, task["answer"]).correct, task
        assert grade(f"#### {money(answer)}", task["answer"]).correct, task
        assert not grade(f"The answer is {answer + 1}.", task["answer"]).correct, task


def test_reply_restating_the_question_without_answer_reads_its_last_number() -> None:
    reply = "Sam has 3 apples and gets 4 more. How many apples does Sam have?"
    assert grade(reply, "7") == Grade(reward=0.0, extracted="4", correct=False)
