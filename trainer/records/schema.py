"""The prompt DB's schema: its SQL (the one description of its tables) and the rows it returns.

``PRAGMA user_version`` is :data:`SCHEMA_VERSION` and ``PRAGMA application_id`` is
:data:`APPLICATION_ID`. CHECK constraints enforce the invariants: a candidate has no val score, a
scored prompt has one, a rejected prompt has a reason, ``val_score = 0.0``, ``val_n IS NULL`` and is
never the best.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any, Final, Literal, cast

from trainer.agent.prompt import Demo, Prompt

SCHEMA_VERSION: Final = 3
# "APO1": lets us tell our own file apart from some other SQLite database that
# happens to sit at the same path (both would otherwise have user_version 0).
APPLICATION_ID: Final = 0x41504F31

PromptStatus = Literal["candidate", "scored", "rejected"]

SCHEMA: Final = f"""
CREATE TABLE runs (
    run_id      TEXT PRIMARY KEY NOT NULL,
    started_at  TEXT NOT NULL,        -- ISO-8601 UTC
    finished_at TEXT,                 -- NULL while the run is going (or died)
    algorithm   TEXT NOT NULL,        -- e.g. "apo"
    config_json TEXT NOT NULL,        -- the run's settings, JSON, secrets masked
    status      TEXT NOT NULL         -- "running", then "completed", "failed" or "interrupted"
);

CREATE TABLE prompts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,        -- global id, never reused
    run_id        TEXT NOT NULL REFERENCES runs(run_id),
    label         TEXT NOT NULL,                            -- APO's version label ("v0", "v3")
    template      TEXT NOT NULL,                            -- the prompt text, verbatim
    parent_id     INTEGER REFERENCES prompts(id),           -- NULL for seeds
    round         INTEGER NOT NULL CHECK (round >= 0),      -- 0 = seed
    status        TEXT NOT NULL CHECK (status IN ('candidate', 'scored', 'rejected')),
    reject_reason TEXT,                                     -- set iff rejected, e.g. "duplicate"
    val_score     REAL,                                     -- pooled val evaluations, 0.0 if rejected
    val_n         INTEGER CHECK (val_n IS NULL OR val_n >= 1),  -- val rollouts val_score pools
    created_at    TEXT NOT NULL,                            -- ISO-8601 UTC
    updated_at    TEXT NOT NULL,
    is_best       INTEGER NOT NULL DEFAULT 0 CHECK (is_best IN (0, 1)),
    instruction   TEXT,                                     -- the instruction part (NULL: all of template)
    demos_json    TEXT NOT NULL DEFAULT '[]',               -- its demonstrations, JSON, in order
    change        TEXT,                                     -- vs its parent: seed, instruction, examples, both
    UNIQUE (run_id, label),
    CHECK (status <> 'candidate'
           OR (val_score IS NULL AND val_n IS NULL AND reject_reason IS NULL)),
    CHECK (status <> 'scored'
           OR (val_score IS NOT NULL AND val_n IS NOT NULL AND reject_reason IS NULL)),
    CHECK (status <> 'rejected'
           OR (reject_reason IS NOT NULL AND val_score = 0.0 AND val_n IS NULL AND is_best = 0))
);

-- At most one best prompt per run.
CREATE UNIQUE INDEX prompts_one_best_per_run ON prompts(run_id) WHERE is_best = 1;
CREATE INDEX prompts_parent ON prompts(parent_id);

CREATE TABLE evaluations (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    prompt_id  INTEGER NOT NULL REFERENCES prompts(id),
    split      TEXT NOT NULL,                    -- "val" feeds prompts.val_score, others are only kept
    score      REAL NOT NULL,
    n          INTEGER NOT NULL CHECK (n >= 1),  -- rollouts (data points) the score is over
    created_at TEXT NOT NULL
);

CREATE INDEX evaluations_prompt ON evaluations(prompt_id, split);

-- Evaluations where fewer than half the rollouts gave an answer: kept with why, never a score.
CREATE TABLE unscored_evaluations (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    prompt_id  INTEGER NOT NULL REFERENCES prompts(id),
    split      TEXT NOT NULL,
    planned    INTEGER NOT NULL CHECK (planned >= 1),  -- rollouts asked for
    reason     TEXT NOT NULL,                          -- why it is no score (faults, unfinished)
    created_at TEXT NOT NULL
);

PRAGMA application_id = {APPLICATION_ID};
PRAGMA user_version = {SCHEMA_VERSION};
"""

# Version 1 had no unscored evaluations (and kept the largest evaluation as val_score, not the pool);
# version 2 had no demonstrations (a prompt was its instruction).
_UNSCORED_AT: Final = SCHEMA.index("CREATE TABLE unscored_evaluations")
MIGRATIONS: Final = {
    1: SCHEMA[_UNSCORED_AT : SCHEMA.index(");", _UNSCORED_AT) + 2],
    2: "ALTER TABLE prompts ADD COLUMN instruction TEXT;"
    " ALTER TABLE prompts ADD COLUMN demos_json TEXT NOT NULL DEFAULT '[]';"
    " ALTER TABLE prompts ADD COLUMN change TEXT;",
}

PROMPT_COLUMNS: Final = (
    "id, run_id, label, template, parent_id, round, status, reject_reason, "
    "val_score, val_n, created_at, updated_at, is_best, instruction, demos_json, change"
)
RUN_COLUMNS: Final = "run_id, started_at, finished_at, algorithm, config_json, status"
# Ties between runs started in the same microsecond fall back to insertion order.
RUN_RECENCY: Final = "r.started_at DESC, r.rowid DESC"


@dataclass(frozen=True, slots=True)
class RunRecord:
    run_id: str
    started_at: str
    finished_at: str | None
    algorithm: str
    config_json: str
    status: str

    @property
    def config(self) -> dict[str, Any]:
        return cast(dict[str, Any], json.loads(self.config_json))


@dataclass(frozen=True, slots=True)
class PromptRecord:
    id: int
    run_id: str
    label: str
    template: str
    parent_id: int | None
    round: int
    status: PromptStatus
    reject_reason: str | None
    val_score: float | None
    val_n: int | None
    created_at: str
    updated_at: str
    is_best: bool
    instruction: str
    demos: tuple[Demo, ...]
    change: str | None

    @property
    def prompt(self) -> Prompt:
        return Prompt(self.instruction, self.demos)


@dataclass(frozen=True, slots=True)
class EvaluationRecord:
    id: int
    prompt_id: int
    split: str
    score: float
    n: int
    created_at: str


def prompt_from_row(row: sqlite3.Row) -> PromptRecord:
    return PromptRecord(
        id=row["id"],
        run_id=row["run_id"],
        label=row["label"],
        template=row["template"],
        parent_id=row["parent_id"],
        round=row["round"],
        status=row["status"],
        reject_reason=row["reject_reason"],
        val_score=row["val_score"],
        val_n=row["val_n"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        is_best=bool(row["is_best"]),
        instruction=row["template"] if row["instruction"] is None else row["instruction"],
        demos=_demos(row),
        change=row["change"],
    )


def _demos(row: sqlite3.Row) -> tuple[Demo, ...]:
    try:
        return tuple(Demo.from_json(item) for item in json.loads(row["demos_json"]))
    except (ValueError, TypeError, AttributeError) as exc:
        raise ValueError(f"prompt #{row['id']} has unreadable demonstrations: {exc}") from None


def run_from_row(row: sqlite3.Row) -> RunRecord:
    return RunRecord(
        run_id=row["run_id"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        algorithm=row["algorithm"],
        config_json=row["config_json"],
        status=row["status"],
    )
