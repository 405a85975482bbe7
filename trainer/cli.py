"""Command line: ``python -m trainer train|runner|eval|prompts|llm|report|store|store-dashboard``.

Flags override environment variables, which override defaults (see ``trainer/config.py``); every
settings flag is derived from its field there (type, help text, choices). A command's result goes
to stdout (tables, prompts, scores, ``--json``), everything else (logs, progress, errors) to
stderr, so ``prompts list | grep v3`` and ``eval --json > score.json`` work. Errors a user can fix
(a bad setting, a broken dataset line, an unreachable endpoint) print one clear message and exit
with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import threading
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from rich.console import Console
from rich.markup import escape

from trainer.config import ConfigError, Settings, cli_flag, load_settings
from trainer.logs import setup_logging
from trainer.task import Task, load_task

logger = logging.getLogger("trainer")

# Wide enough that a table piped into grep or a file keeps each row on one line.
PIPE_WIDTH = 240

# The settings each command takes as flags (all of them have a flag declared on their field).
TRAIN_SETTINGS = tuple(name for name in Settings.model_fields if cli_flag(name))
RUNNER_SETTINGS = ("task", "store_url", "runners", "output_dir", "log_level")
EVAL_SETTINGS = ("task", "dataset_path", "output_dir", "train_size", "val_size", "test_size", "seed", "log_level")
LLM_SETTINGS = (
    "embedded_llm_host", "embedded_llm_port", "embedded_llm_parallel", "embedded_llm_ctx",
    "embedded_llm_threads", "embedded_llm_cache_ram", "embedded_llm_cache_prompt", "log_level",
)  # fmt: skip


@dataclass(frozen=True)
class Streams:
    """Where a command writes: ``out`` for its result, ``err`` for everything else."""

    out: Console
    err: Console


def _flag_type(annotation: Any) -> tuple[Any, list[str] | None]:
    """The argparse type (and choices) of a settings field's annotation."""
    if get_origin(annotation) in (types.UnionType, Union):
        annotation = next(arg for arg in get_args(annotation) if arg is not type(None))
    if get_origin(annotation) is Literal:
        return str, [str(choice) for choice in get_args(annotation)]
    if annotation in (int, float, Path):
        return annotation, None
    return str, None


