"""`make bench`: speed and memory figures of the trainer on this machine, printed, never asserted.

Figures:
- rollouts per second with 1, N and more runners (a baseline run: seed prompt on the val split), each
  against the model server's ceiling at that concurrency (the run's requests replayed straight at it);
- median harness overhead per rollout: the runner's attempt time (from the store) minus the time
  spent inside the LLM request (from the rollout ledger);
- wall time of one APO round at the default sizes, candidate guard on and off;
- peak memory (RSS) of the trainer's process tree, and of the embedded model server;
- tracing overhead per rollout: the same baseline run with tracing off, spans straight into the
  store, and spans through the real collector (built binaries) into store and Jaeger; the
  collector's median rollout time over tracing off's, and the rollouts whose spans are not all in
  the store.

Every run is a real ``python -m trainer train`` against the embedded model and a real ``agl store``.
Use ``--quick`` for smaller sizes (a smoke test of this script, not figures to quote).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

from tests.support.env import trainer_env
from trainer.serving.probes import free_port


def clean_env(**extra: str) -> dict[str, str]:
    return trainer_env(LOG_LEVEL="WARNING", **extra)


@contextmanager
def agl_store() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "agl"), "store", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=clean_env(),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url + "/v1/agl/health", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("agl store did not start") from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=15)


class PeakMemory:
    """Samples the RSS of a process tree every 0.2 s; keeps the peak total and per command."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_total = 0
        self.peak_llm = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._stop.wait(0.2):
            total = llm = 0
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            for proc in procs:
                try:
                    rss = proc.memory_info().rss
                    if "llm" in proc.cmdline() and "serve" in proc.cmdline():
                        llm += rss
                    total += rss
                except psutil.Error:
                    continue
            self.peak_total = max(self.peak_total, total)
            self.peak_llm = max(self.peak_llm, llm)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def run_training(args: list[str], out: Path, **env: str) -> tuple[dict[str, Any], PeakMemory, float]:
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainer", "train", "--output", str(out), *args],
        env=clean_env(**env),
        stdout=subprocess.DEVNULL,
        stderr=(out.parent / f"{out.name}.log").open("w"),
    )
    with PeakMemory(proc.pid) as memory:
        code = proc.wait(timeout=3600)
    if code != 0:
        raise RuntimeError(f"training failed ({code}); see {out.parent / (out.name + '.log')}")
    summary = json.loads((out / "summary.json").read_text())
    return summary, memory, time.monotonic() - started


def ledger(out: Path, run_id: str) -> list[dict[str, Any]]:
    path = out / "runs" / run_id / "rollouts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def rollout_rate(rows: list[dict[str, Any]]) -> float:
    start = min(r["finished_at"] - r["wall_seconds"] for r in rows)
    end = max(r["finished_at"] for r in rows)
    return len(rows) / (end - start)


def attempt_seconds(store_url: str, rows: list[dict[str, Any]]) -> dict[str, float]:
    """Each rollout's last attempt, start to end, as the runner reported it to the store."""
    import agentlightning as agl

    async def attempts() -> dict[str, float]:
        client = agl.LightningStoreClient(store_url)
        try:
            durations = {}
            for row in rows:
                tries = await client.query_attempts(row["rollout_id"])
                last = tries[-1]
                if last.end_time is not None:
                    durations[row["rollout_id"]] = last.end_time - last.start_time
            return durations
        finally:
            await client.close()

    return asyncio.run(attempts())


def spans_missing(store_url: str, rows: list[dict[str, Any]]) -> int:
    """Rollouts whose spans are not all in the store (their root span counts the ones before it)."""
    import agentlightning as agl

    from trainer.apo.span_reads import spans_complete

    async def count() -> int:
        client = agl.LightningStoreClient(store_url)
        try:
            spans = [await client.query_spans(row["rollout_id"]) for row in rows]
            return sum(1 for one in spans if not spans_complete([span.model_dump() for span in one]))
        finally:
            await client.close()

    return asyncio.run(count())


