"""The LLM endpoints a run talks to: the agent's model and the optimizer's, from the settings.

No endpoint configured means the embedded model: it is started here (and stopped with the caller's
exit stack), so train, dry run, eval and runner all resolve their endpoints the same way.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import dataclass

from trainer.agent.model import ModelSpec
from trainer.config import ConfigError, Settings
from trainer.serving.embedded_llm import EmbeddedLLMProcess
from trainer.serving.probes import probe_chat
from trainer.urls import url_origin

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Endpoints:
    agent: ModelSpec
    optimizer_url: str
    optimizer_key: str | None
    gradient_model: str
    edit_model: str


def resolve_endpoints(settings: Settings, embedded_url: str | None) -> Endpoints:
    agent_url = settings.openai_base_url or embedded_url
    if agent_url is None:
        raise ConfigError("OPENAI_BASE_URL is unset and the embedded model is not running")
    agent_key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    optimizer_key = settings.effective_optimizer_key
    if settings.openai_api_key and not settings.optimizer_api_key and optimizer_key is None:
        # The key was given for the agent's server; sending it to another one would hand it over.
        logger.warning(
            "OPTIMIZER_API_KEY is unset and OPTIMIZER_BASE_URL (%s) is another server than the agent's (%s): "
            "OPENAI_API_KEY is not sent there, the optimizer's calls go without a key; set OPTIMIZER_API_KEY "
            "if that server needs one",
            _origin_text(settings.optimizer_base_url or agent_url), _origin_text(agent_url),
        )  # fmt: skip
    return Endpoints(
        agent=ModelSpec(
            base_url=agent_url,
            model=settings.agent_model,
            api_key=agent_key,
            temperature=settings.temperature,
            max_tokens=settings.max_reply_tokens,
            timeout=settings.llm_timeout,
            max_retries=settings.llm_max_retries,
        ),
        optimizer_url=settings.optimizer_base_url or agent_url,
        optimizer_key=optimizer_key.get_secret_value() if optimizer_key else None,
        gradient_model=settings.effective_gradient_model,
        edit_model=settings.effective_edit_model,
    )


def _origin_text(url: str) -> str:
    """``scheme://host:port`` of ``url``: no path, and no user or password a URL might carry."""
    scheme, host, port = url_origin(url) or ("", "", None)
    return f"{scheme}://{host}:{port}"


def start_endpoints(settings: Settings, stack: ExitStack) -> Endpoints:
    """The endpoints of these settings, starting the embedded model (stopped with ``stack``) if they
    name no model server."""
    embedded_url = None
    if settings.uses_embedded_llm:
        embedded_url = stack.enter_context(EmbeddedLLMProcess(settings, settings.output_dir / "llm.log")).base_url
    return resolve_endpoints(settings, embedded_url)


def probe_endpoints(endpoints: Endpoints) -> None:
    probe_chat(endpoints.agent.base_url, endpoints.agent.model, endpoints.agent.api_key)
    if (endpoints.optimizer_url, endpoints.gradient_model) != (endpoints.agent.base_url, endpoints.agent.model):
        probe_chat(endpoints.optimizer_url, endpoints.gradient_model, endpoints.optimizer_key)
    if endpoints.edit_model != endpoints.gradient_model:
        probe_chat(endpoints.optimizer_url, endpoints.edit_model, endpoints.optimizer_key)
