"""Tests of trainer.data: canonical numbers, the problem generator, JSONL loading and splits."""

from __future__ import annotations

import ast
import hashlib
import json
import math
import random
import re
from collections import Counter
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trainer.data import MAX_QUESTION_CHARS, DatasetError
from trainer.data.jsonl import load_jsonl
from trainer.data.numbers import canonical_number
from trainer.data.problems import KINDS, MathTask, generate_problems
from trainer.data.solutions import MAX_SOLUTION_CHARS
from trainer.data.splits import Splits, load_splits, split_tasks

CANONICAL_RE = re.compile(r"-?(0|[1-9]\d*)(\.\d*[1-9])?")
NUMBER_IN_TEXT_RE = re.compile(r"\d[\d,]*(?:\.\d+)?")


def numbers_in(text: str) -> list[Fraction]:
    return [Fraction(match.replace(",", "")) for match in NUMBER_IN_TEXT_RE.findall(text)]


def write_lines(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def record(question: object = "What is 1 + 1?", answer: object = 2, **extra: object) -> str:
    return json.dumps({"question": question, "answer": answer, **extra})


def make_tasks(count: int) -> list[MathTask]:
    return [
        MathTask(id=f"t{i}", question=f"What is {i} + 1?", answer=str(i + 1), kind="add", difficulty=1)
        for i in range(count)
    ]


# --- canonical_number ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("42", "42"),
        (42, "42"),
        (-7, "-7"),
        ("-3.5", "-3.5"),
        ("12.50", "12.5"),
        (" 12.50 ", "12.5"),
        ("1,234", "1234"),
        ("1,234,567.25", "1234567.25"),
        ("3/4", "0.75"),
        ("-1/2", "-0.5"),
        ("10/4", "2.5"),
        (".5", "0.5"),
        ("3.", "3"),
        ("007", "7"),
        ("+5", "5"),
        ("\u22127", "-7"),
        ("-0", "0"),
        ("0.000", "0"),
        (0.1, "0.1"),
        (12.5, "12.5"),
        (-0.75, "-0.75"),
        (3.0, "3"),
        (1e21, "1000000000000000000000"),
        (1e-7, "0.0000001"),
        (10**30, "1000000000000000000000000000000"),
    ],
)
def test_canonical_number_accepts(value: str | int | float, expected: str) -> None:
    assert canonical_number(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "many",
        "",
        "  ",
        ".",
        "-",
        "1,23",
        "1,2345",
        ",123",
        "1,234,",
        "1.2.3",
        "--5",
        "1e3",
        "$5",
        "5%",
        "1/0",
        "1/3",
        "2/7",
        "0.5/2",
        True,
        False,
        math.nan,
        math.inf,
        -math.inf,
    ],
)
def test_canonical_number_rejects(value: str | int | float) -> None:
    with pytest.raises(ValueError):
        canonical_number(value)


def test_canonical_number_rejects_non_numbers_at_runtime() -> None:
    with pytest.raises(ValueError, match="not a number"):
        canonical_number([1])  # type: ignore[arg-type]


def test_canonical_number_explains_non_terminating_fractions() -> None:
    with pytest.raises(ValueError, match="no exact decimal"):
        canonical_number("1/3")


terminating = st.builds(
    lambda numerator, twos, fives: Fraction(numerator, 2**twos * 5**fives),
    st.integers(min_value=-(10**15), max_value=10**15),
    st.integers(min_value=0, max_value=12),
    st.integers(min_value=0, max_value=12),
)


@given(terminating)
def test_canonical_number_round_trips_exact_fractions(value: Fraction) -> None:
    text = canonical_number(f"{value.numerator}/{value.denominator}")
    assert CANONICAL_RE.fullmatch(text), text
    assert text != "-0"
    assert Fraction(text) == value
    assert canonical_number(text) == text


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_canonical_number_reads_floats_as_their_shortest_repr(value: float) -> None:
    text = canonical_number(value)
    assert CANONICAL_RE.fullmatch(text), text
    assert "e" not in text
    assert float(text) == value
    assert Fraction(text) == Fraction(repr(value))


# --- generate_problems -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def problems() -> list[MathTask]:
    return generate_problems(400, seed=11)


def test_generator_is_deterministic() -> None:
    assert generate_problems(150, seed=5) == generate_problems(150, seed=5)


