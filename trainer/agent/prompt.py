"""A prompt is an instruction plus demonstrations: worked examples shown to the agent before its question.

APO edits the *instruction*. Demonstrations (a train problem's question and a model-style answer)
are the second part, chosen by the training beside APO's edits: on math they are the stronger
lever for capable models (see the README). :meth:`Prompt.render` joins the two into the one
template the agent gets as its system prompt, the text that is scored, shipped as
``best_prompt.txt`` and shown in Jaeger. Demonstration text is literal: its braces are written
doubled, so no question or answer can become a placeholder.

Each part is kept on its own (the prompt DB stores both), so lineage says whether a candidate
changed the instruction, the examples, or both (:func:`change_of`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

DemoSource = Literal["bootstrapped", "gold"]
DEMO_SOURCES: Final[tuple[DemoSource, ...]] = get_args(DemoSource)

# What a candidate changed relative to its parent ("seed": it has none).
Change = Literal["seed", "instruction", "examples", "both"]

# Opens the demonstrations in a rendered prompt; the agent reads it, so it is plain English.
EXAMPLES_HEADING: Final = "Worked examples:"


@dataclass(frozen=True)
class Demo:
    """One worked example: a train problem's question and an answer in the style the agent should reply in.

    ``source`` says where it came from: ``bootstrapped`` (a train rollout that earned reward 1, read
    back from its spans) or ``gold`` (the data set's own worked solution).
    """

    problem_id: str
    question: str
    answer: str
    source: DemoSource

    def to_json(self) -> dict[str, str]:
        return {"problem_id": self.problem_id, "question": self.question, "answer": self.answer, "source": self.source}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Demo:
        source = data.get("source")
        if source not in DEMO_SOURCES:
            raise ValueError(f"demonstration source must be one of {', '.join(DEMO_SOURCES)}, got {source!r}")
        fields = {key: data.get(key) for key in ("problem_id", "question", "answer")}
        bad = [key for key, value in fields.items() if not isinstance(value, str) or not value]
        if bad:
            raise ValueError(f"demonstration needs non-empty strings for {', '.join(bad)}")
        return cls(str(fields["problem_id"]), str(fields["question"]), str(fields["answer"]), source)


def _literal(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


@dataclass(frozen=True)
class Prompt:
    """An instruction (a template: it may hold ``{question}``) and its demonstrations, in order."""

    instruction: str
    demos: tuple[Demo, ...] = ()

    def render(self) -> str:
        """The template the agent gets: the instruction, then each demonstration as literal text."""
        if not self.demos:
            return self.instruction
        shown = "\n\n".join(f"Question: {_literal(d.question)}\nAnswer: {_literal(d.answer)}" for d in self.demos)
        return f"{self.instruction.rstrip()}\n\n{EXAMPLES_HEADING}\n\n{shown}"

    @property
    def demo_ids(self) -> tuple[str, ...]:
        return tuple(d.problem_id for d in self.demos)

    def with_instruction(self, instruction: str) -> Prompt:
        return Prompt(instruction, self.demos)

    def with_demos(self, demos: Sequence[Demo]) -> Prompt:
        return Prompt(self.instruction, tuple(demos))


def change_of(prompt: Prompt, parent: Prompt | None) -> Change:
    """What ``prompt`` changed relative to ``parent``: its instruction, its examples, or both."""
    if parent is None:
        return "seed"
    instruction = " ".join(prompt.instruction.split()) != " ".join(parent.instruction.split())
    examples = prompt.demos != parent.demos
    if instruction and examples:
        return "both"
    return "examples" if examples else "instruction"
