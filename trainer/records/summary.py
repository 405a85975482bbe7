"""``summary.json``: what a finished run found, in one typed schema.

:class:`Summary` is the one definition of the file: the training builds it, :func:`write_summary`
writes it, :func:`print_summary` prints its table, and readers (``report``, tests, benchmarks) load
it back with :meth:`Summary.load` and get the same fields, checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from trainer.records.files import atomic_write_text
from trainer.records.stats import PairedComparison, Score

SUMMARY_FILE = "summary.json"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScoreSummary(_Model):
    """A score with its 95% Wilson interval."""

    value: float
    correct: int
    n: int
    ci95: tuple[float, float]

    @classmethod
    def of(cls, score: Score) -> ScoreSummary:
        return cls(value=score.value, correct=score.correct, n=score.n, ci95=(score.low, score.high))

    def __str__(self) -> str:
        return f"{self.value:.3f}  [{self.ci95[0]:.2f}, {self.ci95[1]:.2f}]  ({self.correct}/{self.n})"


class PairedSummary(_Model):
    """Best vs seed on the same test problems (exact McNemar test on the discordant ones)."""

    n: int
    both_right: int
    only_seed: int
    only_best: int
    both_wrong: int
    p_value: float
    significant: bool

    @classmethod
    def of(cls, comparison: PairedComparison) -> PairedSummary:
        return cls(
            n=comparison.n,
            both_right=comparison.both_right,
            only_seed=comparison.only_seed,
            only_best=comparison.only_best,
            both_wrong=comparison.both_wrong,
            p_value=comparison.p_value,
            significant=comparison.significant,
        )


class SpanReads(_Model):
    rollouts_read: int
    incomplete: int  # rollouts whose spans were not all in the store when APO read them


class Tokens(_Model):
    agent: int  # training rollouts
    test: int  # the test split's rollouts
    optimizer: dict[str, dict[str, Any]]  # "role:model" -> calls, failures, tokens, seconds, truncated


class LedgerSkips(_Model):
    """Rollout ledger lines the summary did not count: a writer's line cut off by kill -9 or a full
    disk, garbage, a required field missing or invalid. ``rollouts`` and the token counts are over
    the other lines; ``lines`` names the first few (``path:line: why``)."""

    count: int = 0
    lines: list[str] = Field(default_factory=list)

    NAMED: ClassVar[int] = 20  # a ledger of garbage must not make the summary as big as itself

    @classmethod
    def of(cls, skipped: Sequence[object]) -> LedgerSkips:
        return cls(count=len(skipped), lines=[str(s) for s in skipped[: cls.NAMED]])


class Models(_Model):
    agent: str
    gradient: str
    edit: str
    embedded: bool


class SplitSizes(_Model):
    train: int
    val: int
    test: int


class DemoShown(_Model):
    """One demonstration of the best prompt: which train problem, from which source."""

    problem_id: str
    source: str
    question: str


class Demonstrations(_Model):
    """What the examples lever did: the best prompt's set, the pool, what candidates changed."""

    per_prompt: int  # DEMOS
    source: str  # DEMO_SOURCE
    pool: dict[str, int]  # demonstrations available at the end, by source
    best: list[DemoShown]
    candidates_by_change: dict[str, int]  # instruction, examples, both
    # Examples branches that ran no train batch: the pool could already fill their set.
    train_batches_skipped: int = 0


class TestProblems(_Model):
    """Best vs seed per held-out test problem (both answered): ids where only one was right."""

    wins: list[str] = Field(default_factory=list)  # best right, seed wrong
    losses: list[str] = Field(default_factory=list)  # seed right, best wrong


class CacheUse(_Model):
    """What the rollout cache spared: rollouts that reused an earlier outcome instead of a model call."""

    enabled: bool  # ROLLOUT_CACHE on and TEMPERATURE 0
    training_hits: int  # of the training's rollouts (the ledger)
    test_hits: int  # of the test split's evaluations
    agent_calls: int  # rollouts that did call the agent's model (training and test)
    entries: int  # (prompt, task) pairs in OUTPUT_DIR/rollout_cache.db at the end

    @property
    def hit_share(self) -> float:
        hits = self.training_hits + self.test_hits
        return hits / (hits + self.agent_calls) if hits + self.agent_calls else 0.0