def test_generator_depends_on_the_seed() -> None:
    first = [task["question"] for task in generate_problems(50, seed=1)]
    second = [task["question"] for task in generate_problems(50, seed=2)]
    assert first != second


def test_longer_lists_extend_shorter_ones() -> None:
    assert generate_problems(100, seed=3)[:40] == generate_problems(40, seed=3)


def test_generator_ignores_and_keeps_the_global_random_state() -> None:
    random.seed(0)
    state = random.getstate()
    first = generate_problems(30, seed=9)
    assert random.getstate() == state
    random.seed(12345)
    assert generate_problems(30, seed=9) == first


def test_ids_are_stable_and_unique(problems: list[MathTask]) -> None:
    assert [task["id"] for task in problems] == [f"gen-11-{i}" for i in range(400)]


def test_tasks_are_plain_json_dicts(problems: list[MathTask]) -> None:
    for task in problems:
        assert type(task) is dict
        assert set(task) == {"id", "question", "answer", "kind", "difficulty", "solution"}
        assert json.loads(json.dumps(task)) == task


def test_answers_are_canonical_non_negative_with_two_places_at_most(problems: list[MathTask]) -> None:
    for task in problems:
        answer = task["answer"]
        assert CANONICAL_RE.fullmatch(answer), task
        assert canonical_number(answer) == answer
        value = Fraction(answer)
        assert value >= 0, task
        assert (value * 100).denominator == 1, task


def test_every_kind_and_difficulty_appears(problems: list[MathTask]) -> None:
    assert set(Counter(task["kind"] for task in problems)) == set(KINDS)
    assert {task["difficulty"] for task in problems} == {1, 2, 3}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_kind_appears_for_other_seeds(seed: int) -> None:
    assert {task["kind"] for task in generate_problems(300, seed)} == set(KINDS)


def test_questions_are_varied(problems: list[MathTask]) -> None:
    shapes = {re.sub(r"\$?\d[\d,.]*", "#", task["question"]) for task in problems}
    assert len(shapes) >= 150
    names = {word for task in problems for word in ("Ava", "Ben", "Zoe", "Omar") if word in task["question"]}
    assert len(names) >= 3


def test_questions_read_as_questions(problems: list[MathTask]) -> None:
    for task in problems:
        assert task["question"].endswith("?"), task
        assert "{" not in task["question"], task
        assert " 1 hours" not in task["question"], task


def test_difficulty_one_is_genuinely_easy() -> None:
    easy = generate_problems(300, seed=4, difficulties=(1,))
    assert {task["difficulty"] for task in easy} == {1}
    assert "multi_step" not in {task["kind"] for task in easy}
    for task in easy:
        assert max(numbers_in(task["question"])) <= 100, task
        assert Fraction(task["answer"]) <= 100, task


def test_difficulties_are_respected() -> None:
    hard = generate_problems(100, seed=4, difficulties=(2, 3))
    assert {task["difficulty"] for task in hard} == {2, 3}


@pytest.mark.parametrize("seed", [11, 12])
def test_single_operation_answers_match_their_questions(seed: int) -> None:
    checked = Counter[str]()
    for task in generate_problems(400, seed):
        if task["kind"] not in {"add", "subtract", "multiply"} or "$" in task["question"]:
            continue
        numbers = numbers_in(task["question"])
        expected = {
            "add": sum(numbers, Fraction(0)),
            "subtract": numbers[0] - numbers[1] if len(numbers) == 2 else None,
            "multiply": math.prod(numbers) if len(numbers) == 2 else None,
        }[task["kind"]]
        assert Fraction(task["answer"]) == expected, task
        checked[task["kind"]] += 1
    assert min(checked.values()) >= 10 and len(checked) == 3


def test_divide_answers_match_their_questions(problems: list[MathTask]) -> None:
    count_problems = [task for task in problems if task["kind"] == "divide" and "$" not in task["question"]]
    assert count_problems
    for task in count_problems:
        total, divisor = numbers_in(task["question"])
        assert Fraction(task["answer"]) == total / divisor, task


def test_zero_problems_is_an_empty_list() -> None:
    assert generate_problems(0, seed=1) == []


