"""MetricsObserver: the seed metric follows its pooled score; candidates carry what they changed."""

from __future__ import annotations

from trainer.agent.prompt import Demo, Prompt
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


def test_candidates_are_counted_and_scored_with_what_they_changed() -> None:
    metrics = TrainerMetrics()
    observer = MetricsObserver(metrics)
    seed = Prompt("Solve {question}")
    demo = Demo("p1", "What is 2 + 2?", "2 + 2 = 4. The answer is 4.", "gold")

    def proposed(change: str) -> float | None:
        return metrics.registry.get_sample_value("apo_candidates_proposed_total", {"change": change})

    def score(version: str, round_number: int, change: str) -> float | None:
        labels = {"prompt_version": version, "round": str(round_number), "change": change}
        return metrics.registry.get_sample_value("apo_candidate_val_score", labels)

    # Every kind reads 0 before the first candidate: the panel shows "none yet", not "no data".
    assert [proposed(c) for c in ("instruction", "examples", "both")] == [0, 0, 0]
    observer.prompt_created("v0", seed, parent=None, round_number=0, change="seed")
    observer.prompt_scored("v0", round_number=0, batch=ValScore(0.5, 4), current=ValScore(0.5, 4), first=True)
    observer.round_started(1)
    observer.prompt_created("v1", seed.with_demos([demo]), parent="v0", round_number=1, change="examples")
    observer.prompt_created("v2", Prompt("Solve {question} well"), parent="v0", round_number=1, change="instruction")
    observer.prompt_created("v3", Prompt("Solve {question}"), parent="v0", round_number=1, change="instruction")
    observer.prompt_rejected("v3", "duplicate", round_number=1)
    observer.prompt_scored("v1", round_number=1, batch=ValScore(0.75, 4), current=ValScore(0.75, 4), first=True)
    observer.prompt_scored("v2", round_number=1, batch=ValScore(0.25, 4), current=ValScore(0.25, 4), first=True)
    observer.round_started(2)
    both = Prompt("Solve {question} well", (demo,))
    observer.prompt_created("v4", both, parent="v2", round_number=2, change="both")
    observer.prompt_scored("v4", round_number=2, batch=ValScore(1.0, 4), current=ValScore(1.0, 4), first=True)
    # A rescore keeps the prompt's one series: same version, round and change.
    observer.prompt_scored("v1", round_number=1, batch=ValScore(0.25, 4), current=ValScore(0.5, 8), first=False)

    assert {c: proposed(c) for c in ("instruction", "examples", "both")} == {"instruction": 2, "examples": 1, "both": 1}
    assert metrics.registry.get_sample_value("apo_candidates_proposed_total", {"change": "seed"}) is None
    assert score("v0", 0, "seed") == 0.5
    assert score("v1", 1, "examples") == 0.5
    assert score("v2", 1, "instruction") == 0.25
    assert score("v3", 1, "instruction") == 0.0  # rejected: 0, still marked with its change
    assert score("v4", 2, "both") == 1.0
    series = [s for f in metrics.registry.collect() if f.name == "apo_candidate_val_score" for s in f.samples]
    assert len(series) == 5  # one per prompt version: the change label adds no series
    assert metrics.registry.get_sample_value("apo_candidates_total", {"outcome": "evaluated"}) == 3
    assert metrics.registry.get_sample_value("apo_candidates_total", {"outcome": "rejected"}) == 1


def test_a_prompt_never_announced_is_read_as_the_seed_or_an_edit() -> None:
    metrics = TrainerMetrics()
    observer = MetricsObserver(metrics)
    observer.prompt_scored("v0", round_number=0, batch=ValScore(0.5, 4), current=ValScore(0.5, 4), first=True)
    observer.prompt_rejected("v1", "empty", round_number=1)
    scores = [s for f in metrics.registry.collect() if f.name == "apo_candidate_val_score" for s in f.samples]
    assert sorted(s.labels["change"] for s in scores) == ["instruction", "seed"]
