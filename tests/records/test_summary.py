"""Tests for trainer.records.summary: summary.json's one schema, its writer and its table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from rich.console import Console

from trainer.records.summary import SUMMARY_FILE, Summary, print_summary, write_summary

RUN = "20250101-000000-abcd"


def _fields(**overrides: Any) -> dict[str, Any]:
    score = {"value": 0.2, "correct": 6, "n": 30, "ci95": [0.095, 0.373]}
    fields: dict[str, Any] = {
        "run_id": RUN, "algorithm": "apo", "seed_val_score": 0.25, "best_val_score": 0.75,
        "seed_test_score": 0.2, "best_test_score": 0.2, "best_prompt_version": "v4", "best_prompt_id": 5,
        "rollouts": 256, "llm_tokens": 1234567, "wall_seconds": 61.4, "test_seconds": 8.2,
        "seed_val": {"value": 0.25, "correct": 4, "n": 16, "ci95": [0.1, 0.49]},
        "best_val": {"value": 0.75, "correct": 12, "n": 16, "ci95": [0.51, 0.9]},
        "seed_test": score, "best_test": score,
        "paired_test": {"n": 30, "both_right": 6, "only_seed": 0, "only_best": 0, "both_wrong": 24,
                        "p_value": 1.0, "significant": False},
        "verdict": "best looks better than seed by 0.100, but that is within noise \u00d7",
        "rollout_statuses": {"ok": 250, "timeout": 6}, "ledger_skipped": {"count": 0, "lines": []},
        "test_statuses": {"seed": {"ok": 30}, "best": {"ok": 30}},
        "candidates": 6, "candidates_rejected": 1, "rejected_reasons": {"duplicate": 1},
        "failed_optimizer_branches": 0, "candidates_stopped_early": 1, "rollouts_cancelled": 4,
        "round_seconds": {"1": 12.5},
        "apo_span_reads": {"rollouts_read": 16, "incomplete": 0}, "tracing": "store",
        "tokens": {"agent": 1000, "test": 200, "optimizer": {"gradient:m": {"calls": 2}}},
        "expected_training_rollouts_max": 300,
        "models": {"agent": "a", "gradient": "g", "edit": "e", "embedded": True},
        "splits": {"train": 40, "val": 16, "test": 30},
        "best_prompt_file": "outputs/best_prompt.txt", "prompt_db": "outputs/prompts.db",
        "reward_curve": "outputs/reward_curve.png",
        "demonstrations": {"per_prompt": 3, "source": "both", "pool": {"bootstrapped": 2, "gold": 40},
                           "best": [{"problem_id": "gen-7-3", "source": "gold", "question": "What is 2 + 2?"}],
                           "candidates_by_change": {"instruction": 4, "examples": 2}, "train_batches_skipped": 3},
        "test_problems": {"wins": ["gen-7-60"], "losses": []},
        "cache": {"enabled": True, "training_hits": 12, "test_hits": 6, "agent_calls": 42, "entries": 40},
    }  # fmt: skip
    return {**fields, **overrides}


def _summary(**overrides: Any) -> Summary:
    return Summary.model_validate(_fields(**overrides))


def test_write_summary_writes_valid_json_in_schema_order(tmp_path: Path) -> None:
    path = write_summary(tmp_path, _summary())
    assert path == tmp_path / SUMMARY_FILE
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    assert json.loads(text) == _fields(seed_val={**_fields()["seed_val"], "ci95": [0.1, 0.49]})
    assert list(json.loads(text)) == list(Summary.model_fields)  # key order kept for readers
    assert [p.name for p in tmp_path.iterdir()] == [SUMMARY_FILE]


def test_a_summary_written_before_demonstrations_loads(tmp_path: Path) -> None:
    old = {k: v for k, v in _fields().items() if k not in ("demonstrations", "test_problems", "cache", "test_seconds")}
    (tmp_path / SUMMARY_FILE).write_text(json.dumps(old))
    loaded = Summary.load(tmp_path / SUMMARY_FILE)
    assert loaded.demonstrations is None and loaded.test_problems.wins == loaded.test_problems.losses == []
    assert loaded.cache is None and loaded.test_seconds is None
    older_demos = {**_fields()["demonstrations"]}
    del older_demos["train_batches_skipped"]
    (tmp_path / SUMMARY_FILE).write_text(json.dumps({**_fields(), "demonstrations": older_demos}))
    loaded_demos = Summary.load(tmp_path / SUMMARY_FILE).demonstrations
    assert loaded_demos is not None and loaded_demos.train_batches_skipped == 0


def test_the_table_names_the_best_prompts_demonstrations_and_test_wins() -> None:
    console = Console(record=True, width=200)
    print_summary(_summary(), console)
    text = console.export_text()
    assert "gen-7-3 (gold)" in text and "1 won (gen-7-60), 0 lost" in text
    assert "examples: 2, instruction: 4" in text
    assert "18 reused (30%), 42 agent calls" in text


def test_a_written_summary_loads_back_equal(tmp_path: Path) -> None:
    summary = _summary()
    assert Summary.load(write_summary(tmp_path, summary)) == summary


def test_write_summary_replaces_atomically(tmp_path: Path) -> None:
    write_summary(tmp_path, _summary(run_id="old"))
    write_summary(tmp_path, _summary())
    assert json.loads((tmp_path / SUMMARY_FILE).read_text(encoding="utf-8"))["run_id"] == RUN
    assert [p.name for p in tmp_path.iterdir()] == [SUMMARY_FILE]


def test_an_invalid_summary_never_reaches_the_disk(tmp_path: Path) -> None:
    write_summary(tmp_path, _summary(run_id="old"))
    with pytest.raises(ValidationError, match="rollouts"):
        write_summary(tmp_path, _summary(rollouts="many"))
    with pytest.raises(ValidationError, match="unknown"):
        _summary(unknown=1)  # a typo'd field is an error, not a silent extra key
    assert json.loads((tmp_path / SUMMARY_FILE).read_text(encoding="utf-8"))["run_id"] == "old"
    assert [p.name for p in tmp_path.iterdir()] == [SUMMARY_FILE]


def test_print_summary_shows_scores_and_verdict() -> None:
    console = Console(record=True, width=200, force_terminal=False)
    print_summary(_summary(), console)
    text = console.export_text()
    assert RUN in text
    assert "0.250  [0.10, 0.49]  (4/16)" in text
    assert "0.750  [0.51, 0.90]  (12/16)" in text
    assert "within noise" in text
    assert "#5 v4" in text
    assert "1,234,567" in text
    assert "6 (1 rejected by the guard, 1 stopped early)" in text
    assert "ok: 250, timeout: 6" in text