@pytest.mark.parametrize(
    ("n", "difficulties", "message"),
    [(-1, (1,), "negative"), (5, (), "empty"), (5, (1, 4), r"\[4\]"), (5, (0,), r"\[0\]")],
)
def test_generator_rejects_bad_arguments(n: int, difficulties: tuple[int, ...], message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        generate_problems(n, seed=1, difficulties=difficulties)


# --- load_jsonl --------------------------------------------------------------------------------------


def test_load_jsonl_reads_all_answer_styles(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "data.jsonl",
        record("Int?", 42),
        record("Float?", 3.5),
        "",
        record("Commas?", "1,234"),
        record("Fraction?", "3/4"),
        record("GSM8K?", "Natalia sold 48 clips.\nShe sold 48+24 = <<48+24=72>>72.\n#### 1,272"),
        record("Negative?", "-3.5"),
        record("Float noise?", 0.1),
        "   ",
        record("  Padded?  ", " 12.50 ", id="custom-id", kind="money", difficulty=2),
        record("Int id?", 7, id=99),
    )
    tasks = load_jsonl(path)
    assert [task["answer"] for task in tasks] == [
        "42",
        "3.5",
        "1234",
        "0.75",
        "1272",
        "-3.5",
        "0.1",
        "12.5",
        "7",
    ]
    assert [task["id"] for task in tasks] == [
        "data-1",
        "data-2",
        "data-4",
        "data-5",
        "data-6",
        "data-7",
        "data-8",
        "custom-id",
        "99",
    ]
    assert tasks[0] == MathTask(id="data-1", question="Int?", answer="42", kind="custom", difficulty=0)
    assert tasks[7] == MathTask(id="custom-id", question="Padded?", answer="12.5", kind="money", difficulty=2)


def test_load_jsonl_accepts_crlf_and_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "windows.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + f"{record('A?', 1)}\r\n{record('B?', 2)}\r\n".encode())
    assert [task["answer"] for task in load_jsonl(path)] == ["1", "2"]


def test_load_jsonl_keeps_unicode_line_separators_inside_strings(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text('{"question": "Two\u2028lines?", "answer": 1}\n' + record("Next?", 2) + "\n", encoding="utf-8")
    tasks = load_jsonl(path)
    assert [task["id"] for task in tasks] == ["data-1", "data-2"]


def test_generated_tasks_survive_a_jsonl_round_trip(tmp_path: Path) -> None:
    tasks = generate_problems(30, seed=2)
    path = write_lines(tmp_path / "gen.jsonl", *(json.dumps(task) for task in tasks))
    assert load_jsonl(path) == tasks


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (
            [record(), record("What is 2 + 2?", 4), '{"question": "x" "answer": 1}'],
            "data.jsonl:3: invalid JSON (Expecting ',' delimiter",
        ),
        (
            [record(f"What is {i} + 1?", i + 1) for i in range(4)] + [record(answer="many")],
            "data.jsonl:5: \"answer\" is not a number: 'many'",
        ),
        ([record(), '{"answer": 3}'], 'data.jsonl:2: missing "question"'),
        (['{"question": "Why?"}'], 'data.jsonl:1: missing "answer"'),
        ([record(question="   ")], 'data.jsonl:1: "question" must be a non-empty string'),
        ([record(question=5)], 'data.jsonl:1: "question" must be a non-empty string'),
        (["[1, 2]"], "data.jsonl:1: expected a JSON object, got list"),
        (['"text"'], "data.jsonl:1: expected a JSON object, got str"),
        ([record(answer=True)], 'data.jsonl:1: "answer" must be a number or a string, got bool'),
        ([record(answer=None)], 'data.jsonl:1: "answer" must be a number or a string, got NoneType'),
        ([record(answer=[1])], 'data.jsonl:1: "answer" must be a number or a string, got list'),
        (['{"question": "q", "answer": NaN}'], 'data.jsonl:1: "answer" is not a number: nan'),
        ([record(answer="1/3")], "data.jsonl:1: \"answer\" '1/3' has no exact decimal representation"),
        ([record(answer="so #### many")], "data.jsonl:1: \"answer\" is not a number: 'many'"),
        ([record(answer="")], "data.jsonl:1: \"answer\" is not a number: ''"),
        ([record(id="")], 'data.jsonl:1: "id" must be a non-empty string or an integer'),
        ([record(id=1.5)], 'data.jsonl:1: "id" must be a non-empty string or an integer'),
        ([record(kind=3)], 'data.jsonl:1: "kind" must be a non-empty string'),
        ([record(difficulty=-1)], 'data.jsonl:1: "difficulty" must be a non-negative integer'),
        ([record(difficulty="2")], 'data.jsonl:1: "difficulty" must be a non-negative integer'),
        ([record(difficulty=True)], 'data.jsonl:1: "difficulty" must be a non-negative integer'),
        (["[" * 100_000], "data.jsonl:1: invalid JSON"),
    ],
)
def test_load_jsonl_names_file_line_and_problem(tmp_path: Path, lines: list[str], expected: str) -> None:
    path = write_lines(tmp_path / "data.jsonl", *lines)
    with pytest.raises(DatasetError) as caught:
        load_jsonl(path)
    message = str(caught.value)
    assert message.startswith(str(path.parent)), message
    assert expected in message


