"""The reward curve of a run: every candidate's val score per round, what it changed, best so far, the seed.

Each candidate's marker says what it changed against its parent (its instruction, its examples or
both; the same colours as the Grafana training dashboard), so a reader sees which lever moved the
score. It is drawn from the prompt DB alone, so ``python -m trainer report`` can redraw it later
without Grafana (``summary.json`` is :mod:`trainer.records.summary`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, get_args

from trainer.agent.prompt import Change
from trainer.records.prompt_db import PromptDB, PromptRecord

CURVE_FILE = "reward_curve.png"
CHANGES: tuple[Change, ...] = get_args(Change)


def change_of_record(record: PromptRecord) -> Change:
    """What ``record`` changed. Rows from before demonstrations have none: the seed, or an instruction
    edit (APO could change nothing else then)."""
    for change in CHANGES:
        if record.change == change:
            return change
    return "seed" if record.round == 0 else "instruction"


def curve_points(prompts: Sequence[PromptRecord]) -> dict[str, Any]:
    """Per round: every candidate's val score (rejected ones count 0) and what it changed; best-so-far;
    the seed's score. ``changes`` runs parallel to ``scores``.

    A prompt's score is the one over the most val tasks (APO rescores beam leaders on the full set).
    """
    rounds: dict[int, list[float]] = {}
    changes: dict[int, list[Change]] = {}
    for record in prompts:
        if record.status == "rejected":
            score = 0.0
        elif record.val_score is not None:
            score = float(record.val_score)
        else:
            continue
        rounds.setdefault(record.round, []).append(score)
        changes.setdefault(record.round, []).append(change_of_record(record))
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
        "changes": [changes[r] for r in ordered],
        "best_so_far": best_so_far,
        "seed": seed.val_score if seed is not None else None,
    }


# One solid colour per meaning, without transparency or antialiasing: a person (or a test reading the PNG)
# can tell every candidate apart and count them; with alpha, equal points looked like one.
BEST_COLOR = "#2ca02c"  # tab:green
SEED_COLOR = "#7f7f7f"  # tab:gray
# What a candidate changed: a colour and a shape each (the shape tells them apart without colour
# vision), the colours the training dashboard's; labelled in the legend.
CHANGE_STYLES: dict[Change, tuple[str, str, str]] = {
    "instruction": ("#1f77b4", "o", "instruction changed"),  # tab:blue
    "examples": ("#ff7f0e", "s", "examples changed"),  # tab:orange
    "both": ("#9467bd", "D", "both changed"),  # tab:purple
    "seed": (SEED_COLOR, "o", "seed prompt"),  # unlisted: it sits on the seed's line, which the legend names
}
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
    kinds = [change for round_changes in points["changes"] for change in round_changes]
    # One scatter per kind of change, each holding the indices of its points in the flat lists above.
    groups = {change: [i for i, kind in enumerate(kinds) if kind == change] for change in CHANGES}
    markers = {}
    for change, indices in groups.items():
        if not indices:
            continue
        color, shape, label = CHANGE_STYLES[change]
        # Above the best-so-far line (zorder 2): the line must not hide the candidate that set it.
        markers[change] = ax.scatter(
            [at_round[i] for i in indices], [ys[i] for i in indices], color=color, marker=shape,
            antialiased=False, zorder=3, label=f"_{label}" if change == "seed" else label,
        )  # fmt: skip
    if rounds:
        ax.plot(rounds, points["best_so_far"], color=BEST_COLOR, marker="o", markersize=4, label="best so far")
        ax.set_xticks(rounds)
        ax.set_xlim(rounds[0] - 0.5, rounds[-1] + 0.5)
    if points["seed"] is not None:
        ax.axhline(points["seed"], color=SEED_COLOR, linestyle="--", label="seed prompt")
    ax.set_xlabel("APO round (0 = seed)")
    ax.set_ylabel("validation reward (rejected = 0)")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    # The spread is set in pixels, so it needs the axes' final width: lay out first.
    fig.tight_layout()
    x_min, x_max = ax.get_xlim()
    px_per_round = ax.get_window_extent().width / (x_max - x_min)
    # Spread over all of a round's points, whatever they changed: no two markers of a round overlap.
    offsets, diameter = _spread([len(s) for s in scores], px_per_round)
    for change, scatter in markers.items():
        scatter.set_offsets([(at_round[i] + offsets[i], ys[i]) for i in groups[change]])
        scatter.set_sizes([(diameter * 72 / fig.dpi) ** 2])  # scatter sizes are in points squared
    # Below the plot: inside it (loc="best"), the legend covered points whenever every spot had some.
    # The kinds of change first, in CHANGE_STYLES' order, then the lines.
    handles, labels = ax.get_legend_handles_labels()
    first = [label for change, (_, _, label) in CHANGE_STYLES.items() if change != "seed"]
    order = sorted(range(len(labels)), key=lambda i: first.index(labels[i]) if labels[i] in first else len(first))
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