def add_setting_flags(parser: argparse.ArgumentParser, fields: Sequence[str]) -> None:
    """A flag for each of ``fields``, derived from its settings field (name, type, help)."""
    for name in fields:
        field, flag = Settings.model_fields[name], cli_flag(name)
        assert flag is not None, f"setting {name} has no flag"
        help_text = f"{field.description} [{name.upper()}]".replace("%", "%%")  # argparse formats help with %
        if field.annotation is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
            continue
        kind, choices = _flag_type(field.annotation)
        parser.add_argument(flag, dest=name, type=kind, choices=choices, default=None, help=help_text)


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings from the environment, overridden by the settings flags given on the command line."""
    return load_settings(**{k: v for k, v in vars(args).items() if k in Settings.model_fields})


def cmd_train(args: argparse.Namespace, io: Streams) -> int:
    from trainer.records.summary import print_summary
    from trainer.training.train import dry_run, train

    settings = settings_from(args)
    setup_logging(settings.log_level, io.err)
    if args.dry_run:
        plan = dry_run(settings)
        io.err.print("[bold green]dry run OK[/]: settings valid, dataset loaded, LLM answered")
        for key, value in plan.items():
            io.out.print(f"  {key:22} {escape(str(value))}", highlight=False)
        return 0
    summary = train(settings, io.err)
    print_summary(summary, io.out)
    return 0


def cmd_runner(args: argparse.Namespace, io: Streams) -> int:
    from trainer.training.runner import run_runners

    settings = settings_from(args)
    setup_logging(settings.log_level, io.err)
    run_runners(settings)
    return 0


def _load_prompt_arg(ref: str, settings: Settings) -> tuple[str, str]:
    path = Path(ref)
    if path.is_file():
        text = path.read_text(encoding="utf-8").strip()
        if not text:
            raise ConfigError(f"--prompt: {path} is empty")
        return text, str(path)
    from trainer.records.prompt_db import PromptDB

    db = settings.prompt_db_path
    if not db.exists():
        raise ConfigError(f"--prompt: {ref!r} is neither a file nor a version in {db} (no prompt DB there)")
    with PromptDB(db) as prompts:
        record = prompts.get(ref)
    return record.template, f"prompt #{record.id} ({record.run_id}:{record.label})"


def _eval_tasks(task: Task, settings: Settings, split: str | None) -> tuple[list[Any], str]:
    """The problems ``eval`` scores: a dataset file whole unless a split is asked for."""
    from trainer.data.splits import splits_for

    if settings.dataset_path is not None and split in (None, "all"):
        return list(task.problems(settings)), f"all of {settings.dataset_path}"
    split = split or "test"
    splits = splits_for(task, settings)
    by_name = {"train": splits.train, "val": splits.val, "test": splits.test}
    tasks = splits.train + splits.val + splits.test if split == "all" else by_name[split]
    return tasks, f"{split} split"


def cmd_eval(args: argparse.Namespace, io: Streams) -> int:
    from contextlib import ExitStack

    from trainer.agent.solve import RolloutConfig
    from trainer.agent.template import TemplateError, check_template
    from trainer.records.rollout_cache import RolloutCaches
    from trainer.serving.endpoints import probe_endpoints, start_endpoints
    from trainer.training.evaluation import evaluate

    settings = settings_from(args)
    setup_logging(settings.log_level, io.err)
    task = load_task(settings.task)
    template, source = _load_prompt_arg(args.prompt, settings)
    try:
        check_template(template, task.template_fields)
    except TemplateError as exc:
        raise ConfigError(f"--prompt {source}: not a valid template: {exc}") from None
    tasks, what = _eval_tasks(task, settings, args.split)
    with ExitStack() as stack:
        endpoints = start_endpoints(settings, stack)
        probe_endpoints(endpoints)
        config = RolloutConfig(model=endpoints.agent, task=task, use_calculator=settings.use_calculator)
        caches = RolloutCaches(settings.output_dir) if settings.uses_rollout_cache else None
        cache = stack.enter_context(caches.at(settings.output_dir)) if caches is not None else None
        result = evaluate(template, tasks, config, settings.effective_eval_concurrency, cache)
    result.check_answered(f"--prompt {source} on {what}")
    score = result.score
    if args.json:
        payload = {"prompt": source, "tasks": len(tasks), "score": score.value, "correct": score.correct,
                   "n": score.n, "ci95": [score.low, score.high], "statuses": result.status_counts(),
                   "cache_hits": result.cache_hits}  # fmt: skip
        print(json.dumps(payload))
        return 0
    io.out.print(f"prompt: {escape(source)}", highlight=False)
    io.out.print(f"tasks:  {len(tasks)} ({escape(what)})", highlight=False)
    io.out.print(f"score:  {score}", highlight=False)
    io.out.print(f"status: {result.status_counts()}", highlight=False)
    return 0


def _prompt_json(record: Any, lineage: list[int] | None = None) -> dict[str, Any]:
    from dataclasses import asdict

    data = asdict(record)
    if lineage is not None:
        data["lineage_ids"] = lineage
    return data


def _print_parts(record: Any, io: Streams) -> None:
    """The prompt's instruction and each demonstration apart; a prompt without any prints as it is."""
    if not record.demos:
        print(record.template)
        return
    io.out.print(f"changed: {record.change or '-'}; instruction, then {len(record.demos)} demonstrations:",
                 highlight=False)  # fmt: skip
    print(record.instruction)
    for i, demo in enumerate(record.demos, 1):
        io.out.print(f"--- demonstration {i}: problem {escape(demo.problem_id)} ({demo.source})", highlight=False)
        print(f"Question: {demo.question}\nAnswer: {demo.answer}")


