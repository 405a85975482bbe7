"""A training run from settings to saved best prompt, and its dry-run twin.

Order of a run: check everything cheap first (settings, dataset, seed prompt, store), then start or
probe the language model, open the prompt DB, run the tracked APO through Agent Lightning's trainer
(store server + runner processes), score seed and best on the held-out test split, and write the
summary. The best prompt is exported whenever it changes, so an interrupted run still leaves one.
``train`` itself only orchestrates; each step is a function of its own below.
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rich.console import Console

from trainer.agent.prompt import Prompt
from trainer.agent.solve import RolloutConfig
from trainer.agent.template import TemplateError, check_template
from trainer.apo.demos import DemoPool, ExampleSearch, gold_demos
from trainer.apo.guard import GuardLimits
from trainer.apo.observer import APOObserver
from trainer.apo.optimizer_llm import UsageLedger
from trainer.apo.plan import expected_rollouts
from trainer.config import ConfigError, Settings
from trainer.data.splits import Splits, splits_for
from trainer.records.ledger import Ledger, RunLedgers
from trainer.records.output_lock import OutputLock
from trainer.records.prompt_db import BEST_TXT, PromptDB
from trainer.records.rollout_cache import RolloutCaches
from trainer.records.summary import Summary
from trainer.serving.endpoints import Endpoints, probe_endpoints, start_endpoints
from trainer.serving.probes import check_collector, check_store
from trainer.task import Problem, Task, load_task
from trainer.training.evaluation import TestResults, score_on_test

if TYPE_CHECKING:
    from trainer.apo.algorithm import TrackedAPO
    from trainer.telemetry.metrics import MetricsServer, TrainerMetrics
    from trainer.telemetry.metrics_push import MetricsPusher

logger = logging.getLogger(__name__)


def new_run_id() -> str:
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def seed_prompt_for(settings: Settings, task: Task) -> tuple[Prompt, str]:
    """The prompt APO starts from and where it came from; raises ConfigError if unusable.

    ``--resume`` from a prompt DB keeps the best prompt's instruction and demonstrations apart; from
    a bare ``best_prompt.txt`` the whole text is the instruction.
    """
    source = "SEED_PROMPT" if settings.seed_prompt else f"the {task.name} task's seed prompt"
    seed = Prompt(settings.load_seed_prompt(task.seed_prompt))
    if settings.seed_prompt_file is not None:
        source = f"SEED_PROMPT_FILE ({settings.seed_prompt_file})"
    if settings.resume:
        db_path = settings.prompt_db_path
        best_file = settings.output_dir / BEST_TXT
        if db_path.exists():
            with PromptDB(db_path) as prompts:
                best = prompts.best()
            if best is not None:
                seed, source = best.prompt, f"--resume: best prompt #{best.id} of run {best.run_id}"
        elif best_file.exists():
            seed, source = Prompt(best_file.read_text(encoding="utf-8")), f"--resume: {best_file}"
        else:
            raise ConfigError(
                f"--resume: no saved prompt in {settings.output_dir} (neither {db_path.name} nor {BEST_TXT})"
            )
    try:
        check_template(seed.render(), task.template_fields)
    except TemplateError as exc:
        raise ConfigError(f"seed prompt from {source} is not a valid template: {exc}") from None
    return seed, source


def for_run(tasks: list[Problem], run_id: str, ledger: Ledger) -> list[Problem]:
    """The tasks stamped with the run id and its ledger's directory, which tell any runner whose
    ledger a rollout goes to (:meth:`RunLedgers.for_task`)."""
    run_dir = str(ledger.path.parent.resolve())
    return [{**task, "run_id": run_id, "run_dir": run_dir} for task in tasks]


@dataclass(frozen=True)
class Preparation:
    """What the cheap checks established before anything expensive starts."""

    task: Task
    splits: Splits
    seed: Prompt
    seed_source: str

    @property
    def seed_prompt(self) -> str:
        """The seed as the agent gets it (demonstrations rendered in)."""
        return self.seed.render()


def prepare(settings: Settings) -> Preparation:
    """Every check that needs no model: settings, dataset, seed prompt, store; raises naming the culprit."""
    settings.check_training_batches()
    settings.check_search()
    settings.check_execution()
    task = load_task(settings.task)
    splits = splits_for(task, settings)
    seed, source = seed_prompt_for(settings, task)
    if settings.store_url:
        check_store(settings.store_url)
    return Preparation(task, splits, seed, source)


def dry_run(settings: Settings) -> dict[str, Any]:
    """Check everything a training needs without training; returns the plan."""
    prep = prepare(settings)
    if (collector := settings.otel_exporter_otlp_endpoint) and settings.tracing != "off":
        check_collector(collector)  # every rollout's spans go there: a wrong endpoint would drop them all
    with ExitStack() as stack:
        endpoints = start_endpoints(settings, stack)
        probe_endpoints(endpoints)
    splits = prep.splits
    return {
        "task": settings.task,
        "algorithm": settings.algorithm,
        "rounds": rounds_of(settings),
        "dataset": str(settings.dataset_path) if settings.dataset_path else f"generated (seed {settings.seed})",
        "splits": {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)},
        "seed_prompt_source": prep.seed_source,
        "agent": f"{endpoints.agent.model} at {endpoints.agent.base_url}"
        + (" (embedded)" if settings.uses_embedded_llm else ""),
        "optimizer": f"{endpoints.gradient_model} / {endpoints.edit_model} at {endpoints.optimizer_url}",
        "store": settings.store_url or "in-process",
        "runners": settings.runners or "0 (rollouts left to `apo-trainer runner` processes)",
        **expected_rollouts(settings, splits),
        "seed_prompt_chars": len(prep.seed_prompt),
        "demonstrations": demo_plan(settings, splits),
    }


def demo_plan(settings: Settings, splits: Splits) -> str:
    """How many examples each prompt shows and what the pool holds before training."""
    if settings.demos == 0 or settings.algorithm == "baseline":
        return "none (plain APO: instruction edits only)"
    gold = len(gold_demos(splits.train)) if settings.demo_source != "bootstrapped" else 0
    boot = "" if settings.demo_source == "gold" else ", plus train rollouts that earn reward 1"
    return f"{settings.demos} per prompt from {settings.demo_source}: {gold} gold worked solutions in train{boot}"


def rounds_of(settings: Settings) -> int:
    return 0 if settings.algorithm == "baseline" else settings.iterations


def build_algorithm(
    settings: Settings,
    prep: Preparation,
    endpoints: Endpoints,
    observer: APOObserver,
    usage: UsageLedger,
    metrics: TrainerMetrics,
    run_id: str,
) -> TrackedAPO:
    from trainer.apo.algorithm import TrackedAPO
    from trainer.apo.optimizer_llm import optimizer_client

    client = optimizer_client(
        endpoints.optimizer_url,
        endpoints.optimizer_key,
        max_tokens=settings.optimizer_max_tokens,
        timeout=settings.optimizer_timeout,
        max_retries=settings.optimizer_max_retries,
        usage=usage,
        on_call=metrics.observe_llm,
    )
    guard = None
    if settings.candidate_guard:
        fields = prep.task.template_fields
        guard = GuardLimits(settings.max_prompt_chars, settings.max_prompt_growth, template_fields=fields)
    examples = None
    if settings.demos > 0:
        pool = DemoPool.for_splits(settings.demo_source, prep.splits.train, [*prep.splits.val, *prep.splits.test])
        examples = ExampleSearch(pool, settings.demos, settings.seed, edits=settings.instruction_edits)
    return TrackedAPO(
        client,
        observer=observer,
        guard=guard,
        run_id=run_id,
        store_url=settings.store_url,
        max_endpoint_failures=settings.max_endpoint_failures,
        seed=prep.seed,
        examples=examples,
        reuses_outcomes=settings.uses_rollout_cache,
        max_reward=prep.task.max_reward if settings.candidate_cut else None,
        gradient_model=endpoints.gradient_model,
        apply_edit_model=endpoints.edit_model,
        diversity_temperature=settings.optimizer_temperature,
        gradient_batch_size=settings.gradient_batch_size,
        val_batch_size=settings.val_batch_size,
        beam_width=settings.beam_width,
        branch_factor=settings.branch_factor,
        beam_rounds=rounds_of(settings),
        rollout_batch_timeout=settings.rollout_batch_timeout,
        run_initial_validation=True,
    )


def start_metrics(settings: Settings, run_id: str, endpoints: Endpoints) -> TrainerMetrics:
    """The run's metrics, labelled with what the run is."""
    from trainer.telemetry.metrics import TrainerMetrics

    metrics = TrainerMetrics()
    metrics.run_info.labels(
        run_id=run_id, algorithm=settings.algorithm, agent_model=endpoints.agent.model,
        gradient_model=endpoints.gradient_model, edit_model=endpoints.edit_model,
        dataset=settings.dataset_path.name if settings.dataset_path else "generated",
    ).set(1)  # fmt: skip
    return metrics


