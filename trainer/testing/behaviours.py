"""Scripted behaviours for the two LLM roles of a training, as :class:`ScriptedLLM` scripts.

A training talks to a model in two roles. The *agent* gets one chat per rollout: a system prompt
(the candidate prompt rendered) and a user message (the question). The *optimizer* gets APO's
critique ("textual gradient") and edit calls. Each behaviour here is a callable
``request_json -> Reply`` that plays one role without any model, so a whole training can run in
seconds with known outcomes: a perfect agent must score 1.0, a wrong one 0.0, and an agent that
is right only for some prompts (:func:`agent_when`) tells whether APO's search finds them.

Every behaviour answers the trainer's startup probe (:data:`PROBE_PROMPT`) with ``"4"``.
Agents know the answers from an answer key (question text -> canonical answer) built from the
tasks; a question not in the key gets a reply holding no number, which grades wrong.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Final, Literal

from trainer.data.numbers import format_decimal, to_fraction
from trainer.testing.server import OVERLOADED, RATE_LIMITED, SERVER_ERROR, Reply, error_body, message_text

Behaviour = Callable[[dict[str, Any]], Reply]
CallKind = Literal["gradient", "edit"]
# Tasks ({"question", "answer", ...} dicts, e.g. MathTask) or a ready-made question -> answer map.
Tasks = Iterable[Mapping[str, Any]] | Mapping[str, Any]

# What trainer.serving.probes.probe_chat sends before any work (tests check the two agree).
PROBE_PROMPT: Final = "Reply with the number 4."
NO_ANSWER: Final = "I cannot tell which problem this is, so I cannot give an answer."

# Opening instructions of APO's prompt templates (agentlightning/algorithm/apo/prompts/*.poml).
GRADIENT_PHRASES: Final = (
    "You optimize a prompt template.",  # text_gradient_variant01
    "Analyze where the current prompt failed to elicit the right mechanism.",  # text_gradient_variant02
    "Your task is to analyze the prompt and provide a critique of the prompt.",  # text_gradient_variant03
)
EDIT_PHRASES: Final = (
    "Revise the given prompt template using the critique",  # apply_edit_variant01
    "Revise the prompt to address ONE critique point",  # apply_edit_variant02
)
_PHRASES: Final[tuple[tuple[CallKind, str], ...]] = (
    *(("gradient", phrase) for phrase in GRADIENT_PHRASES),
    *(("edit", phrase) for phrase in EDIT_PHRASES),
)
# Section captions around the prompt template in each rendered template, and, for edits, the
# caption of the critique that follows it.
_PROMPT_SECTIONS: Final = tuple(
    re.compile(rf"^#+ {head}\n\n(?P<prompt>.*?)\n\n#+ {tail}[^\n]*\n\n(?P<rest>.*)\Z", re.DOTALL | re.MULTILINE)
    for head, tail in (
        ("Prompt Template", "Critique"),
        ("PROMPT", "CRITIQUE"),
        ("Original Prompt Template", "Experiments with Original Prompt Template"),
        ("Current Prompt Template", "Sample Runs with Current Prompt Template"),
        ("Prompt", "Sample Runs of the Prompts"),
    )
)


def _messages(request: Mapping[str, Any]) -> list[Any]:
    messages = request.get("messages")
    return messages if isinstance(messages, list) else []


def _text(request: Mapping[str, Any]) -> str:
    return "\n\n".join(message_text(m) for m in _messages(request))


def is_probe(request: Mapping[str, Any]) -> bool:
    """Is this the trainer's startup probe (one user message asking for the number 4)?"""
    messages = _messages(request)
    return len(messages) == 1 and message_text(messages[0]).strip() == PROBE_PROMPT


def _normalize(question: str) -> str:
    return " ".join(question.split())


def answer_key(tasks: Tasks) -> dict[str, str]:
    """Question (whitespace-normalized) -> canonical answer, from tasks or a ready-made mapping."""
    if isinstance(tasks, Mapping):
        pairs: Iterable[tuple[Any, Any]] = tasks.items()
    else:
        pairs = ((task["question"], task["answer"]) for task in tasks)
    return {_normalize(str(q)): _canonical(a) for q, a in pairs}


def _canonical(answer: Any) -> str:
    """A numeric answer in canonical form (as the math task grades it); any other answer as it is."""
    try:
        return format_decimal(to_fraction(answer))
    except ValueError:
        return str(answer)


def _roles(request: Mapping[str, Any]) -> tuple[str, str]:
    """(system prompt, question): the first system message and the last user message."""
    messages = [m for m in _messages(request) if isinstance(m, dict)]
    system = next((message_text(m) for m in messages if m.get("role") in ("system", "developer")), "")
    users = [message_text(m) for m in messages if m.get("role") == "user"]
    return system, users[-1] if users else ""


