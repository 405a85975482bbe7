"""The built-in task: math word problems with exact numeric answers (``TASK=math``, the default).

Problems are generated (seeded, :mod:`trainer.data.problems`) or read from a JSONL file
(``DATASET_PATH``, :mod:`trainer.data.jsonl`, GSM8K answers included); a reply is right when its
final number equals the answer (:mod:`trainer.agent.grader`).
"""

from __future__ import annotations

from collections.abc import Sequence

from trainer.agent.grader import grade
from trainer.config import Settings
from trainer.data.jsonl import load_jsonl
from trainer.data.problems import MathTask, generate_problems
from trainer.task import Grade, Problem, Task

# The measured best style for small models: one expression, then its value.
SEED_PROMPT = (
    "You solve math word problems. Write one arithmetic expression that answers the question, "
    "then its value. End with: The answer is <number>."
)


class MathWordProblems(Task):
    name = "math"
    agent_name = "math-solver"
    seed_prompt = SEED_PROMPT

    def problems(self, settings: Settings) -> Sequence[MathTask]:
        """The dataset file's problems, or exactly as many generated ones as the splits take."""
        if settings.dataset_path is not None:
            return load_jsonl(settings.dataset_path)
        return generate_problems(settings.train_size + settings.val_size + settings.test_size, settings.seed)

    def grade(self, reply: str, problem: Problem) -> Grade:
        return grade(reply, problem["answer"])


MATH = MathWordProblems()