def cmd_prompts(args: argparse.Namespace, io: Streams) -> int:
    from rich.table import Table

    from trainer.records.prompt_db import PromptDB

    settings = settings_from(args)
    db = settings.prompt_db_path
    if not db.exists():
        raise ConfigError(f"no prompt DB at {db}: train first, or point --output at a run's directory")
    with PromptDB(db) as prompts:
        if args.action == "list":
            records = prompts.list(args.run)
            if args.json:
                print(json.dumps([_prompt_json(p) for p in records]))
                return 0
            table = Table(title=str(db))
            for col in ("id", "run", "label", "round", "parent", "change", "status", "val score", "n", "best",
                        "demos", "instruction"):  # fmt: skip
                table.add_column(col)
            for p in records:
                score = f"{p.val_score:.3f}" if p.val_score is not None else "-"
                preview = " ".join(p.instruction.split())[:60]
                status = p.status + (f" ({p.reject_reason})" if p.reject_reason else "")
                table.add_row(str(p.id), p.run_id, p.label, str(p.round), str(p.parent_id or "-"), p.change or "-",
                              status, score, str(p.val_n or "-"), "*" if p.is_best else "", str(len(p.demos)),
                              escape(preview))  # fmt: skip
            io.out.print(table)
        elif args.action == "show":
            if not args.ref:
                raise ConfigError("prompts show: give a VERSION (id, #id, RUN:LABEL or LABEL)")
            p = prompts.get(args.ref)
            lineage = [x.id for x in prompts.lineage(p.id)]
            if args.json:
                print(json.dumps(_prompt_json(p, lineage)))
                return 0
            io.out.print(
                f"#{p.id} {p.run_id}:{p.label} round {p.round} status {p.status} score {p.val_score} "
                f"(n={p.val_n}) best={p.is_best} lineage {' -> '.join(f'#{i}' for i in lineage)}",
                highlight=False,
            )
            if p.reject_reason:
                io.out.print(f"rejected: {escape(p.reject_reason)}", highlight=False)
            _print_parts(p, io)
        else:  # export
            target = Path(args.to) if args.to else settings.output_dir
            record = prompts.export_best(args.run, target)
            io.out.print(f"exported #{record.id} ({record.run_id}:{record.label}) to {target / 'best_prompt.txt'}")
    return 0


def cmd_llm(args: argparse.Namespace, io: Streams) -> int:
    from trainer.serving.embedded_llm import EmbeddedLLM

    settings = settings_from(args)
    setup_logging(settings.log_level, io.err)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    served = settings.model_copy(update={"embedded_llm_port": settings.embedded_llm_port or EMBEDDED_SERVE_PORT})
    with EmbeddedLLM.from_settings(served) as llm:
        logger.info("serving %s at %s (OpenAI API); stop with Ctrl-C", llm.model_name, llm.base_url)
        stop.wait()
    return 0


# `llm serve` alone (compose's `llm` service) binds a fixed, documented port when none is set.
EMBEDDED_SERVE_PORT = 8080