def harness_overhead(durations: dict[str, float], rows: list[dict[str, Any]]) -> float:
    """Median of (runner attempt duration, from :func:`attempt_seconds`, - time inside the LLM
    request), in seconds."""
    llm_seconds = {r["rollout_id"]: r["llm_seconds"] for r in rows}
    return statistics.median(durations[r] - llm_seconds[r] for r in durations)


def tracing_overhead(root: Path, store_url: str, size: str) -> dict[str, Any]:
    """Per rollout, with tracing off, into the store, and through the collector, then off again (the
    machine's drift): median wall time, time inside the agent call, and harness overhead. One model
    server for all, warmed by an unreported first pass: a cold server's prompt processing made the
    first mode measured ~25 % slower than the same mode measured last."""
    from tests.support.pipeline import missing_binaries, pipeline
    from trainer.config import EMBEDDED_MODEL_NAME, Settings
    from trainer.serving.embedded_llm import EmbeddedLLMProcess

    figures: dict[str, Any] = {}
    args = ["--algorithm", "baseline", "--val-size", size, "--test-size", "1", "--runners", "1"]

    def train(mode: str, store: str, base_url: str, **env: str) -> list[dict[str, Any]]:
        out = root / f"tracing-{mode}"
        summary, _, _ = run_training([*args, "--store-url", store], out, OPENAI_BASE_URL=base_url,
                                     AGENT_MODEL=EMBEDDED_MODEL_NAME, **env)  # fmt: skip
        return ledger(out, summary["run_id"])

    def measure(mode: str, store: str, base_url: str, **env: str) -> list[dict[str, Any]]:
        rows = train(mode, store, base_url, **env)
        durations = attempt_seconds(store, rows)
        figures[f"tracing_{mode}_median_rollout_seconds"] = round(statistics.median(durations.values()), 3)
        figures[f"tracing_{mode}_median_llm_seconds"] = round(statistics.median(r["llm_seconds"] for r in rows), 3)
        figures[f"tracing_{mode}_median_harness_overhead_seconds"] = round(harness_overhead(durations, rows), 3)
        print(f"tracing {mode}: {figures[f'tracing_{mode}_median_rollout_seconds']} s a rollout", flush=True)
        return rows

    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    with EmbeddedLLMProcess(settings, root / "tracing-llm.log") as llm:
        train("warmup", store_url, llm.base_url, TRACING="off")
        measure("off", store_url, llm.base_url, TRACING="off")
        measure("store", store_url, llm.base_url)
        if missing_binaries():
            print("tracing through the collector: skipped (run `make binaries`)", flush=True)
            return figures
        with pipeline(root / "pipeline-logs") as services:
            otlp = {"OTEL_EXPORTER_OTLP_ENDPOINT": services.otlp_http_url, "OTEL_SERVICE_NAME": "apo-trainer-bench"}
            rows = measure("collector", services.store_url, llm.base_url, **otlp)
            figures["tracing_collector_rollouts_with_spans_missing"] = spans_missing(services.store_url, rows)
        measure("off_again", store_url, llm.base_url, TRACING="off")
    off = (figures["tracing_off_median_rollout_seconds"] + figures["tracing_off_again_median_rollout_seconds"]) / 2
    # The bar: a rollout through the collector at most 3 % slower than one with tracing off.
    figures["tracing_collector_to_off_rollout_seconds"] = round(
        figures["tracing_collector_median_rollout_seconds"] / off, 3
    )
    return figures


