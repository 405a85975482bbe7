"""Train, val and test splits: disjoint, seeded, and sized by the settings.

Splits (:func:`split_tasks`, :func:`splits_for`, :func:`load_splits`)
----------------------------------------------------------------------
A task's problems (:func:`splits_for`) are shuffled with ``random.Random(seed)`` and sliced into
train, val and test, in that order, so the splits are disjoint and reproducible; problems beyond the
three sizes are left out. Each size must be at least 1 and their sum at most the number of problems.
Without a dataset file the math task generates exactly ``train + val + test`` problems with the
same seed (:func:`load_splits` is that, for math).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from trainer.config import Settings
from trainer.data import DatasetError
from trainer.data.jsonl import load_jsonl
from trainer.data.problems import DIFFICULTIES, generate_problems
from trainer.task import Problem, Task

__all__ = ["Splits", "load_splits", "split_tasks", "splits_for"]


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


def split_tasks(tasks: Sequence[Problem], train_size: int, val_size: int, test_size: int, seed: int) -> Splits:
    """Shuffle ``tasks`` with ``seed`` and slice off disjoint train, val and test splits.

    Raises:
        DatasetError: a size is below 1, or there are fewer tasks than the three sizes add up to.
    """
    _check_sizes(train_size, val_size, test_size)
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