def start_metrics_server(metrics: TrainerMetrics, settings: Settings) -> MetricsServer | None:
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


def start_metrics_push(metrics: TrainerMetrics, settings: Settings, run_id: str) -> MetricsPusher | None:
    """Pushes to the collector when there is one: Prometheus reads them there, however the run was started."""
    from trainer.telemetry.metrics_push import otlp_metrics_pusher

    if not settings.otel_exporter_otlp_endpoint:
        return None
    return otlp_metrics_pusher(
        metrics.registry, settings.otel_exporter_otlp_endpoint, settings.otel_metric_export_interval, run_id
    )


def start_run(prompts: PromptDB, settings: Settings, run_id: str, prep: Preparation, endpoints: Endpoints) -> None:
    prompts.start_run(run_id, settings.algorithm, {**settings.public_dict(), "seed_prompt_source": prep.seed_source})
    logger.info(
        "run %s: %s, %d rounds, splits %d/%d/%d, agent %s, seed prompt from %s",
        run_id, settings.algorithm, rounds_of(settings), len(prep.splits.train), len(prep.splits.val),
        len(prep.splits.test), endpoints.agent.model, prep.seed_source,
    )  # fmt: skip


def observe_test(metrics: TrainerMetrics, results: TestResults, agent_model: str) -> None:
    """The test split's rollouts run in this process, outside the ledger: their metrics are added here."""
    for evaluation in {id(e): e for e in (results.seed_eval, results.best_eval)}.values():
        for outcome in evaluation.outcomes:
            if outcome.cache_hit:
                metrics.cache_hits.labels(split="test").inc()
                continue
            metrics.observe_llm("agent", agent_model, outcome.input_tokens, outcome.output_tokens, outcome.llm_seconds)
    metrics.test_score.labels(prompt="seed").set(results.seed_eval.score.value)
    metrics.test_score.labels(prompt="best").set(results.best_eval.score.value)


