"""``python -m trainer.testing serve``: a scripted model for the dataset the settings describe.

So that the whole pipeline can be tried with no model at all::

    python -m trainer.testing serve --port 8000
    OPENAI_BASE_URL=http://127.0.0.1:8000/v1 AGENT_MODEL=scripted python -m trainer train

The agent knows the answers of every task of the settings' splits (and of the dataset file, or of
the first problems generated with the settings' seed, so a training with other split sizes finds
its questions too); the optimizer critiques with a fixed text and edits by small deterministic
rewrites of the prompt it was given. It serves until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from trainer.config import ConfigError, Settings, load_settings
from trainer.data import DatasetError
from trainer.task import Problem
from trainer.testing.behaviours import (
    NO_ANSWER,
    Behaviour,
    ScriptedOptimizer,
    perfect_agent,
    prompt_rewrites,
    route,
    wrong_agent,
)
from trainer.testing.server import MAX_DELAY_S, Reply, ScriptedLLM

logger = logging.getLogger("trainer.testing")

CRITIQUE = (
    "- End with exactly one line of the form 'The answer is <number>'.\n"
    "- Ask for one short calculation per step before the final line."
)
# Generated problems depend only on the seed and their index, so the first ones of a long list
# are those of any shorter run with the same seed.
GENERATED_KEY_SIZE = 1000


def answer_tasks(settings: Settings) -> list[Problem]:
    """Every problem a training with these settings (or other split sizes) may ask about."""
    from trainer.data.problems import generate_problems
    from trainer.task import load_task

    problems: list[Problem] = list(load_task(settings.task).problems(settings))
    if settings.task == "math" and settings.dataset_path is None:
        problems += generate_problems(GENERATED_KEY_SIZE, settings.seed)
    return problems


class _Watched:
    """The agent, counting requests and warning once about a question it does not know."""

    def __init__(self, agent: Behaviour) -> None:
        self._agent = agent
        self._lock = threading.Lock()
        self.requests = 0
        self.unknown = 0

    def __call__(self, request: dict[str, Any]) -> Reply:
        reply = self._agent(request)
        with self._lock:
            self.requests += 1
            unknown = reply.content == NO_ANSWER
            if unknown:
                self.unknown += 1
            first = unknown and self.unknown == 1
        if first:
            logger.warning(
                "a question is not in the answer key (it gets an answer with no number): does the training "
                "use the same DATASET_PATH and SEED as this server?"
            )
        return reply


def serve(args: argparse.Namespace) -> int:
    from rich.console import Console

    from trainer.logs import setup_logging

    console = Console(stderr=True)
    try:
        settings = load_settings()
        setup_logging(settings.log_level, console)
        tasks = answer_tasks(settings)
    except (ConfigError, DatasetError) as exc:
        console.print(f"error: {exc}", highlight=False, markup=False)
        return 2
    agent = _Watched(perfect_agent(tasks) if args.agent == "perfect" else wrong_agent(tasks))
    optimizer = ScriptedOptimizer(CRITIQUE, prompt_rewrites())
    optimizer_models = {settings.effective_gradient_model, settings.effective_edit_model} - {settings.agent_model}
    # Requests for other models are told apart by content (route's detect): a training that names
    # one model for all roles, such as AGENT_MODEL=scripted, works with no more settings here.
    script = route(agent=agent, optimizer=optimizer, optimizer_models=sorted(optimizer_models))
    models = sorted({"scripted", settings.agent_model, *optimizer_models})
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        llm = ScriptedLLM(script, host=args.host, port=args.port, latency=args.latency, models=models)
        llm.start()
    except OSError as exc:
        console.print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror}", highlight=False)
        return 2
    try:
        logger.info(
            "scripted model (%s agent, %d known questions, latency %.2fs) at %s (OpenAI API); stop with Ctrl-C",
            args.agent, len({t["question"] for t in tasks}), llm.latency, llm.base_url,
        )  # fmt: skip
        stop.wait()
    finally:
        llm.stop()
    logger.info(
        "stopped after %d agent requests (%d unknown questions) and %d optimizer calls",
        agent.requests, agent.unknown, len(optimizer.calls),
    )  # fmt: skip
    return 0


def _latency(text: str) -> float:
    value = float(text)
    if not 0 <= value <= MAX_DELAY_S:
        raise argparse.ArgumentTypeError(f"must be between 0 and {MAX_DELAY_S:g} seconds")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer.testing", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    srv = sub.add_parser("serve", help="serve a scripted OpenAI-compatible model until Ctrl-C or SIGTERM")
    srv.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    srv.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one, logged)")
    srv.add_argument("--agent", choices=["perfect", "wrong"], default="perfect", help="how the agent answers")
    srv.add_argument("--latency", type=_latency, default=0.0, help="seconds added to every reply (default 0)")
    srv.set_defaults(func=serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