def test_line_numbers_count_blank_lines(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "data.jsonl", record(), "", "  ", record(answer="many"))
    with pytest.raises(DatasetError, match=r"data\.jsonl:4: "):
        load_jsonl(path)


def test_duplicate_ids_name_both_lines(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "data.jsonl", record("A?"), record("B?", id="a"), record("C?"), record("D?", id="a"))
    with pytest.raises(DatasetError) as caught:
        load_jsonl(path)
    message = str(caught.value)
    assert "data.jsonl:4: duplicate id 'a'" in message
    assert "line 2" in message


def test_explicit_ids_may_not_collide_with_default_ids(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "data.jsonl", record("A?"), record("B?", id="data-1"))
    with pytest.raises(DatasetError, match=r"data\.jsonl:2: duplicate id 'data-1' \(first used on line 1\)"):
        load_jsonl(path)


def test_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.jsonl"
    with pytest.raises(DatasetError, match=r"nowhere\.jsonl: dataset file not found"):
        load_jsonl(path)


def test_unreadable_path_is_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="cannot read dataset file") as caught:
        load_jsonl(tmp_path)
    assert str(tmp_path) in str(caught.value)


@pytest.mark.parametrize("content", ["", "\n\n   \n"])
def test_file_without_tasks_is_rejected(tmp_path: Path, content: str) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DatasetError, match=r"empty\.jsonl contains no tasks"):
        load_jsonl(path)


def test_non_utf8_is_rejected_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(record().encode() + b"\n" + '{"question": "Caf\xe9?", "answer": 1}'.encode("latin-1"))
    with pytest.raises(DatasetError) as caught:
        load_jsonl(path)
    message = str(caught.value)
    assert "latin1.jsonl:2: not valid UTF-8" in message
    assert "0xe9" in message


def test_dataset_error_is_a_value_error() -> None:
    assert issubclass(DatasetError, ValueError)


# --- split_tasks / load_splits --------------------------------------------------------------------------


def ids(tasks: list[MathTask]) -> list[str]:
    return [task["id"] for task in tasks]


def test_split_sizes_are_exact_and_disjoint() -> None:
    splits = split_tasks(make_tasks(20), train_size=5, val_size=4, test_size=3, seed=1)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (5, 4, 3)
    all_ids = ids(splits.train) + ids(splits.val) + ids(splits.test)
    assert len(set(all_ids)) == 12


def test_split_is_deterministic_and_seeded() -> None:
    tasks = make_tasks(30)
    assert split_tasks(tasks, 10, 5, 5, seed=3) == split_tasks(tasks, 10, 5, 5, seed=3)
    assert split_tasks(tasks, 10, 5, 5, seed=3) != split_tasks(tasks, 10, 5, 5, seed=4)


def test_split_shuffles_without_touching_the_input() -> None:
    tasks = make_tasks(30)
    before = list(tasks)
    splits = split_tasks(tasks, 30 - 2, 1, 1, seed=0)
    assert tasks == before
    assert ids(splits.train) != ids(tasks)[:28]


@given(
    st.integers(min_value=1, max_value=10),
    st.integers(min_value=1, max_value=10),
    st.integers(min_value=1, max_value=10),
    st.integers(min_value=0, max_value=5),
    st.integers(),
)
def test_split_property(train: int, val: int, test: int, spare: int, seed: int) -> None:
    tasks = make_tasks(train + val + test + spare)
    splits = split_tasks(tasks, train, val, test, seed)
    chosen = ids(splits.train) + ids(splits.val) + ids(splits.test)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (train, val, test)
    assert len(set(chosen)) == len(chosen)
    assert set(chosen) <= set(ids(tasks))


