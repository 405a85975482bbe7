"""The data: problems, where they come from (generated or JSONL) and how they are split.

Modules: ``numbers`` (exact canonical answers), ``problems`` (the task type and the generator),
``jsonl`` (datasets from files), ``splits`` (train/val/test).

Every problem's text is checked when it is loaded, before any rollout (:func:`text_problem`): a
lone surrogate or an oversized question would otherwise fail mid-run, in the ledger, the LLM
request or the span export.
"""

from __future__ import annotations

import re
from typing import Final

# The longest question accepted, in characters. GSM8K's longest is under 1,000 and competition
# problems stay under 5,000; 20,000 (~5k tokens) leaves room for any real problem while a question
# that would not fit a model's context next to the prompt, or a file that is not a dataset at all
# (a 20 MB "question"), is refused at load time instead of failing or stalling every rollout.
MAX_QUESTION_CHARS: Final = 20_000

# A UTF-16 surrogate code point: JSON's "\ud800" escape decodes to one when it is not half of a
# pair. Such a string cannot be encoded as UTF-8, so the ledger, the HTTP request to the model and
# the span export would each fail on it.
_SURROGATE: Final = re.compile("[\ud800-\udfff]")


class DatasetError(ValueError):
    """A dataset cannot be generated, loaded or split; the message is written for the user."""


def text_problem(name: str, value: str) -> str | None:
    """What makes the text field ``name`` unusable, or None; ``"question"`` is also size-checked."""
    if (surrogate := _SURROGATE.search(value)) is not None:
        return (
            f'"{name}" holds a lone surrogate \\u{ord(surrogate.group()):04x} at character {surrogate.start() + 1} '
            "(half of a UTF-16 pair, as a JSON \\uXXXX escape); it cannot be encoded as UTF-8"
        )
    if name == "question" and len(value) > MAX_QUESTION_CHARS:
        return f'"question" is {len(value):,} characters long, more than the {MAX_QUESTION_CHARS:,} allowed'
    return None
