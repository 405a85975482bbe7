"""One training per output dir: a second one is refused at once, and the lock dies with its holder.

In-process: the lock itself (flock belongs to an open file, so two locks in one process conflict).
Subprocesses: a holder that is SIGTERMed or kill -9ed frees the dir, and the real CLI's ``train`` on
a busy dir exits non-zero naming it, having changed nothing there; ``--dry-run`` is not refused.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import REPO
from tests.support.env import clean_env
from tests.support.trainer_cli import EDIT_MODEL, GRADIENT_MODEL, TINY, TINY_TASKS, run_trainer, scripted_env
from trainer.records.output_lock import LOCK_FILE, OutputDirBusy, OutputLock, OutputLockError
from trainer.testing import ScriptedLLM, ScriptedOptimizer, perfect_agent, route

HOLDER = """
import sys, time
from pathlib import Path
from trainer.records.output_lock import OutputLock
OutputLock(Path(sys.argv[1])).acquire()
print("locked", flush=True)
time.sleep(600)
"""


def test_a_second_lock_on_the_dir_is_refused_even_in_one_process(tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = OutputLock(out).acquire()  # creates the dir
    with pytest.raises(OutputDirBusy) as refused:
        OutputLock(out).acquire()
    message = str(refused.value)
    assert str(out) in message
    assert f"pid {os.getpid()} on {socket.gethostname()}" in message and "\n" not in message
    holder = json.loads((out / LOCK_FILE).read_text())
    assert holder["pid"] == os.getpid() and holder["started_at"].endswith("Z")
    first.release()
    with OutputLock(out) as second:  # free again
        assert second.held
    assert not second.held
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # the file stays (see the module), empty
    assert (out / LOCK_FILE).read_text() == ""


def test_the_lock_is_released_when_the_run_raises(tmp_path: Path) -> None:
    with pytest.raises(ZeroDivisionError), OutputLock(tmp_path):
        1 / 0  # noqa: B018
    OutputLock(tmp_path).acquire().release()


def test_a_holder_that_has_not_written_yet_is_still_refused_sensibly(tmp_path: Path) -> None:
    import fcntl

    fd = os.open(tmp_path / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # locked, pid not written yet
        with pytest.raises(OutputDirBusy, match="has not said which yet"):
            OutputLock(tmp_path).acquire()
    finally:
        os.close(fd)


def test_an_unusable_output_dir_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputLockError, match=f"OUTPUT_DIR {tmp_path / 'file' / 'out'}: cannot create"):
        OutputLock(tmp_path / "file" / "out").acquire()


def _linger(running: multiprocessing.synchronize.Event, stop: multiprocessing.synchronize.Event) -> None:
    running.set()
    stop.wait(30)


def test_forked_children_do_not_keep_the_dir_locked(tmp_path: Path) -> None:
    """Agent Lightning forks runner processes from the training; one outliving a killed training
    must not keep its output dir busy."""
    ctx = multiprocessing.get_context("fork")
    running, stop = ctx.Event(), ctx.Event()
    lock = OutputLock(tmp_path).acquire()
    child = ctx.Process(target=_linger, args=(running, stop))
    child.start()
    try:
        assert running.wait(10)  # past the fork (and its hooks) in the child
        lock.release()  # the training is gone; its forked child is not
        OutputLock(tmp_path).acquire().release()
    finally:
        stop.set()
        child.join(10)


def _start_holder(out: Path) -> subprocess.Popen[str]:
    env = clean_env(PYTHONPATH=str(REPO))
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], env=env, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
    return holder


def _acquire_soon(out: Path, timeout: float = 10.0) -> None:
    """The kernel frees the lock as the holder dies: a moment after the signal, not at once."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            OutputLock(out).acquire().release()
            return
        except OutputDirBusy:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_the_lock_dies_with_its_holder(tmp_path: Path, sig: signal.Signals) -> None:
    holder = _start_holder(tmp_path)
    try:
        with pytest.raises(OutputDirBusy, match=f"pid {holder.pid} "):
            OutputLock(tmp_path).acquire()
        holder.send_signal(sig)
        holder.wait(10)
        _acquire_soon(tmp_path)
    finally:
        holder.kill()
        holder.wait()


def _snapshot(directory: Path) -> dict[str, tuple[int, int, bytes]]:
    return {
        str(p.relative_to(directory)): (p.stat().st_mtime_ns, p.stat().st_size, p.read_bytes() if p.is_file() else b"")
        for p in sorted(directory.rglob("*"))
    }


def test_a_second_training_on_a_busy_output_dir_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "best_prompt.txt").write_text("the other training's best prompt\n")
    script = route(
        agent=perfect_agent(TINY_TASKS),
        optimizer=ScriptedOptimizer("- be brief", ["Answer: The answer is <number>. {question}"]),
        optimizer_models=(GRADIENT_MODEL, EDIT_MODEL),
    )
    holder = _start_holder(out)
    try:
        before = _snapshot(out)
        with ScriptedLLM(script) as llm:
            started = time.monotonic()
            # Today's code would train here and overwrite best_prompt.txt; the lock refuses at once.
            refused = run_trainer(
                ["train", *TINY, "--output", str(out)], cwd=tmp_path, timeout=300, COLUMNS="1000", **scripted_env(llm)
            )
            seconds = time.monotonic() - started
            reached = list(llm.log)
            # A dry run only reads: it is not refused.
            dry = run_trainer(["train", *TINY, "--output", str(out), "--dry-run"], cwd=tmp_path, timeout=120,
                              **scripted_env(llm))  # fmt: skip
        assert refused.returncode == 2, refused.stderr[-3000:]
        # One line (COLUMNS keeps the console from wrapping it), naming the directory and its holder.
        [message] = [line for line in refused.stderr.splitlines() if "error:" in line]
        assert message.startswith(f"error: OUTPUT_DIR {out} is in use by another training (pid {holder.pid} on ")
        assert "Traceback" not in refused.stderr
        assert seconds < 60, seconds  # imports only: no model, no store, no rollout
        assert reached == [], "the refused training reached the model"
        assert dry.returncode == 0, dry.stderr[-3000:]
        assert _snapshot(out) == before
        holder.kill()  # kill -9: no chance to clean up
        holder.wait(10)
        _acquire_soon(out)
    finally:
        holder.kill()
        holder.wait()