class Summary(_Model):
    """Everything ``summary.json`` holds."""

    run_id: str
    algorithm: str
    seed_val_score: float | None
    best_val_score: float | None
    seed_test_score: float
    best_test_score: float
    best_prompt_version: str
    best_prompt_id: int
    rollouts: int
    llm_tokens: int
    wall_seconds: float
    # Of wall_seconds, scoring seed and best on the test split (after the training proper). A
    # default, so that summaries written before it load.
    test_seconds: float | None = None
    seed_val: ScoreSummary | None
    best_val: ScoreSummary | None
    seed_test: ScoreSummary
    best_test: ScoreSummary
    paired_test: PairedSummary
    verdict: str
    rollout_statuses: dict[str, int]
    # A default, so that summaries written before this field load (a bad line crashed those runs).
    ledger_skipped: LedgerSkips = Field(default_factory=LedgerSkips)
    test_statuses: dict[str, dict[str, int]]
    candidates: int
    candidates_rejected: int
    rejected_reasons: dict[str, int]
    failed_optimizer_branches: int
    # Defaults, so that summaries written before the cut load: candidates whose val batch stopped once
    # they could no longer reach the beam, and the queued rollouts that spared (trainer.apo.racing).
    candidates_stopped_early: int = 0
    rollouts_cancelled: int = 0
    round_seconds: dict[str, float]
    apo_span_reads: SpanReads
    tracing: str
    tokens: Tokens
    expected_training_rollouts_max: int
    models: Models
    splits: SplitSizes
    best_prompt_file: str
    prompt_db: str
    reward_curve: str
    # Defaults, so that summaries written before demonstrations existed load.
    demonstrations: Demonstrations | None = None  # None: plain APO (DEMOS=0)
    test_problems: TestProblems = Field(default_factory=TestProblems)
    cache: CacheUse | None = None  # None: written before the rollout cache existed

    @classmethod
    def load(cls, path: Path) -> Summary:
        return cls.model_validate_json(path.read_text(encoding="utf-8"))


def write_summary(out_dir: Path, summary: Summary) -> Path:
    path = out_dir / SUMMARY_FILE
    atomic_write_text(path, summary.model_dump_json(indent=2) + "\n")
    return path


def _fmt(score: ScoreSummary | None) -> str:
    return "-" if score is None else str(score)


def _ids(ids: Sequence[str], shown: int = 8) -> str:
    if not ids:
        return ""
    more = f", +{len(ids) - shown}" if len(ids) > shown else ""
    return "(" + ", ".join(ids[:shown]) + more + ")"


def print_summary(summary: Summary, console: Console) -> None:
    table = Table(title=f"Training run {summary.run_id} ({summary.algorithm})", show_lines=False)
    table.add_column("")
    table.add_column("seed prompt")
    table.add_column("best prompt")
    table.add_row("val score (95% CI)", _fmt(summary.seed_val), _fmt(summary.best_val))
    table.add_row("test score (95% CI)", _fmt(summary.seed_test), _fmt(summary.best_test))
    console.print(table)
    facts = Table(show_header=False, box=None)
    facts.add_row("best prompt", f"#{summary.best_prompt_id} {summary.best_prompt_version}")
    facts.add_row("verdict", summary.verdict)
    statuses = ", ".join(f"{k}: {v}" for k, v in summary.rollout_statuses.items())
    facts.add_row("rollouts", f"{summary.rollouts} ({statuses})")
    if summary.ledger_skipped.count:
        first = summary.ledger_skipped.lines[0] if summary.ledger_skipped.lines else ""
        facts.add_row("ledger lines skipped", escape(f"{summary.ledger_skipped.count} (not counted; first: {first})"))
    stopped = f", {summary.candidates_stopped_early} stopped early" if summary.candidates_stopped_early else ""
    facts.add_row("candidates", f"{summary.candidates} ({summary.candidates_rejected} rejected by the guard{stopped})")
    if (demos := summary.demonstrations) is not None:
        changed = ", ".join(f"{k}: {v}" for k, v in sorted(demos.candidates_by_change.items()))
        facts.add_row("candidates changed", changed or "-")
        shown = ", ".join(f"{d.problem_id} ({d.source})" for d in demos.best) or "none"
        facts.add_row("best's demonstrations", escape(shown))
    wins, losses = summary.test_problems.wins, summary.test_problems.losses
    facts.add_row("test, best vs seed", escape(f"{len(wins)} won {_ids(wins)}, {len(losses)} lost {_ids(losses)}"))
    if (cache := summary.cache) is not None and cache.enabled:
        facts.add_row(
            "rollout cache",
            f"{cache.training_hits + cache.test_hits} reused ({cache.hit_share:.0%}), {cache.agent_calls} agent calls",
        )
    facts.add_row("LLM tokens", f"{summary.llm_tokens:,}")
    facts.add_row("wall time", f"{summary.wall_seconds:.0f} s")
    facts.add_row("best prompt file", summary.best_prompt_file)
    console.print(facts)
