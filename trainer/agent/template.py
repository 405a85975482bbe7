"""Prompt templates: what a template may contain and how it is rendered for a task.

A template is the agent's system prompt. It may mention ``{question}``; any other placeholder, or
a stray brace, makes it unrenderable (write literal braces as ``{{`` and ``}}``). APO's edits
sometimes produce such templates, so rendering failures are an expected outcome, not a crash.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class TemplateError(ValueError):
    """A prompt template cannot be rendered (stray braces or unknown placeholders)."""


# Fields a template may reference. The expected answer is deliberately not one of them.
TEMPLATE_FIELDS = ("question",)


def render_prompt(template: str, task: Mapping[str, Any]) -> str:
    fields = {name: task.get(name, "") for name in TEMPLATE_FIELDS}
    try:
        return template.format(**fields)
    except KeyError as exc:
        raise TemplateError(
            f"unknown placeholder {{{exc.args[0]}}}; templates may use only "
            + ", ".join("{" + f + "}" for f in TEMPLATE_FIELDS)
            + " (write literal braces as {{ and }})"
        ) from None
    except (ValueError, IndexError, AttributeError, TypeError) as exc:
        raise TemplateError(f"{exc} (write literal braces as {{{{ and }}}})") from None


def check_template(template: str) -> None:
    """Raise TemplateError if ``template`` cannot be rendered for any task."""
    render_prompt(template, {"question": "?"})