def _right(answer: str) -> str:
    return f"I worked through the numbers in the question one step at a time, so the answer is {answer}."


def wrong_number(answer: str | int | float) -> Fraction:
    """A value no tolerance accepts for ``answer``: off by at least 1 and by at least ``|answer|``."""
    value = to_fraction(answer)
    return value + 1 + abs(value)


def _wrong(answer: str) -> str:
    try:
        return _right(format_decimal(wrong_number(answer)))
    except ValueError:  # not a number: a reply that does not even mention it
        return _right("unknown" if answer != "unknown" else "something else")


def _agent(tasks: Tasks, right: Callable[[str, str], bool]) -> Behaviour:
    key = answer_key(tasks)

    def behaviour(request: dict[str, Any]) -> Reply:
        if is_probe(request):
            return Reply(content="4")
        system, question = _roles(request)
        answer = key.get(_normalize(question))
        if answer is None:
            return Reply(content=NO_ANSWER)
        return Reply(content=_right(answer) if right(system, question) else _wrong(answer))

    return behaviour


def perfect_agent(tasks: Tasks) -> Behaviour:
    """An agent that answers every known question correctly, whatever its system prompt."""
    return _agent(tasks, lambda system, question: True)


def wrong_agent(tasks: Tasks) -> Behaviour:
    """An agent that always gives a wrong number for a known question."""
    return _agent(tasks, lambda system, question: False)


def agent_when(tasks: Tasks, predicate: Callable[[str, str], bool]) -> Behaviour:
    """An agent that is right iff ``predicate(system_prompt, question)``, else gives a wrong number.

    The hook for environments where the prompt matters, e.g. right only when the system prompt
    holds a worked example of the question's kind.
    """
    return _agent(tasks, predicate)


def prompt_contains(*phrases: str) -> Callable[[str, str], bool]:
    """A predicate for :func:`agent_when`: the system prompt holds one of ``phrases`` (any case)."""
    wanted = [p.lower() for p in phrases]
    return lambda system, question: any(p in system.lower() for p in wanted)


def prompt_shows_kind(tasks: Iterable[Mapping[str, Any]]) -> Callable[[str, str], bool]:
    """A predicate for :func:`agent_when`: the system prompt holds a worked example of the asked
    question's kind, i.e. another question of that ``kind`` among ``tasks`` (its own does not count).

    An environment where demonstrations provably matter: no instruction, however it is worded,
    makes such an agent right; the right examples do.
    """
    kind_of = {_normalize(str(t["question"])): str(t.get("kind", "")) for t in tasks}
    by_kind: dict[str, list[str]] = {}
    for question, kind in kind_of.items():
        by_kind.setdefault(kind, []).append(question)

    def shows(system: str, question: str) -> bool:
        asked = _normalize(question)
        if asked not in kind_of:
            return False
        shown = _normalize(system)
        return any(other != asked and other in shown for other in by_kind[kind_of[asked]])

    return shows


# --------------------------------------------------------------------------------------------------
# Optimizer
# --------------------------------------------------------------------------------------------------


def call_kind(request: Mapping[str, Any]) -> CallKind | None:
    """``"gradient"`` or ``"edit"`` for one of APO's calls, else None.

    Each template opens with fixed instructions; the prompt, critique and conversations come
    after them. So the phrase found earliest in the request wins, and a candidate prompt quoting
    another template's phrase cannot flip the verdict.
    """
    text = _text(request)
    found = [(at, kind) for kind, phrase in _PHRASES if (at := text.find(phrase)) != -1]
    return min(found)[1] if found else None


def extract_prompt(request: Mapping[str, Any]) -> tuple[str, str] | None:
    """(prompt template, what follows it) from one of APO's rendered requests, or None.

    For an edit call what follows is the critique. Captions are matched from the first, so a
    critique holding a caption of its own stays whole.
    """
    for message in _messages(request):
        text = message_text(message)
        for section in _PROMPT_SECTIONS:
            if (match := section.search(text)) is not None:
                return match["prompt"], match["rest"]
    return None


@dataclass(frozen=True)
class OptimizerCall:
    """One call the optimizer answered; ``prompt`` is the template it was about, if found."""

    kind: CallKind | Literal["unknown"]
    request: dict[str, Any]
    prompt: str | None
    reply: str


EditScript = Sequence[str] | Callable[[str, str], str]


