"""Command line: ``python -m trainer train|runner|eval|prompts|llm|report|store-dashboard``.

Flags override environment variables, which override defaults (see ``trainer/config.py``). Errors a
user can fix (a bad setting, a broken dataset line, an unreachable endpoint) print one clear message
and exit with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from trainer.config import CLI_FLAGS, ConfigError, Settings, load_settings
from trainer.logs import setup_logging

logger = logging.getLogger("trainer")

# (flag, settings field, type, help) for `train`; flag names come from config.CLI_FLAGS.
TRAIN_FLAGS: list[tuple[str, str, Any, str]] = [
    (CLI_FLAGS["iterations"], "iterations", int, "APO rounds"),
    (CLI_FLAGS["algorithm"], "algorithm", str, "apo, or baseline (only evaluates the seed prompt)"),
    (CLI_FLAGS["dataset_path"], "dataset_path", Path, "JSONL dataset; default: generated problems"),
    (CLI_FLAGS["output_dir"], "output_dir", Path, "output directory (prompt DB, best prompt, summary)"),
    (CLI_FLAGS["runners"], "runners", int, "rollout runner processes"),
    (CLI_FLAGS["beam_width"], "beam_width", int, "prompts kept in the beam"),
    (CLI_FLAGS["branch_factor"], "branch_factor", int, "candidates per parent"),
    (CLI_FLAGS["val_batch_size"], "val_batch_size", int, "val tasks per candidate score"),
    (CLI_FLAGS["gradient_batch_size"], "gradient_batch_size", int, "train rollouts per critique"),
    (CLI_FLAGS["train_size"], "train_size", int, "train split size"),
    (CLI_FLAGS["val_size"], "val_size", int, "val split size"),
    (CLI_FLAGS["test_size"], "test_size", int, "test split size"),
    (CLI_FLAGS["seed"], "seed", int, "seed for data, splits and APO sampling"),
    (CLI_FLAGS["store_url"], "store_url", str, "use this running Agent Lightning store"),
    (CLI_FLAGS["seed_prompt_file"], "seed_prompt_file", Path, "file with the prompt to start from"),
    (CLI_FLAGS["log_level"], "log_level", str, "DEBUG, INFO, WARNING or ERROR"),
]


def _settings_from(args: argparse.Namespace, **extra: Any) -> Settings:
    overrides = {field: getattr(args, field, None) for _, field, _, _ in TRAIN_FLAGS}
    overrides.update(extra)
    return load_settings(**overrides)


def cmd_train(args: argparse.Namespace, console: Console) -> int:
    from trainer.training.train import dry_run, train

    settings = _settings_from(args, resume=True if args.resume else None)
    setup_logging(settings.log_level, console)
    if args.dry_run:
        dry_run(settings, console)
        return 0
    train(settings, console)
    return 0


def cmd_runner(args: argparse.Namespace, console: Console) -> int:
    from trainer.training.runner import run_runners

    settings = _settings_from(args)
    setup_logging(settings.log_level, console)
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

    db = settings.output_dir / "prompts.db"
    if not db.exists():
        raise ConfigError(f"--prompt: {ref!r} is neither a file nor a version in {db} (no prompt DB there)")
    with PromptDB(db) as prompts:
        record = prompts.get(ref)
    return record.template, f"prompt #{record.id} ({record.run_id}:{record.label})"


def cmd_eval(args: argparse.Namespace, console: Console) -> int:
    from contextlib import ExitStack

    from trainer.agent.solve import RolloutConfig
    from trainer.agent.template import TemplateError, check_template
    from trainer.data.jsonl import load_jsonl
    from trainer.data.splits import load_splits
    from trainer.serving.endpoints import probe_endpoints, start_endpoints
    from trainer.training.evaluation import evaluate

    settings = _settings_from(args)
    setup_logging(settings.log_level, console)
    template, source = _load_prompt_arg(args.prompt, settings)
    try:
        check_template(template)
    except TemplateError as exc:
        raise ConfigError(f"--prompt {source}: not a valid template: {exc}") from None
    if settings.dataset_path is not None and args.split == "all":
        tasks = load_jsonl(settings.dataset_path)
    else:
        splits = load_splits(
            settings.dataset_path, settings.train_size, settings.val_size, settings.test_size, settings.seed
        )
        tasks = {"train": splits.train, "val": splits.val, "test": splits.test,
                 "all": splits.train + splits.val + splits.test}[args.split]  # fmt: skip
    with ExitStack() as stack:
        endpoints = start_endpoints(settings, stack)
        probe_endpoints(endpoints)
        concurrency = settings.embedded_llm_parallel if settings.uses_embedded_llm else 4
        result = evaluate(template, tasks, RolloutConfig(model=endpoints.agent), concurrency)
    console.print(f"prompt: {source}")
    console.print(f"tasks:  {len(tasks)} ({args.split} split)")
    console.print(f"score:  {result.score}")
    console.print(f"status: {result.status_counts()}")
    if args.json:
        import json

        score = result.score
        payload = {"score": score.value, "correct": score.correct, "n": score.n, "ci95": [score.low, score.high]}
        print(json.dumps({**payload, "statuses": result.status_counts()}))
    return 0


def cmd_prompts(args: argparse.Namespace, console: Console) -> int:
    from rich.table import Table

    from trainer.records.prompt_db import PromptDB

    settings = _settings_from(args)
    db = settings.output_dir / "prompts.db"
    if not db.exists():
        raise ConfigError(f"no prompt DB at {db}: train first, or point --output at a run's directory")
    with PromptDB(db) as prompts:
        if args.action == "list":
            table = Table(title=str(db))
            for col in ("id", "run", "label", "round", "parent", "status", "val score", "n", "best", "prompt"):
                table.add_column(col)
            for p in prompts.list(args.run):
                score = f"{p.val_score:.3f}" if p.val_score is not None else "-"
                preview = " ".join(p.template.split())[:60]
                status = p.status + (f" ({p.reject_reason})" if p.reject_reason else "")
                table.add_row(str(p.id), p.run_id, p.label, str(p.round), str(p.parent_id or "-"), status,
                              score, str(p.val_n or "-"), "*" if p.is_best else "", preview)  # fmt: skip
            console.print(table)
        elif args.action == "show":
            if not args.ref:
                raise ConfigError("prompts show: give a VERSION (id, #id, RUN:LABEL or LABEL)")
            p = prompts.get(args.ref)
            lineage = " -> ".join(f"#{x.id}" for x in prompts.lineage(p.id))
            console.print(f"#{p.id} {p.run_id}:{p.label} round {p.round} status {p.status} "
                          f"score {p.val_score} (n={p.val_n}) best={p.is_best} lineage {lineage}")  # fmt: skip
            if p.reject_reason:
                console.print(f"rejected: {p.reject_reason}")
            print(p.template)
        else:  # export
            target = Path(args.to) if args.to else settings.output_dir
            record = prompts.export_best(args.run, target)
            console.print(f"exported #{record.id} ({record.run_id}:{record.label}) to {target / 'best_prompt.txt'}")
    return 0


def cmd_llm(args: argparse.Namespace, console: Console) -> int:
    import signal
    import threading

    from trainer.serving.embedded_llm import EmbeddedLLM

    settings = load_settings()
    setup_logging(settings.log_level, console)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with EmbeddedLLM(
        host=args.host or settings.embedded_llm_host,
        port=args.port if args.port is not None else (settings.embedded_llm_port or 8080),
        parallel=args.parallel or settings.embedded_llm_parallel,
        ctx=args.ctx or settings.embedded_llm_ctx,
        threads=args.threads or settings.embedded_llm_threads,
        cache_ram_mib=args.cache_ram if args.cache_ram is not None else settings.embedded_llm_cache_ram,
    ) as llm:
        logger.info("serving %s at %s (OpenAI API); stop with Ctrl-C", llm.model_name, llm.base_url)
        stop.wait()
    return 0


def cmd_store_dashboard(args: argparse.Namespace, console: Console) -> int:
    import signal

    from trainer.serving.store_dashboard import ReadOnlyProxy

    settings = _settings_from(args)
    setup_logging(settings.log_level, console)
    if settings.store_url is None:
        raise ConfigError("store-dashboard needs STORE_URL (--store-url): the store whose dashboard it shows")
    try:
        proxy = ReadOnlyProxy(settings.store_url, host=args.host, port=args.port)
    except OSError as exc:
        raise ConfigError(f"store-dashboard: cannot listen on {args.host}:{args.port}: {exc.strerror}") from None

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    logger.info("store dashboard (read-only) at %s for %s", proxy.url, settings.store_url)
    with contextlib.suppress(KeyboardInterrupt):
        proxy.serve_forever()
    return 0


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    from trainer.records.prompt_db import PromptDB
    from trainer.records.report import render_run_report

    settings = _settings_from(args)
    db = settings.output_dir / "prompts.db"
    if not db.exists():
        raise ConfigError(f"no prompt DB at {db}")
    with PromptDB(db) as prompts:
        run_id = args.run or (prompts.runs()[-1].run_id if prompts.runs() else None)
        if run_id is None:
            raise ConfigError(f"{db} holds no runs")
        path = render_run_report(prompts, run_id, settings.output_dir)
    console.print(f"reward curve of run {run_id}: {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def add_common(p: argparse.ArgumentParser, fields: Sequence[str]) -> None:
        for flag, field, kind, help_text in TRAIN_FLAGS:
            if field in fields:
                p.add_argument(flag, dest=field, type=kind, default=None, help=help_text)

    train = sub.add_parser("train", help="optimize the agent's prompt with APO")
    add_common(train, [f for _, f, _, _ in TRAIN_FLAGS])
    train.add_argument("--dry-run", action="store_true", help="check everything, print the plan, do not train")
    train.add_argument("--resume", action="store_true", help="start from the best prompt saved in --output")
    train.set_defaults(func=cmd_train)

    runner = sub.add_parser(
        "runner", help="run rollouts for a training elsewhere (RUNNERS=0) from STORE_URL until stopped"
    )
    add_common(runner, ["store_url", "runners", "output_dir", "log_level"])
    runner.set_defaults(func=cmd_runner)

    ev = sub.add_parser("eval", help="score a prompt (file or saved version) on a dataset")
    ev.add_argument("--prompt", required=True, help="prompt file, or VERSION from the prompt DB")
    ev.add_argument("--split", choices=["train", "val", "test", "all"], default="test")
    ev.add_argument("--json", action="store_true", help="also print the result as JSON")
    add_common(ev, ["dataset_path", "output_dir", "train_size", "val_size", "test_size", "seed", "log_level"])
    ev.set_defaults(func=cmd_eval)

    pr = sub.add_parser("prompts", help="read the prompt DB")
    pr.add_argument("action", choices=["list", "show", "export"])
    pr.add_argument("ref", nargs="?", help="VERSION for show: id, #id, RUN:LABEL or LABEL")
    pr.add_argument("--run", help="restrict to this run id")
    pr.add_argument("--to", help="export directory (default: --output)")
    add_common(pr, ["output_dir"])
    pr.set_defaults(func=cmd_prompts)

    llm = sub.add_parser("llm", help="the embedded model server")
    llm.add_argument("action", choices=["serve"])
    llm.add_argument("--host")
    llm.add_argument("--port", type=int)
    llm.add_argument("--parallel", type=int)
    llm.add_argument("--ctx", type=int)
    llm.add_argument("--threads", type=int)
    llm.add_argument("--cache-ram", type=int, help="MiB for the prompt cache (0 = off)")
    llm.set_defaults(func=cmd_llm)

    dash = sub.add_parser("store-dashboard", help="serve the store's dashboard read-only (GET only)")
    add_common(dash, ["store_url", "log_level"])
    dash.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    dash.add_argument("--port", type=int, default=4747, help="port to listen on (default 4747)")
    dash.set_defaults(func=cmd_store_dashboard)

    rep = sub.add_parser("report", help="redraw a run's reward curve from the prompt DB")
    rep.add_argument("--run", help="run id (default: latest)")
    add_common(rep, ["output_dir"])
    rep.set_defaults(func=cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from trainer.data import DatasetError
    from trainer.records.prompt_db import PromptDBError
    from trainer.serving.probes import LLMError, StoreUnreachable

    args = build_parser().parse_args(argv)
    console = Console(stderr=True)
    try:
        return int(args.func(args, console))
    except (ConfigError, DatasetError, LLMError, StoreUnreachable, PromptDBError) as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        return 2
    except KeyboardInterrupt:
        console.print("interrupted; everything scored so far is in the prompt DB")
        return 130
