"""A training run from settings to saved best prompt, and its dry-run twin.

Order of a run: check everything cheap first (settings, dataset, seed prompt), then start or probe
the language model, open the prompt DB, run APO through Agent Lightning's trainer (store server +
runner processes), score seed and best on the held-out test split, and write the summary. The best
prompt is exported whenever it changes, so an interrupted run still leaves one behind.
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.markup import escape

from trainer.agent.solve import RolloutConfig
from trainer.agent.template import TemplateError, check_template
from trainer.apo.guard import GuardLimits
from trainer.apo.plan import expected_rollouts
from trainer.config import ConfigError, Settings
from trainer.data.problems import MathTask
from trainer.data.splits import load_splits
from trainer.records.ledger import RunLedgers
from trainer.records.prompt_db import BEST_TXT, PromptDB
from trainer.serving.endpoints import probe_endpoints, start_endpoints
from trainer.serving.probes import check_store, free_port

logger = logging.getLogger(__name__)

PROMPT_DB = "prompts.db"


def new_run_id() -> str:
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def seed_prompt_for(settings: Settings) -> tuple[str, str]:
    """The prompt APO starts from and where it came from; raises ConfigError if unusable."""
    source = "SEED_PROMPT"
    text = settings.load_seed_prompt()
    if settings.seed_prompt_file is not None:
        source = f"SEED_PROMPT_FILE ({settings.seed_prompt_file})"
    if settings.resume:
        db_path = settings.output_dir / PROMPT_DB
        best_file = settings.output_dir / BEST_TXT
        if db_path.exists():
            with PromptDB(db_path) as prompts:
                best = prompts.best()
            if best is not None:
                text, source = best.template, f"--resume: best prompt #{best.id} of run {best.run_id}"
        elif best_file.exists():
            text, source = best_file.read_text(encoding="utf-8"), f"--resume: {best_file}"
        else:
            raise ConfigError(
                f"--resume: no saved prompt in {settings.output_dir} (neither {PROMPT_DB} nor {BEST_TXT})"
            )
    try:
        check_template(text)
    except TemplateError as exc:
        raise ConfigError(f"seed prompt from {source} is not a valid template: {exc}") from None
    return text, source


def dry_run(settings: Settings, console: Console) -> dict[str, Any]:
    """Check everything a training needs without training; raise naming the failing thing."""
    settings.check_training_batches()
    settings.check_execution()
    splits = load_splits(
        settings.dataset_path, settings.train_size, settings.val_size, settings.test_size, settings.seed
    )
    seed_prompt, source = seed_prompt_for(settings)
    if settings.store_url:
        check_store(settings.store_url)
    with ExitStack() as stack:
        endpoints = start_endpoints(settings, stack)
        probe_endpoints(endpoints)
    plan = {
        "algorithm": settings.algorithm,
        "rounds": 0 if settings.algorithm == "baseline" else settings.iterations,
        "dataset": str(settings.dataset_path) if settings.dataset_path else f"generated (seed {settings.seed})",
        "splits": {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)},
        "seed_prompt_source": source,
        "agent": f"{endpoints.agent.model} at {endpoints.agent.base_url}"
        + (" (embedded)" if settings.uses_embedded_llm else ""),
        "optimizer": f"{endpoints.gradient_model} / {endpoints.edit_model} at {endpoints.optimizer_url}",
        "store": settings.store_url or "in-process",
        "runners": settings.runners or "0 (rollouts left to `apo-trainer runner` processes)",
        **expected_rollouts(settings, splits),
        "seed_prompt_chars": len(seed_prompt),
    }
    console.print("[bold green]dry run OK[/]: settings valid, dataset loaded, LLM answered")
    for key, value in plan.items():
        console.print(f"  {key:22} {escape(str(value))}", highlight=False)
    return plan


def train(settings: Settings, console: Console) -> dict[str, Any]:
    """Run one training; returns the summary (also written to OUTPUT_DIR/summary.json)."""
    settings.check_training_batches()
    settings.check_execution()
    # Heavy imports (Agent Lightning pulls ~150 packages) only once we know we will train.
    import agentlightning as agl
    from openai import AsyncOpenAI

    from trainer.logs import quiet_libraries

    quiet_libraries()

    from trainer.apo.algorithm import Progress, TrackedAPO
    from trainer.apo.optimizer_llm import BoundedChatClient, UsageLedger
    from trainer.records.report import CURVE_FILE, curve_points, plot_reward_curve, print_summary, write_summary
    from trainer.records.stats import paired
    from trainer.telemetry.metrics import LedgerFollower, TrainerMetrics
    from trainer.telemetry.otlp import collector_endpoint
    from trainer.telemetry.tracers import runner_tracer
    from trainer.training.evaluation import evaluate
    from trainer.training.progress import ProgressDisplay
    from trainer.training.rollout import make_rollout

    started = time.monotonic()
    out = settings.output_dir
    out.mkdir(parents=True, exist_ok=True)
    splits = load_splits(
        settings.dataset_path, settings.train_size, settings.val_size, settings.test_size, settings.seed
    )
    seed_prompt, source = seed_prompt_for(settings)
    if settings.store_url:
        check_store(settings.store_url)
    run_id = new_run_id()
    run_dir = out / "runs" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    ledgers = RunLedgers(out / "runs")
    ledger = ledgers.for_run(run_id)
    random.seed(settings.seed)  # APO samples parents and batches with the global generator

    with ExitStack() as stack:
        endpoints = start_endpoints(settings, stack)
        probe_endpoints(endpoints)

        prompts = stack.enter_context(PromptDB(out / PROMPT_DB))
        prompts.start_run(run_id, settings.algorithm, {**settings.public_dict(), "seed_prompt_source": source})
        logger.info(
            "run %s: %s, %d rounds, splits %d/%d/%d, agent %s, seed prompt from %s",
            run_id, settings.algorithm, 0 if settings.algorithm == "baseline" else settings.iterations,
            len(splits.train), len(splits.val), len(splits.test), endpoints.agent.model, source,
        )  # fmt: skip

        def export_best(prompt_id: int) -> None:
            prompts.export_best(run_id, out, extra={"best_prompt_db_id": prompt_id})

        metrics = TrainerMetrics()
        metrics.run_info.labels(
            run_id=run_id, algorithm=settings.algorithm, agent_model=endpoints.agent.model,
            gradient_model=endpoints.gradient_model, edit_model=endpoints.edit_model,
            dataset=settings.dataset_path.name if settings.dataset_path else "generated",
        ).set(1)  # fmt: skip
        metrics_server = start_metrics_server(metrics, settings)
        if metrics_server is not None:
            stack.callback(metrics_server.stop)
        follower = LedgerFollower(metrics, ledger.path, endpoints.agent.model).start()
        stack.callback(follower.stop)
        usage = UsageLedger()
        client = BoundedChatClient(
            AsyncOpenAI(base_url=endpoints.optimizer_url, api_key=endpoints.optimizer_key or "not-needed"),
            max_tokens=settings.optimizer_max_tokens,
            timeout=settings.optimizer_timeout,
            max_retries=settings.optimizer_max_retries,
            usage=usage,
            on_call=metrics.observe_llm,
        )
        progress = Progress()
        guard = GuardLimits(settings.max_prompt_chars, settings.max_prompt_growth) if settings.candidate_guard else None
        algorithm = TrackedAPO(
            client,
            prompts=prompts,
            run_id=run_id,
            guard=guard,
            progress=progress,
            on_best=export_best,
            metrics=metrics,
            gradient_model=endpoints.gradient_model,
            apply_edit_model=endpoints.edit_model,
            diversity_temperature=settings.optimizer_temperature,
            gradient_batch_size=settings.gradient_batch_size,
            val_batch_size=settings.val_batch_size,
            beam_width=settings.beam_width,
            branch_factor=settings.branch_factor,
            beam_rounds=0 if settings.algorithm == "baseline" else settings.iterations,
            rollout_batch_timeout=settings.rollout_batch_timeout,
            run_initial_validation=True,
        )
        rollout_config = RolloutConfig(model=endpoints.agent, use_calculator=settings.use_calculator)
        collector = collector_endpoint()
        if collector:
            logger.info("rollout spans go through the collector at %s", collector)
        agent = make_rollout(rollout_config, ledgers)
        trainer_kwargs: dict[str, Any] = {}
        # The role is explicit so that an AGL_CURRENT_ROLE left in the environment cannot change it.
        if settings.store_url:
            trainer_kwargs["store"] = agl.LightningStoreClient(settings.store_url)
            strategy = agl.ClientServerExecutionStrategy(
                role="both" if settings.runners else "algorithm",
                n_runners=max(settings.runners, 1),
                managed_store=False,
            )
            if not settings.runners:
                logger.info("RUNNERS=0: rollouts wait in %s for `apo-trainer runner` processes", settings.store_url)
        else:
            port = settings.store_port or free_port()
            strategy = agl.ClientServerExecutionStrategy(
                role="both", n_runners=settings.runners, server_host="127.0.0.1", server_port=port
            )
        trainer = agl.Trainer(
            algorithm=algorithm,
            n_runners=max(settings.runners, 1),
            initial_resources={"prompt_template": agl.PromptTemplate(template=seed_prompt, engine="f-string")},
            adapter=agl.TraceToMessages(),
            tracer=runner_tracer(settings.tracing, collector),
            strategy=strategy,
            **trainer_kwargs,
        )
        expected = expected_rollouts(settings, splits)["training_rollouts"]
        status = "failed"
        try:
            with ProgressDisplay(progress, ledger.path, expected_rollouts=expected, console=console):
                trainer.fit(
                    agent,
                    train_dataset=for_run(splits.train, run_id),
                    val_dataset=for_run(splits.val, run_id),
                )
            best = prompts.best(run_id)
            if best is None:
                raise RuntimeError("training finished without scoring any prompt (see the log above)")
            seed_record = next(p for p in prompts.list(run_id) if p.round == 0)

            logger.info("scoring seed and best prompt on %d held-out test problems", len(splits.test))
            concurrency = settings.embedded_llm_parallel if settings.uses_embedded_llm else 4
            seed_test = evaluate(seed_record.template, splits.test, rollout_config, concurrency)
            best_test = (
                seed_test
                if best.id == seed_record.id
                else evaluate(best.template, splits.test, rollout_config, concurrency)
            )
            comparison = paired(seed_test.correct, best_test.correct)
            metrics.test_score.labels(prompt="seed").set(seed_test.score.value)
            metrics.test_score.labels(prompt="best").set(best_test.score.value)
            for evaluation in {id(seed_test): seed_test, id(best_test): best_test}.values():
                for outcome in evaluation.outcomes:
                    metrics.observe_llm("agent", endpoints.agent.model, outcome.input_tokens,
                                        outcome.output_tokens, outcome.llm_seconds)  # fmt: skip
            outcomes = ledger.read()
            statuses: dict[str, int] = {}
            for outcome in outcomes:
                statuses[outcome.status] = statuses.get(outcome.status, 0) + 1
            agent_tokens = sum(o.input_tokens + o.output_tokens for o in outcomes)
            test_tokens = seed_test.tokens + (best_test.tokens if best_test is not seed_test else 0)

            def val_score(record_id: int) -> dict[str, Any] | None:
                from trainer.records.stats import wilson

                record = prompts.get(record_id)
                if record.val_score is None or not record.val_n:
                    return None
                return _score_dict(wilson(round(record.val_score * record.val_n), record.val_n))

            with progress.lock:
                rejected, candidates = progress.rejected, progress.candidates
                rejected_reasons = dict(progress.rejected_reasons)
                failed_branches = progress.failed_branches
                round_seconds = {str(k): round(v, 1) for k, v in progress.round_seconds.items()}
                reads = {"rollouts_read": progress.rollouts_read, "incomplete": progress.incomplete_reads}
            summary: dict[str, Any] = {
                "run_id": run_id,
                "algorithm": settings.algorithm,
                "seed_val_score": seed_record.val_score,
                "best_val_score": best.val_score,
                "seed_test_score": seed_test.score.value,
                "best_test_score": best_test.score.value,
                "best_prompt_version": best.label,
                "best_prompt_id": best.id,
                "rollouts": len(outcomes),
                "llm_tokens": agent_tokens + test_tokens + usage.total_tokens,
                "wall_seconds": round(time.monotonic() - started, 1),
                "seed_val": val_score(seed_record.id),
                "best_val": val_score(best.id),
                "seed_test": _score_dict(seed_test.score),
                "best_test": _score_dict(best_test.score),
                "paired_test": {
                    "n": comparison.n,
                    "both_right": comparison.both_right,
                    "only_seed": comparison.only_seed,
                    "only_best": comparison.only_best,
                    "both_wrong": comparison.both_wrong,
                    "p_value": comparison.p_value,
                    "significant": comparison.significant,
                },
                "verdict": comparison.verdict(),
                "rollout_statuses": statuses,
                "test_statuses": {"seed": seed_test.status_counts(), "best": best_test.status_counts()},
                "candidates": candidates,
                "candidates_rejected": rejected,
                "rejected_reasons": rejected_reasons,
                "failed_optimizer_branches": failed_branches,
                "round_seconds": round_seconds,
                "apo_span_reads": reads,
                "tracing": "off" if settings.tracing == "off" else (f"collector {collector}" if collector else "store"),
                "tokens": {"agent": agent_tokens, "test": test_tokens, "optimizer": usage.as_dict()},
                "expected_training_rollouts_max": expected,
                "models": {
                    "agent": endpoints.agent.model,
                    "gradient": endpoints.gradient_model,
                    "edit": endpoints.edit_model,
                    "embedded": settings.uses_embedded_llm,
                },
                "splits": {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)},
                "best_prompt_file": str(out / BEST_TXT),
                "prompt_db": str(out / PROMPT_DB),
                "reward_curve": str(out / CURVE_FILE),
            }
            export_best(best.id)
            write_summary(out, summary)
            write_summary(run_dir, summary)
            plot_reward_curve(curve_points(prompts.list(run_id)), out / CURVE_FILE, f"APO run {run_id}")
            status = "completed"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            prompts.finish_run(run_id, status)
            logger.info("run %s %s after %.0fs", run_id, status, time.monotonic() - started)
            follower.stop()
            if metrics_server is not None:
                metrics_server.wait_for_final_scrape(settings.metrics_final_scrape_timeout)
    print_summary(summary, console)
    return summary


def start_metrics_server(metrics: Any, settings: Settings) -> Any:
    """The /metrics endpoint, or None (disabled, or its port is taken: a training goes on without)."""
    from trainer.telemetry.metrics import MetricsServer

    if settings.metrics_port == 0:
        return None
    try:
        return MetricsServer(metrics, settings.metrics_host, settings.metrics_port).start()
    except OSError as exc:
        logger.warning(
            "METRICS_PORT %s:%d unavailable (%s): training without a metrics endpoint",
            settings.metrics_host, settings.metrics_port, exc.strerror,
        )  # fmt: skip
        return None


def for_run(tasks: list[MathTask], run_id: str) -> list[MathTask]:
    """The tasks stamped with the run id, which tells any runner whose ledger a rollout goes to."""
    return [{**task, "run_id": run_id} for task in tasks]


def _score_dict(score: Any) -> dict[str, Any]:
    return {"value": score.value, "correct": score.correct, "n": score.n, "ci95": [score.low, score.high]}
