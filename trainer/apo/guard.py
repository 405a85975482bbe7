"""Reject hopeless prompt candidates before any rollout is spent on them.

APO's edit model can answer with nothing, with a prompt it already produced, or with a prompt that
balloons: measured with a 135M optimizer model, candidates grew to ~8k tokens and a round took
minutes with no gain. Each rejected candidate scores 0 and its reason goes to the prompt DB.

Rules, first match wins:
- ``empty``: nothing but whitespace;
- ``too long``: more than ``max_chars`` characters, or more than ``max_growth`` times its
  parent's length (a short parent may always grow to ``growth_floor`` characters: a 140-character
  seed is allowed a real rewrite);
- ``duplicate``: the same text as a prompt already seen in this run (whitespace-insensitive);
- ``unrenderable``: anything :func:`~trainer.agent.template.check_template` refuses: stray braces,
  unknown placeholders, format specs, conversions, attribute or index access (every rollout would
  fail anyway, and ``{question:>1000000000}`` would render a gigabyte per rollout). The check never
  renders with a spec, so no candidate can exhaust memory here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from trainer.agent.template import TEMPLATE_FIELDS, TemplateError, check_template


def normalize(template: str) -> str:
    return " ".join(template.split())


@dataclass(frozen=True)
class GuardLimits:
    max_chars: int
    max_growth: float
    growth_floor: int = 1000
    template_fields: tuple[str, ...] = TEMPLATE_FIELDS


def rejection_reason(
    template: str | None,
    *,
    parent: str | None,
    seen: Iterable[str],
    limits: GuardLimits,
) -> str | None:
    """Why ``template`` must not be evaluated, or None if it may."""
    if template is None or not template.strip():
        return "empty"
    length = len(template)
    if length > limits.max_chars:
        return f"too long: {length} chars > {limits.max_chars}"
    if parent:
        allowed = max(limits.max_growth * len(parent), limits.growth_floor)
        if length > allowed:
            return (
                f"too long: {length} chars > {allowed:.0f} allowed "
                f"({limits.max_growth:g} x parent's {len(parent)}, at least {limits.growth_floor})"
            )
    key = normalize(template)
    if any(normalize(other) == key for other in seen):
        return "duplicate"
    try:
        check_template(template, limits.template_fields)
    except TemplateError as exc:
        return f"unrenderable: {exc}"
    return None