def test_too_few_tasks_says_what_to_lower() -> None:
    with pytest.raises(DatasetError) as caught:
        split_tasks(make_tasks(8), train_size=5, val_size=3, test_size=2, seed=0)
    message = str(caught.value)
    for part in ("need 10", "only 8", "TRAIN_SIZE", "VAL_SIZE", "TEST_SIZE", "--train-size", "--test-size"):
        assert part in message, part


@pytest.mark.parametrize(
    ("sizes", "setting"),
    [((0, 1, 1), "TRAIN_SIZE / --train-size"), ((1, 0, 1), "VAL_SIZE"), ((1, 1, -2), "--test-size")],
)
def test_sizes_below_one_are_rejected(sizes: tuple[int, int, int], setting: str) -> None:
    with pytest.raises(DatasetError, match="must be at least 1") as caught:
        split_tasks(make_tasks(10), *sizes, seed=0)
    assert setting in str(caught.value)
    with pytest.raises(DatasetError, match="must be at least 1"):
        load_splits(None, *sizes, seed=0)


def test_load_splits_generates_exactly_what_is_needed() -> None:
    splits = load_splits(None, train_size=12, val_size=5, test_size=7, seed=8)
    assert isinstance(splits, Splits)
    chosen = ids(splits.train) + ids(splits.val) + ids(splits.test)
    assert sorted(chosen) == sorted(f"gen-8-{i}" for i in range(24))
    assert splits == load_splits(None, 12, 5, 7, seed=8)


def test_load_splits_passes_difficulties_on() -> None:
    splits = load_splits(None, 10, 5, 5, seed=8, difficulties=(1,))
    assert {task["difficulty"] for task in splits.train + splits.val + splits.test} == {1}


def test_load_splits_reads_a_file(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "mine.jsonl", *(record(f"Q{i}?", i) for i in range(6)))
    splits = load_splits(path, 3, 2, 1, seed=0)
    assert sorted(ids(splits.train + splits.val + splits.test)) == sorted(f"mine-{i}" for i in range(1, 7))


def test_load_splits_names_a_file_that_is_too_small(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "small.jsonl", record("Q?", 1), record("R?", 2))
    with pytest.raises(DatasetError) as caught:
        load_splits(path, 2, 1, 1, seed=0)
    message = str(caught.value)
    assert message.startswith(f"{path}: not enough tasks")
    assert "need 4" in message and "only 2" in message


