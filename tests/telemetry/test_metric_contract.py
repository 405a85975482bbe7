"""The metric contract agrees with the trainer, the training dashboard and the generated files.

- ``TrainerMetrics`` registers every contract metric under the contract's name, type, help, label
  names and buckets, exposed as the attribute other code uses, and no other ``apo_*`` metric;
- the series it creates up front only use the contract's label values;
- every ``apo_*`` series the training dashboard queries, and every label it groups by, is in the
  contract, and every contract metric is on it;
- the committed dashboards JSON and README table are exactly what ``grafana/generate.py`` writes.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys

import pytest
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from tests.support import REPO
from trainer.telemetry import metric_contract as mc
from trainer.telemetry.metrics import TrainerMetrics

REPO = REPO
TRAINING_DASHBOARD = REPO / "grafana" / "dashboards" / "training.json"

# TrainerMetrics attribute -> the contract metric it must be (other code calls these attributes).
ATTRIBUTES: dict[str, mc.Metric] = {
    "reward": mc.ROLLOUT_REWARD,
    "rollouts": mc.ROLLOUTS,
    "rollout_duration": mc.ROLLOUT_DURATION,
    "tokens": mc.LLM_TOKENS,
    "llm_duration": mc.LLM_REQUEST_DURATION,
    "round": mc.ROUND_NUMBER,
    "rounds_planned": mc.ROUNDS_PLANNED,
    "candidate_score": mc.CANDIDATE_VAL_SCORE,
    "seed_score": mc.SEED_VAL_SCORE,
    "best_score": mc.BEST_VAL_SCORE,
    "best_prompt": mc.BEST_PROMPT_INFO,
    "candidates": mc.CANDIDATES,
    "candidates_proposed": mc.CANDIDATES_PROPOSED,
    "failed_branches": mc.OPTIMIZER_FAILED_BRANCHES,
    "test_score": mc.TEST_SCORE,
    "run_info": mc.RUN_INFO,
    "cache_hits": mc.ROLLOUT_CACHE_HITS,
}
CLASSES: dict[str, type[MetricWrapperBase]] = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}


def family_name(metric: mc.Metric) -> str:
    """The name prometheus_client gives the metric's family (counters without ``_total``)."""
    return metric.name.removesuffix("_total") if metric.type == "counter" else metric.name


def test_the_contract_lists_each_metric_once() -> None:
    assert sorted(ATTRIBUTES.values(), key=lambda m: m.name) == sorted(mc.METRICS, key=lambda m: m.name)
    assert len({m.name for m in mc.METRICS}) == len(mc.METRICS)
    assert all(m.name.startswith("apo_") for m in mc.METRICS)


def test_trainer_registers_exactly_the_contract() -> None:
    metrics = TrainerMetrics()
    families = {f.name: f for f in metrics.registry.collect() if f.name.startswith("apo_")}
    assert set(families) == {family_name(m) for m in mc.METRICS}
    for metric in mc.METRICS:
        family = families[family_name(metric)]
        assert (family.type, family.documentation) == (metric.type, metric.help), metric.name


@pytest.mark.parametrize("attribute", sorted(ATTRIBUTES))
def test_each_attribute_has_the_contract_type_labels_and_buckets(attribute: str) -> None:
    metrics = TrainerMetrics()
    spec = ATTRIBUTES[attribute]
    wrapper = getattr(metrics, attribute)
    assert isinstance(wrapper, CLASSES[spec.type])
    # labels() accepts exactly the declared names (prometheus_client raises on a missing or extra one).
    child = wrapper.labels(**{name: "x" for name in spec.label_names}) if spec.labels else wrapper
    with pytest.raises(ValueError):
        wrapper.labels(**{name: "x" for name in (*spec.label_names, "not_declared")})
    if isinstance(spec, mc.HistogramMetric):
        assert isinstance(child, Histogram)
        child.observe(0.0)
        les = {
            float(s.labels["le"])
            for f in metrics.registry.collect()
            for s in f.samples
            if s.name == spec.bucket and all(s.labels.get(n) == "x" for n in spec.label_names)
        }
        assert les == {*map(float, spec.buckets), math.inf}


def test_series_created_up_front_use_contract_values() -> None:
    metrics = TrainerMetrics()
    closed = {family_name(m): {label.name: label.values for label in m.labels if label.values} for m in mc.METRICS}
    seen = 0
    for family in metrics.registry.collect():
        for sample in family.samples:
            for name, value in sample.labels.items():
                if name in closed.get(family.name, {}):
                    assert value in closed[family.name][name], (sample.name, name, value)
                    seen += 1
    assert seen  # the zero series of rollout and candidate outcomes exist


def _training_exprs() -> list[str]:
    board = json.loads(TRAINING_DASHBOARD.read_text())
    return [str(t["expr"]) for p in board["panels"] for t in p.get("targets") or [] if "expr" in t]


def test_training_dashboard_queries_only_contract_series_and_labels() -> None:
    series = {name for m in mc.METRICS for name in (m.name, *_histogram_series(m))}
    labels = {label.name for m in mc.METRICS for label in m.labels} | {"le"}
    problems = []
    for expr in _training_exprs():
        problems += [f"{name} in {expr}" for name in re.findall(r"\bapo_\w+", expr) if name not in series]
        for grouping in re.findall(r"\bby \(([^)]*)\)", expr):
            problems += [f"by {name} in {expr}" for name in map(str.strip, grouping.split(",")) if name not in labels]
    assert not problems, "\n".join(problems)
    queried = {name for expr in _training_exprs() for name in re.findall(r"\bapo_\w+", expr)}
    unshown = [m.name for m in mc.METRICS if not {m.name, *_histogram_series(m)} & queried]
    assert not unshown, f"contract metrics no training panel shows: {unshown}"


def _histogram_series(metric: mc.Metric) -> tuple[str, ...]:
    return (metric.bucket, metric.sum, metric.count) if isinstance(metric, mc.HistogramMetric) else ()


def test_committed_dashboards_and_readme_table_are_generated() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "grafana" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
