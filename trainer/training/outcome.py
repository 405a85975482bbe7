"""What a finished training leaves behind: its summary, built from its records, and the files it writes.

The summary is read back from the run's records (prompt DB, ledger, test results, counters), never
from what the training believed along the way, so it says what the files say.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from trainer.agent.solve import RolloutOutcome
from trainer.apo.demos import ExampleSearch
from trainer.apo.optimizer_llm import UsageLedger
from trainer.config import Settings
from trainer.data.splits import Splits
from trainer.records.ledger import Ledger
from trainer.records.prompt_db import BEST_TXT, PromptDB, PromptRecord
from trainer.records.recorder import PromptRecorder
from trainer.records.rollout_cache import RolloutCache
from trainer.records.summary import (
    CacheUse,
    Demonstrations,
    DemoShown,
    LedgerSkips,
    Models,
    PairedSummary,
    ScoreSummary,
    SpanReads,
    SplitSizes,
    Summary,
    TestProblems,
    Tokens,
)
from trainer.serving.endpoints import Endpoints
from trainer.task import Problem
from trainer.training.evaluation import Evaluation, TestResults
from trainer.training.progress import ProgressState


def write_outputs(summary: Summary, recorder: PromptRecorder, prompts: PromptDB, out: Path, run_dir: Path) -> None:
    """The best prompt files, summary.json (in the output dir and the run's own dir) and the curve."""
    from trainer.records.report import CURVE_FILE, curve_points, plot_reward_curve
    from trainer.records.summary import write_summary

    recorder.export_best()
    write_summary(out, summary)
    write_summary(run_dir, summary)
    plot_reward_curve(curve_points(prompts.list(summary.run_id)), out / CURVE_FILE, f"APO run {summary.run_id}")


def build_summary(
    settings: Settings,
    run_id: str,
    splits: Splits,
    endpoints: Endpoints,
    prompts: PromptDB,
    results: TestResults,
    ledger: Ledger,
    progress: ProgressState,
    usage: UsageLedger,
    *,
    wall_seconds: float,
    test_seconds: float,
    expected_rollouts: int,
    examples: ExampleSearch | None = None,
    cache: RolloutCache | None = None,
) -> Summary:
    """Everything the run found, from its records: prompt DB, ledger, test results and counters."""
    from trainer.records.report import CURVE_FILE
    from trainer.records.stats import paired, wilson
    from trainer.training.evaluation import answered_pairs

    def val_score(record: PromptRecord) -> ScoreSummary | None:
        record = prompts.get(record.id)
        if record.val_score is None or not record.val_n:
            return None
        return ScoreSummary.of(wilson(round(record.val_score * record.val_n), record.val_n))

    seed, best = prompts.get(results.seed.id), prompts.get(results.best.id)
    outcomes = ledger.read()
    statuses: dict[str, int] = {}
    for outcome in outcomes:
        statuses[outcome.status] = statuses.get(outcome.status, 0) + 1
    agent_tokens = sum(o.input_tokens + o.output_tokens for o in outcomes)
    distinct = list({id(e): e for e in (results.seed_eval, results.best_eval)}.values())
    test_tokens = sum(e.tokens for e in distinct)
    comparison = paired(*answered_pairs(results.seed_eval, results.best_eval))
    collector = settings.otel_exporter_otlp_endpoint
    out = settings.output_dir
    return Summary(
        run_id=run_id,
        algorithm=settings.algorithm,
        seed_val_score=seed.val_score,
        best_val_score=best.val_score,
        seed_test_score=results.seed_eval.score.value,
        best_test_score=results.best_eval.score.value,
        best_prompt_version=best.label,
        best_prompt_id=best.id,
        rollouts=len(outcomes),
        llm_tokens=agent_tokens + test_tokens + usage.total_tokens,
        wall_seconds=round(wall_seconds, 1),
        test_seconds=round(test_seconds, 1),
        seed_val=val_score(seed),
        best_val=val_score(best),
        seed_test=ScoreSummary.of(results.seed_eval.score),
        best_test=ScoreSummary.of(results.best_eval.score),
        paired_test=PairedSummary.of(comparison),
        verdict=comparison.verdict(),
        rollout_statuses=statuses,
        ledger_skipped=LedgerSkips.of(ledger.skipped),  # the lines ledger.read() above could not count
        test_statuses={"seed": results.seed_eval.status_counts(), "best": results.best_eval.status_counts()},
        candidates=progress.candidates,
        candidates_rejected=progress.rejected,
        rejected_reasons=progress.rejected_reasons,
        failed_optimizer_branches=progress.failed_branches,
        candidates_stopped_early=progress.stopped_early,
        rollouts_cancelled=progress.rollouts_cancelled,
        round_seconds={str(k): round(v, 1) for k, v in progress.round_seconds.items()},
        apo_span_reads=SpanReads(rollouts_read=progress.rollouts_read, incomplete=progress.incomplete_reads),
        tracing="off" if settings.tracing == "off" else (f"collector {collector}" if collector else "store"),
        tokens=Tokens(agent=agent_tokens, test=test_tokens, optimizer=usage.as_dict()),
        expected_training_rollouts_max=expected_rollouts,
        models=Models(
            agent=endpoints.agent.model,
            gradient=endpoints.gradient_model,
            edit=endpoints.edit_model,
            embedded=settings.uses_embedded_llm,
        ),
        splits=SplitSizes(train=len(splits.train), val=len(splits.val), test=len(splits.test)),
        best_prompt_file=str(out / BEST_TXT),
        prompt_db=str(settings.prompt_db_path),
        reward_curve=str(out / CURVE_FILE),
        demonstrations=demonstrations(settings, best, progress, examples),
        cache=cache_use(cache, outcomes, distinct),
        test_problems=TestProblems(**per_problem(splits.test, results)),
    )


def demonstrations(
    settings: Settings, best: PromptRecord, progress: ProgressState, examples: ExampleSearch | None
) -> Demonstrations | None:
    """The examples lever's part of the summary; None for plain APO."""
    if examples is None:
        return None
    return Demonstrations(
        per_prompt=settings.demos,
        source=settings.demo_source,
        pool={source: examples.pool.count(source) for source in examples.pool.sources},
        best=[DemoShown(problem_id=d.problem_id, source=d.source, question=d.question) for d in best.demos],
        candidates_by_change=progress.candidate_changes,
        train_batches_skipped=examples.train_batches_skipped,
    )


def per_problem(tasks: Sequence[Problem], results: TestResults) -> dict[str, list[str]]:
    """Test problems the best prompt won (it was right, the seed wrong) and lost, both answered."""
    wins: list[str] = []
    losses: list[str] = []
    for task, seed, best in zip(tasks, results.seed_eval.correct, results.best_eval.correct, strict=True):
        if seed is None or best is None or seed == best:
            continue
        (wins if best else losses).append(task["id"])
    return {"wins": wins, "losses": losses}


def cache_use(cache: RolloutCache | None, outcomes: Sequence[RolloutOutcome], tests: Sequence[Evaluation]) -> CacheUse:
    """Hits and model calls of the training (ledger) and the test split."""
    tested = [o for e in tests for o in e.outcomes]
    return CacheUse(
        enabled=cache is not None,
        training_hits=sum(1 for o in outcomes if o.cache_hit),
        test_hits=sum(1 for o in tested if o.cache_hit),
        agent_calls=sum(1 for o in [*outcomes, *tested] if not o.cache_hit and o.status != "bad_template"),
        entries=cache.count() if cache is not None else 0,
    )
