"""Prompt templates: what a template may contain and how it is rendered for a problem.

A template is the agent's system prompt. It may hold literal text, literal braces written ``{{`` and
``}}``, and the task's template fields (``{question}`` by default) as bare placeholders, nothing else:
a format spec (``{question:>1000000000}`` renders a gigabyte), a conversion (``{question!r}``),
attribute or index access (``{question.__class__}``, ``{question[0]}``), an empty or positional
placeholder (``{}``, ``{0}``), an unknown field or a stray brace is a :class:`TemplateError` naming
the offending text and its line and column. The same rule holds for the seed prompt, ``--prompt``
and every APO candidate (the guard rejects a bad one). APO's edits sometimes break it, so a
rendering failure is an expected outcome of a rollout, not a crash. The template is inspected with
``string.Formatter().parse`` and rendered by joining its pieces, never with ``str.format``, and
never to more than :data:`MAX_RENDERED_CHARS`: no template can exhaust memory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from string import Formatter
from typing import Any


class TemplateError(ValueError):
    """A prompt template cannot be rendered; the message names the offending text and where it is."""


# The engine of Agent Lightning's prompt resources that renders templates this way (str.format).
# Only the plain `{field}` subset of that syntax is allowed (see the module docstring), which both
# str.format and render_prompt below read the same way.
TEMPLATE_ENGINE = "f-string"

# Fields a template may reference by default (a task may name others). The expected answer is
# deliberately never one of them.
TEMPLATE_FIELDS = ("question",)

# The longest prompt render_prompt builds. Far beyond any model's context window (~250k tokens),
# so it never refuses a prompt a model could read; it exists so that no template, however many
# placeholders it repeats, can make rendering allocate without bound (a MemoryError would crash
# the rollout's process instead of failing one rollout).
MAX_RENDERED_CHARS = 1_000_000

# How much of an offending placeholder an error message quotes.
_SHOWN_CHARS = 80

_HELP = "(write literal braces as {{ and }})"


def _shown(text: str) -> str:
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1] + "…"


def _where(template: str, pos: int) -> str:
    line = template.count("\n", 0, pos) + 1
    column = pos - (template.rfind("\n", 0, pos) + 1) + 1
    return f"line {line}, column {column}"


def _allowed(fields: Sequence[str]) -> str:
    return "templates may use only " + ", ".join("{" + f + "}" for f in fields) + ", written bare " + _HELP


def _stray_brace(template: str, pos: int) -> int:
    """Where the first brace at or after ``pos`` that is not half of ``{{`` or ``}}`` is."""
    while pos < len(template):
        char = template[pos]
        if char in "{}":
            if template.startswith(char * 2, pos):
                pos += 2
                continue
            return pos
        pos += 1
    return len(template)


def _field_text(template: str, pos: int, name: str, spec: str, conversion: str | None) -> str:
    """The placeholder exactly as written at ``pos`` (``parse`` drops an empty ``:`` spec)."""
    text = "{" + name + ("" if conversion is None else "!" + conversion) + (":" + spec if spec else "") + "}"
    if not spec and not template.startswith(text, pos) and template.startswith(text[:-1] + ":}", pos):
        return text[:-1] + ":}"
    return text


def _problem(name: str, text: str, spec: str, conversion: str | None, fields: Sequence[str]) -> str | None:
    """What is wrong with one placeholder, or None if it is a bare allowed field."""
    if name == "":
        return "empty placeholder"
    if name[0].isdigit():
        return "positional placeholder"
    if "." in name or "[" in name:
        # Attribute and index access reach into Python objects ({question.__class__}): refused
        # whether or not the base is a field, so no template ever evaluates anything.
        first = min(i for i in (name.find("."), name.find("[")) if i >= 0)
        return "attribute access in placeholder" if name[first] == "." else "index access in placeholder"
    if name not in fields:
        return "unknown placeholder"
    if conversion is not None:
        return f"conversion !{conversion} in placeholder"
    if text != "{" + name + "}":
        # A format spec pads or truncates: {question:>1000000000} renders a gigabyte.
        return f"format spec {_shown(':' + spec)!r} in placeholder"
    return None


def _pieces(template: str, fields: Sequence[str]) -> list[tuple[str, str | None]]:
    """The template as (literal text, field name or None) pieces; TemplateError if not allowed."""
    pieces: list[tuple[str, str | None]] = []
    pos = 0  # where the next piece starts in ``template``
    parsed = iter(Formatter().parse(template))
    while True:
        try:
            item = next(parsed, None)
        except ValueError as exc:
            at = _stray_brace(template, pos)
            raise TemplateError(f"{exc} at {_where(template, at)} ({_shown(template[at:])!r}) {_HELP}") from None
        if item is None:
            return pieces
        literal, name, spec, conversion = item
        # Each brace of the literal text was written doubled.
        pos += len(literal) + literal.count("{") + literal.count("}")
        if name is None:
            pieces.append((literal, None))
            continue
        spec = spec or ""
        text = _field_text(template, pos, name, spec, conversion)
        problem = _problem(name, text, spec, conversion, fields)
        if problem is not None:
            raise TemplateError(f"{problem} {_shown(text)} at {_where(template, pos)}; {_allowed(fields)}")
        pieces.append((literal, name))
        pos += len(text)


def render_prompt(template: str, problem: Mapping[str, Any], fields: Sequence[str] = TEMPLATE_FIELDS) -> str:
    """``template`` with each ``{field}`` replaced by the problem's value (empty if it has none).

    Never calls ``str.format``: the pieces are joined here, after their total length is checked,
    so no template can make rendering run out of memory. Raises TemplateError naming the offending
    placeholder or brace and its line and column.
    """
    pieces = _pieces(template, fields)
    values = {name: str(problem.get(name, "")) for name in fields}
    size = sum(len(literal) + (len(values[name]) if name is not None else 0) for literal, name in pieces)
    if size > MAX_RENDERED_CHARS:
        raise TemplateError(
            f"the rendered prompt would be {size:,} characters, more than the {MAX_RENDERED_CHARS:,} allowed "
            "(a placeholder repeated too often, or a template far too long)"
        )
    return "".join(literal + (values[name] if name is not None else "") for literal, name in pieces)


def check_template(template: str, fields: Sequence[str] = TEMPLATE_FIELDS) -> None:
    """Raise TemplateError if ``template`` may not be used (rules in the module docstring)."""
    render_prompt(template, dict.fromkeys(fields, "?"), fields)
