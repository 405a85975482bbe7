"""The rollout result cache: one agent call per (prompt, task, agent model, reply settings).

At TEMPERATURE 0 the same system prompt and question, sent to the same model with the same reply
settings, is the same experiment: running it again buys only a second opinion from llama.cpp's
non-repeatable parallel slots, and two different scores for one prompt. So the first outcome of a
pair that is a data point (the endpoint answered) is kept in ``OUTPUT_DIR/rollout_cache.db``, and
every later evaluation of the pair (another val batch, a beam leader's full-set score, ``--resume``,
the test split, ``eval``) reuses it. The rollout itself still happens: it is in the store, the
ledger and the traces, marked ``cache_hit``, and only the model call is skipped.

An endpoint fault or a timeout is never cached (it says nothing about the prompt). The key covers
everything that decides the reply and its grade: the rendered template, the task kind, the problem
(question, answer, every other field the dataset gave), the agent model's name, temperature, reply
cap and tools. Above temperature 0 outcomes are samples, and the cache is off.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Final

from trainer.agent.solve import RolloutConfig, RolloutOutcome, solve
from trainer.records.ledger import RunLedgers
from trainer.records.sqlite_file import DBError, DurableDB
from trainer.task import Problem

CACHE_FILE: Final = "rollout_cache.db"
# Bumped when the key's recipe changes: old entries then simply stop matching.
KEY_VERSION: Final = 1
# Stamped on tasks by the training: they decide which run a rollout belongs to, not what it asks.
_RUN_FIELDS: Final = frozenset({"run_id", "run_dir"})
# What a hit copies from the first outcome: the answer and its grade, never where or when it ran.
_KEPT: Final = ("reward", "status", "reason", "system_prompt", "reply", "extracted", "expected")


class RolloutCacheError(DBError):
    """The cache file cannot be used (not ours, newer, unreadable)."""


class RolloutCache(DurableDB):
    """Outcomes by key, first writer wins; see the module docstring."""

    KIND = "rollout cache"
    APPLICATION_ID = 0x41504F43  # "APOC"
    SCHEMA_VERSION = 1
    SCHEMA = f"""
CREATE TABLE outcomes (
    key         TEXT PRIMARY KEY NOT NULL,  -- sha256 of the pair (cache_key)
    task_id     TEXT NOT NULL,
    outcome     TEXT NOT NULL,              -- JSON: the fields in _KEPT, tokens, first rollout and trace
    created_at  REAL NOT NULL               -- unix time of the first evaluation
);
PRAGMA application_id = {APPLICATION_ID};
PRAGMA user_version = 1
"""
    Error = RolloutCacheError

    def get(self, key: str) -> RolloutOutcome | None:
        """The recorded outcome of ``key`` as a new rollout's outcome (a hit), or None."""
        with self._snapshot() as conn:
            row = conn.execute("SELECT task_id, outcome FROM outcomes WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        first: dict[str, Any] = json.loads(row["outcome"])
        outcome = RolloutOutcome(task_id=row["task_id"], **{k: first[k] for k in _KEPT})
        outcome.cache_hit = True
        outcome.cached_from = first.get("rollout_id")
        return outcome

    def put(self, key: str, outcome: RolloutOutcome) -> None:
        """Keep ``outcome`` for ``key`` unless it is a fault or the key already has one."""
        if outcome.is_fault:
            return
        record = {k: getattr(outcome, k) for k in _KEPT}
        record.update(
            input_tokens=outcome.input_tokens, output_tokens=outcome.output_tokens, llm_seconds=outcome.llm_seconds,
            rollout_id=outcome.rollout_id, trace_id=outcome.trace_id,
        )  # fmt: skip
        with self._transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO outcomes (key, task_id, outcome, created_at) VALUES (?, ?, ?, ?)",
                (key, outcome.task_id, json.dumps(record, ensure_ascii=False), time.time()),
            )

    def count(self) -> int:
        with self._snapshot() as conn:
            return int(conn.execute("SELECT count(*) FROM outcomes").fetchone()[0])


def cache_key(template: str, problem: Problem, config: RolloutConfig) -> str:
    """The pair's key: everything that decides the agent's reply and its grade."""
    spec = config.model
    payload = {
        "v": KEY_VERSION,
        "template": template,
        "task": config.task.name,
        "problem": {k: v for k, v in problem.items() if k not in _RUN_FIELDS},
        "model": spec.model,
        "temperature": spec.temperature,
        "max_tokens": spec.max_tokens,
        "calculator": config.use_calculator,
    }
    encoded = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(encoded.encode("utf-8", "surrogatepass")).hexdigest()


async def solve_cached(
    problem: Problem,
    template: str,
    config: RolloutConfig,
    cache: RolloutCache | None,
    *,
    rollout_id: str | None = None,
    trace_id: str | None = None,
) -> RolloutOutcome:
    """``solve``, or the pair's recorded outcome when ``cache`` has it (a fresh data point is kept,
    with the ids of the rollout and trace that produced it: a hit names them)."""
    if cache is None:
        return await solve(problem, template, config)
    started = time.monotonic()
    key = cache_key(template, problem, config)
    # SQLite reads and fsynced writes stay off the event loop the agent's HTTP calls run on.
    hit = await asyncio.to_thread(cache.get, key)
    if hit is not None:
        hit.wall_seconds = time.monotonic() - started
        return hit
    outcome = await solve(problem, template, config)
    outcome.rollout_id, outcome.trace_id = rollout_id, trace_id
    await asyncio.to_thread(cache.put, key, outcome)
    return outcome


class RolloutCaches:
    """The cache of the output dir a task's run lives in, opened once per process.

    A runner serves whichever training enqueued the task: the run directory stamped on the task
    (``OUTPUT_DIR/runs/<run id>``) names that training's output dir, as for the ledger; a task
    without one uses ``default_dir``.
    """

    def __init__(self, default_dir: Path) -> None:
        self.default_dir = default_dir
        self._open: dict[Path, RolloutCache] = {}
        self._pid = os.getpid()

    def at(self, output_dir: Path) -> RolloutCache:
        if os.getpid() != self._pid:
            # A forked runner process: SQLite connections must not cross a fork, so it opens its own
            # (the parent's stay untouched, theirs to close).
            self._open, self._pid = {}, os.getpid()
        path = (output_dir / CACHE_FILE).resolve()
        cache = self._open.get(path)
        if cache is None:
            cache = self._open[path] = RolloutCache(path)
        return cache

    def for_task(self, task: Problem) -> RolloutCache:
        run_dir = RunLedgers.stamped_run_dir(task)
        return self.at(run_dir.parent.parent if run_dir is not None else self.default_dir)

    def close(self) -> None:
        for cache in self._open.values():
            cache.close()
        self._open.clear()
