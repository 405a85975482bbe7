"""Tests for trainer.records.report: reward-curve points and the PNG a person looks at."""

from __future__ import annotations

import dataclasses
import itertools
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.colors import to_rgb
from matplotlib.image import imread

from trainer.agent.prompt import Change
from trainer.records.prompt_db import PromptDB, PromptRecord
from trainer.records.report import CHANGE_STYLES, CURVE_FILE, curve_points, render_run_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RUN = "20250101-000000-abcd"
OTHER_RUN = "20250102-000000-ef01"


def build_db(out: Path) -> PromptDB:
    """A prompt DB as a 3-round APO run leaves it (plus an unrelated later run)."""
    pm = PromptDB(out / "prompts.db")
    pm.start_run(RUN, "apo", {"beam_width": 2, "output_dir": out})
    seed = pm.add_prompt(RUN, "v0", "You solve math word problems.", parent_id=None, round=0)
    pm.record_evaluation(seed, "val", 0.25, 16)
    # round 1: one candidate scored on a mini-batch then rescored on full val; one rejected
    v1 = pm.add_prompt(RUN, "v1", "Compute carefully. The answer is <number>.", parent_id=seed, round=1)
    pm.record_evaluation(v1, "val", 0.5, 4)
    pm.record_evaluation(v1, "val", 0.4375, 16)  # pooled with the mini-batch: (2 + 7) / 20 = 0.45
    v2 = pm.add_prompt(RUN, "v2", "You  solve math word problems.", parent_id=seed, round=1)
    pm.reject(v2, "duplicate")
    # round 2: a better one, a worse one, and one never scored (the run stopped)
    v3 = pm.add_prompt(RUN, "v3", "Write one expression, then its value.", parent_id=v1, round=2)
    pm.record_evaluation(v3, "val", 0.375, 4)
    v4 = pm.add_prompt(RUN, "v4", "Write one expression. End with: The answer is <number>.", parent_id=v1, round=2)
    pm.record_evaluation(v4, "val", 0.75, 16)
    pm.add_prompt(RUN, "v5", "Unscored.", parent_id=v1, round=2)
    # round 3: nothing beats round 2
    v6 = pm.add_prompt(RUN, "v6", "Be brief.", parent_id=v4, round=3)
    pm.record_evaluation(v6, "val", 0.5, 4)
    pm.mark_best(RUN, v4)
    pm.finish_run(RUN, "completed")
    # another run in the same DB must not leak into RUN's curve
    pm.start_run(OTHER_RUN, "apo", {})
    other_seed = pm.add_prompt(OTHER_RUN, "v0", "Other seed.", parent_id=None, round=0)
    pm.record_evaluation(other_seed, "val", 1.0, 16)
    other = pm.add_prompt(OTHER_RUN, "v1", "Other child.", parent_id=other_seed, round=1)
    pm.record_evaluation(other, "val", 0.9, 16)
    return pm


@pytest.fixture
def db(tmp_path: Path) -> Iterator[PromptDB]:
    with build_db(tmp_path / "out") as pm:
        yield pm


# -- curve points --------------------------------------------------------------------------------


def test_curve_points_from_a_real_db(db: PromptDB) -> None:
    points = curve_points(db.list(RUN))
    assert points["rounds"] == [0, 1, 2, 3]
    assert points["scores"] == [[0.25], [0.45, 0.0], [0.375, 0.75], [0.5]]
    # Rows without a change (from before demonstrations): the seed, then instruction edits.
    assert points["changes"] == [["seed"], ["instruction"] * 2, ["instruction"] * 2, ["instruction"]]
    assert points["best_so_far"] == [0.25, 0.45, 0.75, 0.75]
    assert points["seed"] == 0.25


def test_curve_points_of_the_other_run(db: PromptDB) -> None:
    points = curve_points(db.list(OTHER_RUN))
    assert points["rounds"] == [0, 1]
    assert points["best_so_far"] == [1.0, 1.0]
    assert points["seed"] == 1.0


