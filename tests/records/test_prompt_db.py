"""Tests for trainer.records.prompt_db: the SQLite prompt-version store."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import REPO
from tests.support.env import clean_env
from trainer.agent.prompt import Demo, Prompt
from trainer.records.files import atomic_write_text
from trainer.records.prompt_db import BEST_JSON, BEST_TXT, PromptDB, PromptDBError
from trainer.records.schema import SCHEMA_VERSION

RUN = "run-2025-01-01T00:00:00"  # colons on purpose: "RUN:LABEL" refs must cope


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "out" / "prompts.db"


@pytest.fixture
def pm(db_path: Path) -> Iterator[PromptDB]:
    with PromptDB(db_path) as manager:
        manager.start_run(RUN, "apo", {"beam_width": 2, "output_dir": Path("/tmp/x")})
        yield manager


def _raw(db_path: Path) -> sqlite3.Connection:
    return sqlite3.connect(db_path, isolation_level=None)


def _child_env() -> dict[str, str]:
    return clean_env(PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))


# -- opening, schema, persistence -------------------------------------------


def test_new_store_sets_pragmas_and_schema_version(db_path: Path) -> None:
    with PromptDB(db_path):
        pass
    assert db_path.parent.is_dir()
    conn = _raw(db_path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
        assert {"runs", "prompts", "evaluations"} <= tables
    finally:
        conn.close()


def test_everything_persists_across_reopen(db_path: Path) -> None:
    with PromptDB(db_path) as pm:
        pm.start_run(RUN, "apo", {"beam_width": 2})
        seed = pm.add_prompt(RUN, "v0", "Solve it.", parent_id=None, round=0)
        child = pm.add_prompt(RUN, "v1", "Solve it step by step.", parent_id=seed, round=1)
        pm.record_evaluation(seed, "val", 0.4, 10)
        pm.record_evaluation(child, "val", 0.7, 10)
        pm.mark_best(RUN, child)
        pm.finish_run(RUN, "completed")
        before = (pm.list(), pm.runs(), pm.evaluations(child))

    with PromptDB(db_path) as pm:
        after = (pm.list(), pm.runs(), pm.evaluations(child))
        assert after == before
        assert pm.get(child).template == "Solve it step by step."
        assert pm.best(RUN) == pm.get(child)
        (run,) = pm.runs()
        assert run.status == "completed"
        assert run.finished_at is not None
        assert run.config == {"beam_width": 2}


def test_runs_start_and_finish(pm: PromptDB) -> None:
    (run,) = pm.runs()
    assert (run.run_id, run.algorithm, run.status, run.finished_at) == (RUN, "apo", "running", None)
    # Path values in the config are stored as strings rather than refused.
    assert run.config == {"beam_width": 2, "output_dir": "/tmp/x"}
    with pytest.raises(PromptDBError, match="already exists"):
        pm.start_run(RUN, "apo", {})
    with pytest.raises(PromptDBError, match="no run 'nope'"):
        pm.finish_run("nope", "failed")
    pm.finish_run(RUN, "interrupted")
    assert pm.runs()[0].status == "interrupted"


def test_closed_store_refuses_use(db_path: Path) -> None:
    pm = PromptDB(db_path)
    pm.close()
    pm.close()  # idempotent
    with pytest.raises(PromptDBError, match="closed"):
        pm.list()


# -- prompts -----------------------------------------------------------------


def test_add_prompt_validates_references(pm: PromptDB) -> None:
    seed = pm.add_prompt(RUN, "v0", "seed", parent_id=None, round=0)
    with pytest.raises(PromptDBError, match="no run"):
        pm.add_prompt("other", "v0", "x", parent_id=None, round=0)
    with pytest.raises(PromptDBError, match="#999"):
        pm.add_prompt(RUN, "v1", "x", parent_id=999, round=1)
    with pytest.raises(PromptDBError, match="already has a prompt labelled 'v0'"):
        pm.add_prompt(RUN, "v0", "x", parent_id=seed, round=1)
    with pytest.raises(ValueError, match="status"):
        pm.add_prompt(RUN, "v1", "x", parent_id=seed, round=1, status="scored")
    with pytest.raises(ValueError, match="reject_reason"):
        pm.add_prompt(RUN, "v1", "x", parent_id=seed, round=1, status="rejected")
    assert [p.id for p in pm.list()] == [seed]


def test_lineage_is_root_first(pm: PromptDB) -> None:
    seed = pm.add_prompt(RUN, "v0", "a", parent_id=None, round=0)
    mid = pm.add_prompt(RUN, "v1", "b", parent_id=seed, round=1)
    pm.add_prompt(RUN, "v2", "sibling", parent_id=seed, round=1)
    leaf = pm.add_prompt(RUN, "v3", "c", parent_id=mid, round=2)

    assert [p.id for p in pm.lineage(leaf)] == [seed, mid, leaf]
    assert [p.label for p in pm.lineage(leaf)] == ["v0", "v1", "v3"]
    assert [p.id for p in pm.lineage(seed)] == [seed]
    with pytest.raises(PromptDBError, match="#12345"):
        pm.lineage(12345)


def test_val_score_pools_every_val_evaluation(pm: PromptDB) -> None:
    pid = pm.add_prompt(RUN, "v0", "p", parent_id=None, round=0)
    assert pm.get(pid).status == "candidate"

    pm.record_evaluation(pid, "val", 0.9, 5)  # beam mini-batch
    assert (pm.get(pid).val_score, pm.get(pid).val_n, pm.get(pid).status) == (0.9, 5, "scored")
    pm.record_evaluation(pid, "val", 0.6, 50)  # full val set
    pm.record_evaluation(pid, "val", 1.0, 5)
    pm.record_evaluation(pid, "val", 0.7, 50)
    # correct / total over all 110 rollouts: 4.5 + 30 + 5 + 35 = 74.5
    assert pm.get(pid).val_n == 110 and pm.get(pid).val_score == pytest.approx(74.5 / 110)
    pm.record_evaluation(pid, "test", 0.1, 500)  # other splits never feed val_score
    assert pm.get(pid).val_n == 110 and pm.get(pid).val_score == pytest.approx(74.5 / 110)

    evals = pm.evaluations(pid)
    assert [(e.split, e.score, e.n) for e in evals] == [
        ("val", 0.9, 5),
        ("val", 0.6, 50),
        ("val", 1.0, 5),
        ("val", 0.7, 50),
        ("test", 0.1, 500),
    ]
    with pytest.raises(ValueError, match="finite"):
        pm.record_evaluation(pid, "val", float("nan"), 5)
    with pytest.raises(ValueError, match="n must be"):
        pm.record_evaluation(pid, "val", 0.5, 0)
    with pytest.raises(PromptDBError, match="#777"):
        pm.record_evaluation(777, "val", 0.5, 5)
    assert len(pm.evaluations(pid)) == 5


def test_reject_counts_as_zero_and_is_never_best(pm: PromptDB) -> None:
    good = pm.add_prompt(RUN, "v0", "good", parent_id=None, round=0)
    bad = pm.add_prompt(RUN, "v1", "bad", parent_id=good, round=1)
    pm.record_evaluation(good, "val", 0.5, 10)
    pm.record_evaluation(bad, "val", 0.9, 10)
    pm.mark_best(RUN, bad)

    pm.reject(bad, "too long: 9120 chars > 4000")
    rec = pm.get(bad)
    assert (rec.status, rec.reject_reason, rec.val_score, rec.val_n, rec.is_best) == (
        "rejected",
        "too long: 9120 chars > 4000",
        0.0,
        None,
        False,
    )
    # Without a marked best, the fallback skips the rejected 0.9.
    assert pm.best(RUN) == pm.get(good)

    # Late scores are kept for the record but do not resurrect the prompt.
    pm.record_evaluation(bad, "val", 1.0, 100)
    assert (pm.get(bad).status, pm.get(bad).val_score) == ("rejected", 0.0)
    assert [e.score for e in pm.evaluations(bad)] == [0.9, 1.0]

    with pytest.raises(PromptDBError, match="rejected"):
        pm.mark_best(RUN, bad)

    empty = pm.add_prompt(RUN, "v2", "", parent_id=good, round=1, status="rejected", reject_reason="empty")
    assert (pm.get(empty).status, pm.get(empty).val_score, pm.get(empty).template) == ("rejected", 0.0, "")


def test_best_fallback_highest_score_then_lowest_id(pm: PromptDB) -> None:
    assert pm.best(RUN) is None
    a = pm.add_prompt(RUN, "v0", "a", parent_id=None, round=0)
    assert pm.best(RUN) is None  # unscored candidates do not qualify
    b = pm.add_prompt(RUN, "v1", "b", parent_id=a, round=1)
    c = pm.add_prompt(RUN, "v2", "c", parent_id=a, round=1)
    pm.record_evaluation(a, "val", 0.3, 10)
    pm.record_evaluation(c, "val", 0.8, 10)
    pm.record_evaluation(b, "val", 0.8, 10)
    best = pm.best(RUN)
    assert best is not None
    assert best.id == b  # tie on 0.8 -> lowest id
    assert pm.best() == best
    with pytest.raises(PromptDBError, match="no run 'ghost'"):
        pm.best("ghost")


def test_mark_best_is_exclusive_per_run(pm: PromptDB, db_path: Path) -> None:
    a = pm.add_prompt(RUN, "v0", "a", parent_id=None, round=0)
    b = pm.add_prompt(RUN, "v1", "b", parent_id=a, round=1)
    pm.record_evaluation(a, "val", 0.9, 10)
    pm.record_evaluation(b, "val", 0.1, 10)

    pm.mark_best(RUN, a)
    pm.mark_best(RUN, b)  # explicit mark beats the higher score
    assert [p.id for p in pm.list(RUN) if p.is_best] == [b]
    assert pm.best(RUN) == pm.get(b)
    pm.mark_best(RUN, b)  # re-marking the current best is a no-op
    assert [p.id for p in pm.list(RUN) if p.is_best] == [b]

    # The database itself refuses a second best, whoever writes to it.
    conn = _raw(db_path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            conn.execute("UPDATE prompts SET is_best = 1 WHERE id = ?", (a,))
    finally:
        conn.close()
    assert [p.id for p in pm.list(RUN) if p.is_best] == [b]


def test_failed_mark_best_keeps_previous_best(pm: PromptDB) -> None:
    pm.start_run("other", "apo", {})
    a = pm.add_prompt(RUN, "v0", "a", parent_id=None, round=0)
    foreign = pm.add_prompt("other", "v0", "f", parent_id=None, round=0)
    pm.mark_best(RUN, a)
    with pytest.raises(PromptDBError, match="belongs to run 'other'"):
        pm.mark_best(RUN, foreign)
    with pytest.raises(PromptDBError, match="#4242"):
        pm.mark_best(RUN, 4242)
    assert [p.id for p in pm.list() if p.is_best] == [a]

    # Each run has its own best.
    pm.mark_best("other", foreign)
    assert sorted(p.id for p in pm.list() if p.is_best) == [a, foreign]


def test_best_without_run_prefers_latest_run_that_has_a_best(pm: PromptDB) -> None:
    old_best = pm.add_prompt(RUN, "v0", "old", parent_id=None, round=0)
    pm.record_evaluation(old_best, "val", 0.5, 10)
    pm.mark_best(RUN, old_best)

    pm.start_run("run-2", "apo", {})
    new = pm.add_prompt("run-2", "v0", "new", parent_id=None, round=0)
    pm.record_evaluation(new, "val", 0.9, 10)
    # run-2 has no marked best yet, so the latest run *with* one answers.
    assert pm.best() == pm.get(old_best)
    assert pm.best("run-2") == pm.get(new)  # explicit run: score fallback
    pm.mark_best("run-2", new)
    assert pm.best() == pm.get(new)


def test_best_without_any_marked_best_uses_latest_scored_run(db_path: Path) -> None:
    with PromptDB(db_path) as pm:
        assert pm.best() is None
        pm.start_run("r1", "apo", {})
        pm.record_evaluation(pm.add_prompt("r1", "v0", "x", parent_id=None, round=0), "val", 0.99, 10)
        pm.start_run("r2", "apo", {})
        low = pm.add_prompt("r2", "v0", "y", parent_id=None, round=0)
        pm.record_evaluation(low, "val", 0.1, 10)
        pm.start_run("r3", "apo", {})  # started last but nothing scored yet
        assert pm.best() == pm.get(low)


def test_get_by_every_reference_form(pm: PromptDB) -> None:
    pm.add_prompt(RUN, "v0", "first", parent_id=None, round=0)
    pm.add_prompt(RUN, "v1", "second", parent_id=1, round=1)
    pm.start_run("later", "apo", {})
    latest_v0 = pm.add_prompt("later", "v0", "third", parent_id=None, round=0)

    assert pm.get(2).template == "second"
    assert pm.get("2").template == "second"
    assert pm.get("#2").template == "second"
    assert pm.get(" #2 ").template == "second"
    assert pm.get(f"{RUN}:v1").template == "second"
    assert pm.get(f"{RUN}:v0").template == "first"
    assert pm.get("v0").id == latest_v0  # bare label -> most recently started run

    with pytest.raises(PromptDBError, match="no prompt with id #99"):
        pm.get("#99")
    with pytest.raises(PromptDBError, match="no prompt labelled 'v1' in run 'later'"):
        pm.get("v1")  # exists only in the older run
    with pytest.raises(PromptDBError, match="no prompt labelled 'v7' in run 'nope'"):
        pm.get("nope:v7")
    with pytest.raises(PromptDBError, match="empty"):
        pm.get("  ")
    with pytest.raises(TypeError):
        pm.get(True)


def test_get_label_without_runs(db_path: Path) -> None:
    with PromptDB(db_path) as pm, pytest.raises(PromptDBError, match="no runs"):
        pm.get("v0")


def test_list_filters_and_orders_by_id(pm: PromptDB) -> None:
    pm.start_run("b", "apo", {})
    ids = [
        pm.add_prompt(RUN, "v0", "x", parent_id=None, round=0),
        pm.add_prompt("b", "v0", "y", parent_id=None, round=0),
        pm.add_prompt(RUN, "v1", "z", parent_id=None, round=1),
    ]
    assert [p.id for p in pm.list()] == ids
    assert [p.id for p in pm.list(RUN)] == [ids[0], ids[2]]
    assert [p.run_id for p in pm.list("b")] == ["b"]
    assert pm.list("missing") == []


def test_concurrent_threads_share_one_manager(pm: PromptDB) -> None:
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            for i in range(25):
                pid = pm.add_prompt(RUN, f"t{t}-{i}", f"text {t} {i}", parent_id=None, round=1)
                pm.record_evaluation(pid, "val", i / 25, 4)
                pm.best(RUN)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    prompts = pm.list(RUN)
    assert len(prompts) == 100
    assert all(p.status == "scored" for p in prompts)
    assert len({p.id for p in prompts}) == 100


# -- export ------------------------------------------------------------------


def test_export_best_files_agree_with_db(pm: PromptDB, tmp_path: Path) -> None:
    seed = pm.add_prompt(RUN, "v0", "seed", parent_id=None, round=0)
    template = "You are a careful mathematician.\r\n  Show your work.\n\nÄnswer: ∎"
    best_id = pm.add_prompt(RUN, "v4", template, parent_id=seed, round=1)
    pm.record_evaluation(best_id, "val", 0.8, 40)
    pm.mark_best(RUN, best_id)
    out = tmp_path / "export"

    exported = pm.export_best(RUN, out)

    record = pm.get(best_id)
    assert exported == record
    assert (out / "best_prompt.txt").read_bytes() == template.encode("utf-8")  # byte-exact
    meta = json.loads((out / "best_prompt.json").read_text(encoding="utf-8"))
    assert {k: meta[k] for k in ("id", "run_id", "label", "round", "parent_id", "val_score", "val_n")} == {
        "id": record.id,
        "run_id": RUN,
        "label": "v4",
        "round": 1,
        "parent_id": seed,
        "val_score": 0.8,
        "val_n": 40,
    }
    assert meta["created_at"] == record.created_at
    assert meta["exported_at"] >= record.created_at
    assert meta["lineage_ids"] == [seed, best_id]
    assert meta["template_sha256"] == hashlib.sha256(template.encode("utf-8")).hexdigest()
    assert sorted(p.name for p in out.iterdir()) == ["best_prompt.json", "best_prompt.txt"]


def test_export_best_without_any_best(pm: PromptDB, tmp_path: Path) -> None:
    with pytest.raises(PromptDBError, match="no best prompt"):
        pm.export_best(None, tmp_path)
    assert list(tmp_path.iterdir()) == [tmp_path / "out"]  # only the db dir


def test_crash_during_export_keeps_old_files_and_no_temp_litter(
    pm: PromptDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "export"
    old = pm.add_prompt(RUN, "v0", "old best", parent_id=None, round=0)
    pm.record_evaluation(old, "val", 0.5, 10)
    pm.export_best(RUN, out)
    old_txt = (out / "best_prompt.txt").read_bytes()
    old_json = (out / "best_prompt.json").read_bytes()

    new = pm.add_prompt(RUN, "v1", "new best", parent_id=old, round=1)
    pm.record_evaluation(new, "val", 0.9, 10)
    pm.mark_best(RUN, new)

    def crash(src: object, dst: object) -> None:
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        pm.export_best(RUN, out)

    assert (out / "best_prompt.txt").read_bytes() == old_txt
    assert (out / "best_prompt.json").read_bytes() == old_json
    assert sorted(p.name for p in out.iterdir()) == ["best_prompt.json", "best_prompt.txt"]

    monkeypatch.undo()
    pm.export_best(RUN, out)
    assert (out / "best_prompt.txt").read_text(encoding="utf-8") == "new best"


def test_atomic_write_text_modes_and_replace(tmp_path: Path) -> None:
    target = tmp_path / "summary.json"
    atomic_write_text(target, "one")
    assert target.read_text(encoding="utf-8") == "one"
    if os.name == "posix":
        assert target.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0o600
        target.chmod(0o640)
    atomic_write_text(target, "two\n")
    assert target.read_text(encoding="utf-8") == "two\n"
    if os.name == "posix":
        assert target.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]
    with pytest.raises(FileNotFoundError):
        atomic_write_text(tmp_path / "missing-dir" / "x.txt", "x")


# -- crash safety of the database -------------------------------------------

_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from trainer.records.prompt_db import PromptDB

    pm = PromptDB(Path(sys.argv[1]))
    pm.start_run("crash", "apo", {})
    parent = None
    i = 0
    while True:
        pid = pm.add_prompt("crash", f"v{i}", f"template {i}", parent_id=parent, round=i)
        pm.record_evaluation(pid, "val", i / 1000, i + 1)
        if i % 3 == 0:
            pm.mark_best("crash", pid)
        print(pid, i, flush=True)  # only after the writes have committed
        parent = pid
        i += 1
    """
)


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL semantics")
def test_sigkill_mid_write_loop_leaves_consistent_db(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(db_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_child_env(),
    )
    assert proc.stdout is not None
    committed: list[tuple[int, int]] = []
    try:
        while len(committed) < 60:
            line = proc.stdout.readline()
            if not line:
                break
            pid, i = map(int, line.split())
            committed.append((pid, i))
    finally:
        proc.kill()  # SIGKILL: no atexit, no close(), mid-whatever-it-was-doing
        _, stderr = proc.communicate(timeout=10)
    assert len(committed) == 60, f"writer died early: {stderr}"
    assert proc.returncode == -9

    conn = _raw(db_path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        conn.close()

    with PromptDB(db_path) as pm:
        prompts = {p.id: p for p in pm.list("crash")}
        for pid, i in committed:
            p = prompts[pid]
            assert (p.label, p.template, p.round, p.status) == (f"v{i}", f"template {i}", i, "scored")
            assert (p.val_score, p.val_n) == (i / 1000, i + 1)
            assert [(e.score, e.n) for e in pm.evaluations(pid)] == [(i / 1000, i + 1)]
        # Whatever was in flight is either fully there or absent: a prompt
        # written but not yet scored is a clean candidate with no evaluation.
        assert len(prompts) >= len(committed)
        for p in prompts.values():
            assert p.template == f"template {p.round}"
            evals = pm.evaluations(p.id)
            assert (p.status, len(evals)) in {("scored", 1), ("candidate", 0)}
        bests = [p for p in prompts.values() if p.is_best]
        assert len(bests) == 1
        assert bests[0].round % 3 == 0
        assert bests[0].round >= max(i for _, i in committed if i % 3 == 0)


_DIE_MID_TRANSACTION = textwrap.dedent(
    """
    import os
    import sys
    from pathlib import Path
    from trainer.records.prompt_db import PromptDB

    pm = PromptDB(Path(sys.argv[1]))

    def trace(sql):
        if "INSERT INTO evaluations" in sql:
            print("evaluation inserted", flush=True)
        if sql.lstrip().startswith("UPDATE prompts SET val_score"):
            os._exit(17)  # die after the INSERT, before the UPDATE and COMMIT

    pm._conn.set_trace_callback(trace)
    pm.record_evaluation(int(sys.argv[2]), "val", 0.75, 20)
    print("not reached", flush=True)
    """
)


def test_process_exit_mid_transaction_rolls_back_the_whole_write(db_path: Path) -> None:
    with PromptDB(db_path) as pm:
        pm.start_run(RUN, "apo", {})
        pid = pm.add_prompt(RUN, "v0", "p", parent_id=None, round=0)
        pm.record_evaluation(pid, "val", 0.25, 10)

    result = subprocess.run(
        [sys.executable, "-c", _DIE_MID_TRANSACTION, str(db_path), str(pid)],
        capture_output=True,
        text=True,
        env=_child_env(),
        timeout=30,
    )
    assert result.returncode == 17, result.stderr
    assert result.stdout.splitlines() == ["evaluation inserted"]

    with PromptDB(db_path) as pm:
        rec = pm.get(pid)
        assert (rec.status, rec.val_score, rec.val_n) == ("scored", 0.25, 10)
        assert [(e.score, e.n) for e in pm.evaluations(pid)] == [(0.25, 10)]
    conn = _raw(db_path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()


# -- refusing files that are not ours ---------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        b"epoch,loss\n1,0.5\n" * 50,
        b"x",
        b"SQLite format 3\x00" + b"\xff" * 200,  # right magic, garbage header
    ],
    ids=["csv", "tiny", "corrupt-header"],
)
def test_non_sqlite_file_is_refused_and_left_untouched(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "prompts.db"
    path.write_bytes(content)
    before = path.stat()

    with pytest.raises(PromptDBError) as excinfo:
        PromptDB(path)

    assert str(path) in str(excinfo.value)
    assert path.read_bytes() == content
    assert path.stat().st_mtime_ns == before.st_mtime_ns
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prompts.db"]  # no -wal/-shm


def test_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE metrics (step INTEGER)")
    conn.commit()
    conn.close()
    content = path.read_bytes()

    with pytest.raises(PromptDBError, match="not a prompt store") as excinfo:
        PromptDB(path)
    assert str(path) in str(excinfo.value)
    assert path.read_bytes() == content


def test_unscored_evaluations_are_kept_without_a_number(pm: PromptDB) -> None:
    pid = pm.add_prompt(RUN, "v0", "p", parent_id=None, round=0)
    pm.record_unscored(pid, "val", 16, "3 of 16 rollouts gave an answer")
    assert pm.unscored(pid) == [("val", 16, "3 of 16 rollouts gave an answer")]
    record = pm.get(pid)
    assert (record.status, record.val_score, record.val_n) == ("candidate", None, None)
    assert pm.evaluations(pid) == []
    with pytest.raises(ValueError, match="reason"):
        pm.record_unscored(pid, "val", 16, "")


def _downgrade(db_path: Path, version: int) -> None:
    """Make a current file what a trainer of ``version`` left behind."""
    conn = _raw(db_path)
    for column in ("instruction", "demos_json", "change"):  # version 2 had no demonstrations
        conn.execute(f"ALTER TABLE prompts DROP COLUMN {column}")
    if version == 1:  # and version 1 no unscored evaluations
        conn.execute("DROP TABLE unscored_evaluations")
    conn.execute(f"PRAGMA user_version = {version}")
    conn.close()


@pytest.mark.parametrize("version", [1, 2])
def test_an_older_file_is_migrated_keeping_everything(db_path: Path, version: int) -> None:
    with PromptDB(db_path) as pm:
        pm.start_run(RUN, "apo", {})
        pid = pm.add_prompt(RUN, "v0", "p", parent_id=None, round=0)
        pm.record_evaluation(pid, "val", 0.5, 4)
    _downgrade(db_path, version)

    with PromptDB(db_path) as pm:
        record = pm.get(pid)
        assert (record.val_score, record.val_n) == (0.5, 4)
        assert (record.instruction, record.demos, record.change) == ("p", (), None)  # it was all instruction
        pm.record_unscored(pid, "val", 4, "0 of 4 rollouts gave an answer")
        assert len(pm.unscored(pid)) == 1
        child = pm.add_prompt(RUN, "v1", "q", parent_id=pid, round=1, change="instruction")
        assert pm.get(child).change == "instruction"
    conn = _raw(db_path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    conn.close()


def test_newer_schema_version_is_refused(db_path: Path) -> None:
    with PromptDB(db_path):
        pass
    conn = _raw(db_path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()

    with pytest.raises(PromptDBError, match="newer") as excinfo:
        PromptDB(db_path)
    assert str(db_path) in str(excinfo.value)


# -- demonstrations ------------------------------------------------------------------------------


def test_a_prompt_keeps_its_instruction_and_demonstrations_apart(db_path: Path) -> None:
    demos = (Demo("p1", "What is 1 + 1?", "1 + 1 = 2. The answer is 2.", "gold"),
             Demo("p2", "What is {2} + 2?", "The answer is 4.", "bootstrapped"))  # fmt: skip
    seed, child = Prompt("Solve."), Prompt("Solve.", demos)
    with PromptDB(db_path) as pm:
        pm.start_run(RUN, "apo", {})
        sid = pm.add_prompt(RUN, "v0", seed.render(), parent_id=None, round=0, prompt=seed, change="seed")
        cid = pm.add_prompt(RUN, "v1", child.render(), parent_id=sid, round=1, prompt=child, change="examples")
        with pytest.raises(ValueError, match="do not render"):
            pm.add_prompt(RUN, "v2", "something else", parent_id=sid, round=1, prompt=child)
        pm.record_evaluation(cid, "val", 0.75, 8)
        pm.mark_best(RUN, cid)
        record = pm.get(cid)
        assert (record.instruction, record.demos, record.change) == ("Solve.", demos, "examples")
        assert record.prompt == child and record.template == child.render()
        pm.export_best(RUN, db_path.parent)
    meta = json.loads((db_path.parent / BEST_JSON).read_text())
    assert (db_path.parent / BEST_TXT).read_text() == child.render()  # the one text to ship
    assert meta["instruction"] == "Solve." and meta["change"] == "examples"
    assert meta["demonstrations"] == [d.to_json() for d in demos]