# --- hostile lines (issue 10): refused at load time, naming file and line ------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            '{"question": "How many \\ud800 apples?", "answer": 1}',
            '"question" holds a lone surrogate \\ud800 at character 10',
        ),
        ('{"question": "Q?", "answer": "4 \\udfff"}', '"answer" holds a lone surrogate \\udfff'),
        ('{"question": "Q?", "answer": "why \\ud83d #### 4"}', '"answer" holds a lone surrogate \\ud83d'),
        ('{"question": "Q?", "answer": 4, "id": "a\\ud800"}', '"id" holds a lone surrogate \\ud800'),
        ('{"question": "Q?", "answer": 4, "kind": "\\udc00"}', '"kind" holds a lone surrogate \\udc00'),
        # The high half alone, then the low half alone: a reversed pair is two lone surrogates.
        ('{"question": "Q \\ude00\\ud83d?", "answer": 1}', "lone surrogate \\ude00 at character 3"),
    ],
)
def test_lone_surrogates_are_refused_with_file_and_line(tmp_path: Path, line: str, expected: str) -> None:
    path = write_lines(tmp_path / "data.jsonl", record("First?", 1), line)
    with pytest.raises(DatasetError) as caught:
        load_jsonl(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:2: "), message
    assert expected in message
    message.encode("utf-8")  # the message itself can be printed and logged


def test_a_surrogate_pair_is_one_character_and_accepted(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "data.jsonl", '{"question": "Apples \\ud83c\\udf4e?", "answer": 2}')
    assert load_jsonl(path)[0]["question"] == "Apples \U0001f34e?"


def test_duplicate_question_names_both_lines(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "data.jsonl", record("A?", 1), record("B?", 2), "", record("  A?\t", 3))
    with pytest.raises(DatasetError) as caught:
        load_jsonl(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:4: duplicate of line 1"), message
    assert "'A?'" in message


def test_questions_differing_in_case_or_inner_spacing_are_distinct(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "data.jsonl", record("What is 1 + 1?", 2), record("what is 1 + 1?", 2),
                       record("What is 1  + 1?", 2))  # fmt: skip
    assert len(load_jsonl(path)) == 3


def test_question_length_limit(tmp_path: Path) -> None:
    longest = "x" * (MAX_QUESTION_CHARS - 1) + "?"
    path = write_lines(tmp_path / "ok.jsonl", record(f"  {longest}  ", 1))
    assert load_jsonl(path)[0]["question"] == longest  # measured after stripping, like the duplicates
    path = write_lines(tmp_path / "long.jsonl", record("Short?", 1), record(longest + "x", 1))
    with pytest.raises(DatasetError) as caught:
        load_jsonl(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:2: "), message
    assert f'"question" is {MAX_QUESTION_CHARS + 1:,} characters long, more than the {MAX_QUESTION_CHARS:,}' in message


def test_a_20_mb_question_is_refused_with_a_short_message(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "huge.jsonl", record("y" * 20_000_000, 1))
    with pytest.raises(DatasetError) as caught:
        load_jsonl(path)
    assert f"{path}:1: " in str(caught.value)
    assert len(str(caught.value)) < 300


def test_the_limit_is_far_above_real_problems() -> None:
    assert 10_000 <= MAX_QUESTION_CHARS <= 100_000
    assert max(len(p["question"]) for p in generate_problems(400, seed=11)) < MAX_QUESTION_CHARS // 20


# --- the generator and the splits keep questions unique too --------------------------------------------


@pytest.mark.parametrize(("n", "seed", "difficulties"), [(300, 4, (1,)), (2000, 4, (1,)), (3000, 7, (1, 2, 3))])
def test_generated_questions_are_unique(n: int, seed: int, difficulties: tuple[int, ...]) -> None:
    # Before the redraw, 300 easy problems of seed 4 held 10 repeats, 2000 held 224.
    questions = [task["question"] for task in generate_problems(n, seed, difficulties)]
    assert len(set(questions)) == n


def test_unique_generation_keeps_longer_lists_extending_shorter_ones() -> None:
    assert generate_problems(2000, seed=4, difficulties=(1,))[:700] == generate_problems(700, 4, (1,))


def test_generator_that_runs_out_of_distinct_problems_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from trainer.data import problems

    monkeypatch.setattr(problems, "_draw", lambda rng, level: ("add", "What is 1 + 1?", "1 + 1", Fraction(2)))
    with pytest.raises(DatasetError, match=r"cannot generate 3 distinct problems at difficulties \[1, 2, 3\]"):
        generate_problems(3, seed=0)


def test_large_generated_splits_never_share_a_question() -> None:
    splits = load_splits(None, train_size=1500, val_size=300, test_size=200, seed=4, difficulties=(1,))
    questions = [t["question"] for t in splits.train + splits.val + splits.test]
    assert len(set(questions)) == len(questions) == 2000


def test_split_tasks_refuses_a_repeated_question_from_any_source() -> None:
    tasks = make_tasks(6)
    tasks[4] = MathTask(id="t-dup", question="  What is 1 + 1? ", answer="2", kind="add", difficulty=1)
    with pytest.raises(DatasetError) as caught:
        split_tasks(tasks, 2, 2, 2, seed=0)
    message = str(caught.value)
    assert "problems 't1' and 't-dup' have the same question 'What is 1 + 1?'" in message


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("question", "Q\ud800?", "problem 't2': \"question\" holds a lone surrogate \\ud800"),
        ("id", "t\udfff", "problem 't\\udfff': \"id\" holds a lone surrogate \\udfff"),
        ("question", "x" * (MAX_QUESTION_CHARS + 1), '"question" is 20,001 characters long'),
    ],
)
def test_split_tasks_refuses_hostile_text_from_any_source(field: str, value: str, expected: str) -> None:
    tasks = make_tasks(6)
    if field == "id":
        tasks[2]["id"] = value
    else:
        tasks[2]["question"] = value
    with pytest.raises(DatasetError) as caught:
        split_tasks(tasks, 2, 2, 2, seed=0)
    assert expected in str(caught.value)
    str(caught.value).encode("utf-8")


# --- worked solutions: generated ones evaluate to the answer, JSONL ones come from the reasoning -------


def evaluate(expression: str) -> Fraction:
    """The exact value of an expression of + - * / and parentheses over canonical decimals."""
    operators = {ast.Add: Fraction.__add__, ast.Sub: Fraction.__sub__, ast.Mult: Fraction.__mul__,
                 ast.Div: Fraction.__truediv__}  # fmt: skip

    def value(node: ast.expr) -> Fraction:
        if isinstance(node, ast.BinOp) and type(node.op) in operators:
            return operators[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            # The digits as written, not the float they parse to: 0.1 must stay exactly 1/10.
            literal = ast.get_source_segment(expression, node)
            assert literal is not None and canonical_number(literal) == literal, literal
            return Fraction(literal)
        raise AssertionError(f"not plain arithmetic: {ast.dump(node)} in {expression!r}")

    return value(ast.parse(expression, mode="eval").body)


def test_the_evaluator_is_exact_and_refuses_anything_else() -> None:
    assert evaluate("(12 + 30) - 7") == 35
    assert evaluate("0.1 + 0.2") == Fraction(3, 10)
    assert evaluate("2 * 3 / (2 + 3)") == Fraction(6, 5)
    for bad in ("2 ** 3", "-5 + 1", "abs(3)", "1,234 + 1", "1.50 + 1"):
        with pytest.raises((AssertionError, SyntaxError)):
            evaluate(bad)


@pytest.mark.parametrize(
    ("n", "seed", "difficulties"),
    [(400, 11, (1, 2, 3)), (1500, 0, (1, 2, 3)), (500, 5, (1,)), (500, 6, (2,)), (800, 8, (3,))],
)
def test_generated_solutions_are_expressions_that_evaluate_to_the_answer(
    n: int, seed: int, difficulties: tuple[int, ...]
) -> None:
    for task in generate_problems(n, seed, difficulties):
        answer = task["answer"]
        expression, equals, rest = task["solution"].partition(" = ")
        assert equals and rest == f"{answer}. The answer is {answer}.", task
        assert evaluate(expression) == Fraction(answer), task
        assert task["solution"].endswith(f"The answer is {answer}.")


def test_the_solution_check_sees_every_kind_at_every_difficulty() -> None:
    # 1500 problems of seed 0 (checked above) reach every generator branch, each with its own expression.
    shapes = {(task["kind"], task["difficulty"]) for task in generate_problems(1500, 0)}
    assert shapes == {(kind, level) for kind in KINDS for level in (1, 2, 3)} - {("multi_step", 1)}


PROBLEM_KEYS = ("id", "question", "answer", "kind", "difficulty")


def fingerprint(tasks: list[MathTask]) -> str:
    return hashlib.sha256(json.dumps([{key: t[key] for key in PROBLEM_KEYS} for t in tasks]).encode()).hexdigest()


def test_solutions_change_no_generated_problem() -> None:
    # Recorded before solutions existed: tests and saved benchmark results depend on these exact
    # problems, so building the expression must not have taken a single extra random draw.
    assert fingerprint(generate_problems(200, 7)) == "7729436742f7501937193f2afeed6994559ca77e2b599599939cd6d1af7d1f49"
    assert fingerprint(generate_problems(100, 3)) == "e1566b6bdea4562650fa5872f54e7204d8d7a0d03bc53131d3a33e6970f6c81c"
    assert fingerprint(generate_problems(300, 4, (1,))) == (
        "bf220a58203dfd2357a7291a72530e1240a3b6e7a371facee432112a2067eeaf"
    )
    tasks = generate_problems(200, 7)
    assert tasks[57] == {
        "id": "gen-7-57",
        "question": "A jacket costs $135 and is on sale for 75% off. How many dollars does the discount save?",
        "answer": "101.25",
        "kind": "percentage",
        "difficulty": 2,
        "solution": "135 * 75 / 100 = 101.25. The answer is 101.25.",
    }
    assert {key: tasks[199][key] for key in PROBLEM_KEYS} == {
        "id": "gen-7-199",
        "question": "Victor paid $113.85 for 9 mugs. Each mug costs the same. How many dollars does one mug cost?",
        "answer": "12.65",
        "kind": "unit_price",
        "difficulty": 2,
    }


GSM8K_ANSWER = (
    "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
    "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72"
)


def test_a_gsm8k_answer_gives_its_reasoning_as_the_solution(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "gsm8k.jsonl", record("Clips?", GSM8K_ANSWER))
    (task,) = load_jsonl(path)
    assert task["answer"] == "72"
    assert task["solution"] == (
        "Natalia sold 48/2 = 24 clips in May.\n"
        "Natalia sold 48+24 = 72 clips altogether in April and May.\n"
        "The answer is 72."
    )


def test_a_solution_key_wins_over_the_gsm8k_reasoning(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "data.jsonl",
        record("Clips?", GSM8K_ANSWER, solution="  48 + 48 / 2 = 72 <<48+24=72>>  "),
        record("Plain?", 12.5, solution="25 / 2 = 12.5"),
        record("Ends right?", "1,272", solution="1200 + 72 = 1272.\nThe answer is 1,272"),
        record("Blank?", GSM8K_ANSWER, solution=" \n "),
    )
    tasks = load_jsonl(path)
    assert [task.get("solution") for task in tasks] == [
        "48 + 48 / 2 = 72\nThe answer is 72.",
        "25 / 2 = 12.5\nThe answer is 12.5.",
        "1200 + 72 = 1272.\nThe answer is 1272.",  # its own final sentence, made canonical, not doubled
        None,  # a blank solution says there is none, whatever the answer holds
    ]


@pytest.mark.parametrize("answer", [42, 3.5, "1,234", "3/4", "#### 72", "  \n<<1+1=2>>\n#### 2"])
def test_an_answer_without_reasoning_gives_no_solution_key(tmp_path: Path, answer: object) -> None:
    (task,) = load_jsonl(write_lines(tmp_path / "data.jsonl", record("Q?", answer)))
    assert "solution" not in task
    assert set(task) == set(PROBLEM_KEYS)


def test_generated_solutions_survive_a_jsonl_round_trip_unchanged(tmp_path: Path) -> None:
    tasks = generate_problems(300, seed=6)
    path = write_lines(tmp_path / "gen.jsonl", *(json.dumps(task) for task in tasks))
    assert [task["solution"] for task in load_jsonl(path)] == [task["solution"] for task in tasks]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (record(solution=5), '"solution" must be a string, got int: 5'),
        (record(solution=None), '"solution" must be a string, got NoneType: None'),
        (record(solution=["1 + 1 = 2"]), '"solution" must be a string, got list'),
        (record(solution=list(range(10_000))), '"solution" must be a string, got list: [0, 1, 2'),
        ('{"question": "Q?", "answer": 2, "solution": "1 + \\ud800 1"}', '"solution" holds a lone surrogate \\ud800'),
        (record(solution="1 + 2 = 3. The answer is 3."), "ends with 'The answer is 3.', but the answer is 2"),
        (record(answer="1 + 2 = 3. The answer is 3.\n#### 2"), "ends with 'The answer is 3.', but the answer is 2"),
        (record(solution="The answer is two."), "ends with 'The answer is two.', but the answer is 2"),
        (record(solution="x" * (MAX_SOLUTION_CHARS + 1)), '"solution") is 4,018 characters long, more than the 4,000'),
        (record(answer="y" * MAX_SOLUTION_CHARS + " #### 2"), 'the reasoning in "answer" (before its "####")'),
    ],
)
def test_a_bad_solution_is_refused_naming_file_and_line(tmp_path: Path, line: str, expected: str) -> None:
    path = write_lines(tmp_path / "data.jsonl", record("First?", 1), line)
    with pytest.raises(DatasetError) as caught:
        load_jsonl(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:2: "), message
    assert expected in message
    assert len(message) < 400, message


def test_the_longest_solution_allowed_is_kept_whole(tmp_path: Path) -> None:
    reasoning = "z" * (MAX_SOLUTION_CHARS - len("\nThe answer is 2."))
    (task,) = load_jsonl(write_lines(tmp_path / "data.jsonl", record("Q?", 2, solution=reasoning)))
    assert len(task["solution"]) == MAX_SOLUTION_CHARS
