"""What a finished run tells its user: summary.json, a table, and the reward curve.

Everything here is computed from the run's own records (the prompt DB, the rollout ledger and the
test evaluations), so ``python -m trainer report`` can redraw it later without Grafana.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from trainer.records.prompt_db import PromptDB, PromptRecord, atomic_write_text

SUMMARY_FILE = "summary.json"
CURVE_FILE = "reward_curve.png"


def write_summary(out_dir: Path, summary: dict[str, Any]) -> Path:
    path = out_dir / SUMMARY_FILE
    atomic_write_text(path, json.dumps(summary, indent=2, sort_keys=False) + "\n")
    return path


def _fmt(score: Any) -> str:
    if not isinstance(score, dict):
        return "-"
    return f"{score['value']:.3f}  [{score['ci95'][0]:.2f}, {score['ci95'][1]:.2f}]  ({score['correct']}/{score['n']})"


def print_summary(summary: dict[str, Any], console: Console) -> None:
    table = Table(title=f"Training run {summary['run_id']} ({summary['algorithm']})", show_lines=False)
    table.add_column("")
    table.add_column("seed prompt")
    table.add_column("best prompt")
    table.add_row("val score (95% CI)", _fmt(summary.get("seed_val")), _fmt(summary.get("best_val")))
    table.add_row("test score (95% CI)", _fmt(summary.get("seed_test")), _fmt(summary.get("best_test")))
    console.print(table)
    facts = Table(show_header=False, box=None)
    facts.add_row("best prompt", f"#{summary['best_prompt_id']} {summary['best_prompt_version']}")
    facts.add_row("verdict", summary["verdict"])
    facts.add_row(
        "rollouts",
        f"{summary['rollouts']} ({', '.join(f'{k}: {v}' for k, v in summary['rollout_statuses'].items())})",
    )
    facts.add_row("candidates", f"{summary['candidates']} ({summary['candidates_rejected']} rejected by the guard)")
    facts.add_row("LLM tokens", f"{summary['llm_tokens']:,}")
    facts.add_row("wall time", f"{summary['wall_seconds']:.0f} s")
    facts.add_row("best prompt file", str(summary["best_prompt_file"]))
    console.print(facts)


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


def plot_reward_curve(points: dict[str, Any], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and in containers
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for rnd, scores in zip(points["rounds"], points["scores"], strict=True):
        ax.scatter([rnd] * len(scores), scores, color="tab:blue", alpha=0.5, s=24)
    ax.scatter([], [], color="tab:blue", alpha=0.5, s=24, label="candidate val scores")
    if points["rounds"]:
        ax.plot(points["rounds"], points["best_so_far"], color="tab:green", marker="o", label="best so far")
    if points["seed"] is not None:
        ax.axhline(points["seed"], color="tab:gray", linestyle="--", label="seed prompt")
    ax.set_xlabel("APO round (0 = seed)")
    ax.set_ylabel("validation reward")
    ax.set_ylim(-0.05, 1.05)
    if points["rounds"]:
        ax.set_xticks(points["rounds"])
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
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
