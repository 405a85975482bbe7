"""apo_seed_val_score is the seed's pooled val score, the number the prompt DB and the summary show."""

from __future__ import annotations

from trainer.agent.prompt import Prompt
from trainer.apo.scoring import ValScore
from trainer.telemetry.metrics import TrainerMetrics
from trainer.telemetry.metrics_observer import MetricsObserver


def test_the_seed_metric_follows_its_pool_not_its_first_batch() -> None:
    metrics = TrainerMetrics()
    observer = MetricsObserver(metrics)

    def seed() -> float | None:
        return metrics.registry.get_sample_value("apo_seed_val_score")

    observer.prompt_created("v0", Prompt("Solve {question}"), parent=None, round_number=0, change="seed")
    observer.prompt_scored("v0", round_number=0, batch=ValScore(0.5, 4), current=ValScore(0.5, 4), first=True)
    observer.prompt_created("v1", Prompt("Solve {question} well"), parent="v0", round_number=1, change="instruction")
    observer.prompt_scored("v1", round_number=1, batch=ValScore(1.0, 2), current=ValScore(1.0, 2), first=True)
    assert seed() == 0.5
    observer.prompt_scored("v0", round_number=1, batch=ValScore(0.0, 2), current=ValScore(2 / 6, 6), first=False)
    assert seed() == 2 / 6
