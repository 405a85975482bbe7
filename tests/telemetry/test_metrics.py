"""The trainer's Prometheus metrics: what a scrape shows after rollouts land in the ledger."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

from trainer.records.ledger import LedgerFollower
from trainer.serving.probes import free_port
from trainer.telemetry.metrics import MetricsServer, TrainerMetrics
from trainer.training.progress import Progress

TRACE = "0af7651916cd43dd8448eb211c80319c"


def row(**overrides: Any) -> dict[str, Any]:
    base = {"mode": "val", "prompt_version": "v2", "reward": 1.0, "status": "ok", "wall_seconds": 1.5,
            "llm_seconds": 1.2, "input_tokens": 40, "output_tokens": 12, "trace_id": TRACE}  # fmt: skip
    return {**base, **overrides}


def value(metrics: TrainerMetrics, name: str, labels: dict[str, str] | None = None) -> float | None:
    return metrics.registry.get_sample_value(name, labels or {})


def test_each_ledger_line_is_observed_once_and_partial_lines_wait(tmp_path: Path) -> None:
    ledger = tmp_path / "rollouts.jsonl"
    metrics, progress = TrainerMetrics(), Progress()
    # One follower feeds the metrics and the live progress: both count the same rows.
    follower = LedgerFollower(ledger, [lambda r: metrics.observe_rollout(r, "smollm2-135m"), progress.rollout_done])
    assert follower.poll() == 0  # no file yet
    with ledger.open("w") as f:
        f.write(json.dumps(row()) + "\n" + json.dumps(row(status="timeout", reward=0.0, mode="train"))[:20])
    assert follower.poll() == 1
    with ledger.open("a") as f:
        f.write(json.dumps(row(status="timeout", reward=0.0, mode="train"))[20:] + "\n")
    assert follower.poll() == 1
    assert follower.poll() == 0
    assert value(metrics, "apo_rollouts_total", {"split": "val", "outcome": "ok"}) == 1
    assert value(metrics, "apo_rollouts_total", {"split": "train", "outcome": "timeout"}) == 1
    assert value(metrics, "apo_rollout_reward_count", {"split": "val", "prompt_version": "v2"}) == 1
    assert value(metrics, "apo_rollout_reward_sum", {"split": "val", "prompt_version": "v2"}) == 1.0
    assert value(metrics, "apo_llm_tokens_total", {"role": "agent", "model": "smollm2-135m", "kind": "input"}) == 80
    assert progress.snapshot().rollouts == 2


def test_a_cache_hit_is_a_rollout_and_no_llm_request() -> None:
    metrics = TrainerMetrics()
    assert value(metrics, "apo_rollout_cache_hits_total", {"split": "val"}) == 0  # a series from the start
    metrics.observe_rollout(row(), "m")
    metrics.observe_rollout(row(cache_hit=True, llm_seconds=0.0, input_tokens=0, output_tokens=0), "m")
    assert value(metrics, "apo_rollouts_total", {"split": "val", "outcome": "ok"}) == 2
    assert value(metrics, "apo_rollout_reward_count", {"split": "val", "prompt_version": "v2"}) == 2
    assert value(metrics, "apo_rollout_cache_hits_total", {"split": "val"}) == 1
    # The LLM request metrics see the one rollout that called the model.
    assert value(metrics, "apo_llm_request_duration_seconds_count", {"role": "agent", "model": "m"}) == 1
    assert value(metrics, "apo_llm_tokens_total", {"role": "agent", "model": "m", "kind": "input"}) == 40


def test_reward_observations_carry_trace_id_exemplars() -> None:
    metrics = TrainerMetrics()
    metrics.observe_rollout(row(), "m")
    text = openmetrics_latest(metrics.registry).decode()
    assert f'# {{trace_id="{TRACE}"}} 1.0' in text


def test_best_prompt_info_keeps_one_series_and_zero_series_exist() -> None:
    metrics = TrainerMetrics()
    metrics.set_best("v0", 0.25)
    metrics.set_best("v3", 0.5)
    assert value(metrics, "apo_best_prompt_info", {"prompt_version": "v0"}) is None
    assert value(metrics, "apo_best_prompt_info", {"prompt_version": "v3"}) == 1
    assert value(metrics, "apo_best_val_score") == 0.5
    # Error outcomes exist at 0 before any error, so "errors per second" panels show 0, not "no data".
    assert value(metrics, "apo_rollouts_total", {"split": "val", "outcome": "llm_error"}) == 0


def test_server_waits_for_a_scrape_after_the_last_update() -> None:
    metrics = TrainerMetrics()
    server = MetricsServer(metrics, "127.0.0.1", free_port()).start()
    try:
        assert server.wait_for_final_scrape(5) is False  # nobody scraped: no reason to wait
        url = f"http://127.0.0.1:{server.port}/metrics"
        urllib.request.urlopen(url, timeout=5).read()
        metrics.set_round(2)

        def scrape_later() -> None:
            time.sleep(0.5)
            urllib.request.urlopen(url, timeout=5).read()

        thread = threading.Thread(target=scrape_later)
        thread.start()
        started = time.monotonic()
        assert server.wait_for_final_scrape(10) is True
        assert 0.3 < time.monotonic() - started < 5
        thread.join()
        body = urllib.request.urlopen(url, timeout=5).read().decode()
        assert "apo_round 2.0" in body
    finally:
        server.stop()
