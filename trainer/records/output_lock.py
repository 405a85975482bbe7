"""The output directory's lock: one training at a time per OUTPUT_DIR.

A training writes fixed names in its output dir (``best_prompt.*``, ``summary.json``, the reward
curve): two trainings on one dir overwrite each other's, and a user would trust a best prompt the
other run saved. So ``train`` (``--resume`` too) holds an exclusive ``flock`` on
``OUTPUT_DIR/.train.lock`` for the whole run. A second one is refused at once (right after its
settings and dataset checks, which write nothing, and before it writes anything) with an error
naming the directory and the holder.

Why ``flock`` on an open descriptor: the kernel drops it when the last descriptor of that open file
is closed, which happens on any exit (return, exception, SIGTERM, kill -9, the OOM killer). There is
no stale lock to clean up and no pid file to second-guess; the pid, host and start time written into
the file only make the message useful. The file is never deleted: a run that deleted it could leave
a waiting run holding the lock on the removed file while a third locks a new one.

Who does not take it: ``train --dry-run``, ``eval``, ``prompts`` and ``report`` only read. ``runner``
processes append to the ledgers under ``runs/`` of the training they serve (each append takes its
own short lock on the ledger, see :mod:`trainer.records.ledger`): the training's lock must never
refuse them. Agent Lightning forks its runner processes from the training, and a forked child would
share the locked descriptor, keeping the directory "busy" after the training itself was killed, so
each child closes its copy right after the fork (closing a copy, unlike unlocking, leaves the
parent's lock in place).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

logger = logging.getLogger(__name__)

LOCK_FILE = ".train.lock"

# Descriptors of the locks this process holds: what a forked child must close.
_held: set[int] = set()


def _close_in_child() -> None:
    for fd in _held:
        with contextlib.suppress(OSError):
            os.close(fd)
    _held.clear()


os.register_at_fork(after_in_child=_close_in_child)


class OutputLockError(Exception):
    """The output dir cannot be locked for a training (the CLI prints it and exits non-zero)."""


class OutputDirBusy(OutputLockError):
    """Another training holds the output dir."""


def _holder(fd: int) -> str:
    """Who holds the lock, as the holder wrote it; it may not have written yet."""
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
        return f"pid {info['pid']} on {info['host']}, started {info['started_at']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not said which yet"


class OutputLock:
    """An exclusive lock on a training's output dir, held from :meth:`acquire` to :meth:`release`.

    Each ``OutputLock`` opens the file anew: two of them conflict even within one process, since
    ``flock`` belongs to the open file, not to the process.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> OutputLock:
        """Take the lock or raise :class:`OutputDirBusy` at once (never waits)."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this OutputLock")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputLockError(f"OUTPUT_DIR {self.directory}: cannot create {LOCK_FILE}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise OutputDirBusy(
                f"OUTPUT_DIR {self.directory} is in use by another training ({holder}): "
                "wait for it to end, or train into another directory (--output)"
            ) from None
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP):
                raise
            # Some network filesystems have no locks: training there beats refusing to train.
            logger.warning("OUTPUT_DIR %s cannot be locked (%s): a second training on it would not be refused",
                           self.directory, exc.strerror)  # fmt: skip
            return self
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started_at": f"{datetime.now(UTC):%FT%TZ}"}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode("utf-8"), 0)
        self._fd = fd
        _held.add(fd)
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        _held.discard(fd)
        # Emptied first, so the next run that finds it busy names its holder, not us.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the last descriptor releases the flock

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
