"""Rollout runners without a training: ``apo-trainer runner``, for scaling rollouts out.

Rollouts are the expensive part of APO. A training started with ``RUNNERS=0`` only runs the
algorithm: it enqueues rollouts in the store at STORE_URL and waits for them. Any number of
``apo-trainer runner`` processes (containers, machines) pointed at that store take them, run the
agent against the agent model and report the reward and spans, exactly as the training's own runner
processes would. A runner serves whichever training enqueues work and lives until it is stopped
(SIGTERM or Ctrl-C: it stops taking work and exits 0).

Each rollout is also appended to the ledger of the run that enqueued it (``OUTPUT_DIR/runs/<run
id>/rollouts.jsonl``, the run id travels with the task): with OUTPUT_DIR shared with the training (a
volume), the training's summary and metrics count these rollouts too.
"""

from __future__ import annotations

import logging
import signal
from contextlib import ExitStack
from types import FrameType

from trainer.agent.solve import RolloutConfig
from trainer.config import ConfigError, Settings
from trainer.records.ledger import RunLedgers
from trainer.records.rollout_cache import RolloutCaches
from trainer.serving.endpoints import start_endpoints
from trainer.serving.probes import check_store, probe_chat
from trainer.task import load_task

logger = logging.getLogger(__name__)


def check_runner_settings(settings: Settings) -> str:
    """The store URL a runner works against; raises ConfigError naming the setting otherwise."""
    if settings.store_url is None:
        raise ConfigError(
            "apo-trainer runner needs STORE_URL (--store-url): the Agent Lightning store of the training "
            "whose rollouts it runs (a training started with RUNNERS=0 and the same STORE_URL)"
        )
    if settings.runners < 1:
        raise ConfigError("RUNNERS (--runners) must be 1 or more for `apo-trainer runner`: its runner processes")
    return settings.store_url


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # Docker stops a container with SIGTERM; Agent Lightning unwinds its runners on KeyboardInterrupt.
    raise KeyboardInterrupt


def run_runners(settings: Settings) -> None:
    """Run RUNNERS runner processes against STORE_URL until interrupted."""
    store_url = check_runner_settings(settings)
    check_store(store_url)
    import agentlightning  # noqa: F401  (first, so that quiet_libraries() comes after litellm's logging setup)

    from trainer.logs import quiet_libraries
    from trainer.training.lightning import lightning_trainer
    from trainer.training.rollout import make_rollout

    quiet_libraries()  # litellm, imported with Agent Lightning, resets its loggers
    with ExitStack() as stack:
        endpoints = start_endpoints(settings, stack)
        probe_chat(endpoints.agent.base_url, endpoints.agent.model, endpoints.agent.api_key)
        agent = make_rollout(
            RolloutConfig(model=endpoints.agent, task=load_task(settings.task), use_calculator=settings.use_calculator),
            RunLedgers(settings.output_dir / "runs"),
            RolloutCaches(settings.output_dir) if settings.uses_rollout_cache else None,
        )
        trainer = lightning_trainer(settings, algorithm=None)
        collector = settings.otel_exporter_otlp_endpoint
        spans = "to the store" if collector is None else f"via the collector at {collector}"
        logger.info(
            "%d runner(s) taking rollouts from %s; agent %s at %s; spans %s",
            settings.runners, store_url, endpoints.agent.model, endpoints.agent.base_url,
            "off" if settings.tracing == "off" else spans,
        )  # fmt: skip
        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            trainer.fit(agent)
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
        logger.info("runners stopped")
