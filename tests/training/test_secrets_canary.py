"""A canary API key, hunted through everything a training leaves behind: it must be nowhere.

A tiny training on the scripted model (one ``trainer.testing`` server for agent and optimizer),
through the real pipeline (collector -> store + Jaeger), with distinctive fake keys as
OPENAI_API_KEY and OPTIMIZER_API_KEY. The server confirms that both keys were in use (each
request carried its role's key); then neither key may appear in the store's spans and rollouts,
Jaeger's spans, the collector's and store's metrics, any file of the output directory (ledger,
summary, best prompt, the prompt DB as bytes and as an SQL dump), the trainer's stdout and
stderr, or any log of the pipeline's processes.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.jaeger import jaeger_spans
from tests.support.net import http_get
from tests.support.pipeline import Pipeline
from tests.support.store import store_client
from tests.support.trainer_cli import (
    EDIT_MODEL,
    GRADIENT_MODEL,
    TINY,
    run_trainer,
    scripted_env,
)
from tests.support.trainer_cli import TINY_TASKS as TASKS
from tests.support.waiting import wait_until
from trainer.math_task import SEED_PROMPT
from trainer.telemetry.otlp import DEFAULT_SERVICE_NAME
from trainer.testing import ScriptedLLM, ScriptedOptimizer, perfect_agent, route

pytestmark = [pytest.mark.otelcol, pytest.mark.slow]

AGENT_KEY = f"sk-canary-agent-{uuid.uuid4().hex}"
OPTIMIZER_KEY = f"sk-canary-optimizer-{uuid.uuid4().hex}"
CANARIES = (AGENT_KEY, OPTIMIZER_KEY)
# The part of a key that is its own: a key cut short, quoted or re-encoded still shows it.
MARKS = tuple(key.rsplit("-", 1)[1][:16] for key in CANARIES)


def leaks(text: str | bytes) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [mark for mark in MARKS if mark.encode() in data]


def store_everything(store_url: str, rollout_ids: list[str]) -> str:
    """Every span of the run's rollouts, the rollouts and the resources, as the store's API gives them."""

    async def read() -> str:
        client = store_client(store_url)
        try:
            parts: list[Any] = [(await client.query_rollouts()).model_dump(mode="json"),
                                (await client.query_resources()).model_dump(mode="json")]  # fmt: skip
            assert parts[0]["items"] and parts[1]["items"]
            for rid in rollout_ids:
                parts.extend(span.model_dump(mode="json") for span in await client.query_spans(rid))
            return json.dumps(parts)
        finally:
            await client.close()

    return asyncio.run(read())


def test_no_canary_key_leaves_the_llm_requests(pipeline_services: Pipeline, tmp_path: Path) -> None:
    services = pipeline_services
    out = tmp_path / "run"
    out.mkdir()
    optimizer = ScriptedOptimizer("- Check the arithmetic.", [f"{SEED_PROMPT} Check the arithmetic once."])
    script = route(agent=perfect_agent(TASKS), optimizer=optimizer, optimizer_models=(GRADIENT_MODEL, EDIT_MODEL))
    with ScriptedLLM(script) as llm:
        env = {**scripted_env(llm), "OPTIMIZER_BASE_URL": llm.base_url,
               "OPENAI_API_KEY": AGENT_KEY, "OPTIMIZER_API_KEY": OPTIMIZER_KEY}  # fmt: skip
        result = run_trainer(
            ["train", *TINY, "--output", str(out), "--store-url", services.store_url, "--log-level", "DEBUG"],
            cwd=out,
            OTEL_EXPORTER_OTLP_ENDPOINT=services.otlp_http_url,
            **env,
        )
        sent = llm.log
    assert result.returncode == 0, f"{result.stderr[-5000:]}\n{services.log_tails()}"

    # The keys were in play: each role's requests carried its own key, and only that one.
    by_role: dict[str, set[str | None]] = {"agent": set(), "optimizer": set()}
    for entry in sent:
        if entry.method == "POST" and isinstance(entry.body, dict):
            role = "optimizer" if entry.body.get("model") in (GRADIENT_MODEL, EDIT_MODEL) else "agent"
            by_role[role].add(entry.headers.get("authorization"))
    assert by_role == {"agent": {f"Bearer {AGENT_KEY}"}, "optimizer": {f"Bearer {OPTIMIZER_KEY}"}}

    summary = json.loads((out / "summary.json").read_text())
    rows = [json.loads(line) for line in (out / "runs" / summary["run_id"] / "rollouts.jsonl").read_text().splitlines()]
    assert rows and all(r["status"] == "ok" for r in rows)
    found: dict[str, list[str]] = {}

    def hunt(where: str, content: str | bytes) -> None:
        if hit := leaks(content):
            found[where] = hit

    hunt("trainer stdout", result.stdout)
    hunt("trainer stderr", result.stderr)
    files = [path for path in out.rglob("*") if path.is_file()]
    assert {"summary.json", "rollouts.jsonl", "prompts.db", "best_prompt.txt"} <= {p.name for p in files}
    for path in files:
        hunt(str(path.relative_to(out)), path.read_bytes())
    with sqlite3.connect(out / "prompts.db") as db:
        hunt("prompts.db (SQL dump)", "\n".join(db.iterdump()))
    for path in services.log_dir.rglob("*"):
        if path.is_file():
            hunt(f"pipeline log {path.name}", path.read_bytes())

    # Spans: the store's (every rollout of the ledger), and Jaeger's once it holds them all.
    hunt("store", store_everything(services.store_url, [r["rollout_id"] for r in rows]))
    rollout_ids = {r["rollout_id"] for r in rows}

    def jaeger_has_every_rollout() -> list[dict[str, Any]]:
        spans = jaeger_spans(services.jaeger_query_url, DEFAULT_SERVICE_NAME)
        seen = {t.get("value") for s in spans for t in s.get("tags", []) if t.get("key") == "agentlightning.rollout_id"}
        return spans if rollout_ids <= seen else []

    spans = wait_until(jaeger_has_every_rollout, 60, what="Jaeger holds every rollout's spans", errors=(OSError,))
    hunt("jaeger spans", json.dumps(spans))
    metrics = {"store metrics": services.store_metrics_url, "collector span metrics": services.prometheus_url,
               "collector telemetry": services.telemetry_url}  # fmt: skip
    for name, url in metrics.items():
        hunt(name, http_get(url, timeout=10))
    assert found == {}, f"a canary key leaked into: {found}"
