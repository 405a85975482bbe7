"""The reward curve of a run: every candidate's val score per round, best so far, the seed.

It is drawn from the prompt DB alone, so ``python -m trainer report`` can redraw it later without
Grafana (``summary.json`` is :mod:`trainer.records.summary`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trainer.records.prompt_db import PromptDB, PromptRecord

CURVE_FILE = "reward_curve.png"


def curve_points(prompts: Sequence[PromptRecord]) -> dict[str, Any]:
    """Per round: every candidate's val score (rejected ones count 0); best-so-far; the seed's score.

    A prompt's score is the one over the most val tasks (APO rescores beam leaders on the full set).
    """
    rounds: dict[int, list[float]] = {}
    for record in prompts:
        if record.status == "rejected":
            rounds.setdefault(record.round, []).append(0.0)
        elif record.val_score is not None:
            rounds.setdefault(record.round, []).append(float(record.val_score))
    seed = next((p for p in prompts if p.round == 0), None)
    ordered = sorted(rounds)
    best_so_far: list[float] = []
    best = float("-inf")
    for rnd in ordered:
        best = max(best, *rounds[rnd])
        best_so_far.append(best)
    return {
        "rounds": ordered,
        "scores": [rounds[r] for r in ordered],
        "best_so_far": best_so_far,
        "seed": seed.val_score if seed is not None else None,
    }


# One solid colour per meaning, without transparency or antialiasing: a person (or a test reading the PNG)
# can tell every candidate apart and count them; with alpha, equal points looked like one.
CANDIDATE_COLOR = "#1f77b4"  # tab:blue
BEST_COLOR = "#2ca02c"  # tab:green
SEED_COLOR = "#7f7f7f"  # tab:gray
MARKER_PX = 7.5  # candidate marker diameter, shrunk (not below MIN_MARKER_PX) when a round is crowded
MIN_MARKER_PX = 2.0
# Candidates of one round share an x: they sit side by side (in their DB order), neighbours one and a
# half diameters apart, so equal scores do not hide each other. A round's group stays within this
# fraction of a round, so rounds stay apart.
SPREAD_WIDTH = 0.8


def _spread(counts: Sequence[int], px_per_round: float) -> tuple[list[float], float]:
    """Offsets (in rounds) of each round's points, centred on the round, and the marker diameter (px)."""
    crowd = max(counts, default=1)
    diameter = MARKER_PX
    if crowd > 1:
        widest_gap_px = SPREAD_WIDTH / (crowd - 1) * px_per_round
        diameter = max(MIN_MARKER_PX, min(MARKER_PX, widest_gap_px / 1.5))
    step = 1.5 * diameter / px_per_round
    if crowd > 1:
        step = min(step, SPREAD_WIDTH / (crowd - 1))
    return [(i - (n - 1) / 2) * step for n in counts for i in range(n)], diameter


def plot_reward_curve(points: dict[str, Any], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and in containers
    import matplotlib.pyplot as plt

    rounds: list[int] = points["rounds"]
    scores: list[list[float]] = points["scores"]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    at_round = [float(rnd) for rnd, round_scores in zip(rounds, scores, strict=True) for _ in round_scores]
    ys = [score for round_scores in scores for score in round_scores]
    # Above the best-so-far line (zorder 2): the line must not hide the candidate that set it.
    candidates = ax.scatter(at_round, ys, color=CANDIDATE_COLOR, antialiased=False, zorder=3)
    if rounds:
        ax.plot(rounds, points["best_so_far"], color=BEST_COLOR, marker="o", markersize=4, label="best so far")
        ax.set_xticks(rounds)
        ax.set_xlim(rounds[0] - 0.5, rounds[-1] + 0.5)
    if points["seed"] is not None:
        ax.axhline(points["seed"], color=SEED_COLOR, linestyle="--", label="seed prompt")
    ax.set_xlabel("APO round (0 = seed)")
    ax.set_ylabel("validation reward")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    # The spread is set in pixels, so it needs the axes' final width: lay out first.
    fig.tight_layout()
    x_min, x_max = ax.get_xlim()
    px_per_round = ax.get_window_extent().width / (x_max - x_min)
    offsets, diameter = _spread([len(s) for s in scores], px_per_round)
    if ys:
        candidates.set_offsets([(x + dx, y) for x, dx, y in zip(at_round, offsets, ys, strict=True)])
    candidates.set_sizes([(diameter * 72 / fig.dpi) ** 2])  # scatter sizes are in points squared
    candidates.set_label("candidate val scores (rejected = 0)")
    # Below the plot: inside it (loc="best"), the legend covered points whenever every spot had some.
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: labels[i] != candidates.get_label())
    ax.legend(
        [handles[i] for i in order], [labels[i] for i in order],
        loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=3, fontsize=8, frameon=False,
    )  # fmt: skip
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path


def render_run_report(prompts: PromptDB, run_id: str, out_dir: Path) -> Path:
    """Redraw a run's reward curve from the prompt DB alone."""
    points = curve_points(prompts.list(run_id))
    return plot_reward_curve(points, out_dir / CURVE_FILE, f"APO run {run_id}")
