"""A real tiny training, its metrics read by a real Prometheus: every training-dashboard panel shows data.

Real processes on loopback: Debian's Prometheus (prometheus/prometheus.yml with loopback targets),
the built collector and Jaeger, `agl store --tracker prometheus`, and the trainer CLI (runners, Agno
agent, APO) with no /metrics endpoint of its own, as in the compose stack: it pushes its metrics
to the collector, pushes its final values before it exits, and Prometheus reads them from the
collector (job ``trainer``) after the trainer is gone. Scripted: the LLM (``trainer.testing``, both
roles on one server). The agent is always right; the optimizer edits the seed into the same EDITED
prompt on both branches, so the candidate guard rejects the second as a duplicate.
Every metric value below is therefore exact.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.pipeline import pipeline
from tests.support.prometheus import PrometheusServer, hostport, prometheus
from tests.support.trainer_cli import AGENT_MODEL, EDIT_MODEL, GRADIENT_MODEL, TINY, run_trainer
from tests.support.trainer_cli import TINY_SETTINGS as SETTINGS
from tests.support.trainer_cli import TINY_SPLITS as SPLITS
from tests.support.trainer_cli import TINY_TASKS as TASKS
from tests.support.waiting import wait_until
from tests.telemetry.test_dashboards import training_panels_without_data
from trainer.apo.plan import expected_rollouts
from trainer.math_task import SEED_PROMPT
from trainer.testing import Reply, ScriptedLLM, ScriptedOptimizer, is_probe, perfect_agent, route

pytestmark = [pytest.mark.otelcol, pytest.mark.prometheus, pytest.mark.slow]

EDITED = f"{SEED_PROMPT} Check the arithmetic once before answering."
CRITIQUE = "- Ask for one check of the arithmetic before the final line."

# APO's bound counts a val batch for each of the 2 candidates; the rejected duplicate never gets one.
ROLLOUTS = expected_rollouts(SETTINGS, SPLITS)["training_rollouts"] - SETTINGS.val_batch_size


@dataclass
class Scraped:
    prom: PrometheusServer
    summary: dict[str, Any]
    stderr: str
    at: float  # a scrape of the collector after the trainer exited: every query is evaluated there
    requests: list[dict[str, Any]]
    optimizer: ScriptedOptimizer

    def value(self, expr: str) -> float:
        result = self.prom.query(expr, at=self.at)
        assert len(result) == 1, f"{expr}: {result}"
        return float(result[0]["value"][1])

    def values(self, expr: str, label: str) -> dict[str, float]:
        return {r["metric"][label]: float(r["value"][1]) for r in self.prom.query(expr, at=self.at)}


def scrape_after(prom: PrometheusServer, exited: float) -> float:
    """The time of a sample of the trainer's series that Prometheus read after the trainer exited:
    everything there is final, and it was pushed, not scraped from the trainer (which is gone).
    (A target's lastScrape is when a scrape began, before its samples are stored: ask for a sample.)"""

    def read_after_exit() -> float | None:
        result = prom.query('timestamp(apo_run_info{job="trainer"})')
        stamp = float(result[0]["value"][1]) if result else 0.0
        return stamp if stamp > exited else None

    return wait_until(read_after_exit, 60, what="a read of the trainer's metrics after it exited", interval=0.5)


@pytest.fixture(scope="module")
def scraped_training(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraped]:
    work = tmp_path_factory.mktemp("metrics")
    optimizer = ScriptedOptimizer(CRITIQUE, [EDITED])
    script = route(agent=perfect_agent(TASKS), optimizer=optimizer, optimizer_models=(GRADIENT_MODEL, EDIT_MODEL))
    with pipeline(work / "logs") as services:
        targets = {
            "trainer": [hostport(services.trainer_metrics_url)],
            "store": [hostport(services.store_url)],
            "collector": [hostport(services.telemetry_url)],
            "collector-spanmetrics": [hostport(services.prometheus_url)],
            "jaeger": [hostport(services.jaeger.metrics_url)],
        }
        with prometheus(targets, work / "prometheus") as prom, ScriptedLLM(script) as llm:
            result = run_trainer(
                ["train", *TINY, "--output", str(work / "out"), "--store-url", services.store_url],
                cwd=work,
                METRICS_PORT="0",  # as in compose.yaml: nothing can scrape the trainer itself
                # Every rollout one agent call: the LLM metrics below count them (hits: test_metrics.py).
                ROLLOUT_CACHE="false",
                OTEL_EXPORTER_OTLP_ENDPOINT=services.otlp_http_url,
                OPENAI_BASE_URL=llm.base_url,
                AGENT_MODEL=AGENT_MODEL,
                GRADIENT_MODEL=GRADIENT_MODEL,
                EDIT_MODEL=EDIT_MODEL,
            )
            exited = time.time()
            assert result.returncode == 0, result.stderr[-4000:]
            summary = json.loads((work / "out" / "summary.json").read_text())
            yield Scraped(prom, summary, result.stderr, scrape_after(prom, exited), llm.requests, optimizer)


def test_final_values_reach_prometheus_after_the_trainer_exits(scraped_training: Scraped) -> None:
    s = scraped_training
    assert "metrics push to the collector" in s.stderr
    assert "did not reach the collector" not in s.stderr and "push to the collector failed" not in s.stderr
    assert time.time() - s.at < 120, "the scrape is older than the training"
    assert s.value('sum(apo_rollouts_total{job="trainer"})') == s.summary["rollouts"] == ROLLOUTS == 28
    assert s.value('apo_best_val_score{job="trainer"}') == pytest.approx(s.summary["best_val_score"]) == 1.0
    info = s.prom.query('apo_run_info{job="trainer"}', at=s.at)
    assert len(info) == 1 and info[0]["metric"]["run_id"] == s.summary["run_id"]
    assert info[0]["metric"]["exported_instance"] == s.summary["run_id"]  # each run its own series
    assert info[0]["metric"]["agent_model"] == AGENT_MODEL
    assert (info[0]["metric"]["gradient_model"], info[0]["metric"]["edit_model"]) == (GRADIENT_MODEL, EDIT_MODEL)


def test_every_training_panel_returns_data(scraped_training: Scraped) -> None:
    s = scraped_training
    empty = training_panels_without_data(lambda expr: s.prom.query(expr, at=s.at))
    assert not empty, "panels without data after a training:\n" + "\n".join(empty)


def test_search_metrics_are_exact(scraped_training: Scraped) -> None:
    s = scraped_training
    assert s.values('apo_rollouts_total{job="trainer"} > 0', "split") == {"train": 4.0, "val": 24.0}
    assert s.value('sum(apo_rollouts_total{job="trainer", outcome!="ok"})') == 0
    assert s.values('apo_candidates_total{job="trainer"}', "outcome") == {"evaluated": 1.0, "rejected": 1.0}
    assert (s.summary["candidates"], s.summary["candidates_rejected"]) == (2, 1)
    assert s.summary["rejected_reasons"] == {"duplicate": 1}
    assert s.value('apo_optimizer_failed_branches_total{job="trainer"}') == 0 == s.summary["failed_optimizer_branches"]
    assert s.values('apo_candidate_val_score{job="trainer"}', "prompt_version") == {"v0": 1.0, "v1": 1.0, "v2": 0.0}
    assert s.value('apo_seed_val_score{job="trainer"}') == 1.0
    assert s.values('apo_best_prompt_info{job="trainer"} == 1', "prompt_version") == {"v0": 1.0}  # a tie keeps the seed
    assert (s.value('apo_round{job="trainer"}'), s.value('apo_rounds_planned{job="trainer"}')) == (1, 1)
    assert s.values('apo_test_score{job="trainer"}', "prompt") == {"seed": 1.0, "best": 1.0}
    assert s.value('sum(apo_rollout_reward_count{job="trainer"})') == ROLLOUTS
    assert s.value('sum(apo_rollout_reward_sum{job="trainer"})') == ROLLOUTS  # every reward is 1.0
    # One agent request per rollout, plus the test split once (best is the seed: scored once).
    assert s.values('apo_llm_request_duration_seconds_count{job="trainer"}', "role") == {
        "agent": ROLLOUTS + len(SPLITS.test),
        "gradient": 2,
        "edit": 2,
    }


def test_optimizer_and_agent_tokens_are_counted_by_role(scraped_training: Scraped) -> None:
    s = scraped_training
    by_role = s.values('sum by (role) (apo_llm_tokens_total{job="trainer"})', "role")
    assert by_role.get("agent", 0) > 0
    assert by_role.get("gradient", 0) > 0 and by_role.get("edit", 0) > 0
    counter = ScriptedLLM()  # unstarted: only its token counting, the server's own

    def sent(requests: list[dict[str, Any]], replies: list[str]) -> tuple[int, int]:
        usages = [counter.completion(r, text)["usage"] for r, text in zip(requests, replies, strict=True)]
        return sum(u["prompt_tokens"] for u in usages), sum(u["completion_tokens"] for u in usages)

    agent = perfect_agent(TASKS)
    agent_requests = [r for r in s.requests if r["model"] == AGENT_MODEL and not is_probe(r)]
    assert len(agent_requests) == ROLLOUTS + len(SPLITS.test)
    replies: list[Reply] = [agent(r) for r in agent_requests]
    expected = {"agent": sent(agent_requests, [r.content or "" for r in replies])}
    for role in ("gradient", "edit"):
        calls = [c for c in s.optimizer.calls if c.kind == role]
        expected[role] = sent([c.request for c in calls], [c.reply for c in calls])
    for role, (input_tokens, output_tokens) in expected.items():
        kinds = s.values(f'sum by (kind) (apo_llm_tokens_total{{job="trainer", role="{role}"}})', "kind")
        assert kinds == {"input": input_tokens, "output": output_tokens}, role
    tokens = s.summary["tokens"]
    assert tokens["agent"] + tokens["test"] == sum(expected["agent"])
    assert tokens["optimizer"][f"gradient:{GRADIENT_MODEL}"]["input_tokens"] == expected["gradient"][0]
    assert tokens["optimizer"][f"edit:{EDIT_MODEL}"]["output_tokens"] == expected["edit"][1]
    assert s.summary["llm_tokens"] == sum(sum(pair) for pair in expected.values()) == sum(by_role.values())


def test_metric_names_follow_conventions(scraped_training: Scraped) -> None:
    s = scraped_training
    names = [n for n in s.prom.metric_names("trainer") if n.startswith("apo_")]
    assert names, "no apo_* metrics scraped"
    for name in names:
        assert not name.endswith("_milliseconds"), name  # base units
    counters = {n for n in names if n.endswith("_total")}
    assert {"apo_rollouts_total", "apo_llm_tokens_total", "apo_candidates_total"} <= counters
    for series in s.prom.query('{job="trainer", __name__=~"apo_.*"}', at=s.at):
        assert not any("ro-" in str(v) for v in series["metric"].values()), series["metric"]  # no rollout ids


def test_rewards_link_to_their_traces(scraped_training: Scraped) -> None:
    """The reward histogram's exemplars survive the push: trace and span ids of real rollouts."""
    s = scraped_training
    data = s.prom.exemplars('apo_rollout_reward_bucket{job="trainer"}', start=s.at - 900, end=s.at + 60)
    ids = [e["labels"] for series in data for e in series["exemplars"]]
    assert ids, "no exemplars reached Prometheus"
    for labels in ids:
        assert len(labels["trace_id"]) == 32 and len(labels["span_id"]) == 16, labels
