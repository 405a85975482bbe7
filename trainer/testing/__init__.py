"""A test model shipped with the trainer: a scripted OpenAI-compatible server and LLM behaviours.

The LLM is an outside service users bring. Tests, benchmarks, and anyone who wants to try the
pipeline with no model at all need something that behaves like one: an HTTP server with real
status codes, ``usage`` and latency (:class:`ScriptedLLM`), answering as a scripted agent
(:func:`perfect_agent`, :func:`wrong_agent`, :func:`agent_when`, right only with a worked example
of the same kind: :func:`prompt_shows_kind`) and a scripted APO optimizer
(:class:`ScriptedOptimizer`), on one port (:func:`route`), with outages on demand
(:func:`failing`, :func:`dropping`). ``python -m trainer.testing serve`` runs one for the dataset
the settings describe.

Importing this package is cheap (stdlib plus :mod:`trainer.data`): no agentlightning, no agno.
"""

from trainer.testing.behaviours import (
    EDIT_PHRASES,
    GRADIENT_PHRASES,
    NO_ANSWER,
    PROBE_PROMPT,
    REWRITE_HINTS,
    Behaviour,
    CallKind,
    EditScript,
    OptimizerCall,
    ScriptedOptimizer,
    Tasks,
    agent_when,
    answer_key,
    call_kind,
    dropping,
    extract_prompt,
    failing,
    is_probe,
    perfect_agent,
    prompt_contains,
    prompt_rewrites,
    prompt_shows_kind,
    route,
    wrong_agent,
    wrong_number,
)
from trainer.testing.server import (
    CONTEXT_OVERFLOW,
    DEFAULT_CONTENT,
    DEFAULT_MODEL,
    MAX_DELAY_S,
    OVERLOADED,
    RATE_LIMITED,
    SERVER_ERROR,
    Recorded,
    Reply,
    Script,
    ScriptedLLM,
    ScriptItem,
    chat_completion,
    closed_port,
    count_tokens,
    error_body,
    message_text,
)

__all__ = [
    "CONTEXT_OVERFLOW",
    "DEFAULT_CONTENT",
    "DEFAULT_MODEL",
    "EDIT_PHRASES",
    "GRADIENT_PHRASES",
    "MAX_DELAY_S",
    "NO_ANSWER",
    "OVERLOADED",
    "PROBE_PROMPT",
    "RATE_LIMITED",
    "REWRITE_HINTS",
    "SERVER_ERROR",
    "Behaviour",
    "CallKind",
    "EditScript",
    "OptimizerCall",
    "Recorded",
    "Reply",
    "Script",
    "ScriptItem",
    "ScriptedLLM",
    "ScriptedOptimizer",
    "Tasks",
    "agent_when",
    "answer_key",
    "call_kind",
    "chat_completion",
    "closed_port",
    "count_tokens",
    "dropping",
    "error_body",
    "extract_prompt",
    "failing",
    "is_probe",
    "message_text",
    "perfect_agent",
    "prompt_contains",
    "prompt_rewrites",
    "prompt_shows_kind",
    "route",
    "wrong_agent",
    "wrong_number",
]
