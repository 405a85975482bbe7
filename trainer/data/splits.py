"""Train, val and test splits: disjoint, seeded, and sized by the settings.

Splits (:func:`split_tasks`, :func:`splits_for`, :func:`load_splits`)
----------------------------------------------------------------------
A task's problems (:func:`splits_for`) are shuffled with ``random.Random(seed)`` and sliced into
train, val and test, in that order, so the splits are disjoint and reproducible; problems beyond the
three sizes are left out. Each size must be at least 1 and their sum at most the number of problems.
Whatever their source (a JSONL file, the generator, a task of your own), the problems are checked
before they are split, so nothing bad reaches a rollout: no two may share a question (it could land
in train and test, and the test score would then measure what the prompt was trained on), and no
question or id may hold a lone surrogate or, for a question, exceed
:data:`~trainer.data.MAX_QUESTION_CHARS` (:func:`trainer.data.text_problem`). A JSONL file is held
to the same rules line by line when it is loaded (:mod:`trainer.data.jsonl`), and the generator
never repeats a question.
Without a dataset file the math task generates exactly ``train + val + test`` problems with the
same seed (:func:`load_splits` is that, for math).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from trainer.config import Settings
from trainer.data import DatasetError, text_problem
from trainer.data.jsonl import load_jsonl
from trainer.data.problems import DIFFICULTIES, generate_problems
from trainer.task import Problem, Task

__all__ = ["Splits", "check_problems", "load_splits", "split_tasks", "splits_for"]


@dataclass(frozen=True)
class Splits:
    """Disjoint train/val/test task lists."""

    train: list[Problem]
    val: list[Problem]
    test: list[Problem]


def _check_sizes(train_size: int, val_size: int, test_size: int) -> None:
    for split, size in (("train", train_size), ("val", val_size), ("test", test_size)):
        if size < 1:
            setting = f"{split.upper()}_SIZE / --{split}-size"
            raise DatasetError(f"{split}_size must be at least 1, got {size}: raise {setting}")


def check_problems(tasks: Sequence[Problem]) -> None:
    """Refuse problems that would fail mid-run or leak across splits (rules in the module docstring).

    Raises:
        DatasetError: naming the problem(s) by id.
    """
    first_with: dict[str, str] = {}
    for task in tasks:
        task_id, question = task.get("id"), task.get("question")
        for name, value in (("id", task_id), ("question", question)):
            if isinstance(value, str) and (problem := text_problem(name, value)) is not None:
                # ascii(): the id itself may be the string that cannot be printed as UTF-8.
                raise DatasetError(f"problem {task_id!a}: {problem}")
        if not isinstance(question, str):
            continue
        key = question.strip()
        if (first := first_with.get(key)) is not None:
            raise DatasetError(
                f"problems {first} and {task_id!a} have the same question {key[:80]!r}: a question in two "
                "splits would be scored on what the prompt was trained on; keep one"
            )
        first_with[key] = ascii(task_id)


def split_tasks(tasks: Sequence[Problem], train_size: int, val_size: int, test_size: int, seed: int) -> Splits:
    """Shuffle ``tasks`` with ``seed`` and slice off disjoint train, val and test splits.

    Raises:
        DatasetError: a size is below 1, there are fewer tasks than the three sizes add up to, or
            a problem is refused by :func:`check_problems`.
    """
    _check_sizes(train_size, val_size, test_size)
    check_problems(tasks)
    needed = train_size + val_size + test_size
    if len(tasks) < needed:
        raise DatasetError(
            f"not enough tasks: the splits need {needed} (train {train_size} + val {val_size} + "
            f"test {test_size}) but only {len(tasks)} are available; lower TRAIN_SIZE / VAL_SIZE / "
            "TEST_SIZE (--train-size / --val-size / --test-size) or use a larger dataset"
        )
    shuffled = list(tasks)
    random.Random(seed).shuffle(shuffled)
    return Splits(
        train=shuffled[:train_size],
        val=shuffled[train_size : train_size + val_size],
        test=shuffled[train_size + val_size : needed],
    )


def load_splits(
    dataset_path: Path | None,
    train_size: int,
    val_size: int,
    test_size: int,
    seed: int,
    difficulties: Sequence[int] = DIFFICULTIES,
) -> Splits:
    """Splits of the JSONL file at ``dataset_path``, or of freshly generated problems when None.

    Raises:
        DatasetError: as :func:`load_jsonl`, :func:`generate_problems` and :func:`split_tasks`;
            a file that is too small is named in the message.
    """
    _check_sizes(train_size, val_size, test_size)
    if dataset_path is None:
        tasks = generate_problems(train_size + val_size + test_size, seed, difficulties)
        return split_tasks(tasks, train_size, val_size, test_size, seed)
    tasks = load_jsonl(dataset_path)
    try:
        return split_tasks(tasks, train_size, val_size, test_size, seed)
    except DatasetError as exc:
        raise DatasetError(f"{dataset_path}: {exc}") from None


def splits_for(task: Task, settings: Settings) -> Splits:
    """The splits of ``task``'s problems, sized and seeded by ``settings``.

    Raises:
        DatasetError: as :func:`split_tasks`; a dataset file that is too small is named.
    """
    _check_sizes(settings.train_size, settings.val_size, settings.test_size)
    problems = task.problems(settings)
    try:
        return split_tasks(problems, settings.train_size, settings.val_size, settings.test_size, settings.seed)
    except DatasetError as exc:
        if settings.dataset_path is None:
            raise
        raise DatasetError(f"{settings.dataset_path}: {exc}") from None
