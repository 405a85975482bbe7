"""Tests for trainer.records.report: reward-curve points, the PNG, summary.json and the summary table."""

from __future__ import annotations

import itertools
import json
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from trainer.records.prompt_db import PromptDB, PromptRecord
from trainer.records.report import (
    CURVE_FILE,
    SUMMARY_FILE,
    curve_points,
    print_summary,
    render_run_report,
    write_summary,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RUN = "20250101-000000-abcd"
OTHER_RUN = "20250102-000000-ef01"


def build_db(out: Path) -> PromptDB:
    """A prompt DB as a 3-round APO run leaves it (plus an unrelated later run)."""
    pm = PromptDB(out / "prompts.db")
    pm.start_run(RUN, "apo", {"beam_width": 2, "output_dir": out})
    seed = pm.add_prompt(RUN, "v0", "You solve math word problems.", parent_id=None, round=0)
    pm.record_score(seed, 0.25, 16)
    # round 1: one candidate scored on a mini-batch then rescored on full val; one rejected
    v1 = pm.add_prompt(RUN, "v1", "Compute carefully. The answer is <number>.", parent_id=seed, round=1)
    pm.record_score(v1, 0.5, 4)
    pm.record_score(v1, 0.4375, 16)  # the full-val score is the one that counts
    v2 = pm.add_prompt(RUN, "v2", "You  solve math word problems.", parent_id=seed, round=1)
    pm.reject(v2, "duplicate")
    # round 2: a better one, a worse one, and one never scored (the run stopped)
    v3 = pm.add_prompt(RUN, "v3", "Write one expression, then its value.", parent_id=v1, round=2)
    pm.record_score(v3, 0.375, 4)
    v4 = pm.add_prompt(RUN, "v4", "Write one expression. End with: The answer is <number>.", parent_id=v1, round=2)
    pm.record_score(v4, 0.75, 16)
    pm.add_prompt(RUN, "v5", "Unscored.", parent_id=v1, round=2)
    # round 3: nothing beats round 2
    v6 = pm.add_prompt(RUN, "v6", "Be brief.", parent_id=v4, round=3)
    pm.record_score(v6, 0.5, 4)
    pm.mark_best(RUN, v4)
    pm.finish_run(RUN, "completed")
    # another run in the same DB must not leak into RUN's curve
    pm.start_run(OTHER_RUN, "apo", {})
    other_seed = pm.add_prompt(OTHER_RUN, "v0", "Other seed.", parent_id=None, round=0)
    pm.record_score(other_seed, 1.0, 16)
    other = pm.add_prompt(OTHER_RUN, "v1", "Other child.", parent_id=other_seed, round=1)
    pm.record_score(other, 0.9, 16)
    return pm


@pytest.fixture
def db(tmp_path: Path) -> Iterator[PromptDB]:
    with build_db(tmp_path / "out") as pm:
        yield pm


# -- curve points --------------------------------------------------------------------------------


def test_curve_points_from_a_real_db(db: PromptDB) -> None:
    points = curve_points(db.list(RUN))
    assert points["rounds"] == [0, 1, 2, 3]
    assert points["scores"] == [[0.25], [0.4375, 0.0], [0.375, 0.75], [0.5]]
    assert points["best_so_far"] == [0.25, 0.4375, 0.75, 0.75]
    assert points["seed"] == 0.25


def test_curve_points_of_the_other_run(db: PromptDB) -> None:
    points = curve_points(db.list(OTHER_RUN))
    assert points["rounds"] == [0, 1]
    assert points["best_so_far"] == [1.0, 1.0]
    assert points["seed"] == 1.0


def test_curve_points_of_nothing() -> None:
    assert curve_points([]) == {"rounds": [], "scores": [], "best_so_far": [], "seed": None}


def test_rejected_only_round_counts_zero(tmp_path: Path) -> None:
    with PromptDB(tmp_path / "prompts.db") as pm:
        pm.start_run(RUN, "apo", {})
        seed = pm.add_prompt(RUN, "v0", "Seed.", parent_id=None, round=0)
        pm.record_score(seed, 0.5, 8)
        pm.add_prompt(RUN, "v1", "", parent_id=seed, round=1, status="rejected", reject_reason="empty")
        points = curve_points(pm.list(RUN))
    assert points["scores"] == [[0.5], [0.0]]
    assert points["best_so_far"] == [0.5, 0.5]


def _record(i: int, rnd: int, status: str, score: float | None) -> PromptRecord:
    return PromptRecord(
        id=i + 1,
        run_id=RUN,
        label=f"v{i}",
        template=f"prompt {i}",
        parent_id=None if rnd == 0 else 1,
        round=rnd,
        status=status,  # type: ignore[arg-type]
        reject_reason="duplicate" if status == "rejected" else None,
        val_score={"rejected": 0.0, "candidate": None}.get(status, score),
        val_n=8 if status == "scored" else None,
        created_at="2025-01-01T00:00:00+00:00",
        updated_at="2025-01-01T00:00:00+00:00",
        is_best=False,
    )


_CANDIDATE = st.tuples(
    st.integers(min_value=1, max_value=6),
    st.sampled_from(["scored", "rejected", "candidate"]),
    st.integers(min_value=0, max_value=16).map(lambda k: k / 16),
)


@given(seed_score=st.integers(min_value=0, max_value=16).map(lambda k: k / 16), rest=st.lists(_CANDIDATE, max_size=25))
@settings(max_examples=150, deadline=None)
def test_best_so_far_is_the_running_maximum(seed_score: float, rest: list[tuple[int, str, float]]) -> None:
    records = [_record(0, 0, "scored", seed_score)]
    records += [_record(i + 1, rnd, status, score) for i, (rnd, status, score) in enumerate(rest)]
    points = curve_points(records)
    assert points["seed"] == seed_score
    assert points["rounds"] == sorted(points["rounds"])
    assert points["rounds"][0] == 0
    best = points["best_so_far"]
    assert all(a <= b for a, b in itertools.pairwise(best))
    for i, scores in enumerate(points["scores"]):
        assert scores  # no empty round is plotted
        assert best[i] == max(s for round_scores in points["scores"][: i + 1] for s in round_scores)
    # every scored or rejected candidate is plotted exactly once, unscored ones never
    plotted = sum(len(s) for s in points["scores"])
    assert plotted == 1 + sum(1 for _, status, _ in rest if status != "candidate")


# -- the PNG -------------------------------------------------------------------------------------


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def test_render_run_report_writes_a_png(db: PromptDB, tmp_path: Path) -> None:
    out = tmp_path / "out"
    path = render_run_report(db, RUN, out)
    assert path == out / CURVE_FILE
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 1024
    width, height = _png_size(data)
    assert (width, height) == (770, 440)  # 7 x 4 inches at 110 dpi
    assert data.rstrip(b"\x00")[-8:-4] == b"IEND"  # complete file
    assert sorted(p.name for p in out.iterdir() if "png" in p.name) == [CURVE_FILE]  # no temp file left


def test_render_run_report_replaces_an_old_curve(db: PromptDB, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / CURVE_FILE).write_bytes(b"old")
    path = render_run_report(db, RUN, out)
    assert path.read_bytes()[:8] == PNG_SIGNATURE


def test_render_run_report_of_an_empty_run(tmp_path: Path) -> None:
    with PromptDB(tmp_path / "prompts.db") as pm:
        pm.start_run(RUN, "apo", {})
        path = render_run_report(pm, RUN, tmp_path)
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 1024


# -- summary.json ----------------------------------------------------------------------------------


def _summary() -> dict[str, object]:
    return {
        "run_id": RUN,
        "algorithm": "apo",
        "seed_val": {"value": 0.25, "correct": 4, "n": 16, "ci95": [0.1, 0.49]},
        "best_val": {"value": 0.75, "correct": 12, "n": 16, "ci95": [0.51, 0.9]},
        "seed_test": {"value": 0.2, "correct": 6, "n": 30, "ci95": [0.095, 0.373]},
        "best_test": None,
        "best_prompt_id": 5,
        "best_prompt_version": "v4",
        "verdict": "best looks better than seed by 0.100, but that is within noise",
        "rollouts": 256,
        "rollout_statuses": {"ok": 250, "timeout": 6},
        "candidates": 6,
        "candidates_rejected": 1,
        "llm_tokens": 1234567,
        "wall_seconds": 61.4,
        "best_prompt_file": "outputs/best_prompt.txt",
        "unicode": "3 \u00d7 4 = 12",
    }


def test_write_summary_writes_valid_json(tmp_path: Path) -> None:
    path = write_summary(tmp_path, _summary())
    assert path == tmp_path / SUMMARY_FILE
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    assert json.loads(text) == _summary()
    assert list(json.loads(text)) == list(_summary())  # key order kept for readers
    assert [p.name for p in tmp_path.iterdir()] == [SUMMARY_FILE]


def test_write_summary_replaces_atomically(tmp_path: Path) -> None:
    write_summary(tmp_path, {"run_id": "old"})
    write_summary(tmp_path, _summary())
    assert json.loads((tmp_path / SUMMARY_FILE).read_text(encoding="utf-8"))["run_id"] == RUN
    assert [p.name for p in tmp_path.iterdir()] == [SUMMARY_FILE]


def test_unserialisable_summary_leaves_the_old_file_intact(tmp_path: Path) -> None:
    write_summary(tmp_path, {"run_id": "old"})
    with pytest.raises(TypeError):
        write_summary(tmp_path, {"run_id": "new", "when": object()})
    assert json.loads((tmp_path / SUMMARY_FILE).read_text(encoding="utf-8")) == {"run_id": "old"}
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
    assert "6 (1 rejected by the guard)" in text
    assert "ok: 250, timeout: 6" in text
