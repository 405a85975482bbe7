"""The task seam: what the agent is trained on, behind one small interface.

A :class:`Task` says where the problems come from (:meth:`Task.problems`), how a reply is graded
(:meth:`Task.grade`), how the agent is built (:meth:`Task.build_agent`) and which prompt it starts
from. Everything else (splits, rollouts, APO, records, telemetry) is the same for every task. The
math word problems are the built-in task (``TASK=math``, :mod:`trainer.math_task`); your own is a
module of yours holding a ``Task`` object, named ``package.module:NAME`` (``--task``)::

    # capitals.py
    from trainer.task import Grade, Problem, Task

    class Capitals(Task):
        name = "capitals"
        seed_prompt = "Answer with the capital city only."

        def problems(self, settings):
            return [Problem(id="fr", question="Capital of France?", answer="Paris"), ...]

        def grade(self, reply, problem):
            right = problem["answer"].lower() in reply.lower()
            return Grade(reward=1.0 if right else 0.0, extracted=reply.strip()[:80] or None, correct=right)

    TASK = Capitals()

Problems are plain JSON-able dicts: they travel through Agent Lightning's HTTP store to runner
processes, which build their task from the same ``--task`` setting.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, NotRequired, TypedDict

from trainer.config import ConfigError, Settings

if TYPE_CHECKING:  # agno costs ~1 s to import: only processes that run the agent pay
    from agno.agent import Agent
    from agno.models.base import Model

# Built-in tasks by name: the same lookup as a user's package.module:NAME.
BUILT_IN = {"math": "trainer.math_task:MATH"}


class Problem(TypedDict):
    """One problem: the user message the agent gets (``question``) and what grading needs."""

    id: str
    question: str
    answer: str
    # A worked answer in the style the agent should reply in (the reasoning, then the final line
    # "The answer is N."), shown to the agent as a demonstration, and only for train problems: a
    # val or test problem's solution in the prompt would hand the agent what it is scored on. Tasks
    # without one leave it out.
    solution: NotRequired[str]
    # Set by the training on the problems it hands to APO, so that a runner in another process or
    # container knows which run's ledger a rollout belongs to.
    run_id: NotRequired[str]
    run_dir: NotRequired[str]  # that run's ledger directory, for a runner of another training


@dataclass(frozen=True)
class Grade:
    """The verdict on one reply: its reward, and what the grader read in it (None: nothing)."""

    reward: float
    extracted: str | None
    correct: bool


class Task:
    """A task to train a prompt for; subclass it and set/override what differs from the defaults."""

    name: ClassVar[str] = "task"
    # The agent's name: its run's span is "<agent name>.arun" in traces, "-" written "_" (math_solver.arun).
    agent_name: ClassVar[str] = "solver"
    seed_prompt: ClassVar[str] = "Answer the question."
    # Fields of a problem a prompt template may mention ({question}); the answer never is one.
    template_fields: ClassVar[tuple[str, ...]] = ("question",)
    # The highest reward grade() ever gives. A candidate's val batch stops once even this reward on
    # every rollout left could not put it into the beam (trainer.apo.racing); None: unbounded, no cut.
    max_reward: ClassVar[float | None] = 1.0

    def problems(self, settings: Settings) -> Sequence[Problem]:
        """Every problem available; the training splits them into train, val and test."""
        raise NotImplementedError

    def grade(self, reply: str, problem: Problem) -> Grade:
        """Grade the agent's reply to ``problem``."""
        raise NotImplementedError

    def build_agent(self, system_prompt: str, model: Model, *, use_calculator: bool = False) -> Agent:
        """The Agno agent that answers with ``system_prompt`` as its system message."""
        from trainer.agent.model import create_agent_with_prompt

        return create_agent_with_prompt(system_prompt, model, name=self.agent_name, use_calculator=use_calculator)


def load_task(spec: str) -> Task:
    """The task ``spec`` names: ``math`` or ``package.module:NAME``; ConfigError says what is wrong."""
    module_name, sep, attribute = BUILT_IN.get(spec, spec).partition(":")
    if not sep or not module_name or not attribute:
        names = ", ".join(BUILT_IN)
        raise ConfigError(f"TASK (--task) {spec!r}: give a built-in task ({names}) or package.module:NAME")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"TASK (--task) {spec!r}: cannot import {module_name}: {exc}") from None
    task = getattr(module, attribute, None)
    if not isinstance(task, Task):
        found = "nothing" if task is None else type(task).__name__
        raise ConfigError(f"TASK (--task) {spec!r}: {module_name}.{attribute} is {found}, not a trainer.task.Task")
    return task
