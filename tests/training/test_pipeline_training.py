"""A tiny training whose spans go through the real pipeline: trainer -> collector -> store + Jaeger.

Real processes on loopback: the built collector, the built Jaeger, `agl store`, the trainer with
the embedded model. The optimizer endpoint is a loopback stand-in for a hosted API (so critiques are
instant and what APO sends to it can be inspected).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.pipeline import (
    Pipeline,
    collector_counters,
    jaeger_parent,
    jaeger_services,
    jaeger_spans,
    jaeger_traces,
    pipeline,
    prom_samples,
    require_binaries,
    store_spans,
    wait_until,
)
from tests.support.trainer_cli import TINY, assert_critique_shows_conversations, clean_env, run_trainer
from trainer.testing import Reply, ScriptedLLM, chat_completion

pytestmark = [pytest.mark.llm, pytest.mark.slow]

SERVICE = "apo-trainer-test"
EXPECTED_SPANS = Counter({"math_rollout": 1, "math_solver.arun": 1, "OpenAILike.ainvoke": 1})
EDITED = "You solve math word problems. Write the calculation, then: The answer is <number>."


class ScriptedOptimizer:
    """Answers critiques and edits instantly; records what APO sent."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def __call__(self, request: dict[str, Any]) -> Reply:
        if request.get("max_tokens") == 8:  # the startup probe
            return Reply()
        with self._lock:
            self.calls.append(request)
            n = len(self.calls)
        if n % 2 == 1:
            return Reply(200, chat_completion("- Put the final number after 'The answer is'."))
        return Reply(200, chat_completion(EDITED))


def optimizer_env(fake: ScriptedLLM) -> dict[str, str]:
    return {"OPTIMIZER_BASE_URL": fake.base_url, "GRADIENT_MODEL": "fake-model"}


def telemetry_env(services: Pipeline) -> dict[str, str]:
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": services.otlp_http_url, "OTEL_SERVICE_NAME": SERVICE}


def ledger(out: Path, run_id: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (out / "runs" / run_id / "rollouts.jsonl").read_text().splitlines() if x]


def own_spans(spans: list[Any]) -> list[Any]:
    """Spans the runner created (the reward annotation goes straight into the store, not via OTLP)."""
    return [s for s in spans if not s.name.startswith("agentlightning.")]


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    require_binaries()
    with pipeline(tmp_path_factory.mktemp("pipeline-logs")) as p:
        yield p


