"""Worked solutions: the gold replies a prompt can show the agent as demonstrations.

A problem's ``solution`` is written in the style the agent should reply in: the reasoning, then
``The answer is N.`` with ``N`` the canonical answer (:mod:`trainer.data.numbers`) -- the phrase the
grader reads first (:mod:`trainer.agent.grader`), so a demonstration teaches exactly what is graded.
Both sources of problems build theirs here, so the final sentence cannot drift between them:

* generated problems (:func:`worked`): one arithmetic expression and its value, the style of the math
  task's seed prompt, e.g. ``"(12 + 30) - 7 = 35. The answer is 35."``. Expressions use ASCII
  ``+ - * /`` and parentheses over numbers written like answers (``12.5``, no separators), and
  evaluate exactly to the answer;
* JSONL files (:func:`from_reasoning`): free-form reasoning (GSM8K's, or a ``solution`` key), with
  the final line added.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Final

from trainer.data.numbers import canonical_number, format_decimal

__all__ = ["MAX_SOLUTION_CHARS", "expression", "final_line", "from_reasoning", "worked"]

# A demonstration is repeated in every prompt that shows it: 4,000 characters (~1k tokens) is room
# for any real worked solution, while a pasted essay is refused at load time instead of crowding the
# question out of a small model's context on every rollout.
MAX_SOLUTION_CHARS: Final = 4_000

# GSM8K's calculator annotations, "48/2 = <<48/2=24>>24": machine markup, not reasoning to imitate.
_ANNOTATION: Final = re.compile(r"<<[^<>]*>>")
# A final sentence the reasoning already has; it must agree with the answer (see from_reasoning).
_FINAL: Final = re.compile(r"(?:^|(?<=\s))The answer is (?P<number>\S+?)\.?\s*\Z")


def final_line(answer: str) -> str:
    """The sentence every solution ends with; ``answer`` is already canonical."""
    return f"The answer is {answer}."


def expression(template: str, *values: int | Fraction) -> str:
    """``template`` with each ``{}`` replaced by the next value, written as answers are written."""
    return template.format(*(format_decimal(Fraction(value)) for value in values))


def worked(expr: str, answer: Fraction) -> str:
    """A generated problem's solution: ``expr``, its value, and the final sentence."""
    value = format_decimal(answer)
    return f"{expr} = {value}. {final_line(value)}"


def from_reasoning(reasoning: str, answer: str) -> str | None:
    """The solution made of ``reasoning`` for the canonical ``answer``; None when it is blank.

    Annotations are removed and whitespace trimmed; then ``The answer is <answer>.`` is added as the
    last line, unless the reasoning already ends with that sentence, in which case its number is
    rewritten in canonical form (``1,272`` -> ``1272``).

    Raises:
        ValueError: the reasoning ends with ``The answer is ...`` naming another number, or one that
            cannot be read: a demonstration that contradicts its own answer teaches the wrong thing.
    """
    text = _ANNOTATION.sub("", reasoning).strip()
    if not text:
        return None
    final = _FINAL.search(text)
    if final is None:
        return f"{text}\n{final_line(answer)}"
    try:
        stated = canonical_number(final["number"])
    except ValueError:
        stated = None
    if stated != answer:
        raise ValueError(
            f"the solution ends with {final.group().strip()!r}, but the answer is {answer}: "
            f"end it with {final_line(answer)!r} or leave the final sentence out"
        )
    return text[: final.start()] + final_line(answer)