def cmd_store_dashboard(args: argparse.Namespace, io: Streams) -> int:
    from trainer.serving.store_dashboard import ReadOnlyProxy

    settings = settings_from(args)
    setup_logging(settings.log_level, io.err)
    if settings.store_url is None:
        raise ConfigError("store-dashboard needs STORE_URL (--store-url): the store whose dashboard it shows")
    try:
        proxy = ReadOnlyProxy(settings.store_url, host=args.host, port=args.port, allowed_hosts=args.allowed_host)
    except OSError as exc:
        raise ConfigError(f"store-dashboard: cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    except ValueError as exc:  # STORE_URL or --allowed-host the proxy cannot use
        raise ConfigError(f"store-dashboard: {exc}") from None

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    served = ", ".join(sorted(f"{name}:{port}" for name, port in proxy.served_hosts))
    logger.info("store dashboard (read-only) at %s for %s; serving Host %s", proxy.url, settings.store_url, served)
    with contextlib.suppress(KeyboardInterrupt):
        proxy.serve_forever()
    return 0


def cmd_store(args: argparse.Namespace, io: Streams) -> int:
    from trainer.serving.store_server import serve, span_budget

    settings = settings_from(args)
    setup_logging(settings.log_level, io.err)
    return serve(args.host, args.port, span_budget(settings.store_span_bytes))


def cmd_report(args: argparse.Namespace, io: Streams) -> int:
    from trainer.records.prompt_db import PromptDB
    from trainer.records.report import render_run_report

    settings = settings_from(args)
    db = settings.prompt_db_path
    if not db.exists():
        raise ConfigError(f"no prompt DB at {db}")
    with PromptDB(db) as prompts:
        runs = prompts.runs()
        run_id = args.run or (runs[-1].run_id if runs else None)
        if run_id is None:
            raise ConfigError(f"{db} holds no runs")
        path = render_run_report(prompts, run_id, settings.output_dir)
    io.out.print(f"reward curve of run {run_id}: {path}", highlight=False)
    return 0


def _subcommand(
    sub: Any, name: str, help_text: str, func: Callable[[argparse.Namespace, Streams], int], fields: Sequence[str]
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text)
    add_setting_flags(parser, fields)
    parser.set_defaults(func=func)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    train = _subcommand(sub, "train", "optimize the agent's prompt with APO", cmd_train, TRAIN_SETTINGS)
    train.add_argument("--dry-run", action="store_true", help="check everything, print the plan, do not train")

    _subcommand(sub, "runner", "run rollouts for a training elsewhere (RUNNERS=0) from STORE_URL until stopped",
                cmd_runner, RUNNER_SETTINGS)  # fmt: skip

    ev = _subcommand(sub, "eval", "score a prompt (file or saved version) on a dataset", cmd_eval, EVAL_SETTINGS)
    ev.add_argument("--prompt", required=True, help="prompt file, or VERSION from the prompt DB")
    ev.add_argument(
        "--split",
        choices=["train", "val", "test", "all"],
        default=None,
        help="score one split of the dataset (default: all of --dataset's file, or the test split)",
    )
    ev.add_argument("--json", action="store_true", help="print the result as one JSON object")

    pr = _subcommand(sub, "prompts", "read the prompt DB", cmd_prompts, ["output_dir"])
    pr.add_argument("action", choices=["list", "show", "export"])
    pr.add_argument("ref", nargs="?", help="VERSION for show: id, #id, RUN:LABEL or LABEL")
    pr.add_argument("--run", help="restrict to this run id")
    pr.add_argument("--to", help="export directory (default: --output)")
    pr.add_argument("--json", action="store_true", help="list/show: print JSON instead of a table")

    llm = _subcommand(sub, "llm", "the embedded model server", cmd_llm, LLM_SETTINGS)
    llm.add_argument("action", choices=["serve"])

    dash = _subcommand(sub, "store-dashboard", "serve the store's dashboard read-only (GET only)",
                       cmd_store_dashboard, ["store_url", "log_level"])  # fmt: skip
    dash.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    dash.add_argument("--port", type=int, default=4747, help="port to listen on (default 4747)")
    dash.add_argument(
        "--allowed-host", action="append", default=[], metavar="HOST[:PORT]",
        help="also serve requests with this Host header (port default: --port), e.g. the host port a container "
        "is published on; localhost, 127.0.0.1 and [::1] with --port are always served, any other Host gets 421",
    )  # fmt: skip

    store = _subcommand(sub, "store", "serve an Agent Lightning store that bounds the spans it keeps", cmd_store,
                        ["store_span_bytes", "log_level"])  # fmt: skip
    store.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    store.add_argument("--port", type=int, default=4747, help="port to listen on (default 4747)")

    rep = _subcommand(sub, "report", "redraw a run's reward curve from the prompt DB", cmd_report, ["output_dir"])
    rep.add_argument("--run", help="run id (default: latest)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from trainer.apo.scoring import RunStopped
    from trainer.data import DatasetError
    from trainer.records.output_lock import OutputLockError
    from trainer.records.sqlite_file import DBError
    from trainer.serving.probes import CollectorUnreachable, LLMError, StoreUnreachable

    args = build_parser().parse_args(argv)
    io = Streams(out=Console(width=None if sys.stdout.isatty() else PIPE_WIDTH), err=Console(stderr=True))
    try:
        return int(args.func(args, io))
    except (
        ConfigError,
        DatasetError,
        LLMError,
        StoreUnreachable,
        CollectorUnreachable,
        DBError,  # the prompt DB or the rollout cache
        OutputLockError,
    ) as exc:
        io.err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        return 2
    except RunStopped as exc:  # a fault outside the prompt: nothing of it became a score
        io.err.print(f"[bold red]stopped:[/] {escape(str(exc))}", highlight=False)
        io.err.print("everything scored before it is in the prompt DB; fix the cause, then train with --resume")
        return 3
    except KeyboardInterrupt:
        io.err.print("interrupted; everything scored so far is in the prompt DB")
        return 130
