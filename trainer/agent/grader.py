"""Grade an agent's free-text reply against a task's expected answer.

Extraction (:func:`extract_answer`)
-----------------------------------
The reply's final numeric answer is the first of these that yields a number:

1. **GSM8K marker**: the first number after the last ``####`` that is followed by one
   (``"...\\n#### 1,234"``).
2. **Boxed**: the last number inside the last ``\\boxed{...}`` (or ``\\fbox{...}``) that holds one;
   braces nest, so ``\\boxed{\\frac{3}{4}}`` works.
3. **Answer phrase**: the last ``answer is``, ``answer was``, ``answer would/will/should be``,
   ``answer:`` or ``answer =`` (any case, so also ``Answer:`` and ``final answer:``, and markdown
   such as ``**Answer:**``) followed by a number in the same sentence or line. That number is the
   first one after the phrase -- unless it opens a calculation (``answer is 2 + 3 = 5``), in which
   case it is the first number after the sentence's last ``=``. A bare ``= N`` elsewhere is not a
   phrase.
4. **Last number** anywhere in the reply.

What counts as a number, wherever it appears:

* an optional sign (``-``, ``+``, or U+2212 MINUS SIGN), before or after a currency symbol
  (``$``, ``\\$``, ``€``, ``£``, ``¥``): ``-$5``, ``$-5``, ``\\$5``, ``€3``;
* digits with thousands separators in groups of exactly three (``1,234,567``; ``1,2,3`` is three
  numbers) and LaTeX's ``1{,}234``, then an optional decimal part: ``3.50``, ``.5``;
* a simple fraction of integers (``3/4``, ``-1/2``; a zero denominator is not a number) or LaTeX
  ``\\frac{3}{4}`` (also ``\\dfrac``, ``\\tfrac``);
* whatever follows is ignored: ``15%`` is 15, ``12 apples``, ``45 km/h``, ``3.5 hours``, and a
  sentence's full stop (``The answer is 2.`` is 2); markdown such as ``**42**`` is ignored too;
* a number glued to a preceding letter, digit, ``.`` or ``/`` is not one (``x2``; ``COVID-19`` is
  19; in ``5-3`` the ``-`` is not a sign; ``12/25/2023`` is just 12), nor is one over 1,000
  characters long. Exponents, spelled-out numbers and mixed numbers (``1 1/2``) are not understood.

No number at all gives ``None``.

Correctness (:func:`grade`)
---------------------------
A reply is correct when its extracted value ``got`` satisfies
``|got - expected| <= TOLERANCE * max(1, |expected|)``: an absolute tolerance of 1e-6 for answers up
to 1 in magnitude, relative beyond. The comparison is exact (rational arithmetic), and there is no
rounding leniency: ``12.50`` equals ``12.5`` because they are the same number, but ``12.46`` is wrong
for ``12.5``. The reward is 1.0 when correct, else 0.0.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass
from fractions import Fraction
from typing import Final

from trainer.data.numbers import canonical_number
from trainer.task import Grade

__all__ = ["TOLERANCE", "Grade", "extract_answer", "grade"]

TOLERANCE: Final[Fraction] = Fraction(1, 1_000_000)
"""Relative tolerance of :func:`grade`, used as an absolute one for expected values up to 1."""


_NUMBER_RE: Final = re.compile(
    r"""
    (?<![\w./])                         # not the middle of a word, number or date
    (?P<sign>[-+\u2212])?
    (?:\\?[$\u20ac\u00a3\u00a5])?       # $ \$ euro pound yen
    (?P<sign2>[-+\u2212])?
    (?:
        \\[dt]?frac\s*\{\s*(?P<latex_num>\d+)\s*\}\s*\{\s*(?P<latex_den>\d+)\s*\}
      | (?P<num>\d+)/(?P<den>\d+)(?![\d/])   # "3/4", but not a date such as 12/25/2023
      | (?P<int>\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.(?P<frac>\d+))?
      | \.(?P<bare_frac>\d+)
    )
    """,
    re.VERBOSE,
)
_MARKER_RE: Final = re.compile(r"####")
_BOXED_RE: Final = re.compile(r"\\(?:boxed|fbox)\s*\{")
# The trailing \s* lets "Answer:\n42" find its number at the start of the next line's sentence.
_PHRASE_RE: Final = re.compile(
    r"\banswer\b[*_\s]*(?:(?:is|was|would\s+be|will\s+be|should\s+be)\b|:|=)[*_]*:?\s*",
    re.IGNORECASE,
)
# A sentence ends at a line break or at . ! ? followed by space; "3.5" keeps its decimal point.
_SENTENCE_END_RE: Final = re.compile(r"\n|[.!?](?=\s|$)")
_OPERATOR_RE: Final = re.compile(r"\s*[-+*/\u00d7\u00f7\u2212=^]")
_MINUS_SIGNS: Final = frozenset("-\u2212")
# Longer tokens are noise (a pasted hash, a runaway generation), and their values could exceed
# Python's int <-> str conversion limit when reported back as Grade.extracted.
_MAX_NUMBER_CHARS: Final = 1000


@dataclass(frozen=True)
class _Number:
    value: Fraction
    start: int
    end: int


def _value(match: re.Match[str]) -> Fraction | None:
    if match["latex_num"] is not None:
        numerator, denominator = int(match["latex_num"]), int(match["latex_den"])
    elif match["num"] is not None:
        numerator, denominator = int(match["num"]), int(match["den"])
    else:
        digits = match["frac"] or match["bare_frac"] or ""
        denominator = 10 ** len(digits)
        numerator = int((match["int"] or "0").replace(",", "")) * denominator + int(digits or "0")
    if denominator == 0:
        return None
    negative = (match["sign"] in _MINUS_SIGNS) != (match["sign2"] in _MINUS_SIGNS)
    value = Fraction(numerator, denominator)
    return -value if negative else value


class _Reply:
    """A reply tokenized once, so each rule only looks numbers up by position.

    Rules look at many candidate spans (every marker, box and phrase); rescanning the text for each
    would make a long, repetitive reply quadratic.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.numbers: list[_Number] = []
        for match in _NUMBER_RE.finditer(text):
            if match.end() - match.start() > _MAX_NUMBER_CHARS:
                continue
            value = _value(match)
            if value is not None:
                self.numbers.append(_Number(value, match.start(), match.end()))
        self._starts = [number.start for number in self.numbers]

    def within(self, start: int, end: int) -> list[_Number]:
        """The numbers lying entirely inside ``text[start:end]``."""
        first, last = bisect_left(self._starts, start), bisect_left(self._starts, end)
        return [number for number in self.numbers[first:last] if number.end <= end]