def throughput(root: Path, store_url: str, size: str, runner_counts: list[int]) -> dict[str, Any]:
    """Baseline rollouts/s per runner count, each against the server's ceiling at that concurrency:
    the run's own agent requests replayed straight at the same model server (benchmarks/ceiling.py)."""
    from benchmarks.ceiling import agent_requests, replay
    from trainer.config import EMBEDDED_MODEL_NAME, Settings
    from trainer.data.splits import splits_for
    from trainer.math_task import MATH
    from trainer.serving.embedded_llm import EmbeddedLLMProcess

    settings = Settings(_env_file=None, val_size=int(size), test_size=1)  # type: ignore[call-arg]
    splits = splits_for(MATH, settings)
    questions = {p["id"]: p["question"] for p in [*splits.train, *splits.val, *splits.test]}
    figures: dict[str, Any] = {}
    with EmbeddedLLMProcess(settings, root / "throughput-llm.log") as llm:
        for runners in runner_counts:
            out = root / f"throughput-{runners}"
            summary, _, _ = run_training(
                ["--algorithm", "baseline", "--val-size", size, "--test-size", "1", "--runners", str(runners),
                 "--store-url", store_url],
                out, OPENAI_BASE_URL=llm.base_url, AGENT_MODEL=EMBEDDED_MODEL_NAME,
            )  # fmt: skip
            rows = ledger(out, summary["run_id"])
            rate = rollout_rate(rows)
            ceiling = replay(llm.base_url, EMBEDDED_MODEL_NAME, agent_requests(rows, questions), runners,
                             settings.max_reply_tokens)  # fmt: skip
            figures[f"rollouts_per_second_{runners}_runner"] = round(rate, 3)
            figures[f"server_ceiling_per_second_concurrency_{runners}"] = round(ceiling, 3)
            figures[f"rollouts_vs_ceiling_{runners}_runner"] = round(rate / ceiling, 3)
            figures[f"median_llm_seconds_{runners}_runner"] = round(
                statistics.median(r["llm_seconds"] for r in rows), 3
            )
            figures[f"median_harness_overhead_seconds_{runners}_runner"] = round(
                harness_overhead(attempt_seconds(store_url, rows), rows), 3
            )
            print(f"{runners} runner(s): {rate:.3f} rollouts/s, the server alone {ceiling:.3f}/s", flush=True)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: checks the script, not figures")
    parser.add_argument("--runners", type=int, default=2, help="N for the multi-runner figure")
    parser.add_argument("--also-runners", type=int, nargs="*", default=[3, 4], help="more runner counts to measure")
    parser.add_argument(
        "--only", choices=["throughput", "round", "tracing"], action="append", help="run only these sections"
    )
    opts = parser.parse_args()
    sections = set(opts.only or ["throughput", "round", "tracing"])
    size = "8" if opts.quick else "24"
    figures: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1)}
    }
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, agl_store() as store_url:
        root = Path(tmp)
        if "throughput" in sections:
            figures.update(throughput(root, store_url, size, sorted({1, opts.runners, *opts.also_runners})))
        round_args = ["--iterations", "1"] + (
            ["--val-size", "8", "--val-batch-size", "8", "--test-size", "4"] if opts.quick else []
        )
        for guard in ("true", "false") if "round" in sections else []:
            out = root / f"round-guard-{guard}"
            summary, memory, wall = run_training(round_args, out, CANDIDATE_GUARD=guard)
            figures[f"apo_round_seconds_guard_{'on' if guard == 'true' else 'off'}"] = summary["round_seconds"].get("1")
            figures[f"apo_run_rollouts_guard_{'on' if guard == 'true' else 'off'}"] = summary["rollouts"]
            figures[f"apo_run_rejected_guard_{'on' if guard == 'true' else 'off'}"] = summary["candidates_rejected"]
            figures[f"apo_run_wall_seconds_guard_{'on' if guard == 'true' else 'off'}"] = round(wall, 1)
            if guard == "true":
                figures["peak_rss_mb_trainer_tree"] = round(memory.peak_total / 2**20)
                figures["peak_rss_mb_embedded_model"] = round(memory.peak_llm / 2**20)
            print(f"APO round, guard {guard}: {summary['round_seconds'].get('1')} s", flush=True)
        if "tracing" in sections:
            figures.update(tracing_overhead(root, store_url, size))
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
