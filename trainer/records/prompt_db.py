"""Durable store for every prompt version an APO training run produces.

APO (Agent Lightning's automatic prompt optimisation) rewrites the math agent's
system prompt round after round. Each version, its ancestry, why it was thrown
away and how it scored is kept in one SQLite file in the run's output dir, so a
run killed halfway can still be inspected and its best prompt recovered.

Schema (``PRAGMA user_version`` = :data:`SCHEMA_VERSION`, ``PRAGMA
application_id`` = :data:`APPLICATION_ID`)::

    runs
        run_id       TEXT PRIMARY KEY
        started_at   TEXT NOT NULL      ISO-8601 UTC
        finished_at  TEXT               NULL while the run is going (or died)
        algorithm    TEXT NOT NULL      e.g. "apo"
        config_json  TEXT NOT NULL      the run's config, JSON
        status       TEXT NOT NULL      "running", then e.g. "completed" / "failed" / "interrupted"

    prompts
        id            INTEGER PRIMARY KEY AUTOINCREMENT   global id, never reused
        run_id        TEXT NOT NULL -> runs.run_id
        label         TEXT NOT NULL      APO's version label ("v0", "v3"); UNIQUE (run_id, label)
        template      TEXT NOT NULL      the prompt text, verbatim
        parent_id     INTEGER            -> prompts.id; NULL for seeds
        round         INTEGER NOT NULL   0 = seed
        status        TEXT NOT NULL      "candidate" | "scored" | "rejected"
        reject_reason TEXT               e.g. "empty", "duplicate of #3"; set iff rejected
        val_score     REAL               best-supported "val" evaluation; 0.0 if rejected
        val_n         INTEGER            number of val tasks val_score is over
        created_at    TEXT NOT NULL      ISO-8601 UTC
        updated_at    TEXT NOT NULL      ISO-8601 UTC
        is_best       INTEGER NOT NULL   0/1; partial unique index => at most one per run

    evaluations
        id          INTEGER PRIMARY KEY AUTOINCREMENT
        prompt_id   INTEGER NOT NULL -> prompts.id
        split       TEXT NOT NULL        "val" feeds prompts.val_score; other splits are only kept
        score       REAL NOT NULL
        n           INTEGER NOT NULL     number of tasks the score is over (>= 1)
        created_at  TEXT NOT NULL        ISO-8601 UTC

Invariants enforced by CHECK constraints: a candidate has no val score, a
scored prompt has one, a rejected prompt has a reason, ``val_score = 0.0``,
``val_n IS NULL`` and is never the best.

Durability: WAL journal, ``synchronous=FULL`` and one ``BEGIN IMMEDIATE``
transaction per public write, so a process killed at any instant leaves either
the whole write or none of it. Best-prompt files are written with
:func:`atomic_write_text`.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
import logging
import math
import os
import sqlite3
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, Self, cast

__all__ = [
    "APPLICATION_ID",
    "SCHEMA_VERSION",
    "EvaluationRecord",
    "PromptDB",
    "PromptDBError",
    "PromptRecord",
    "PromptStatus",
    "RunRecord",
    "atomic_write_text",
    "normalize_whitespace",
]

logger = logging.getLogger(__name__)

SCHEMA_VERSION: Final = 1
# "APO1": lets us tell our own file apart from some other SQLite database that
# happens to sit at the same path (both would otherwise have user_version 0).
APPLICATION_ID: Final = 0x41504F31

VAL_SPLIT: Final = "val"
BEST_TXT: Final = "best_prompt.txt"
BEST_JSON: Final = "best_prompt.json"

PromptStatus = Literal["candidate", "scored", "rejected"]

_SQLITE_MAGIC: Final = b"SQLite format 3\x00"
# A generous busy timeout: a second process (e.g. a CLI listing prompts) may
# briefly hold the write lock while a checkpoint runs.
_BUSY_TIMEOUT_S: Final = 30.0

_SCHEMA: Final = f"""
CREATE TABLE runs (
    run_id      TEXT PRIMARY KEY NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    algorithm   TEXT NOT NULL,
    config_json TEXT NOT NULL,
    status      TEXT NOT NULL
);

