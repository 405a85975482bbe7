"""Our default training beside stock Agent Lightning APO: same server, same data, same sizes.

``python -m benchmarks.versus_stock`` (part of ``make bench``) starts one embedded model server and
runs, one after the other against it:

- ours: ``python -m trainer train`` with its defaults at the issue's sizes (40/20/30 problems, beam
  2 x 2, 2 rounds, val batch 10, gradient batch 4);
- stock: ``benchmarks/stock_apo.py`` (APO as ``examples/apo`` wires it, ``n_runners=2``) at the same sizes.

Then it replays our run's agent requests straight at the server (benchmarks/ceiling.py) at our
runner concurrency: the rollouts/s the server alone would give. Printed: wall time, agent and
optimizer LLM calls, rollouts/s, rollouts/s against that ceiling, cache hits, and each ratio
ours/stock. Figures, never assertions; one run on a noisy machine. ``--quick``: tiny sizes (checks
the script, not figures to quote); ``--skip-stock``: ours and the ceiling only; ``--keep DIR``: both
runs' output directories and logs stay in DIR (else a temporary directory that goes afterwards; a
failed run's log tail is printed either way); ``--stock-timeout S``: stock's run is stopped after S
seconds (its whole process group, runners included) and reported unfinished, with the agent calls it
had answered; the ratios then become upper bounds (``ratio_ours_to_stock_at_most``).

Stock scores no test split, ours scores seed and best on it after training: ``training_wall_seconds``
(ours without that part) is the time that compares with stock's, and rates are per training second.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import AbstractContextManager, nullcontext, suppress
from pathlib import Path
from typing import Any

from benchmarks.ceiling import agent_requests, replay
from benchmarks.stock_apo import CALLS_LOG
from tests.support.env import trainer_env
from trainer.config import EMBEDDED_MODEL_NAME, Settings
from trainer.data.splits import splits_for
from trainer.math_task import MATH
from trainer.serving.embedded_llm import EmbeddedLLMProcess

SIZES = {"train": 40, "val": 20, "test": 30}
QUICK = {"train": 8, "val": 6, "test": 4}
# Lines of a failed run's log printed before the benchmark gives up on it.
LOG_TAIL_LINES = 40
# Stock's runaway candidates (an uncapped edit writing a prompt that fills the server's context)
# have held one run for over an hour; past this it is reported unfinished.
STOCK_TIMEOUT_SECONDS = 3600.0
STOP_GRACE_SECONDS = 15.0
SEARCH = ["--beam-width", "2", "--branch-factor", "2", "--gradient-batch-size", "4"]
VAL_BATCH = 10  # the issue's; --quick's val split is smaller, and a batch larger than its split is refused


def run_ours(out: Path, base_url: str, sizes: dict[str, int], rounds: int) -> dict[str, Any]:
    args = [
        sys.executable, "-m", "trainer", "train", "--output", str(out), "--iterations", str(rounds), *SEARCH,
        "--val-batch-size", str(min(VAL_BATCH, sizes["val"])),
        *(f for split, n in sizes.items() for f in (f"--{split}-size", str(n))),
    ]  # fmt: skip
    env = trainer_env(OPENAI_BASE_URL=base_url, AGENT_MODEL=EMBEDDED_MODEL_NAME, LOG_LEVEL="WARNING")
    started = time.monotonic()
    with (out.parent / "ours.log").open("w") as log:
        code = subprocess.run(args, env=env, stdout=subprocess.DEVNULL, stderr=log, timeout=7200).returncode
    wall = time.monotonic() - started
    if code != 0:
        raise RuntimeError(failed("our training", code, out.parent / "ours.log"))
    summary = json.loads((out / "summary.json").read_text())
    rows = [json.loads(x) for x in (out / "runs" / summary["run_id"] / "rollouts.jsonl").read_text().splitlines()]
    calls = sum(1 for r in rows if not r.get("cache_hit") and r["status"] != "bad_template")
    return {
        "wall_seconds": round(wall, 1),
        # Stock has no test split: what compares with its wall time is ours without it.
        "test_seconds": summary["test_seconds"],
        "training_wall_seconds": round(wall - summary["test_seconds"], 1),
        "training_rollouts": len(rows),
        "agent_calls": calls,
        "test_agent_calls": summary["cache"]["agent_calls"] - calls,
        "cache_hits": summary["cache"]["training_hits"],
        "optimizer_calls": sum(v["calls"] for v in summary["tokens"]["optimizer"].values()),
        "optimizer_seconds": round(sum(v["seconds"] for v in summary["tokens"]["optimizer"].values()), 1),
        "round_seconds": summary["round_seconds"],
        "best_val_score": summary["best_val_score"],
        "seed_test_score": summary["seed_test_score"],
        "best_test_score": summary["best_test_score"],
        "rows": rows,
    }


def run_stock(out: Path, base_url: str, sizes: dict[str, int], rounds: int, timeout: float) -> dict[str, Any]:
    args = [
        sys.executable, "-m", "benchmarks.stock_apo", "--base-url", base_url, "--model", EMBEDDED_MODEL_NAME,
        "--out", str(out), "--rounds", str(rounds),
        *(f for split, n in sizes.items() for f in (f"--{split}-size", str(n))),
    ]  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    env = trainer_env(PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    with (out.parent / "stock.log").open("w") as log:
        # cwd: the AgentOps tracer writes agentops.log into the working directory. A session of its
        # own: on timeout the runner processes go with it.
        proc = subprocess.Popen(args, env=env, cwd=out, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_group(proc)
            answered = sum(1 for line in (out / CALLS_LOG).read_text().splitlines() if line.strip())
            return {"finished": False, "stopped_after_seconds": timeout, "agent_calls_answered": answered}
    if code != 0:
        raise RuntimeError(failed("stock APO", code, out.parent / "stock.log"))
    result: dict[str, Any] = json.loads((out / "stock.json").read_text())
    result["finished"] = True
    result["training_rollouts"] = result["agent_calls"]  # one call per rollout
    result["training_wall_seconds"] = result["wall_seconds"]  # stock scores no test split
    return result


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group ``proc`` leads, SIGKILL to it if still there after a grace period."""
    os.killpg(proc.pid, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=STOP_GRACE_SECONDS)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the leader may be gone while its runners are not
    except ProcessLookupError:
        return
    proc.wait()