def open_caches(settings: Settings, stack: ExitStack) -> RolloutCaches | None:
    """The rollout caches (trainer.records.rollout_cache), or None above TEMPERATURE 0 or with ROLLOUT_CACHE off."""
    if not settings.uses_rollout_cache:
        if settings.rollout_cache:
            logger.info("rollout cache off: TEMPERATURE=%g makes every rollout a new sample", settings.temperature)
        return None
    caches = RolloutCaches(settings.output_dir)
    stack.callback(caches.close)
    return caches


def train(settings: Settings, console: Console) -> Summary:
    """Run one training; returns the summary (also written to OUTPUT_DIR/summary.json)."""
    prep = prepare(settings)  # the cheap checks first: a training that cannot start leaves nothing behind
    with OutputLock(settings.output_dir):  # then a second training on OUTPUT_DIR is refused, before it writes
        return _train(settings, console, prep)


def _train(settings: Settings, console: Console, prep: Preparation) -> Summary:
    # Heavy imports (Agent Lightning pulls ~150 packages) only once we know we will train.
    import agentlightning  # noqa: F401  (first, so that quiet_libraries() comes after litellm's logging setup)

    from trainer.logs import quiet_libraries

    quiet_libraries()  # litellm, imported with Agent Lightning, resets its loggers

    from trainer.apo.observer import Observers
    from trainer.records.ledger import LedgerFollower
    from trainer.records.recorder import PromptRecorder
    from trainer.telemetry.metrics_observer import MetricsObserver
    from trainer.training.lightning import lightning_trainer
    from trainer.training.outcome import build_summary, write_outputs
    from trainer.training.progress import Progress, ProgressDisplay
    from trainer.training.rollout import make_rollout

    started = time.monotonic()
    out = settings.output_dir
    out.mkdir(parents=True, exist_ok=True)
    run_id = new_run_id()
    ledgers = RunLedgers(out / "runs")
    ledger = ledgers.for_run(run_id)
    ledger.path.parent.mkdir(parents=True, exist_ok=True)
    random.seed(settings.seed)  # APO samples parents and batches with the global generator

    with ExitStack() as stack:
        endpoints = start_endpoints(settings, stack)
        probe_endpoints(endpoints)
        prompts = stack.enter_context(PromptDB(settings.prompt_db_path))
        start_run(prompts, settings, run_id, prep, endpoints)
        metrics = start_metrics(settings, run_id, endpoints)
        metrics_server = start_metrics_server(metrics, settings)
        if metrics_server is not None:
            stack.callback(metrics_server.stop)
        pusher = start_metrics_push(metrics, settings, run_id)
        progress = Progress()
        follower = LedgerFollower(
            ledger.path, [progress.rollout_done, lambda row: metrics.observe_rollout(row, endpoints.agent.model)]
        ).start()
        recorder = PromptRecorder(prompts, run_id, out)
        usage = UsageLedger()
        observer = Observers([recorder, progress, MetricsObserver(metrics)])
        algorithm = build_algorithm(settings, prep, endpoints, observer, usage, metrics, run_id)
        rollout_config = RolloutConfig(model=endpoints.agent, task=prep.task, use_calculator=settings.use_calculator)
        caches = open_caches(settings, stack)
        cache = caches.at(out) if caches is not None else None
        if settings.otel_exporter_otlp_endpoint:
            logger.info("rollout spans go through the collector at %s", settings.otel_exporter_otlp_endpoint)
        trainer = lightning_trainer(settings, algorithm=algorithm, seed_prompt=prep.seed_prompt)
        expected = expected_rollouts(settings, prep.splits)["training_rollouts"]
        status = "failed"
        try:
            with ProgressDisplay(progress, expected_rollouts=expected, console=console):
                trainer.fit(
                    make_rollout(rollout_config, ledgers, caches),
                    train_dataset=for_run(prep.splits.train, run_id, ledger),
                    val_dataset=for_run(prep.splits.val, run_id, ledger),
                )
            tested = time.monotonic()
            results = score_on_test(prompts, run_id, prep.splits.test, rollout_config, settings, cache)
            observe_test(metrics, results, endpoints.agent.model)
            summary = build_summary(
                settings, run_id, prep.splits, endpoints, prompts, results, ledger, progress.snapshot(), usage,
                wall_seconds=time.monotonic() - started, test_seconds=time.monotonic() - tested,
                expected_rollouts=expected, examples=algorithm.examples,
                cache=cache,
            )  # fmt: skip
            write_outputs(summary, recorder, prompts, out, ledger.path.parent)
            status = "completed"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            prompts.finish_run(run_id, status)
            logger.info("run %s %s after %.0fs", run_id, status, time.monotonic() - started)
            follower.stop()
            if pusher is not None:  # every value is final now: the last push carries them all
                pusher.shutdown()
            if metrics_server is not None:
                metrics_server.wait_for_final_scrape(settings.metrics_final_scrape_timeout)
    return summary
