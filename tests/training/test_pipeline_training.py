"""A tiny training whose spans go through the real pipeline: trainer -> collector -> store + Jaeger.

Real processes on loopback: the built collector, the built Jaeger, `agl store`, and the trainer CLI
with its runner processes, Agno agent and APO. Scripted: the LLM, one ``trainer.testing`` server
for both roles. The agent answers right only when its system prompt holds HINT; the optimizer
critiques with a fixed text and edits the seed into HINTED (first branch) and UNHINTED (second).
So the run's outcome is known to the rollout: the seed scores 0.0, HINTED 1.0 and becomes the best,
every count and token total below is exact.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.env import trainer_env
from tests.support.jaeger import jaeger_parent, jaeger_services, jaeger_spans, jaeger_traces
from tests.support.pipeline import Pipeline, collector_counters, pipeline, prom_samples
from tests.support.store import store_client
from tests.support.trainer_cli import (
    AGENT_MODEL,
    EDIT_MODEL,
    GRADIENT_MODEL,
    TINY,
    assert_critique_shows_conversations,
    run_trainer,
    scripted_env,
)
from tests.support.trainer_cli import TINY_SETTINGS as SETTINGS
from tests.support.trainer_cli import TINY_SPLITS as SPLITS
from tests.support.trainer_cli import TINY_TASKS as TASKS
from tests.support.waiting import wait_until
from trainer.agent.template import render_prompt
from trainer.apo.plan import expected_rollouts
from trainer.math_task import SEED_PROMPT
from trainer.records.prompt_db import PromptDB, PromptRecord
from trainer.telemetry.otlp import DEFAULT_SERVICE_NAME
from trainer.testing import (
    Behaviour,
    Reply,
    ScriptedLLM,
    ScriptedOptimizer,
    agent_when,
    is_probe,
    perfect_agent,
    prompt_contains,
    route,
)

pytestmark = [pytest.mark.otelcol, pytest.mark.slow]

# The trainer's default service name: the test environment sets no OTEL_SERVICE_NAME (that one
# overrides it is tests/telemetry/test_otlp.py's subject).
SERVICE = DEFAULT_SERVICE_NAME
EXPECTED_SPANS = Counter({"math_rollout": 1, "math_solver.arun": 1, "OpenAILike.ainvoke": 1})
SPANS_PER_ROLLOUT = sum(EXPECTED_SPANS.values())

HINT = "Check the arithmetic once before answering."
HINTED = f"{SEED_PROMPT} {HINT}"
UNHINTED = f"{SEED_PROMPT} Keep units out of the final number."
CRITIQUE = "- Ask for one check of the arithmetic before the final line."

QUESTIONS = {task["id"]: task["question"] for task in TASKS}
# APO's cost formula; both branches yield an evaluated candidate here, so the bound is what runs.
EXPECTED_ROLLOUTS = expected_rollouts(SETTINGS, SPLITS)["training_rollouts"]


def telemetry_env(services: Pipeline) -> dict[str, str]:
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": services.otlp_http_url}


def ledger(out: Path, run_id: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (out / "runs" / run_id / "rollouts.jsonl").read_text().splitlines() if x]


def own_spans(spans: list[Any]) -> list[Any]:
    """Spans the runner created (the reward annotation goes straight into the store, not via OTLP)."""
    return [s for s in spans if not s.name.startswith("agentlightning.")]


def spans_of(store_url: str, rollout_ids: list[str]) -> dict[str, list[Any]]:
    """The store's spans of each rollout, read through one client (a client per rollout costs ~1 s)."""

    async def read() -> dict[str, list[Any]]:
        client = store_client(store_url)
        try:
            return {rid: list(await client.query_spans(rid)) for rid in rollout_ids}
        finally:
            await client.close()

    return asyncio.run(read())


def usage(request: dict[str, Any], reply: Reply) -> dict[str, int]:
    """The usage the scripted server sent for ``reply``: it counts tokens of request and reply."""
    return dict(ScriptedLLM().completion(request, reply.content or "")["usage"])


@dataclass
class Trained:
    out: Path
    summary: dict[str, Any]
    rows: list[dict[str, Any]]
    optimizer: ScriptedOptimizer
    agent: Behaviour
    requests: list[dict[str, Any]]
    prompts: dict[str, PromptRecord]

    def agent_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["model"] == AGENT_MODEL and not is_probe(r)]


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    with pipeline(tmp_path_factory.mktemp("pipeline-logs")) as p:
        yield p


