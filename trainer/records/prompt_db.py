"""The prompt DB: every prompt version an APO training run produces, in one SQLite file.

APO rewrites the agent's system prompt round after round. Each version, its ancestry, why it was
thrown away and how it scored is kept in the run's output dir, so a run killed halfway can still be
inspected and its best prompt recovered. Its tables are :mod:`trainer.records.schema`.

Durability: WAL journal, ``synchronous=FULL`` and one ``BEGIN IMMEDIATE`` transaction per public
write, so a process killed at any instant leaves either the whole write or none of it. Best-prompt
files are written with :func:`trainer.records.files.atomic_write_text`.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import logging
import math
import sqlite3
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, cast

from trainer.agent.prompt import Change, Prompt
from trainer.records.files import atomic_write_text
from trainer.records.schema import (
    APPLICATION_ID,
    MIGRATIONS,
    PROMPT_COLUMNS,
    RUN_COLUMNS,
    RUN_RECENCY,
    SCHEMA,
    SCHEMA_VERSION,
    EvaluationRecord,
    PromptRecord,
    PromptStatus,
    RunRecord,
    prompt_from_row,
    run_from_row,
)
from trainer.records.sqlite_file import DBError, DurableDB

__all__ = ["BEST_JSON", "BEST_TXT", "VAL_SPLIT", "PromptDB", "PromptDBError", "PromptRecord", "RunRecord"]

logger = logging.getLogger(__name__)

VAL_SPLIT: Final = "val"
BEST_TXT: Final = "best_prompt.txt"
BEST_JSON: Final = "best_prompt.json"


class PromptDBError(DBError):
    """The prompt store cannot be opened, or a lookup/update refers to nothing."""


def _utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _check_finite(score: float) -> float:
    value = float(score)
    if not math.isfinite(value):
        raise ValueError(f"score must be a finite number, got {score!r}")
    return value


class PromptDB(DurableDB):
    """All prompt versions of all runs in one SQLite file (thread-safe)."""

    KIND = "prompt store"
    APPLICATION_ID = APPLICATION_ID
    SCHEMA_VERSION = SCHEMA_VERSION
    SCHEMA = SCHEMA
    MIGRATIONS = MIGRATIONS
    Error = PromptDBError

    def _fetch_prompt(self, conn: sqlite3.Connection, prompt_id: int) -> PromptRecord:
        row = conn.execute(f"SELECT {PROMPT_COLUMNS} FROM prompts WHERE id = ?", (prompt_id,)).fetchone()
        if row is None:
            raise PromptDBError(f"no prompt with id #{prompt_id} in {self._path}")
        return prompt_from_row(row)

    def _require_run(self, conn: sqlite3.Connection, run_id: str) -> None:
        if conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
            raise PromptDBError(f"no run {run_id!r} in {self._path}")

    def _latest_run_id(self, conn: sqlite3.Connection) -> str:
        row = conn.execute(f"SELECT run_id FROM runs r ORDER BY {RUN_RECENCY} LIMIT 1").fetchone()
        if row is None:
            raise PromptDBError(f"no runs recorded in {self._path}")
        return cast(str, row["run_id"])

    # -- runs --------------------------------------------------------------

    def start_run(self, run_id: str, algorithm: str, config: Mapping[str, Any]) -> None:
        """Register a new run (status "running"). Run ids must be unique."""
        if not run_id:
            raise ValueError("run_id must be non-empty")
        # default=str: configs carry Paths/enums; a readable string beats refusing to record the run.
        config_json = json.dumps(dict(config), sort_keys=True, default=str)
        with self._transaction() as conn:
            if conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone():
                raise PromptDBError(f"run {run_id!r} already exists in {self._path}")
            conn.execute(
                f"INSERT INTO runs ({RUN_COLUMNS}) VALUES (?, ?, NULL, ?, ?, 'running')",
                (run_id, _utcnow(), algorithm, config_json),
            )

    def finish_run(self, run_id: str, status: str) -> None:
        """Close a run with a final status such as "completed", "failed", "interrupted"."""
        if not status or status == "running":
            raise ValueError(f"invalid final run status {status!r}")
        with self._transaction() as conn:
            cur = conn.execute(
                "UPDATE runs SET status = ?, finished_at = ? WHERE run_id = ?",
                (status, _utcnow(), run_id),
            )
            if cur.rowcount == 0:
                raise PromptDBError(f"no run {run_id!r} in {self._path}")

    def runs(self) -> builtins.list[RunRecord]:
        """All runs, oldest first."""
        with self._snapshot() as conn:
            rows = conn.execute(f"SELECT {RUN_COLUMNS} FROM runs r ORDER BY started_at, rowid").fetchall()
        return [run_from_row(row) for row in rows]

    # -- prompts: writes ---------------------------------------------------

    def add_prompt(
        self,
        run_id: str,
        label: str,
        template: str,
        *,
        parent_id: int | None,
        round: int,
        status: PromptStatus = "candidate",
        reject_reason: str | None = None,
        prompt: Prompt | None = None,
        change: Change | None = None,
    ) -> int:
        """Store a new prompt version and return its global id. ``template`` is the rendered prompt,
        ``prompt`` its parts (None: the template is the instruction), ``change`` what it changed.

        Only "candidate" or "rejected" (with a reason) are accepted here: a
        "scored" status must come from :meth:`record_evaluation` so that the
        score always has an evaluation row behind it.
        """
        if round < 0:
            raise ValueError(f"round must be >= 0, got {round}")
        if not label:
            raise ValueError("label must be non-empty")
        if status == "rejected":
            if not reject_reason:
                raise ValueError("a rejected prompt needs a reject_reason")
            val_score: float | None = 0.0
        elif status == "candidate":
            if reject_reason is not None:
                raise ValueError("reject_reason is only valid with status='rejected'")
            val_score = None
        else:
            raise ValueError(f"add_prompt accepts status 'candidate' or 'rejected', got {status!r}")
        if prompt is not None and prompt.render() != template:
            raise ValueError(f"prompt {label!r}: its instruction and demonstrations do not render to its template")
        parts = prompt or Prompt(template)
        demos_json = json.dumps([demo.to_json() for demo in parts.demos], ensure_ascii=False)
        now = _utcnow()
        with self._transaction() as conn:
            self._require_run(conn, run_id)
            if parent_id is not None:
                self._fetch_prompt(conn, parent_id)
            if conn.execute("SELECT 1 FROM prompts WHERE run_id = ? AND label = ?", (run_id, label)).fetchone():
                raise PromptDBError(f"run {run_id!r} already has a prompt labelled {label!r}")
            values = (run_id, label, template, parent_id, round, status, reject_reason, val_score, now, now,
                      parts.instruction, demos_json, change)  # fmt: skip
            cur = conn.execute(
                "INSERT INTO prompts (run_id, label, template, parent_id, round, status, reject_reason,"
                " val_score, val_n, created_at, updated_at, is_best, instruction, demos_json, change)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, 0, ?, ?, ?)",
                values,
            )
            prompt_id = cur.lastrowid
        assert prompt_id is not None  # always set after a successful INSERT
        return prompt_id

    def record_evaluation(self, prompt_id: int, split: str, score: float, n: int) -> int:
        """Append one evaluation and return its id.

        For split "val", ``prompts.val_score/val_n`` become the pool of all the
        prompt's val evaluations (mean reward over every rollout, n their sum:
        trainer.apo.scoring says why), and a candidate becomes "scored".
        Rejected prompts keep their 0.0; the evaluation is still recorded for
        the audit trail.
        """
        value = _check_finite(score)
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if not split:
            raise ValueError("split must be non-empty")
        now = _utcnow()
        with self._transaction() as conn:
            prompt = self._fetch_prompt(conn, prompt_id)
            cur = conn.execute(
                "INSERT INTO evaluations (prompt_id, split, score, n, created_at) VALUES (?, ?, ?, ?, ?)",
                (prompt_id, split, value, n, now),
            )
            eval_id = cur.lastrowid
            if split == VAL_SPLIT and prompt.status != "rejected":
                pool = conn.execute(
                    # One evaluation is its own pool (no float round trip through score * n / n).
                    "SELECT CASE WHEN COUNT(*) = 1 THEN MAX(score) ELSE SUM(score * n) / SUM(n) END AS score,"
                    " SUM(n) AS n FROM evaluations"
                    " WHERE prompt_id = ? AND split = ?",
                    (prompt_id, VAL_SPLIT),
                ).fetchone()
                conn.execute(
                    "UPDATE prompts SET val_score = ?, val_n = ?, status = 'scored', updated_at = ? WHERE id = ?",
                    (pool["score"], pool["n"], now, prompt_id),
                )
        assert eval_id is not None
        return eval_id

    def record_unscored(self, prompt_id: int, split: str, planned: int, reason: str) -> None:
        """Keep an evaluation that gave too few answers to be a score: its size and why, no number."""
        if planned < 1 or not reason or not split:
            raise ValueError("an unscored evaluation needs planned >= 1, a split and a reason")
        with self._transaction() as conn:
            self._fetch_prompt(conn, prompt_id)
            conn.execute(
                "INSERT INTO unscored_evaluations (prompt_id, split, planned, reason, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (prompt_id, split, planned, reason, _utcnow()),
            )

    def unscored(self, prompt_id: int) -> builtins.list[tuple[str, int, str]]:
        """The prompt's unscored evaluations: (split, planned rollouts, reason), oldest first."""
        with self._snapshot() as conn:
            rows = conn.execute(
                "SELECT split, planned, reason FROM unscored_evaluations WHERE prompt_id = ? ORDER BY id",
                (prompt_id,),
            ).fetchall()
        return [(row["split"], row["planned"], row["reason"]) for row in rows]

    def reject(self, prompt_id: int, reason: str) -> None:
        """Mark a prompt rejected; it then counts as score 0.0 and cannot be best."""
        if not reason:
            raise ValueError("reason must be non-empty")
        with self._transaction() as conn:
            self._fetch_prompt(conn, prompt_id)
            conn.execute(
                "UPDATE prompts SET status = 'rejected', reject_reason = ?, val_score = 0.0,"
                " val_n = NULL, is_best = 0, updated_at = ? WHERE id = ?",
                (reason, _utcnow(), prompt_id),
            )

    def mark_best(self, run_id: str, prompt_id: int) -> None:
        """Make ``prompt_id`` the one best prompt of ``run_id``, unmarking the previous one."""
        with self._transaction() as conn:
            prompt = self._fetch_prompt(conn, prompt_id)
            if prompt.run_id != run_id:
                raise PromptDBError(f"prompt #{prompt_id} belongs to run {prompt.run_id!r}, not {run_id!r}")
            if prompt.status == "rejected":
                raise PromptDBError(f"prompt #{prompt_id} is rejected and cannot be the best")
            now = _utcnow()
            # Clear first: the partial unique index would refuse a second best.
            conn.execute(
                "UPDATE prompts SET is_best = 0, updated_at = ? WHERE run_id = ? AND is_best = 1 AND id <> ?",
                (now, run_id, prompt_id),
            )
            conn.execute("UPDATE prompts SET is_best = 1, updated_at = ? WHERE id = ?", (now, prompt_id))

    # -- prompts: reads ----------------------------------------------------

    def get(self, ref: str | int) -> PromptRecord:
        """Look a prompt up by global id (``7``, ``"7"``, ``"#7"``), by
        ``"RUN_ID:LABEL"``, or by ``"LABEL"`` in the most recently started run.

        Run ids may contain colons (timestamps), so the label is what follows
        the *last* colon. All-digit references are always ids, not labels.
        """
        if isinstance(ref, bool):
            raise TypeError("prompt reference must be str or int, not bool")
        with self._snapshot() as conn:
            if isinstance(ref, int):
                return self._fetch_prompt(conn, ref)
            text = ref.strip()
            digits = text.removeprefix("#")
            if digits.isdigit():
                return self._fetch_prompt(conn, int(digits))
            if not text:
                raise PromptDBError("empty prompt reference")
            if ":" in text:
                run_id, label = text.rsplit(":", 1)
            else:
                run_id, label = self._latest_run_id(conn), text
            row = conn.execute(
                f"SELECT {PROMPT_COLUMNS} FROM prompts WHERE run_id = ? AND label = ?",
                (run_id, label),
            ).fetchone()
            if row is None:
                raise PromptDBError(f"no prompt labelled {label!r} in run {run_id!r} ({self._path})")
            return prompt_from_row(row)

    def list(self, run_id: str | None = None) -> builtins.list[PromptRecord]:
        """Prompts of one run, or of all runs if ``run_id`` is None, ordered by id."""
        with self._snapshot() as conn:
            if run_id is None:
                rows = conn.execute(f"SELECT {PROMPT_COLUMNS} FROM prompts ORDER BY id").fetchall()
            else:
                rows = conn.execute(
                    f"SELECT {PROMPT_COLUMNS} FROM prompts WHERE run_id = ? ORDER BY id", (run_id,)
                ).fetchall()
        return [prompt_from_row(row) for row in rows]

    def evaluations(self, prompt_id: int) -> builtins.list[EvaluationRecord]:
        """Every evaluation of a prompt, oldest first."""
        with self._snapshot() as conn:
            rows = conn.execute(
                "SELECT id, prompt_id, split, score, n, created_at FROM evaluations WHERE prompt_id = ? ORDER BY id",
                (prompt_id,),
            ).fetchall()
        return [EvaluationRecord(**dict(row)) for row in rows]

    def lineage(self, prompt_id: int) -> builtins.list[PromptRecord]:
        """The chain of ancestors ending at ``prompt_id``, root seed first."""
        with self._snapshot() as conn:
            self._fetch_prompt(conn, prompt_id)
            # Parents always exist before their children and parent_id is never
            # updated, so the chain cannot loop; the depth column just orders it.
            rows = conn.execute(
                f"""
                WITH RECURSIVE chain(pid, depth) AS (
                    SELECT ?, 0
                    UNION ALL
                    SELECT p.parent_id, chain.depth + 1
                    FROM prompts p JOIN chain ON p.id = chain.pid
                    WHERE p.parent_id IS NOT NULL
                )
                SELECT {", ".join("p." + c.strip() for c in PROMPT_COLUMNS.split(","))}
                FROM chain JOIN prompts p ON p.id = chain.pid
                ORDER BY chain.depth DESC
                """,
                (prompt_id,),
            ).fetchall()
        return [prompt_from_row(row) for row in rows]

    def best(self, run_id: str | None = None) -> PromptRecord | None:
        """The best prompt of ``run_id``.

        With ``run_id=None``: the marked best of the most recently started run
        that has one. If no marked best applies, the highest ``val_score`` among
        "scored" prompts of that run (None: of the most recent run with any),
        ties to the lowest id. None if nothing qualifies.
        """
        with self._snapshot() as conn:
            if run_id is not None:
                self._require_run(conn, run_id)
                row = conn.execute(
                    f"SELECT {PROMPT_COLUMNS} FROM prompts WHERE run_id = ? AND is_best = 1", (run_id,)
                ).fetchone()
                if row is None:
                    row = conn.execute(
                        f"SELECT {PROMPT_COLUMNS} FROM prompts WHERE run_id = ? AND status = 'scored'"
                        " ORDER BY val_score DESC, id ASC LIMIT 1",
                        (run_id,),
                    ).fetchone()
            else:
                cols = ", ".join("p." + c.strip() for c in PROMPT_COLUMNS.split(","))
                row = conn.execute(
                    f"SELECT {cols} FROM prompts p JOIN runs r ON r.run_id = p.run_id"
                    f" WHERE p.is_best = 1 ORDER BY {RUN_RECENCY} LIMIT 1"
                ).fetchone()
                if row is None:
                    row = conn.execute(
                        f"SELECT {cols} FROM prompts p JOIN runs r ON r.run_id = p.run_id"
                        f" WHERE p.status = 'scored' ORDER BY {RUN_RECENCY}, p.val_score DESC, p.id ASC"
                        " LIMIT 1"
                    ).fetchone()
        return None if row is None else prompt_from_row(row)

    # -- export ------------------------------------------------------------

    def export_best(self, run_id: str | None, out_dir: Path) -> PromptRecord:
        """Write ``best_prompt.txt`` (the template verbatim: the text to ship) and ``best_prompt.json``
        (its metadata, instruction and demonstrations) into ``out_dir``, each atomically.

        The .txt is written first and the .json carries its SHA-256, so a crash
        between the two files is detectable (hash mismatch) rather than silent.
        """
        # One snapshot so the lineage matches the prompt even if another process writes in between.
        with self._snapshot():
            best = self.best(run_id)
            if best is None:
                where = "any run" if run_id is None else f"run {run_id!r}"
                raise PromptDBError(f"no best prompt in {where} ({self._path})")
            lineage_ids = [p.id for p in self.lineage(best.id)]
        meta: dict[str, Any] = {
            "id": best.id,
            "run_id": best.run_id,
            "label": best.label,
            "round": best.round,
            "parent_id": best.parent_id,
            "val_score": best.val_score,
            "val_n": best.val_n,
            "created_at": best.created_at,
            "exported_at": _utcnow(),
            "lineage_ids": lineage_ids,
            "change": best.change,
            "instruction": best.instruction,
            "demonstrations": [demo.to_json() for demo in best.demos],
            "template_file": BEST_TXT,
            "template_sha256": hashlib.sha256(best.template.encode("utf-8")).hexdigest(),
        }
        meta_text = json.dumps(meta, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / BEST_TXT, best.template)
        atomic_write_text(out_dir / BEST_JSON, meta_text)
        return best