@pytest.fixture(scope="module")
def trained(services: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("run")
    optimizer = ScriptedOptimizer()
    with ScriptedLLM(optimizer) as fake:
        result = run_trainer(
            ["train", *TINY, "--output", str(out), "--store-url", services.store_url],
            cwd=out,
            **optimizer_env(fake),
            **telemetry_env(services),
        )
    assert result.returncode == 0, f"{result.stderr[-5000:]}\n{services.log_tails()}"
    summary = json.loads((out / "summary.json").read_text())
    return {"out": out, "summary": summary, "rows": ledger(out, summary["run_id"]), "optimizer": optimizer}


def test_every_rollout_in_the_store_has_reward_and_exact_spans(services: Pipeline, trained: dict[str, Any]) -> None:
    from agentlightning.emitter.reward import find_final_reward

    rows = trained["rows"]
    assert len(rows) == trained["summary"]["rollouts"] > 0
    for row in rows:
        spans = store_spans(services.store_url, row["rollout_id"])
        assert find_final_reward(spans) == row["reward"], row["rollout_id"]
        names = Counter(s.name for s in own_spans(spans))
        assert names == EXPECTED_SPANS, f"{row['rollout_id']}: {dict(names)}"
        assert row["spans"] == sum(EXPECTED_SPANS.values())
        by_name = {s.name: s for s in spans}
        assert by_name["OpenAILike.ainvoke"].parent_id == by_name["math_solver.arun"].span_id
        assert by_name["math_solver.arun"].parent_id == by_name["math_rollout"].span_id
        for span in own_spans(spans):  # ids are span attributes, and never mixed between rollouts
            assert span.attributes["agentlightning.rollout_id"] == row["rollout_id"]
            assert span.attributes["agentlightning.attempt_id"] == row["attempt_id"]
        llm = by_name["OpenAILike.ainvoke"].attributes
        assert any(k.startswith("llm.input_messages") for k in llm), "LLM span lacks the conversation"
        if row["status"] == "ok":  # a timed-out request has no usage to count
            assert llm["llm.token_count.prompt"] == row["input_tokens"] > 0
            assert llm["llm.token_count.completion"] == row["output_tokens"] > 0
        for span in spans:
            assert "sk-" not in json.dumps(span.attributes, default=str)


def test_apo_never_read_an_incomplete_rollout(trained: dict[str, Any]) -> None:
    reads = trained["summary"]["apo_span_reads"]
    print(f"APO read {reads['rollouts_read']} rollouts, {reads['incomplete']} with spans missing")
    assert reads["rollouts_read"] >= len([r for r in trained["rows"] if r["mode"] == "train"])
    assert reads["incomplete"] == 0


def test_critique_sees_the_conversation_through_the_collector(trained: dict[str, Any]) -> None:
    calls = trained["optimizer"].calls
    assert calls, "APO never called the optimizer"
    assert_critique_shows_conversations(calls[0], trained["out"], trained["summary"]["run_id"])


def test_jaeger_has_the_traces_searchable_by_rollout_id(services: Pipeline, trained: dict[str, Any]) -> None:
    wait_until(lambda: SERVICE in jaeger_services(services.jaeger_query_url), 30, what="service in Jaeger")
    for row in trained["rows"][:5]:
        traces = jaeger_traces(services.jaeger_query_url, SERVICE, {"agentlightning.rollout_id": row["rollout_id"]})
        assert len(traces) == 1, row["rollout_id"]
        spans = traces[0]["spans"]
        names = Counter(s["operationName"] for s in spans)
        assert names == EXPECTED_SPANS
        ids = {s["operationName"]: s["spanID"] for s in spans}
        parents = {s["operationName"]: jaeger_parent(s) for s in spans}
        assert parents["math_rollout"] is None
        assert parents["math_solver.arun"] == ids["math_rollout"]
        assert parents["OpenAILike.ainvoke"] == ids["math_solver.arun"]


def test_nothing_lost_between_trainer_collector_and_sinks(services: Pipeline, trained: dict[str, Any]) -> None:
    exported = sum(r["spans"] for r in trained["rows"])
    in_store = sum(len(own_spans(store_spans(services.store_url, r["rollout_id"]))) for r in trained["rows"])

    def settled() -> bool:
        c = collector_counters(services.telemetry_url)
        return c.total("sent") >= 2 * exported and c.total("queue_size") == 0

    wait_until(settled, 30, what="collector exporters caught up")
    counters = collector_counters(services.telemetry_url)
    in_jaeger = len(jaeger_spans(services.jaeger_query_url, SERVICE))
    print(
        f"exported {exported}, collector accepted {counters.total('accepted')}, sent {counters.sent}, "
        f"failed {counters.send_failed}, store {in_store}, jaeger {in_jaeger}"
    )
    assert counters.total("accepted") == exported
    assert counters.total("refused") == 0
    assert all(v == exported for v in counters.sent.values()), counters.sent
    assert counters.total("send_failed") == 0 and counters.total("enqueue_failed") == 0
    assert in_store == exported
    assert in_jaeger == exported


def test_span_metrics_for_llm_spans(services: Pipeline, trained: dict[str, Any]) -> None:
    llm_calls = sum(1 for r in trained["rows"])  # one LLM span per rollout

    def calls() -> float:
        return sum(
            s.value
            for s in prom_samples(services.prometheus_url)
            if s.name.startswith("traces_span_metrics_calls")
            and s.labels.get("span_name") == "OpenAILike.ainvoke"
            and s.labels.get("service_name") == SERVICE
        )

    # The connector flushes every 15 s.
    wait_until(lambda: calls() >= llm_calls, 45, what="span metrics for the LLM spans")
    assert calls() == llm_calls


def test_collector_restart_mid_training_loses_nothing(tmp_path: Path) -> None:
    require_binaries()
    out = tmp_path / "run"
    out.mkdir()
    with pipeline(tmp_path / "logs") as services, ScriptedLLM(ScriptedOptimizer()) as fake:
        log = (tmp_path / "train.log").open("w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "trainer", "train", *TINY, "--output", str(out), "--store-url", services.store_url],
            cwd=out,
            env=clean_env(**optimizer_env(fake), **telemetry_env(services)),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            ledgers = lambda: list((out / "runs").glob("*/rollouts.jsonl"))  # noqa: E731
            wait_until(lambda: bool(ledgers()) and len(ledgers()[0].read_text().splitlines()) >= 4, 300)
            downtime = services.collector.restart()
            assert proc.wait(timeout=900) == 0, (tmp_path / "train.log").read_text()[-4000:]
        finally:
            if proc.poll() is None:
                proc.kill()
            log.close()
        summary = json.loads((out / "summary.json").read_text())
        rows = ledger(out, summary["run_id"])
        exported = sum(r["spans"] for r in rows)
        in_store = sum(len(own_spans(store_spans(services.store_url, r["rollout_id"]))) for r in rows)
        time.sleep(2)  # Jaeger's exporter queue
        in_jaeger = len(jaeger_spans(services.jaeger_query_url, SERVICE))
    print(
        f"collector restarted ({downtime:.1f}s down): exported {exported}, lost in store {exported - in_store}, "
        f"lost in Jaeger {exported - in_jaeger}, APO reads incomplete {summary['apo_span_reads']['incomplete']}"
    )
    assert summary["rollouts"] == len(rows) > 0
    assert in_store == exported
    assert in_jaeger == exported