class ScriptedOptimizer:
    """Answers APO's critique calls with ``critique`` and its edit calls with ``edits``.

    ``edits`` is a sequence of new prompts, used in order and then cycled, or a callable
    ``(prompt_template, critique) -> new prompt``. APO takes an edit reply verbatim as the new
    prompt (no tag or fence around it), so that is what is sent. Every call is recorded in
    :attr:`calls`; a request that is neither kind gets an answer with no prompt in it.
    """

    def __init__(self, critique: str, edits: EditScript) -> None:
        if not callable(edits) and len(edits) == 0:
            raise ValueError("edits must hold at least one prompt")
        self.critique = critique
        self._edits = edits
        self._next_edit = itertools.count()
        self._lock = threading.Lock()
        self._calls: list[OptimizerCall] = []

    @property
    def calls(self) -> list[OptimizerCall]:
        with self._lock:
            return list(self._calls)

    @property
    def kinds(self) -> list[str]:
        return [call.kind for call in self.calls]

    def _edit(self, prompt: str, critique: str) -> str:
        if callable(self._edits):
            return self._edits(prompt, critique)
        return self._edits[next(self._next_edit) % len(self._edits)]

    def __call__(self, request: dict[str, Any]) -> Reply:
        if is_probe(request):
            return Reply(content="4")
        kind = call_kind(request)
        found = extract_prompt(request)
        prompt, rest = found if found is not None else (None, "")
        if kind == "gradient":
            text = self.critique
        elif kind == "edit":
            text = self._edit(prompt or "", rest.strip())
        else:
            text = "I can critique or revise a prompt template; none was given."
        with self._lock:
            self._calls.append(OptimizerCall(kind or "unknown", request, prompt, text))
        return Reply(content=text)


REWRITE_HINTS: Final = (
    "Work through the problem one step at a time.",
    "Write down each intermediate result before the next step.",
    "Use only the numbers given in the question.",
    "Check the arithmetic once before answering.",
    "Keep units out of the final number.",
)


def prompt_rewrites(hints: Sequence[str] = REWRITE_HINTS) -> Callable[[str, str], str]:
    """Edits for :class:`ScriptedOptimizer`: small deterministic rewrites of the prompt given.

    The n-th edit toggles hint ``n % len(hints)``: appended when the prompt lacks it, removed when
    it has it. Successive edits of one parent differ, and a prompt never grows past all hints.
    Hints must hold no braces, so placeholders stay the only ones.
    """
    if not hints or any("{" in h or "}" in h for h in hints):
        raise ValueError("hints must be non-empty and hold no braces")
    counter = itertools.count()

    def edit(prompt: str, critique: str) -> str:
        hint = hints[next(counter) % len(hints)]
        if hint not in prompt:
            return f"{prompt.rstrip()} {hint}"
        spaced = f" {hint}"
        return (prompt.replace(spaced, "", 1) if spaced in prompt else prompt.replace(hint, "", 1)).strip()

    return edit


# --------------------------------------------------------------------------------------------------
# Composition
# --------------------------------------------------------------------------------------------------


def route(
    *,
    agent: Behaviour,
    optimizer: Behaviour,
    optimizer_models: Sequence[str] = (),
    detect: bool = True,
) -> Behaviour:
    """One script for both roles: a request whose ``"model"`` is in ``optimizer_models`` goes to
    ``optimizer``, any other to ``agent``.

    With ``detect`` a request for another model also goes to ``optimizer`` when it is one of
    APO's critique or edit calls (:func:`call_kind`): a training whose three models share one
    name (AGENT_MODEL set, GRADIENT_MODEL and EDIT_MODEL unset) works too.
    """
    models = frozenset(optimizer_models)

    def behaviour(request: dict[str, Any]) -> Reply:
        if str(request.get("model")) in models or (detect and call_kind(request) is not None):
            return optimizer(request)
        return agent(request)

    return behaviour


_ERROR_BODIES: Final = {429: RATE_LIMITED, 500: SERVER_ERROR, 503: OVERLOADED}


def failing(
    behaviour: Behaviour,
    *,
    status: int = 503,
    after: int = 0,
    times: int = 1,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    drop: bool = False,
) -> Behaviour:
    """``behaviour`` for ``after`` requests, then ``times`` failures, then ``behaviour`` again.

    A failure is HTTP ``status`` with ``body`` (default: OpenAI's body for that status), or, with
    ``drop``, a connection closed without an answer. Every chat request counts, probes included.
    """
    if after < 0 or times < 0:
        raise ValueError("after and times must be >= 0")
    if not drop and status < 400:
        raise ValueError(f"a failure needs an error status, got {status}")
    failure = Reply(
        status,
        body if body is not None else _ERROR_BODIES.get(status, error_body(f"HTTP {status}", "server_error")),
        headers=dict(headers or {}),
        drop=drop,
    )
    lock = threading.Lock()
    seen = itertools.count()

    def wrapped(request: dict[str, Any]) -> Reply:
        with lock:
            index = next(seen)
        return failure if after <= index < after + times else behaviour(request)

    return wrapped


def dropping(behaviour: Behaviour, *, after: int = 0, times: int = 1) -> Behaviour:
    """``behaviour`` with ``times`` connection resets after ``after`` requests."""
    return failing(behaviour, after=after, times=times, drop=True)
