"""The batch job store: schema versions and migration, files that are not a job store, jobs whose process is gone,
the folder lock."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from stylelab.jobs.store import (
    APPLICATION_ID,
    STORE_NAME,
    VERSION,
    Schema,
    Store,
    StoreBusy,
    StoreError,
    exclusive,
    open_versioned,
    process_start,
)

# The job store as stylelab wrote it before its schema was versioned (user_version 0, no application_id).
V1_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    key TEXT PRIMARY KEY, seq INTEGER NOT NULL, spec TEXT NOT NULL, digest TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0, error TEXT, permanent INTEGER NOT NULL DEFAULT 0, sha256 TEXT, worker TEXT,
    steps INTEGER, t_load REAL, t_targets REAL, t_steps REAL, t_encode REAL, t_total REAL, losses TEXT,
    started REAL, finished REAL
);
"""


def sql(folder: Path, statement: str, *params) -> list[tuple]:
    db = sqlite3.connect(folder / STORE_NAME, isolation_level=None)
    try:
        return db.execute(statement, params).fetchall()
    finally:
        db.close()


def test_store_made_before_versioning_is_migrated_with_its_rows(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / STORE_NAME, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(V1_SCHEMA)
    db.execute("INSERT INTO jobs (key, seq, spec, digest, state, attempts, sha256, t_total, losses) "
               "VALUES ('a.png', 0, '{\"n\": 1}', 'd1', 'done', 1, 'abc', 2.5, '{\"loss\": 0.5}')")
    db.execute("INSERT INTO jobs (key, seq, spec, digest, state, attempts) "
               "VALUES ('b.png', 1, '{}', 'd2', 'running', 1)")
    db.close()

    with Store(tmp_path, create=False) as store:
        a, b = store.rows()
        assert (a.key, a.spec, a.state, a.attempts, a.sha256, a.seconds["total"], a.losses) == \
            ("a.png", {"n": 1}, "done", 1, "abc", 2.5, {"loss": 0.5})
        assert b.state == "running"  # no owner recorded by the old version: nothing tells it is gone
    assert sql(tmp_path, "PRAGMA user_version") == [(VERSION,)]
    assert sql(tmp_path, "PRAGMA application_id") == [(APPLICATION_ID,)]
    columns = {r[1] for r in sql(tmp_path, "PRAGMA table_info(jobs)")}
    assert {"owner_host", "owner_pid", "owner_start"} <= columns
    with Store(tmp_path) as store:  # opening a current store changes nothing
        assert [r.key for r in store.rows()] == ["a.png", "b.png"]
        store.start("b.png")
        assert store.row("b.png").attempts == 2


def test_new_store_is_of_the_current_version(tmp_path: Path) -> None:
    Store(tmp_path).close()
    assert sql(tmp_path, "PRAGMA user_version") == [(VERSION,)]
    assert sql(tmp_path, "PRAGMA application_id") == [(APPLICATION_ID,)]


def test_store_of_a_newer_version_is_refused_unchanged(tmp_path: Path) -> None:
    Store(tmp_path).close()
    sql(tmp_path, f"PRAGMA user_version = {VERSION + 1}")
    before = (tmp_path / STORE_NAME).read_bytes()
    with pytest.raises(StoreError, match=f"newer stylelab \\(version {VERSION + 1}; this one reads up to {VERSION}"):
        Store(tmp_path)
    assert (tmp_path / STORE_NAME).read_bytes() == before


@pytest.mark.parametrize("schema", [
    "CREATE TABLE jobs (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO jobs (name) VALUES ('x')",
    "CREATE TABLE photos (path TEXT)",
])
def test_other_sqlite_database_is_not_a_store_and_is_left_alone(tmp_path: Path, schema: str) -> None:
    db = sqlite3.connect(tmp_path / STORE_NAME)
    db.executescript(schema)
    db.close()
    before = (tmp_path / STORE_NAME).read_bytes()
    with pytest.raises(StoreError, match="is not a stylelab job store"):
        Store(tmp_path)
    assert (tmp_path / STORE_NAME).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [STORE_NAME]  # no -wal or -shm file either


def notes_schema(*migrations: tuple[str, ...]) -> Schema:
    return Schema(0x7E57, migrations, lambda db: None, "the notes file", "{path} is not a notes file ({why})")


def test_a_failed_migration_leaves_the_file_at_its_version(tmp_path: Path) -> None:
    path = tmp_path / "notes.sqlite"
    v1 = ("CREATE TABLE notes (text TEXT)", "INSERT INTO notes VALUES ('kept')")
    open_versioned(path, notes_schema(v1)).close()
    broken = notes_schema(v1, ("ALTER TABLE notes ADD COLUMN added REAL",), ("ALTER TABLE nowhere ADD COLUMN x",))
    with pytest.raises(StoreError, match=r"cannot open the notes file .*no such table: nowhere"):
        open_versioned(path, broken)
    db = open_versioned(path, notes_schema(v1, ("ALTER TABLE notes ADD COLUMN added REAL",)))
    assert db.execute("PRAGMA user_version").fetchone()[0] == 2  # version 2 ran once: migration 2 was undone
    assert db.execute("SELECT * FROM notes").fetchall() == [("kept", None)]
    db.close()
    Store(tmp_path).close()  # a batch job store: a stylelab file, but not a notes file
    with pytest.raises(StoreError, match=r"is not a notes file \(an SQLite database of something else\)"):
        open_versioned(tmp_path / STORE_NAME, notes_schema(v1))


def test_running_job_reads_interrupted_once_its_process_is_gone(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.plan([("a.png", {}, "d")])
    store.start("a.png")
    assert store.row("a.png").state == "running"  # this process: alive
    assert store.counts()["running"] == 1

    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                           check=True)
    sql(tmp_path, "UPDATE jobs SET owner_pid = ?", int(child.stdout))  # ended and collected
    assert store.row("a.png").state == "interrupted"
    assert store.counts() == {"queued": 0, "running": 0, "interrupted": 1, "done": 0, "failed": 0}

    sql(tmp_path, "UPDATE jobs SET owner_pid = ?, owner_host = 'elsewhere'", os.getpid())
    assert store.row("a.png").state == "running"  # another machine's process: cannot tell

    assert store.plan([("a.png", {}, "d")]) == (["a.png"], [])  # a rerun redoes it
    assert store.row("a.png").state == "queued"
    store.close()


@pytest.mark.skipif(process_start(os.getpid()) is None, reason="needs /proc")
def test_running_job_whose_pid_went_to_another_process_reads_interrupted(tmp_path: Path) -> None:
    with Store(tmp_path) as store:
        store.plan([("a.png", {}, "d")])
        store.start("a.png")
        start = sql(tmp_path, "SELECT owner_start FROM jobs")[0][0]
        assert start == process_start(os.getpid())
        boot, ticks = start.rsplit(":", 1)
        sql(tmp_path, "UPDATE jobs SET owner_start = ?", f"{boot}:{int(ticks) - 1}")  # same pid, started earlier
        assert store.row("a.png").state == "interrupted"


def test_exclusive_nests_in_one_thread_and_refuses_another_holder(tmp_path: Path) -> None:
    import fcntl
    import threading

    with exclusive(tmp_path), exclusive(tmp_path):
        errors = []
        thread = threading.Thread(target=lambda: errors.append(_try(tmp_path)))
        thread.start()
        thread.join()
        assert errors and "another batch is running on" in errors[0]
        with open(tmp_path / ".stylelab-jobs.lock") as f:  # held: flock on another open file is refused
            with pytest.raises(BlockingIOError):
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            assert f.read().split()[0] == str(os.getpid())
    with open(tmp_path / ".stylelab-jobs.lock") as f:  # released once the outer block ends
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _try(folder: Path) -> str:
    try:
        with exclusive(folder):
            return ""
    except StoreBusy as exc:
        return str(exc)