def test_curve_points_of_nothing() -> None:
    assert curve_points([]) == {"rounds": [], "scores": [], "changes": [], "best_so_far": [], "seed": None}


def test_curve_points_carry_what_each_candidate_changed() -> None:
    changes: list[Change | None] = [None, "examples", "instruction", "both", None, "examples"]
    statuses = ["scored", "scored", "rejected", "scored", "candidate", "scored"]
    records = [
        dataclasses.replace(_record(i, min(i, 2), status, 0.5), change=change)
        for i, (status, change) in enumerate(zip(statuses, changes, strict=True))
    ]
    points = curve_points(records)
    assert points["rounds"] == [0, 1, 2]
    assert points["scores"] == [[0.5], [0.5], [0.0, 0.5, 0.5]]
    # The unscored candidate (v4) is not plotted, so its change is not listed either.
    assert points["changes"] == [["seed"], ["examples"], ["instruction", "both", "examples"]]


def test_rejected_only_round_counts_zero(tmp_path: Path) -> None:
    with PromptDB(tmp_path / "prompts.db") as pm:
        pm.start_run(RUN, "apo", {})
        seed = pm.add_prompt(RUN, "v0", "Seed.", parent_id=None, round=0)
        pm.record_evaluation(seed, "val", 0.5, 8)
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
        instruction=f"prompt {i}",
        demos=(),
        change="seed" if rnd == 0 else "instruction",
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
    assert [len(c) for c in points["changes"]] == [len(s) for s in points["scores"]]
    assert points["changes"][0] == ["seed"]


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


def _score_or_reject(pm: PromptDB, prompt_id: int, score: float | None) -> None:
    if score is None:
        pm.reject(prompt_id, "duplicate")
    else:
        pm.record_evaluation(prompt_id, "val", score, 16)


# Per round: (label, score or None = rejected, what it changed). Ties, equal to the seed too.
CROWDED: list[list[tuple[str, float | None, Change]]] = [
    [("v1", 0.5, "instruction"), ("v2", 0.5, "examples"), ("v3", 0.25, "both"), ("v4", None, "instruction")],
    [("v5", 0.75, "examples"), ("v6", 0.75, "instruction"), ("v7", None, "examples"), ("v8", None, "both"),
     ("v9", 0.625, "examples")],
]  # fmt: skip


def build_crowded_db(path: Path) -> PromptDB:
    """3 rounds with ties: per round 1, 4 and 5 evaluated candidates (rejected ones count 0), one unscored;
    the candidates change the instruction, the examples or both (``CROWDED``)."""
    pm = PromptDB(path)
    pm.start_run(RUN, "apo", {})
    seed = pm.add_prompt(RUN, "v0", "Seed.", parent_id=None, round=0, change="seed")
    pm.record_evaluation(seed, "val", 0.5, 16)
    for rnd, candidates in enumerate(CROWDED, start=1):
        for label, score, change in candidates:
            rid = pm.add_prompt(RUN, label, f"Round {rnd} {label}.", parent_id=seed, round=rnd, change=change)
            _score_or_reject(pm, rid, score)
    pm.add_prompt(RUN, "v10", "Never scored.", parent_id=seed, round=2, change="examples")
    return pm


def _blobs(mask: npt.NDArray[np.bool_]) -> list[list[tuple[int, int]]]:
    """The 8-connected components of ``mask``, each as its (row, column) pixels."""
    todo = {(int(r), int(c)) for r, c in np.argwhere(mask)}
    blobs: list[list[tuple[int, int]]] = []
    while todo:
        stack = [todo.pop()]
        blob: list[tuple[int, int]] = []
        while stack:
            r, c = stack.pop()
            blob.append((r, c))
            for neighbour in [(r + dr, c + dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)]:
                if neighbour in todo:
                    todo.remove(neighbour)
                    stack.append(neighbour)
        blobs.append(blob)
    return blobs