CREATE TABLE prompts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id        TEXT NOT NULL REFERENCES runs(run_id),
    label         TEXT NOT NULL,
    template      TEXT NOT NULL,
    parent_id     INTEGER REFERENCES prompts(id),
    round         INTEGER NOT NULL CHECK (round >= 0),
    status        TEXT NOT NULL CHECK (status IN ('candidate', 'scored', 'rejected')),
    reject_reason TEXT,
    val_score     REAL,
    val_n         INTEGER CHECK (val_n IS NULL OR val_n >= 1),
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    is_best       INTEGER NOT NULL DEFAULT 0 CHECK (is_best IN (0, 1)),
    UNIQUE (run_id, label),
    CHECK (status <> 'candidate'
           OR (val_score IS NULL AND val_n IS NULL AND reject_reason IS NULL)),
    CHECK (status <> 'scored'
           OR (val_score IS NOT NULL AND val_n IS NOT NULL AND reject_reason IS NULL)),
    CHECK (status <> 'rejected'
           OR (reject_reason IS NOT NULL AND val_score = 0.0 AND val_n IS NULL AND is_best = 0))
);

CREATE UNIQUE INDEX prompts_one_best_per_run ON prompts(run_id) WHERE is_best = 1;
CREATE INDEX prompts_parent ON prompts(parent_id);

CREATE TABLE evaluations (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    prompt_id  INTEGER NOT NULL REFERENCES prompts(id),
    split      TEXT NOT NULL,
    score      REAL NOT NULL,
    n          INTEGER NOT NULL CHECK (n >= 1),
    created_at TEXT NOT NULL
);

CREATE INDEX evaluations_prompt ON evaluations(prompt_id, split);

PRAGMA application_id = {APPLICATION_ID};
PRAGMA user_version = {SCHEMA_VERSION};
"""

_PROMPT_COLUMNS: Final = (
    "id, run_id, label, template, parent_id, round, status, reject_reason, "
    "val_score, val_n, created_at, updated_at, is_best"
)
_RUN_COLUMNS: Final = "run_id, started_at, finished_at, algorithm, config_json, status"
# Ties between runs started in the same microsecond fall back to insertion order.
_RUN_RECENCY: Final = "r.started_at DESC, r.rowid DESC"


class PromptDBError(Exception):
    """The prompt store cannot be opened, or a lookup/update refers to nothing."""


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


@dataclass(frozen=True, slots=True)
class EvaluationRecord:
    id: int
    prompt_id: int
    split: str
    score: float
    n: int
    created_at: str


def normalize_whitespace(text: str) -> str:
    """Collapse every whitespace run to one space and trim, for duplicate detection."""
    return " ".join(text.split())


def _utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _fsync_dir(directory: Path) -> None:
    # Without this the rename itself may not survive a power loss, even though
    # the file contents were fsynced. Directories cannot be opened on Windows.
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8, written verbatim) so readers and
    crashes only ever see the old or the new content, never a mix.

    The parent directory must exist. The file keeps the permissions of the file
    it replaces, or gets 0o644 if new (``mkstemp`` would otherwise leave 0o600).
    """
    path = Path(path)
    directory = path.parent
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o644
    # Same directory as the target, so os.replace is a rename within one
    # filesystem (atomic) rather than a copy.
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        # newline="" so the text lands byte-for-byte as given, on every OS.
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        # BaseException too: a KeyboardInterrupt mid-write must not leave litter.
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(directory)


def _check_finite(score: float) -> float:
    value = float(score)
    if not math.isfinite(value):
        raise ValueError(f"score must be a finite number, got {score!r}")
    return value