def _from_marker(reply: _Reply) -> Fraction | None:
    for marker in reversed(list(_MARKER_RE.finditer(reply.text))):
        if numbers := reply.within(marker.end(), len(reply.text)):
            return numbers[0].value
    return None


def _closing_braces(text: str) -> dict[int, int]:
    """Where each ``{`` is closed; an unclosed one (a truncated reply) closes at the end."""
    closing: dict[int, int] = {}
    open_at: list[int] = []
    for index, char in enumerate(text):
        if char == "{":
            open_at.append(index)
        elif char == "}" and open_at:
            closing[open_at.pop()] = index
    closing.update(dict.fromkeys(open_at, len(text)))
    return closing


def _from_boxed(reply: _Reply) -> Fraction | None:
    boxes = list(_BOXED_RE.finditer(reply.text))
    if not boxes:
        return None
    closing = _closing_braces(reply.text)
    for box in reversed(boxes):
        if numbers := reply.within(box.end(), closing[box.end() - 1]):
            return numbers[-1].value
    return None


def _from_phrase(reply: _Reply) -> Fraction | None:
    text = reply.text
    sentence_ends = [match.start() for match in _SENTENCE_END_RE.finditer(text)]
    for phrase in reversed(list(_PHRASE_RE.finditer(text))):
        start = phrase.end()
        next_end = bisect_left(sentence_ends, start)
        end = sentence_ends[next_end] if next_end < len(sentence_ends) else len(text)
        numbers = reply.within(start, end)
        if not numbers:
            continue
        first = numbers[0]
        result_at = text.rfind("=", start, end)
        results = [number for number in numbers if number.start > result_at] if result_at != -1 else []
        if results and _OPERATOR_RE.match(text, first.end):
            return results[0].value
        return first.value
    return None


def _last_number(reply: _Reply) -> Fraction | None:
    return reply.numbers[-1].value if reply.numbers else None


def extract_answer(text: str) -> Fraction | None:
    """The final numeric answer of a reply, or None (rules in the module docstring)."""
    reply = _Reply(text.replace("{,}", ","))
    for rule in (_from_marker, _from_boxed, _from_phrase, _last_number):
        if (value := rule(reply)) is not None:
            return value
    return None


def _describe(value: Fraction) -> str:
    try:
        return canonical_number(f"{value.numerator}/{value.denominator}")
    except ValueError:  # no exact decimal form (1/3): the fraction itself is exact and short
        return f"{value.numerator}/{value.denominator}"


def grade(reply: str, expected: str | int | float) -> Grade:
    """Grade ``reply`` against ``expected`` (anything :func:`canonical_number` accepts).

    Raises:
        ValueError: ``expected`` is not a number -- a bug in the task, not in the reply.
    """
    target = Fraction(canonical_number(expected))
    got = extract_answer(reply)
    if got is None:
        return Grade(reward=0.0, extracted=None, correct=False)
    correct = abs(got - target) <= TOLERANCE * max(Fraction(1), abs(target))
    return Grade(reward=1.0 if correct else 0.0, extracted=_describe(got), correct=correct)