def _centre(blob: Sequence[tuple[int, int]]) -> tuple[float, float]:
    return sum(r for r, _ in blob) / len(blob), sum(c for _, c in blob) / len(blob)


CANDIDATE_KINDS: tuple[Change, ...] = ("instruction", "examples", "both")


def _marker_blobs(rgb: npt.NDArray[np.int_], change: Change) -> list[list[tuple[int, int]]]:
    """The markers (and legend key) of one kind of change in an RGB image."""
    wanted = np.rint(np.array(to_rgb(CHANGE_STYLES[change][0])) * 255).astype(int)
    # Markers are drawn without antialiasing or alpha: their pixels have exactly this colour.
    return [b for b in _blobs(np.all(rgb == wanted, axis=-1)) if len(b) >= 8]  # a stray pixel is no marker


def _cornered(blob: Sequence[tuple[int, int]]) -> float:
    """The share of a marker's pixels out in its corners (city-block distance from the centre beyond its
    half width): a diamond has none, a circle some, a square the most."""
    r0, c0 = _centre(blob)
    half = max(max(abs(r - r0), abs(c - c0)) for r, c in blob)
    return sum(1 for r, c in blob if abs(r - r0) + abs(c - c0) > 1.15 * half) / len(blob)


def test_reward_curve_png_shows_one_marker_per_candidate_styled_by_what_it_changed(tmp_path: Path) -> None:
    """Count the candidate markers a person sees in the PNG, per kind of change: ties and the best-so-far
    line hide none, each kind has its own colour and shape, and the legend names each kind once."""
    with build_crowded_db(tmp_path / "prompts.db") as pm:
        assert sum(len(s) for s in curve_points(pm.list(RUN))["scores"]) == 10
        path = render_run_report(pm, RUN, tmp_path)
    rgb = np.rint(imread(path)[..., :3] * 255).astype(int)
    markers: list[list[tuple[int, int]]] = []
    corners: dict[str, float] = {}
    for change in CANDIDATE_KINDS:
        blobs = _marker_blobs(rgb, change)
        expected = sum(1 for candidates in CROWDED for _, _, kind in candidates if kind == change)
        assert len(blobs) == expected + 1, (change, [len(b) for b in blobs])  # + the legend's key
        blobs.sort(key=lambda b: _centre(b)[0])
        legend_key, plotted = blobs[-1], blobs[:-1]  # the legend sits below the plot
        assert _centre(legend_key)[0] > max(_centre(b)[0] for b in plotted) + 20, change
        areas = sorted(len(b) for b in plotted)
        assert areas[-1] <= 1.5 * areas[0], (change, areas)  # no blob is two markers run together
        corners[change] = sum(map(_cornered, plotted)) / len(plotted)
        markers += plotted
    # Told apart without colour, too: squares for examples, circles for instructions, diamonds for both.
    assert corners["examples"] > corners["instruction"] + 0.1 > corners["both"] + 0.2, corners
    # The rounds are the widest horizontal gap between candidate markers: per round, one marker per candidate.
    xs = sorted(_centre(b)[1] for b in markers)
    cut = max(range(1, len(xs)), key=lambda i: xs[i] - xs[i - 1])
    assert [cut, len(xs) - cut] == [len(candidates) for candidates in CROWDED] == [4, 5]


def test_reward_curve_of_rows_without_a_change_draws_them_as_instruction_edits(db: PromptDB, tmp_path: Path) -> None:
    path = render_run_report(db, RUN, tmp_path)
    rgb = np.rint(imread(path)[..., :3] * 255).astype(int)
    # build_db's 5 plotted candidates (v1..v6 but the unscored v5), + the legend's key; no other kind.
    assert [len(_marker_blobs(rgb, change)) for change in CANDIDATE_KINDS] == [5 + 1, 0, 0]