@pytest.fixture(scope="module")
def trained(services: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    out = tmp_path_factory.mktemp("run")
    optimizer = ScriptedOptimizer(CRITIQUE, [HINTED, UNHINTED])
    agent = agent_when(TASKS, prompt_contains(HINT))
    script = route(agent=agent, optimizer=optimizer, optimizer_models=(GRADIENT_MODEL, EDIT_MODEL))
    with ScriptedLLM(script) as llm:
        result = run_trainer(
            ["train", *TINY, "--output", str(out), "--store-url", services.store_url],
            cwd=out,
            **scripted_env(llm),
            **telemetry_env(services),
            # Every rollout calls the model and exports its three spans: the counts below are about the
            # pipeline. The cache's hits have a training test of their own (test_rollout_cache_training.py).
            ROLLOUT_CACHE="false",
        )
        requests = llm.requests
    assert result.returncode == 0, f"{result.stderr[-5000:]}\n{services.log_tails()}"
    summary = json.loads((out / "summary.json").read_text())
    with PromptDB(out / "prompts.db") as db:
        prompts = {p.label: p for p in db.list(summary["run_id"])}
    return Trained(out, summary, ledger(out, summary["run_id"]), optimizer, agent, requests, prompts)


def test_apo_found_the_hinted_prompt_with_exactly_the_planned_rollouts(trained: Trained) -> None:
    summary, rows, prompts = trained.summary, trained.rows, trained.prompts
    assert EXPECTED_ROLLOUTS == 34  # seed 6 + 2 branches x 2 train + (beam 1 + 2 candidates) x 6 val + leader 6
    assert summary["rollouts"] == len(rows) == EXPECTED_ROLLOUTS == summary["expected_training_rollouts_max"]
    assert Counter((r["mode"], r["prompt_version"]) for r in rows) == {
        ("val", "v0"): 12,  # the seed's baseline, then the seed as beam member in round 1
        ("train", "v0"): 4,  # two critique batches of 2
        ("val", "v1"): 12,  # candidate batch, then the new beam leader on the full val set
        ("val", "v2"): 6,
    }
    assert Counter(r["status"] for r in rows) == {"ok": EXPECTED_ROLLOUTS}
    assert Counter(r["reward"] for r in rows) == {0.0: 22, 1.0: 12}  # only HINTED's rollouts are right
    assert [(p.label, p.template, p.round, p.status, p.val_score, p.val_n, p.is_best) for p in prompts.values()] == [
        # val_n pools every val rollout a prompt had (trainer.apo.scoring): the ledger's counts above
        ("v0", SEED_PROMPT, 0, "scored", 0.0, 12, False),
        ("v1", HINTED, 1, "scored", 1.0, 12, True),
        ("v2", UNHINTED, 1, "scored", 0.0, 6, False),
    ]
    assert (summary["seed_val_score"], summary["best_val_score"], summary["best_prompt_version"]) == (0.0, 1.0, "v1")
    assert (summary["seed_test_score"], summary["best_test_score"]) == (0.0, 1.0)
    assert summary["paired_test"]["only_best"] == len(SPLITS.test) and summary["paired_test"]["significant"]
    assert (summary["candidates"], summary["candidates_rejected"], summary["failed_optimizer_branches"]) == (2, 0, 0)
    assert (trained.out / "best_prompt.txt").read_text() == HINTED


def test_every_rollout_in_the_store_has_reward_and_exact_spans(services: Pipeline, trained: Trained) -> None:
    from agentlightning.emitter.reward import find_final_reward

    rows = trained.rows
    assert len(rows) == trained.summary["rollouts"] == EXPECTED_ROLLOUTS
    stored = spans_of(services.store_url, [r["rollout_id"] for r in rows])
    for row in rows:
        spans = stored[row["rollout_id"]]
        assert find_final_reward(spans) == row["reward"], row["rollout_id"]
        names = Counter(s.name for s in own_spans(spans))
        assert names == EXPECTED_SPANS, f"{row['rollout_id']}: {dict(names)}"
        assert row["spans"] == SPANS_PER_ROLLOUT
        by_name = {s.name: s for s in spans}
        assert by_name["OpenAILike.ainvoke"].parent_id == by_name["math_solver.arun"].span_id
        assert by_name["math_solver.arun"].parent_id == by_name["math_rollout"].span_id
        for span in own_spans(spans):  # ids are span attributes, and never mixed between rollouts
            assert span.attributes["agentlightning.rollout_id"] == row["rollout_id"]
            assert span.attributes["agentlightning.attempt_id"] == row["attempt_id"]
        llm = by_name["OpenAILike.ainvoke"].attributes
        assert any(k.startswith("llm.input_messages") for k in llm), "LLM span lacks the conversation"
        assert row["status"] == "ok"  # a scripted reply never times out: every rollout has usage
        assert llm["llm.token_count.prompt"] == row["input_tokens"] > 0
        assert llm["llm.token_count.completion"] == row["output_tokens"] > 0
        for span in spans:
            assert "sk-" not in json.dumps(span.attributes, default=str)


def test_each_rollout_counts_exactly_the_tokens_the_server_sent(trained: Trained) -> None:
    by_conversation: dict[tuple[str, str], dict[str, int]] = {}
    for request in trained.agent_requests():
        system, question = (m["content"] for m in request["messages"])
        by_conversation[(system, question)] = usage(request, trained.agent(request))
    rows = trained.rows
    for row in rows:
        template = trained.prompts[row["prompt_version"]].template
        task = {"question": QUESTIONS[row["task_id"]]}
        sent = by_conversation[(render_prompt(template, task), task["question"])]
        assert (row["input_tokens"], row["output_tokens"]) == (sent["prompt_tokens"], sent["completion_tokens"])
    training = sum(r["input_tokens"] + r["output_tokens"] for r in rows)
    # Every agent request the server saw, training and test alike (seed and best differ: both scored).
    everything = sum(usage(r, trained.agent(r))["total_tokens"] for r in trained.agent_requests())
    assert len(trained.agent_requests()) == EXPECTED_ROLLOUTS + 2 * len(SPLITS.test)
    tokens = trained.summary["tokens"]
    assert tokens["agent"] == training
    assert tokens["agent"] + tokens["test"] == everything
    optimizer_total = 0
    for role, model in (("gradient", GRADIENT_MODEL), ("edit", EDIT_MODEL)):
        calls = [c for c in trained.optimizer.calls if c.kind == role]
        sent = [usage(c.request, Reply(content=c.reply)) for c in calls]
        counted = tokens["optimizer"][f"{role}:{model}"]
        assert (counted["calls"], counted["failures"], counted["truncated"]) == (2, 0, 0)
        assert counted["input_tokens"] == sum(u["prompt_tokens"] for u in sent)
        assert counted["output_tokens"] == sum(u["completion_tokens"] for u in sent)
        optimizer_total += counted["input_tokens"] + counted["output_tokens"]
    assert trained.summary["llm_tokens"] == everything + optimizer_total


def test_apo_never_read_an_incomplete_rollout(trained: Trained) -> None:
    reads = trained.summary["apo_span_reads"]
    print(f"APO read {reads['rollouts_read']} rollouts, {reads['incomplete']} with spans missing")
    # APO reads every batch back once it is complete: each rollout exactly once.
    assert reads["rollouts_read"] == len(trained.rows) == EXPECTED_ROLLOUTS
    assert reads["rollouts_read"] >= len([r for r in trained.rows if r["mode"] == "train"])
    assert reads["incomplete"] == 0


def test_critique_sees_the_conversation_through_the_collector(trained: Trained) -> None:
    calls = trained.optimizer.calls
    assert calls, "APO never called the optimizer"
    assert [c.kind for c in calls] == ["gradient", "edit", "gradient", "edit"]
    assert [c.prompt for c in calls] == [SEED_PROMPT] * 4  # beam width 1: both branches edit the seed
    assert [c.reply for c in calls] == [CRITIQUE, HINTED, CRITIQUE, UNHINTED]
    train_rows = [r for r in trained.rows if r["mode"] == "train"]
    # Each critique shows exactly the batch of its branch (the ledger has them in that order).
    for critique, batch in ((calls[0], train_rows[:2]), (calls[2], train_rows[2:])):
        shown = assert_critique_shows_conversations(critique.request, trained.out, trained.summary["run_id"])
        assert shown == {r["task_id"] for r in batch}
    assert {r["task_id"] for r in train_rows} == {t["id"] for t in SPLITS.train}


def test_jaeger_has_the_traces_searchable_by_rollout_id(services: Pipeline, trained: Trained) -> None:
    wait_until(lambda: SERVICE in jaeger_services(services.jaeger_query_url), 30, what="service in Jaeger")
    for row in trained.rows:
        traces = jaeger_traces(services.jaeger_query_url, SERVICE, {"agentlightning.rollout_id": row["rollout_id"]})
        assert len(traces) == 1, row["rollout_id"]
        assert traces[0]["traceID"] == row["trace_id"]
        spans = traces[0]["spans"]
        names = Counter(s["operationName"] for s in spans)
        assert names == EXPECTED_SPANS
        ids = {s["operationName"]: s["spanID"] for s in spans}
        parents = {s["operationName"]: jaeger_parent(s) for s in spans}
        assert parents["math_rollout"] is None
        assert parents["math_solver.arun"] == ids["math_rollout"]
        assert parents["OpenAILike.ainvoke"] == ids["math_solver.arun"]


def test_nothing_lost_between_trainer_collector_and_sinks(services: Pipeline, trained: Trained) -> None:
    exported = sum(r["spans"] for r in trained.rows)
    assert exported == EXPECTED_ROLLOUTS * SPANS_PER_ROLLOUT
    stored = spans_of(services.store_url, [r["rollout_id"] for r in trained.rows])
    in_store = sum(len(own_spans(spans)) for spans in stored.values())

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


def test_span_metrics_for_llm_spans(services: Pipeline, trained: Trained) -> None:
    llm_calls = sum(1 for r in trained.rows)  # one LLM span per rollout
    assert llm_calls == EXPECTED_ROLLOUTS

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


class Held:
    """The agent, holding every reply after the first ``free`` until ``released`` is set (bounded)."""

    def __init__(self, agent: Behaviour, free: int, hold_s: float = 25.0) -> None:
        self.agent, self.free, self.hold_s = agent, free, hold_s
        self.released = threading.Event()
        self._lock = threading.Lock()
        self.seen = 0
        self.answered = 0

    def __call__(self, request: dict[str, Any]) -> Reply:
        if is_probe(request):
            return self.agent(request)
        with self._lock:
            index = self.seen
            self.seen += 1
        if index >= self.free:
            self.released.wait(self.hold_s)
        reply = self.agent(request)
        with self._lock:
            self.answered += 1
        return reply


def test_collector_restart_mid_training_loses_nothing(tmp_path: Path) -> None:
    """The collector is down exactly while two rollouts end: their spans wait in the trainer's
    exporter and arrive once it is back. Replies 5 and 6 of the seed's evaluation are held until
    the collector has stopped, so the downtime overlaps span exports every time."""
    out = tmp_path / "run"
    out.mkdir()
    agent = Held(perfect_agent(TASKS), free=4)
    optimizer = ScriptedOptimizer(CRITIQUE, [HINTED, UNHINTED])
    script = route(agent=agent, optimizer=optimizer, optimizer_models=(GRADIENT_MODEL, EDIT_MODEL))
    with pipeline(tmp_path / "logs") as services, ScriptedLLM(script) as llm:
        log = (tmp_path / "train.log").open("w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "trainer", "train", *TINY, "--output", str(out), "--store-url", services.store_url],
            cwd=out,
            env=trainer_env(**scripted_env(llm), **telemetry_env(services), ROLLOUT_CACHE="false"),  # counts spans
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            ledgers = lambda: list((out / "runs").glob("*/rollouts.jsonl"))  # noqa: E731
            rows_done = lambda: len(ledgers()[0].read_text().splitlines()) if ledgers() else 0  # noqa: E731
            wait_until(lambda: rows_done() >= 4 and agent.seen >= 6, 300, what="4 rollouts done, 2 held")
            assert rows_done() == 4
            began = time.monotonic()
            down_at = time.time()
            services.collector.stop()
            agent.released.set()
            wait_until(lambda: agent.answered >= 6, 30, what="the held replies sent")
            # The two rollouts end and try to export while nothing listens; 2 s is well within the
            # exporter's 10 s of retries, and long enough for a loaded runner to end its spans.
            time.sleep(2.0)
            up_at = time.time()
            services.collector.start()
            services.collector.wait_ready()
            downtime = time.monotonic() - began
            assert proc.wait(timeout=900) == 0, (tmp_path / "train.log").read_text()[-4000:]
        finally:
            agent.released.set()
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
            log.close()
        summary = json.loads((out / "summary.json").read_text())
        rows = ledger(out, summary["run_id"])
        exported = sum(r["spans"] for r in rows)
        spans = spans_of(services.store_url, [r["rollout_id"] for r in rows])
        in_store = sum(len(own_spans(s)) for s in spans.values())
        wait_until(
            lambda: len(jaeger_spans(services.jaeger_query_url, SERVICE)) >= exported, 30, what="Jaeger caught up"
        )
        in_jaeger = len(jaeger_spans(services.jaeger_query_url, SERVICE))
    ended_while_down = [
        rid
        for rid, s in spans.items()
        if any(x.name == "math_rollout" and x.end_time is not None and down_at < x.end_time < up_at for x in s)
    ]
    print(
        f"collector down {downtime:.1f}s while {len(ended_while_down)} rollouts ended: exported {exported}, "
        f"lost in store {exported - in_store}, lost in Jaeger {exported - in_jaeger}, "
        f"APO reads incomplete {summary['apo_span_reads']['incomplete']}"
    )
    assert len(ended_while_down) == 2
    assert summary["rollouts"] == len(rows) == EXPECTED_ROLLOUTS
    assert exported == EXPECTED_ROLLOUTS * SPANS_PER_ROLLOUT
    assert in_store == exported
    assert in_jaeger == exported
