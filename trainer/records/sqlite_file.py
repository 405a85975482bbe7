"""One SQLite file of ours: recognised before it is touched, crash safe, one writer at a time.

A :class:`DurableDB` subclass names its kind, its ``application_id``, its schema version and its
schema SQL. Opening refuses anything that is not such a file (a foreign file is never turned into a
database, nor modified), creates the schema in one transaction when the file is new, and turns on
WAL and ``synchronous=FULL``. Every write is one ``BEGIN IMMEDIATE`` transaction (:meth:`_transaction`)
and multi-query reads see one state (:meth:`_snapshot`). Thread-safe: one connection behind a
re-entrant lock.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Final, Self

logger = logging.getLogger(__name__)

_SQLITE_MAGIC: Final = b"SQLite format 3\x00"
# A generous busy timeout: a second process (e.g. a CLI listing prompts) may briefly hold the
# write lock while a checkpoint runs.
_BUSY_TIMEOUT_S: Final = 30.0


class DBError(Exception):
    """The file cannot be opened as what it should be, or a lookup/update refers to nothing."""


class DurableDB:
    """Base of our SQLite files; see the module docstring."""

    KIND: ClassVar[str]
    APPLICATION_ID: ClassVar[int]
    SCHEMA_VERSION: ClassVar[int]
    SCHEMA: ClassVar[str]
    # version -> the statements that take a file of that version to the next one (additive only).
    MIGRATIONS: ClassVar[dict[int, str]] = {}
    Error: ClassVar[type[DBError]] = DBError

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
            raise self.Error(f"cannot open {self.KIND} {self._path}: {exc}") from exc
        try:
            self._conn.row_factory = sqlite3.Row
            self._initialise()
        except BaseException:
            self._conn.close()
            self._conn = None
            raise

    # -- lifecycle ---------------------------------------------------------

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
            raise self.Error(f"{self.KIND} path {self._path} exists and is not a regular file")
        with self._path.open("rb") as fh:
            header = fh.read(len(_SQLITE_MAGIC))
        # An empty file is what sqlite3 itself creates before the first write.
        if header and header != _SQLITE_MAGIC:
            raise self.Error(f"{self._path} is not an SQLite database (refusing to use it)")

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
                logger.warning("%s %s: WAL not available, journal_mode=%s", self.KIND, self._path, mode)

            if not is_new and self._version(conn) < self.SCHEMA_VERSION:
                self._migrate(conn)
            if is_new:
                with self._transaction():
                    # Re-check under the write lock: another process may have
                    # created the schema since we looked.
                    if self._check_identity(conn):
                        # Statement by statement: executescript() would commit
                        # our transaction first, and a crash mid-way must not
                        # leave half a schema behind.
                        for statement in self.SCHEMA.split(";"):
                            if statement.strip():
                                conn.execute(statement)
        except sqlite3.Error as exc:
            raise self.Error(f"cannot open {self.KIND} {self._path}: {exc}") from exc

    def _check_identity(self, conn: sqlite3.Connection) -> bool:
        """True for an empty database; raise unless it is a current file of this kind."""
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        has_tables = conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0] > 0
        if version == 0 and app_id == 0 and not has_tables:
            return True
        if app_id != self.APPLICATION_ID:
            raise self.Error(
                f"{self._path} is an SQLite database but not a {self.KIND} "
                f"(application_id={app_id:#x}, expected {self.APPLICATION_ID:#x})"
            )
        if version > self.SCHEMA_VERSION:
            raise self.Error(
                f"{self.KIND} {self._path} has schema version {version}, newer than the "
                f"supported {self.SCHEMA_VERSION}; upgrade the trainer to read it"
            )
        if version < self.SCHEMA_VERSION and any(v not in self.MIGRATIONS for v in range(version, self.SCHEMA_VERSION)):
            raise self.Error(
                f"{self.KIND} {self._path} has schema version {version}, "
                f"no migration to {self.SCHEMA_VERSION} is available"
            )
        return False

    @staticmethod
    def _version(conn: sqlite3.Connection) -> int:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Bring an older file up to SCHEMA_VERSION, one version per transaction."""
        with self._transaction():
            version = self._version(conn)  # re-read under the write lock: another process may have done it
            for step in range(version, self.SCHEMA_VERSION):
                for statement in self.MIGRATIONS[step].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {step + 1}")
                logger.info("%s %s: migrated schema %d -> %d", self.KIND, self._path, step, step + 1)

    # -- plumbing ----------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise self.Error(f"{self.KIND} {self._path} is closed")
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
