"""Reject hopeless prompt candidates before any rollout is spent on them.

APO's edit model can answer with nothing, with a prompt it already produced, or with a prompt that
balloons: measured with a 135M optimizer model, candidates grew to ~8k tokens and a round took
minutes with no gain. Each rejected candidate scores 0 and its reason goes to the prompt DB.

A candidate is a :class:`~trainer.agent.prompt.Prompt` (a bare string is an instruction without
demonstrations). Rules, first match wins:
- ``empty``: an instruction of nothing but whitespace;
- ``too long``: the rendered prompt, demonstrations included, is more than ``max_chars``
  characters, or the instruction is more than ``max_growth`` times its parent's instruction (a
  short parent may always grow to ``growth_floor`` characters: a 140-character seed is allowed a
  real rewrite). Growth is the optimizer's failure mode, so it is measured on the part it writes;
  demonstrations count towards the absolute limit, which is what the agent's context pays;
- ``duplicate``: the same text as a prompt already seen in this run (whitespace-insensitive);
- ``unrenderable``: anything :func:`~trainer.agent.template.check_template` refuses: stray braces,
  unknown placeholders, format specs, conversions, attribute or index access (every rollout would
  fail anyway, and ``{question:>1000000000}`` would render a gigabyte per rollout). The check never
  renders with a spec, so no candidate can exhaust memory here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from trainer.agent.prompt import Prompt
from trainer.agent.template import TEMPLATE_FIELDS, TemplateError, check_template


def normalize(template: str) -> str:
    return " ".join(template.split())


@dataclass(frozen=True)
class GuardLimits:
    max_chars: int
    max_growth: float
    growth_floor: int = 1000
    template_fields: tuple[str, ...] = TEMPLATE_FIELDS


def _prompt(value: Prompt | str) -> Prompt:
    return value if isinstance(value, Prompt) else Prompt(value)


def rejection_reason(
    candidate: Prompt | str | None,
    *,
    parent: Prompt | str | None,
    seen: Iterable[str],
    limits: GuardLimits,
) -> str | None:
    """Why ``candidate`` must not be evaluated, or None if it may; ``seen`` holds rendered prompts."""
    if candidate is None or not _prompt(candidate).instruction.strip():
        return "empty"
    prompt = _prompt(candidate)
    template = prompt.render()
    length = len(template)
    if length > limits.max_chars:
        demos = f" (instruction {len(prompt.instruction)} + {len(prompt.demos)} demonstrations)" if prompt.demos else ""
        return f"too long: {length} chars > {limits.max_chars}{demos}"
    parent_instruction = _prompt(parent).instruction if parent else ""
    if parent_instruction:
        allowed = max(limits.max_growth * len(parent_instruction), limits.growth_floor)
        if len(prompt.instruction) > allowed:
            what = "instruction " if prompt.demos else ""
            return (
                f"too long: {what}{len(prompt.instruction)} chars > {allowed:.0f} allowed "
                f"({limits.max_growth:g} x parent's {len(parent_instruction)}, at least {limits.growth_floor})"
            )
    key = normalize(template)
    if any(normalize(other) == key for other in seen):
        return "duplicate"
    try:
        check_template(template, limits.template_fields)
    except TemplateError as exc:
        return f"unrenderable: {exc}"
    return None