class PromptDB:
    """All prompt versions of all runs in one SQLite file.

    Thread-safe: one connection shared behind a re-entrant lock, so APO's
    asyncio loop and a progress/metrics thread can use the same instance.
    """

    def __init__(self, db_path: Path) -> None:
        self._path = Path(db_path)
        self._lock = threading.RLock()
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._reject_foreign_file()
        try:
            # isolation_level=None: we issue BEGIN IMMEDIATE ourselves so each
            # write takes the write lock up front and reads inside it are
            # consistent with what it then writes.
            self._conn: sqlite3.Connection | None = sqlite3.connect(
                self._path,
                timeout=_BUSY_TIMEOUT_S,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise PromptDBError(f"cannot open prompt store {self._path}: {exc}") from exc
        try:
            self._conn.row_factory = sqlite3.Row
            self._initialise()
        except BaseException:
            self._conn.close()
            self._conn = None
            raise

    # -- lifecycle ---------------------------------------------------------

    @property
    def path(self) -> Path:
        return self._path

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _reject_foreign_file(self) -> None:
        # Checked before SQLite touches the file: we must never turn somebody's
        # file into a database (or leave -wal/-shm files next to it).
        if not self._path.exists():
            return
        if not self._path.is_file():
            raise PromptDBError(f"prompt store path {self._path} exists and is not a regular file")
        with self._path.open("rb") as fh:
            header = fh.read(len(_SQLITE_MAGIC))
        # An empty file is what sqlite3 itself creates before the first write.
        if header and header != _SQLITE_MAGIC:
            raise PromptDBError(f"{self._path} is not an SQLite database (refusing to use it)")

    def _initialise(self) -> None:
        conn = self._db()
        try:
            # Read before any pragma that writes, so a foreign/corrupt file is
            # reported without being modified.
            is_new = self._check_identity(conn)

            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = FULL")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                # Some network filesystems refuse WAL. Rollback journal plus
                # synchronous=FULL is still crash safe, only slower for readers.
                logger.warning("prompt store %s: WAL not available, journal_mode=%s", self._path, mode)

            if is_new:
                with self._transaction():
                    # Re-check under the write lock: another process may have
                    # created the schema since we looked.
                    if self._check_identity(conn):
                        # Statement by statement: executescript() would commit
                        # our transaction first, and a crash mid-way must not
                        # leave half a schema behind.
                        for statement in _SCHEMA.split(";"):
                            if statement.strip():
                                conn.execute(statement)
        except sqlite3.Error as exc:
            raise PromptDBError(f"cannot open prompt store {self._path}: {exc}") from exc

    def _check_identity(self, conn: sqlite3.Connection) -> bool:
        """True for an empty database; raise unless it is a current prompt store."""
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        has_tables = conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0] > 0
        if version == 0 and app_id == 0 and not has_tables:
            return True
        if app_id != APPLICATION_ID:
            raise PromptDBError(
                f"{self._path} is an SQLite database but not a prompt store "
                f"(application_id={app_id:#x}, expected {APPLICATION_ID:#x})"
            )
        if version > SCHEMA_VERSION:
            raise PromptDBError(
                f"prompt store {self._path} has schema version {version}, newer than the "
                f"supported {SCHEMA_VERSION}; upgrade the trainer to read it"
            )
        if version < SCHEMA_VERSION:
            # Migrations from older versions go here once version 2 exists.
            raise PromptDBError(
                f"prompt store {self._path} has schema version {version}, no migration to {SCHEMA_VERSION} is available"
            )
        return False

    # -- plumbing ----------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise PromptDBError(f"prompt store {self._path} is closed")
        return self._conn

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: everything inside commits together or not at all."""
        with self._lock:
            conn = self._db()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                # SQLite rolls back by itself on some errors (e.g. disk full);
                # a second ROLLBACK would then mask the real exception.
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """Read-only transaction so multi-query reads see one consistent state
        even while another process writes."""
        with self._lock:
            conn = self._db()
            if conn.in_transaction:
                # Nested inside a write (re-entrant use); already consistent.
                yield conn
                return
            conn.execute("BEGIN DEFERRED")
            try:
                yield conn
            finally:
                conn.execute("COMMIT")

    @staticmethod
    def _prompt(row: sqlite3.Row) -> PromptRecord:
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
        )

    @staticmethod
    def _run(row: sqlite3.Row) -> RunRecord:
        return RunRecord(
            run_id=row["run_id"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            algorithm=row["algorithm"],
            config_json=row["config_json"],
            status=row["status"],
        )

    def _fetch_prompt(self, conn: sqlite3.Connection, prompt_id: int) -> PromptRecord:
        row = conn.execute(f"SELECT {_PROMPT_COLUMNS} FROM prompts WHERE id = ?", (prompt_id,)).fetchone()
        if row is None:
            raise PromptDBError(f"no prompt with id #{prompt_id} in {self._path}")
        return self._prompt(row)

    def _require_run(self, conn: sqlite3.Connection, run_id: str) -> None:
        if conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
            raise PromptDBError(f"no run {run_id!r} in {self._path}")

    def _latest_run_id(self, conn: sqlite3.Connection) -> str:
        row = conn.execute(f"SELECT run_id FROM runs r ORDER BY {_RUN_RECENCY} LIMIT 1").fetchone()
        if row is None:
            raise PromptDBError(f"no runs recorded in {self._path}")
        return cast(str, row["run_id"])

    # -- runs --------------------------------------------------------------

    def start_run(self, run_id: str, algorithm: str, config: Mapping[str, Any]) -> None:
        """Register a new run (status "running"). Run ids must be unique."""
        if not run_id:
            raise ValueError("run_id must be non-empty")
        # default=str: configs routinely carry Paths/enums; a readable string
        # beats refusing to record the run at all.
        config_json = json.dumps(dict(config), sort_keys=True, default=str)
        with self._transaction() as conn:
            if conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone():
                raise PromptDBError(f"run {run_id!r} already exists in {self._path}")
            conn.execute(
                f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES (?, ?, NULL, ?, ?, 'running')",
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
            rows = conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs r ORDER BY started_at, rowid").fetchall()
        return [self._run(row) for row in rows]

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
    ) -> int:
        """Store a new prompt version and return its global id.

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
        now = _utcnow()
        with self._transaction() as conn:
            self._require_run(conn, run_id)
            if parent_id is not None:
                self._fetch_prompt(conn, parent_id)
            if conn.execute("SELECT 1 FROM prompts WHERE run_id = ? AND label = ?", (run_id, label)).fetchone():
                raise PromptDBError(f"run {run_id!r} already has a prompt labelled {label!r}")
            cur = conn.execute(
                "INSERT INTO prompts (run_id, label, template, parent_id, round, status, reject_reason,"
                " val_score, val_n, created_at, updated_at, is_best)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, 0)",
                (run_id, label, template, parent_id, round, status, reject_reason, val_score, now, now),
            )
            prompt_id = cur.lastrowid
        assert prompt_id is not None  # always set after a successful INSERT
        return prompt_id

    def record_evaluation(self, prompt_id: int, split: str, score: float, n: int) -> int:
        """Append one evaluation and return its id.

        For split "val", ``prompts.val_score/val_n`` are refreshed to the val
        evaluation over the most tasks (ties: the latest), and a candidate
        becomes "scored". Rejected prompts keep their 0.0; the evaluation is
        still recorded for the audit trail.
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
                # A full-val-set score must not be overwritten by a later
                # mini-batch score: the larger sample is the better estimate.
                best = conn.execute(
                    "SELECT score, n FROM evaluations WHERE prompt_id = ? AND split = ?"
                    " ORDER BY n DESC, id DESC LIMIT 1",
                    (prompt_id, VAL_SPLIT),
                ).fetchone()
                conn.execute(
                    "UPDATE prompts SET val_score = ?, val_n = ?, status = 'scored', updated_at = ? WHERE id = ?",
                    (best["score"], best["n"], now, prompt_id),
                )
        assert eval_id is not None
        return eval_id

    def record_score(self, prompt_id: int, score: float, n: int) -> None:
        """Record a validation score over ``n`` tasks (a "val" evaluation)."""
        self.record_evaluation(prompt_id, VAL_SPLIT, score, n)

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
                f"SELECT {_PROMPT_COLUMNS} FROM prompts WHERE run_id = ? AND label = ?",
                (run_id, label),
            ).fetchone()
            if row is None:
                raise PromptDBError(f"no prompt labelled {label!r} in run {run_id!r} ({self._path})")
            return self._prompt(row)

    def list(self, run_id: str | None = None) -> builtins.list[PromptRecord]:
        """Prompts of one run, or of all runs if ``run_id`` is None, ordered by id."""
        with self._snapshot() as conn:
            if run_id is None:
                rows = conn.execute(f"SELECT {_PROMPT_COLUMNS} FROM prompts ORDER BY id").fetchall()
            else:
                rows = conn.execute(
                    f"SELECT {_PROMPT_COLUMNS} FROM prompts WHERE run_id = ? ORDER BY id", (run_id,)
                ).fetchall()
        return [self._prompt(row) for row in rows]

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
                SELECT {", ".join("p." + c.strip() for c in _PROMPT_COLUMNS.split(","))}
                FROM chain JOIN prompts p ON p.id = chain.pid
                ORDER BY chain.depth DESC
                """,
                (prompt_id,),
            ).fetchall()
        return [self._prompt(row) for row in rows]

    def find_by_template(self, run_id: str, template: str) -> PromptRecord | None:
        """The lowest-id prompt of ``run_id`` whose template equals ``template``
        up to whitespace (any status, so re-proposals of rejected text are caught too)."""
        wanted = normalize_whitespace(template)
        with self._snapshot() as conn:
            # Done in Python: a run holds hundreds of prompts at most, and this
            # keeps the normalisation rule in exactly one place.
            rows = conn.execute(
                f"SELECT {_PROMPT_COLUMNS} FROM prompts WHERE run_id = ? ORDER BY id", (run_id,)
            ).fetchall()
        for row in rows:
            if normalize_whitespace(row["template"]) == wanted:
                return self._prompt(row)
        return None

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
                    f"SELECT {_PROMPT_COLUMNS} FROM prompts WHERE run_id = ? AND is_best = 1", (run_id,)
                ).fetchone()
                if row is None:
                    row = conn.execute(
                        f"SELECT {_PROMPT_COLUMNS} FROM prompts WHERE run_id = ? AND status = 'scored'"
                        " ORDER BY val_score DESC, id ASC LIMIT 1",
                        (run_id,),
                    ).fetchone()
            else:
                cols = ", ".join("p." + c.strip() for c in _PROMPT_COLUMNS.split(","))
                row = conn.execute(
                    f"SELECT {cols} FROM prompts p JOIN runs r ON r.run_id = p.run_id"
                    f" WHERE p.is_best = 1 ORDER BY {_RUN_RECENCY} LIMIT 1"
                ).fetchone()
                if row is None:
                    row = conn.execute(
                        f"SELECT {cols} FROM prompts p JOIN runs r ON r.run_id = p.run_id"
                        f" WHERE p.status = 'scored' ORDER BY {_RUN_RECENCY}, p.val_score DESC, p.id ASC"
                        " LIMIT 1"
                    ).fetchone()
        return None if row is None else self._prompt(row)

    # -- export ------------------------------------------------------------

    def export_best(
        self,
        run_id: str | None,
        out_dir: Path,
        *,
        extra: Mapping[str, Any] | None = None,
    ) -> PromptRecord:
        """Write ``best_prompt.txt`` (the template verbatim) and
        ``best_prompt.json`` (its metadata) into ``out_dir``, each atomically.

        The .txt is written first and the .json carries its SHA-256, so a crash
        between the two files is detectable (hash mismatch) rather than silent.
        """
        # One snapshot so the lineage matches the prompt even if another
        # process writes in between.
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
            "template_file": BEST_TXT,
            "template_sha256": hashlib.sha256(best.template.encode("utf-8")).hexdigest(),
        }
        if extra:
            clash = sorted(set(meta) & set(extra))
            if clash:
                raise ValueError(f"extra would overwrite export fields: {clash}")
            meta.update(extra)
        # Serialise before touching the disk so bad `extra` values fail cleanly.
        meta_text = json.dumps(meta, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / BEST_TXT, best.template)
        atomic_write_text(out_dir / BEST_JSON, meta_text)
        return best
