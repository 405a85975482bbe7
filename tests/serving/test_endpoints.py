"""Where each API key goes: only to the server (origin) it was given for.

Two scripted OpenAI-compatible servers on loopback stand for the agent's server and another
optimizer server (another port is another origin). Requests go out the ways a training sends
them, the startup probes and the optimizer client APO calls, and each server records the
``Authorization`` headers it received.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from trainer.apo.optimizer_llm import optimizer_client
from trainer.config import Settings
from trainer.serving.endpoints import Endpoints, probe_endpoints, resolve_endpoints
from trainer.testing import ScriptedLLM
from trainer.urls import url_origin

AGENT_KEY = "sk-agent-key-given-for-the-agent-server"
OPTIMIZER_KEY = "sk-optimizer-key-given-for-the-optimizer"


def _server() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as llm:
        yield llm


# Two scripted servers on two ports: two origins.
agent_server = pytest.fixture(_server, name="agent_server")
other_server = pytest.fixture(_server, name="other_server")


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, agent_model="agent", gradient_model="critic", **values)


def send_everything(endpoints: Endpoints) -> None:
    """The startup probes, then one optimizer call through the client a training gives APO."""
    probe_endpoints(endpoints)
    client = optimizer_client(endpoints.optimizer_url, endpoints.optimizer_key, max_tokens=16, timeout=10,
                              max_retries=0)  # fmt: skip

    async def call() -> None:
        try:
            await client.chat.completions.create(model="critic", messages=[{"role": "user", "content": "hi"}])
        finally:
            await client.close()

    asyncio.run(call())


def authorizations(llm: ScriptedLLM) -> set[str | None]:
    return {entry.headers.get("authorization") for entry in llm.log if entry.method == "POST"}


def test_the_agent_key_never_goes_to_another_optimizer_server(
    agent_server: ScriptedLLM, other_server: ScriptedLLM, caplog: pytest.LogCaptureFixture
) -> None:
    config = settings(openai_base_url=agent_server.base_url, openai_api_key=AGENT_KEY,
                      optimizer_base_url=other_server.base_url)  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="trainer.serving.endpoints"):
        endpoints = resolve_endpoints(config, None)
    assert endpoints.optimizer_key is None
    send_everything(endpoints)
    assert authorizations(agent_server) == {f"Bearer {AGENT_KEY}"}
    assert len(other_server.requests) == 2  # the probe and the optimizer call
    assert not any(AGENT_KEY in str(header) for header in authorizations(other_server))
    # One line says why, naming the two origins and never the key.
    [record] = [r for r in caplog.records if r.name == "trainer.serving.endpoints"]
    assert "OPTIMIZER_API_KEY is unset" in record.getMessage()
    assert other_server.root_url in record.getMessage() and agent_server.root_url in record.getMessage()
    assert AGENT_KEY not in caplog.text


def test_the_agent_key_goes_to_the_same_origin_and_an_unset_optimizer_url(agent_server: ScriptedLLM) -> None:
    # The same server named again (other spellings of one origin: test_origins).
    for optimizer_url in (None, agent_server.base_url):
        endpoints = resolve_endpoints(
            settings(openai_base_url=agent_server.base_url, openai_api_key=AGENT_KEY, optimizer_base_url=optimizer_url),
            None,
        )
        assert endpoints.optimizer_key == AGENT_KEY
    send_everything(endpoints)  # the last one: OPTIMIZER_BASE_URL set
    assert authorizations(agent_server) == {f"Bearer {AGENT_KEY}"}


def test_an_optimizer_key_goes_only_to_the_optimizer(agent_server: ScriptedLLM, other_server: ScriptedLLM) -> None:
    config = settings(openai_base_url=agent_server.base_url, openai_api_key=AGENT_KEY,
                      optimizer_base_url=other_server.base_url, optimizer_api_key=OPTIMIZER_KEY)  # fmt: skip
    send_everything(resolve_endpoints(config, None))
    assert authorizations(agent_server) == {f"Bearer {AGENT_KEY}"}
    assert authorizations(other_server) == {f"Bearer {OPTIMIZER_KEY}"}


def test_with_the_embedded_model_the_agent_key_stays_on_loopback(
    agent_server: ScriptedLLM, other_server: ScriptedLLM
) -> None:
    # OPENAI_BASE_URL unset: the agent's server is the embedded model (here: agent_server's URL).
    config = settings(openai_api_key=AGENT_KEY, optimizer_base_url=other_server.base_url)
    endpoints = resolve_endpoints(config, embedded_url=agent_server.base_url)
    assert endpoints.optimizer_key is None
    send_everything(endpoints)
    assert not any(AGENT_KEY in str(header) for header in authorizations(other_server))


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("http://h/v1", "http://h:80/other", True),
        ("https://API.example.com/v1", "https://api.example.com:443", True),
        ("http://h/v1", "https://h/v1", False),  # scheme
        ("http://h:8000/v1", "http://h:8001/v1", False),  # port
        ("https://api.example.com/v1", "https://api.example.com.evil.test/v1", False),  # host
    ],
)
def test_origins(a: str, b: str, same: bool) -> None:
    assert (url_origin(a) == url_origin(b)) is same
    assert url_origin("http://h/v1") != url_origin("http://h:bad/v1")  # not a port: equal to nothing
    config = settings(openai_base_url=a, openai_api_key=AGENT_KEY, optimizer_base_url=b)
    assert (config.effective_optimizer_key is not None) is same
