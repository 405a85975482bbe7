"""Agent Lightning's trainer, built one way for a training and for scale-out runners.

A training runs the algorithm and (unless RUNNERS=0) its own runner processes; ``apo-trainer runner``
runs runner processes only. Both talk to the same kind of store with the same tracer, so they are
built here from the settings, with the role set explicitly: an ``AGL_CURRENT_ROLE`` left in the
environment cannot change it.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import time
from typing import TYPE_CHECKING, Any

from trainer.agent.template import TEMPLATE_ENGINE
from trainer.config import Settings
from trainer.serving.probes import free_port

if TYPE_CHECKING:
    import agentlightning as agl

logger = logging.getLogger(__name__)

# Seconds runner processes get to stop on their own, and again after SIGINT, before they are
# terminated. Agent Lightning's 10 s each kept a run the store had lost alive 20 s more, its runners
# retrying span exports into a store that no longer knew their rollouts; no rollout still running
# at the end of a run is scored anyway.
RUNNER_STOP_SECONDS = 5.0
# How long an idle runner waits before asking the store for work again. Agent Lightning's 5 s (±0.5)
# idled both runners for 2.5 s on average after every APO batch was enqueued (a batch follows each
# critique and edit); an ask is one small request to the store.
RUNNER_POLL_SECONDS = 0.1
RUNNER_POLL_JITTER = 0.05


def runners_first_strategy(**kwargs: Any) -> agl.ClientServerExecutionStrategy:
    """The local strategy (store server and runners in this training), with the runners stopped
    before the store server they poll.

    Stock stops its store server as soon as the algorithm returns and only then tells the runners
    to stop: almost every training ended with a "dequeue_rollout failed ... Cannot connect" WARNING
    from a runner that polled in between, which reads like a fault. Here a training that finished
    tells the runners first and waits (at most RUNNER_STOP_SECONDS) for their processes to exit.
    After a failure the store stops at once, as before: the run is over, waiting only delays the error.
    """
    import agentlightning as agl

    class RunnersFirst(agl.ClientServerExecutionStrategy):  # type: ignore[misc]  # agl is untyped here
        async def _execute_algorithm(self, algorithm: Any, store: Any, stop_evt: Any) -> None:
            async def then_stop_runners(store: Any, event: Any) -> None:
                await algorithm(store, event)
                event.set()
                await runners_exited(RUNNER_STOP_SECONDS)

            await super()._execute_algorithm(then_stop_runners, store, stop_evt)

    return RunnersFirst(**kwargs)


async def runners_exited(timeout: float) -> bool:
    """Wait until this process has no runner children left (agl names them ``runner-N``)."""
    deadline = time.monotonic() + timeout
    while any(p.name.startswith("runner-") for p in multiprocessing.active_children()):
        if time.monotonic() >= deadline:
            logger.info("runners still busy %.0fs after the end of training: stopping the store anyway", timeout)
            return False
        await asyncio.sleep(RUNNER_POLL_SECONDS)
    return True


def lightning_trainer(settings: Settings, *, algorithm: Any | None, seed_prompt: str | None = None) -> agl.Trainer:
    """The trainer for ``algorithm``, or for runners only when it is None."""
    import agentlightning as agl

    from trainer.telemetry.tracers import runner_tracer

    role = "runner" if algorithm is None else ("both" if settings.runners else "algorithm")
    extra: dict[str, Any] = {}
    if settings.store_url:
        extra["store"] = agl.LightningStoreClient(settings.store_url)
        strategy = agl.ClientServerExecutionStrategy(
            role=role,
            n_runners=max(settings.runners, 1),
            managed_store=False,
            graceful_timeout=RUNNER_STOP_SECONDS,
            terminate_timeout=RUNNER_STOP_SECONDS,
        )
        if role == "algorithm":
            logger.info("RUNNERS=0: rollouts wait in %s for `apo-trainer runner` processes", settings.store_url)
    else:
        strategy = runners_first_strategy(
            role=role,
            n_runners=settings.runners,
            server_host="127.0.0.1",
            server_port=settings.store_port or free_port(),
            graceful_timeout=RUNNER_STOP_SECONDS,
            terminate_timeout=RUNNER_STOP_SECONDS,
        )
    if seed_prompt is not None:
        extra["initial_resources"] = {
            "prompt_template": agl.PromptTemplate(template=seed_prompt, engine=TEMPLATE_ENGINE)
        }
    tracer = runner_tracer(settings.tracing, settings.otel_exporter_otlp_endpoint)
    return agl.Trainer(
        algorithm=algorithm,
        n_runners=max(settings.runners, 1),
        adapter=agl.TraceToMessages(),
        tracer=tracer,
        runner=agl.LitAgentRunner(tracer=tracer, poll_interval=RUNNER_POLL_SECONDS, interval_jitter=RUNNER_POLL_JITTER),
        strategy=strategy,
        **extra,
    )
