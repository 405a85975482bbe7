"""The Agno agent whose system prompt APO optimizes.

One ``Agent`` per rollout (building one costs well under a millisecond), one model object per
process and event loop: an ``OpenAILike`` model caches an async HTTP client bound to the loop it
was first used on, and reusing it from another loop fails with "Event loop is closed".
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

# Agno phones home after every run unless this variable says otherwise, and the variable beats
# the constructor flag. Training data and prompts must not leave the machine.
os.environ["AGNO_TELEMETRY"] = "false"

if TYPE_CHECKING:  # agno (+ openai) costs ~1 s to import: only processes that run the agent pay
    from agno.agent import Agent
    from agno.models.base import Model
    from agno.models.openai import OpenAILike


@dataclass(frozen=True)
class ModelSpec:
    """Where and how the agent's model is called."""

    base_url: str
    model: str
    api_key: str | None
    temperature: float
    max_tokens: int
    timeout: float
    max_retries: int


def create_model(spec: ModelSpec) -> OpenAILike:
    from agno.models.openai import OpenAILike

    from trainer.agent.faults import recording_http_client

    # OpenAILike, not OpenAIChat: OpenAIChat sends the system prompt with role "developer",
    # which most local chat templates (SmolLM2's included) reject.
    return OpenAILike(
        id=spec.model,
        base_url=spec.base_url,
        api_key=spec.api_key or "not-needed",
        temperature=spec.temperature,
        max_tokens=spec.max_tokens,
        timeout=spec.timeout,
        max_retries=spec.max_retries,
        # Notes each HTTP attempt's outcome, so solve() can tell an endpoint fault from a bad reply.
        # Passed through client_params: agno's own http_client field insists on `httpx` types,
        # while the openai SDK it hands them to is built on `httpx2`.
        client_params={"http_client": recording_http_client(spec.base_url)},
    )


_models: dict[tuple[int, int, ModelSpec], OpenAILike] = {}


def model_for_current_loop(spec: ModelSpec) -> OpenAILike:
    """The model object for this process and running event loop (created once)."""
    loop = asyncio.get_running_loop()
    key = (os.getpid(), id(loop), spec)
    model = _models.get(key)
    if model is None:
        model = _models[key] = create_model(spec)
    return model


def create_agent_with_prompt(system_prompt: str, model: Model, *, name: str, use_calculator: bool = False) -> Agent:
    """An agent that sends ``system_prompt`` verbatim as its system message.

    The calculator is off by default: small local models do not emit tool calls, and a tool
    schema in the prompt only confuses them.
    """
    from agno.agent import Agent

    tools = []
    if use_calculator:
        from agno.tools.calculator import CalculatorTools

        tools.append(CalculatorTools())  # type: ignore[no-untyped-call]
    return Agent(
        name=name,
        model=model,
        system_message=system_prompt,
        tools=tools or None,
        telemetry=False,
        markdown=False,
    )
