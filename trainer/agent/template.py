"""Prompt templates: what a template may contain and how it is rendered for a problem.

A template is the agent's system prompt. It may mention the task's template fields (``{question}``
by default); any other placeholder, or a stray brace, makes it unrenderable (write literal braces
as ``{{`` and ``}}``). APO's edits sometimes produce such templates, so rendering failures are an
expected outcome, not a crash.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class TemplateError(ValueError):
    """A prompt template cannot be rendered (stray braces or unknown placeholders)."""


# The engine of Agent Lightning's prompt resources that renders templates this way (str.format).
TEMPLATE_ENGINE = "f-string"

# Fields a template may reference by default (a task may name others). The expected answer is
# deliberately never one of them.
TEMPLATE_FIELDS = ("question",)


def render_prompt(template: str, problem: Mapping[str, Any], fields: Sequence[str] = TEMPLATE_FIELDS) -> str:
    values = {name: problem.get(name, "") for name in fields}
    try:
        return template.format(**values)
    except KeyError as exc:
        raise TemplateError(
            f"unknown placeholder {{{exc.args[0]}}}; templates may use only "
            + ", ".join("{" + f + "}" for f in fields)
            + " (write literal braces as {{ and }})"
        ) from None
    except (ValueError, IndexError, AttributeError, TypeError) as exc:
        raise TemplateError(f"{exc} (write literal braces as {{{{ and }}}})") from None


def check_template(template: str, fields: Sequence[str] = TEMPLATE_FIELDS) -> None:
    """Raise TemplateError if ``template`` cannot be rendered for any problem."""
    render_prompt(template, dict.fromkeys(fields, "?"), fields)