def failed(what: str, code: int, log: Path) -> str:
    """Why a run failed, with its log's tail: the log may live in a directory about to go."""
    tail = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
    return f"{what} exited {code}; last {len(tail)} lines of {log}:\n" + "\n".join(tail)


def workdir(keep: Path | None) -> AbstractContextManager[str]:
    if keep is None:
        return tempfile.TemporaryDirectory(prefix="bench-stock-")
    keep.mkdir(parents=True, exist_ok=True)
    if any(keep.iterdir()):  # an earlier run's output dir would make ours a continuation
        raise SystemExit(f"--keep {keep}: the directory is not empty")
    return nullcontext(str(keep))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script, not figures")
    parser.add_argument("--skip-stock", action="store_true", help="ours and the server's ceiling only")
    parser.add_argument("--keep", type=Path, help="keep both runs' directories and logs here")
    parser.add_argument("--stock-timeout", type=float, default=STOCK_TIMEOUT_SECONDS, metavar="S",
                        help="stop stock after S seconds and report it unfinished (default %(default)g)")  # fmt: skip
    opts = parser.parse_args()
    sizes, rounds = (QUICK, 1) if opts.quick else (SIZES, 2)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    splits = splits_for(MATH, Settings(_env_file=None, **{f"{k}_size": v for k, v in sizes.items()}))  # type: ignore[call-arg]
    questions = {p["id"]: p["question"] for p in [*splits.train, *splits.val, *splits.test]}
    figures: dict[str, Any] = {"sizes": sizes, "rounds": rounds, "runners": settings.runners}
    with workdir(opts.keep) as tmp:
        root = Path(tmp)
        with EmbeddedLLMProcess(settings, root / "llm.log") as llm:
            ours = run_ours(root / "ours", llm.base_url, sizes, rounds)
            requests = agent_requests(ours.pop("rows"), questions)[:80]
            ceiling = replay(llm.base_url, EMBEDDED_MODEL_NAME, requests, settings.runners, settings.max_reply_tokens)
            figures["server_ceiling_rollouts_per_second"] = round(ceiling, 3)
            figures["ours"] = ours
            print(f"ours: {json.dumps(ours)}\nceiling at concurrency {settings.runners}: {ceiling:.3f}/s", flush=True)
            if not opts.skip_stock:
                figures["stock"] = run_stock(root / "stock", llm.base_url, sizes, rounds, opts.stock_timeout)
                figures["stock"].pop("best_prompt", None)
                print(f"stock: {json.dumps(figures['stock'])}", flush=True)
    for name in ("ours", "stock"):
        run = figures.get(name)
        if run is not None and run.get("finished", True):
            run["rollouts_per_second"] = round(run["training_rollouts"] / run["training_wall_seconds"], 3)
            # Cache hits ask no server: against the server's ceiling, only agent calls count.
            run["agent_calls_per_second"] = round(run["agent_calls"] / run["training_wall_seconds"], 3)
            run["agent_calls_per_second_vs_ceiling"] = round(run["agent_calls_per_second"] / ceiling, 3)
    stock = figures.get("stock")
    if stock is not None and stock["finished"]:
        keys = ("wall_seconds", "training_wall_seconds", "agent_calls", "optimizer_calls", "rollouts_per_second")
        figures["ratio_ours_to_stock"] = {
            key: round(figures["ours"][key] / stock[key], 3) for key in keys if stock.get(key)
        }
    elif stock is not None:
        # Stock would have taken longer and made more calls than it had when stopped.
        ours, answered = figures["ours"], stock["agent_calls_answered"]
        bounds = {"training_wall_seconds": round(ours["training_wall_seconds"] / stock["stopped_after_seconds"], 3)}
        if answered:  # none answered bounds nothing
            bounds["agent_calls"] = round(ours["agent_calls"] / answered, 3)
        figures["ratio_ours_to_stock_at_most"] = bounds
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
