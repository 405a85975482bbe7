"""A real tiny training scraped by a real Prometheus: every training-dashboard panel shows data.

Processes on loopback: Debian's Prometheus (prometheus/prometheus.yml with loopback targets), the
built collector and Jaeger, `agl store --tracker prometheus`, and the trainer on the embedded model
serving /metrics. The trainer waits at exit until Prometheus has scraped its final values.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.pipeline import pipeline, require_binaries
from tests.support.prometheus import hostport, prometheus
from tests.support.trainer_cli import TINY, run_trainer
from tests.telemetry.test_dashboards import _has_finite, training_panel_exprs
from tests.training.test_pipeline_training import ScriptedOptimizer
from trainer.serving.probes import free_port
from trainer.testing import ScriptedLLM

pytestmark = [pytest.mark.llm, pytest.mark.slow]


@pytest.fixture(scope="module")
def scraped_training(tmp_path_factory: pytest.TempPathFactory) -> Any:
    require_binaries()
    work = tmp_path_factory.mktemp("metrics")
    port = free_port()
    with pipeline(work / "logs") as services:
        targets = {
            "trainer": [f"127.0.0.1:{port}"],
            "store": [hostport(services.store_url)],
            "collector": [hostport(services.telemetry_url)],
            "collector-spanmetrics": [hostport(services.prometheus_url)],
            "jaeger": [hostport(services.jaeger.metrics_url)],
        }
        with prometheus(targets, work / "prometheus") as prom, ScriptedLLM(ScriptedOptimizer()) as fake:
            result = run_trainer(
                ["train", *TINY, "--output", str(work / "out"), "--store-url", services.store_url],
                cwd=work,
                METRICS_PORT=str(port),
                OTEL_EXPORTER_OTLP_ENDPOINT=services.otlp_http_url,
                OPTIMIZER_BASE_URL=fake.base_url,
                GRADIENT_MODEL="fake-model",
            )
            assert result.returncode == 0, result.stderr[-4000:]
            summary = json.loads((work / "out" / "summary.json").read_text())
            yield prom, summary, result


def test_trainer_waited_for_its_final_scrape(scraped_training: Any) -> None:
    prom, summary, result = scraped_training
    assert "no scrape within" not in result.stderr
    rollouts = prom.query('sum(apo_rollouts_total{job="trainer"})')
    assert float(rollouts[0]["value"][1]) == summary["rollouts"]
    best = prom.query('apo_best_val_score{job="trainer"}')
    assert float(best[0]["value"][1]) == pytest.approx(summary["best_val_score"])
    info = prom.query('apo_run_info{job="trainer"}')
    assert info[0]["metric"]["run_id"] == summary["run_id"]


def test_every_training_panel_returns_data(scraped_training: Any) -> None:
    prom, _, _ = scraped_training
    empty = []
    for dashboard, panel, expr, must_have_data in training_panel_exprs():
        result = prom.query(expr)  # raises on an invalid expression
        if must_have_data and not _has_finite(result):
            empty.append(f"{dashboard} / {panel}: {expr}")
    assert not empty, "panels without data after a training:\n" + "\n".join(empty)


def test_optimizer_and_agent_tokens_are_counted_by_role(scraped_training: Any) -> None:
    prom = scraped_training[0]
    by_role = {
        r["metric"]["role"]: float(r["value"][1])
        for r in prom.query('sum by (role) (apo_llm_tokens_total{job="trainer"})')
    }
    assert by_role.get("agent", 0) > 0
    assert by_role.get("gradient", 0) > 0 and by_role.get("edit", 0) > 0


def test_metric_names_follow_conventions(scraped_training: Any) -> None:
    prom, _, _ = scraped_training
    names = [n for n in prom.metric_names("trainer") if n.startswith("apo_")]
    assert names, "no apo_* metrics scraped"
    for name in names:
        assert not name.endswith("_milliseconds"), name  # base units
    counters = {n for n in names if n.endswith("_total")}
    assert {"apo_rollouts_total", "apo_llm_tokens_total", "apo_candidates_total"} <= counters
    for series in prom.query('{job="trainer", __name__=~"apo_.*"}'):
        assert not any("ro-" in str(v) for v in series["metric"].values()), series["metric"]  # no rollout ids
