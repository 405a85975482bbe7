"""Datasets from JSONL files: one problem per line, errors that name the file and the line.

JSONL files (:func:`load_jsonl`)
--------------------------------
* UTF-8 (a leading byte-order mark is ignored); one JSON object per line; blank lines are skipped
  but still counted, so line numbers in errors match what an editor shows.
* ``question``: required, a non-empty string (surrounding whitespace is stripped) of at most
  :data:`~trainer.data.MAX_QUESTION_CHARS` characters. Questions must be unique within the file
  (compared after stripping): a repeated question could land in train and test, and the test score
  would then measure what the prompt was trained on.
* ``answer``: required, a number or a string. A string containing ``####`` is GSM8K style and only
  the text after the last ``####`` counts. The result must be a number :func:`canonical_number`
  accepts and must have an exact decimal form.
* ``id``: optional non-empty string or integer; defaults to ``f"{file stem}-{line number}"``.
  Ids must be unique within the file.
* ``kind``: optional non-empty string, default ``"custom"``. ``difficulty``: optional non-negative
  integer, default ``0``. Other keys are ignored.
* A worked solution (kept as ``solution``, a demonstration for the agent,
  :mod:`trainer.data.solutions`) comes from an optional ``solution`` string or, without that key,
  from a GSM8K ``answer``: the text before its last ``####``. GSM8K calculator annotations
  (``<<48/2=24>>``) are removed, whitespace is trimmed, and the line ``The answer is <answer>.`` is
  added (reasoning that already ends with ``The answer is N.`` must name the answer: N is only
  rewritten in canonical form). A blank result, or a plain numeric ``answer``, gives no ``solution``
  key. The result is at most :data:`~trainer.data.solutions.MAX_SOLUTION_CHARS` characters.
* No string that is kept (``question``, ``answer``, ``id``, ``kind``, ``solution``) may hold a lone
  surrogate (a JSON ``\ud800`` escape without its pair): it cannot be written as UTF-8.
* Every problem raises :class:`DatasetError` with ``"<path>:<line>: <what is wrong>"`` (a repeated
  id or question names the line it repeats too); a missing, unreadable or empty file raises it with
  the path. All of it is checked when the file is loaded, before any rollout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

from trainer.data import DatasetError, text_problem
from trainer.data.numbers import format_decimal, to_fraction
from trainer.data.problems import MathTask
from trainer.data.solutions import MAX_SOLUTION_CHARS, from_reasoning

__all__ = ["load_jsonl"]

_BOM: Final = b"\xef\xbb\xbf"


def _answer_of(raw: object) -> str:
    """The canonical answer of a JSONL ``answer`` value; ValueError says what is wrong."""
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ValueError(f'"answer" must be a number or a string, got {type(raw).__name__}: {raw!r}')
    if isinstance(raw, str) and (problem := text_problem("answer", raw)) is not None:
        raise ValueError(problem)
    final = raw.rsplit("####", 1)[1].strip() if isinstance(raw, str) and "####" in raw else raw
    try:
        value = to_fraction(final)
    except ValueError:
        raise ValueError(f'"answer" is not a number: {final!r}') from None
    try:
        return format_decimal(value)
    except ValueError:
        raise ValueError(f'"answer" {final!r} has no exact decimal representation') from None


def _solution_of(record: dict[str, object], answer: str) -> str | None:
    """The worked solution of a line whose canonical answer is ``answer``; ValueError says what is wrong."""
    if "solution" in record:
        source, reasoning = '"solution"', record["solution"]
        if not isinstance(reasoning, str):
            # Cut the repr short: the value may be a huge list, and the message names the line anyway.
            raise ValueError(f'"solution" must be a string, got {type(reasoning).__name__}: {reasoning!r:.80}')
        if (problem := text_problem("solution", reasoning)) is not None:
            raise ValueError(problem)
    else:
        raw = record["answer"]
        if not isinstance(raw, str) or "####" not in raw:
            return None
        # The answer was checked whole (surrogates included) by _answer_of.
        source, reasoning = 'the reasoning in "answer" (before its "####")', raw.rsplit("####", 1)[0]
    solution = from_reasoning(reasoning, answer)
    if solution is not None and len(solution) > MAX_SOLUTION_CHARS:
        raise ValueError(
            f"the worked solution ({source}) is {len(solution):,} characters long, more than the "
            f"{MAX_SOLUTION_CHARS:,} allowed: a demonstration that long crowds the question out of the prompt"
        )
    return solution


def _task_of(record: object, path: Path, line: int) -> MathTask:
    """The task of one decoded line; ValueError says what is wrong."""
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    if "question" not in record:
        raise ValueError('missing "question"')
    question = record["question"]
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f'"question" must be a non-empty string, got {question!r}')
    if (problem := text_problem("question", question.strip())) is not None:
        raise ValueError(problem)
    if "answer" not in record:
        raise ValueError('missing "answer"')
    answer = _answer_of(record["answer"])

    task_id = record.get("id", f"{path.stem}-{line}")
    if isinstance(task_id, int) and not isinstance(task_id, bool):
        task_id = str(task_id)
    if not isinstance(task_id, str) or not task_id.strip():
        raise ValueError(f'"id" must be a non-empty string or an integer, got {task_id!r}')
    if (problem := text_problem("id", task_id)) is not None:
        raise ValueError(problem)
    kind = record.get("kind", "custom")
    if not isinstance(kind, str) or not kind.strip():
        raise ValueError(f'"kind" must be a non-empty string, got {kind!r}')
    if (problem := text_problem("kind", kind)) is not None:
        raise ValueError(problem)
    difficulty = record.get("difficulty", 0)
    if isinstance(difficulty, bool) or not isinstance(difficulty, int) or difficulty < 0:
        raise ValueError(f'"difficulty" must be a non-negative integer, got {difficulty!r}')
    task = MathTask(id=task_id, question=question.strip(), answer=answer, kind=kind, difficulty=difficulty)
    if (solution := _solution_of(record, answer)) is not None:
        task["solution"] = solution
    return task


def load_jsonl(path: Path) -> list[MathTask]:
    """The tasks of a JSONL file, in file order (rules in the module docstring).

    Raises:
        DatasetError: the file is missing, unreadable, empty, or a line is invalid; the message
            names the file and, for a bad line, its 1-based number.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{path}: dataset file not found") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read dataset file: {exc.strerror or exc}") from None
    data = data.removeprefix(_BOM)

    tasks: list[MathTask] = []
    first_line_of: dict[str, int] = {}
    question_line: dict[str, int] = {}
    # Split on b"\n" only: str.splitlines would also split at U+2028 and friends, which JSON strings
    # may hold unescaped, and would then disagree with an editor's line numbers.
    for line_no, raw_line in enumerate(data.split(b"\n"), start=1):
        try:
            text = raw_line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DatasetError(
                f"{path}:{line_no}: not valid UTF-8 (byte {exc.object[exc.start]:#04x} at column "
                f"{exc.start + 1}); save the file as UTF-8"
            ) from None
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except (ValueError, RecursionError) as exc:  # also int() limits and absurd nesting
            raise DatasetError(f"{path}:{line_no}: invalid JSON ({exc})") from None
        try:
            task = _task_of(record, path, line_no)
        except ValueError as exc:
            raise DatasetError(f"{path}:{line_no}: {exc}") from None
        if (first := first_line_of.get(task["id"])) is not None:
            raise DatasetError(f"{path}:{line_no}: duplicate id {task['id']!r} (first used on line {first})")
        if (first := question_line.get(task["question"])) is not None:
            raise DatasetError(
                f"{path}:{line_no}: duplicate of line {first} (the same question {task['question'][:80]!r}); "
                "remove one: a question in two splits would be scored on what the prompt was trained on"
            )
        first_line_of[task["id"]] = line_no
        question_line[task["question"]] = line_no
        tasks.append(task)
    if not tasks:
        raise DatasetError(f"{path} contains no tasks")
    return tasks
