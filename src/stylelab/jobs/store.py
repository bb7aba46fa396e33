"""The job store: one SQLite file (standard library sqlite3, WAL mode) in a batch's output folder.

One row per job (keyed by its output name): spec (JSON), spec digest, state queued / running / done / failed,
attempts, the last one-line error, the output's sha256, where the time went and which process runs it. Only the
driver writes; every change is one transaction, so a batch killed at any point leaves a consistent store. A job
left `running` by a process that is gone reads as `interrupted` (the file is not changed) and is queued again by
the next `plan`. WAL lets `stylelab batch --status` read during a run.

The schema is versioned (`PRAGMA user_version`, with our `application_id` to tell the file from other SQLite
databases): opening a store brings an older one up to date, one migration per version, in one transaction.
`open_versioned(path, schema)` is that machinery, for every stylelab SQLite file (the web app's too).
`exclusive(folder)` is the folder's lock: one batch at a time, released by the kernel however its process ends.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import StylelabError

__all__ = [
    "APPLICATION_ID",
    "JOB_STORE",
    "LOCK_NAME",
    "REPORTED",
    "STATES",
    "STORE_NAME",
    "TIMINGS",
    "VERSION",
    "Row",
    "Schema",
    "Store",
    "StoreBusy",
    "StoreError",
    "column_names",
    "exclusive",
    "file_sha256",
    "open_versioned",
    "process_gone",
    "process_start",
    "table_names",
]

STORE_NAME = ".stylelab-jobs.sqlite"
LOCK_NAME = ".stylelab-jobs.lock"
STATES = ("queued", "running", "done", "failed")  # as stored
REPORTED = ("queued", "running", "interrupted", "done", "failed")  # as read: running whose process is gone
TIMINGS = ("load", "targets", "steps", "encode", "total")
APPLICATION_ID = 0x53544C4A  # "STLJ" in the file header: a stylelab job store

# Migration k brings a store from version k to k + 1, each a list of statements run in one transaction.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    ("""CREATE TABLE jobs (
    key TEXT PRIMARY KEY,          -- output name, relative to the output folder
    seq INTEGER NOT NULL,          -- order in the batch
    spec TEXT NOT NULL,            -- JobSpec.to_dict() as JSON
    digest TEXT NOT NULL,          -- JobSpec.digest(): a different digest is a different job
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,   -- runs started, over all batch runs
    error TEXT,                    -- the last failure's one-line message
    permanent INTEGER NOT NULL DEFAULT 0,  -- the last failure was a bad input or setting
    sha256 TEXT,                   -- of the output file written for the last success
    worker TEXT,
    steps INTEGER,
    t_load REAL, t_targets REAL, t_steps REAL, t_encode REAL, t_total REAL,  -- seconds, last attempt
    losses TEXT,                   -- final losses (JSON)
    started REAL, finished REAL    -- unix time of the last attempt
)""",),
    # 2: the process that started the last attempt (host, pid and what tells it from a later one with its pid)
    ("ALTER TABLE jobs ADD COLUMN owner_host TEXT",
     "ALTER TABLE jobs ADD COLUMN owner_pid INTEGER",
     "ALTER TABLE jobs ADD COLUMN owner_start TEXT"),
)
VERSION = len(_MIGRATIONS)
# The jobs table of version 1, which stores made before versioning have (user_version 0, no application_id).
_V1_COLUMNS = {"key", "seq", "spec", "digest", "state", "attempts", "error", "permanent", "sha256", "worker",
               "steps", "t_load", "t_targets", "t_steps", "t_encode", "t_total", "losses", "started", "finished"}


class StoreError(StylelabError):
    """The job store cannot be opened or is not a stylelab job store."""


class StoreBusy(StoreError):
    """Another batch holds the folder's lock."""


@dataclass(frozen=True)
class Schema:
    """A versioned SQLite schema: `migrations[k]` brings a file from version k to k + 1 (its statements, run in
    one transaction with the rest); `application_id`, in the file's header, tells our file from other databases."""

    application_id: int
    migrations: tuple[tuple[str, ...], ...]
    unversioned: Callable[[sqlite3.Connection], int | None]  # the version of our file made before versioning
    # (user_version 0, no application_id) from its tables, None: not ours
    what: str  # the file in messages: "the job store"
    not_ours: str  # the one-line refusal of a foreign or damaged file; {path} and {why} are filled in

    @property
    def version(self) -> int:
        return len(self.migrations)


def open_versioned(path: Path, schema: Schema, *, check_same_thread: bool = True) -> sqlite3.Connection:
    """`path` opened in autocommit mode (made if missing), in WAL mode, brought up to `schema.version`. A file
    that is not ours (another program's database, garbage) or of a newer stylelab is a one-line StoreError, and
    is left as it was: it is checked before anything is written."""
    try:
        db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=check_same_thread)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {schema.what} {path}: {exc}") from None
    try:
        version = _schema_version(db, path, schema)  # reads only
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # with WAL: a power cut may lose the last commits, never the file
        stamped = db.execute("PRAGMA application_id").fetchone()[0] == schema.application_id
        if version < schema.version or not stamped:  # not stamped: ours, from before versioning
            with _Transaction(db):
                version = _schema_version(db, path, schema)  # again: another process may have migrated meanwhile
                for statements in schema.migrations[version:]:
                    for statement in statements:
                        db.execute(statement)
                db.execute(f"PRAGMA application_id = {schema.application_id}")
                db.execute(f"PRAGMA user_version = {schema.version}")
    except sqlite3.Error as exc:
        db.close()
        if "not a database" in str(exc):
            raise StoreError(schema.not_ours.format(path=path, why="not an SQLite database")) from None
        raise StoreError(f"cannot open {schema.what} {path}: {exc}") from None
    except StoreError:
        db.close()
        raise
    return db


def _schema_version(db: sqlite3.Connection, path: Path, schema: Schema) -> int:
    """The schema version of the open file (0: a new, empty database); a StoreError for a file not of `schema`
    or of a newer version than it knows."""
    app = db.execute("PRAGMA application_id").fetchone()[0]
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if app == schema.application_id:
        if version > schema.version:
            raise StoreError(f"{schema.what} {path} is of a newer stylelab (version {version}; this one reads up "
                             f"to {schema.version}); upgrade stylelab")
        return version
    if app == 0 and version == 0:
        found = 0 if not table_names(db) else schema.unversioned(db)
        if found is not None:
            return found
    raise StoreError(schema.not_ours.format(path=path, why="an SQLite database of something else"))


def table_names(db: sqlite3.Connection) -> set[str]:
    """The file's tables, less SQLite's own (sqlite_sequence)."""
    return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                     "AND name NOT LIKE 'sqlite_%'")}


def column_names(db: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in db.execute(f"PRAGMA table_info({table})")}


def _unversioned_store(db: sqlite3.Connection) -> int | None:
    """Version 1: the jobs table that stores made before versioning have."""
    return 1 if table_names(db) == {"jobs"} and column_names(db, "jobs") == _V1_COLUMNS else None


JOB_STORE = Schema(APPLICATION_ID, _MIGRATIONS, _unversioned_store, "the job store",
                   "{path} is not a stylelab job store ({why}); move it away or use another output folder")


@dataclass(frozen=True)
class Row:
    key: str
    seq: int
    spec: dict
    digest: str
    state: str
    attempts: int
    error: str | None
    permanent: bool
    sha256: str | None
    worker: str | None
    steps: int | None
    seconds: dict[str, float | None]
    losses: dict[str, float]
    started: float | None
    finished: float | None


def file_sha256(path: Path) -> str | None:
    try:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()
    except OSError:
        return None


class Store:
    """The job store at `folder / STORE_NAME` (created if missing, unless `create` is False). Raises StoreError
    for a file that is not a stylelab job store (another program's database, garbage) or one of a newer stylelab;
    such a file is left as it was."""

    def __init__(self, folder: str | Path, create: bool = True) -> None:
        self.folder = Path(folder)
        self.path = self.folder / STORE_NAME
        if not create and not self.path.is_file():
            raise StoreError(f"no batch job store in {self.folder} (expected {STORE_NAME})")
        # autocommit; each change below is one explicit transaction
        self.db = open_versioned(self.path, JOB_STORE)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ----------------------------------------------------------------------------------------- planning

    def plan(self, jobs: Sequence[tuple[str, dict, str]]) -> tuple[list[str], list[str]]:
        """Register `jobs` (key, spec dict, digest) and decide what to run: returns (to run, skipped as done).
        Done jobs whose output file still has the recorded sha256 are skipped; a done job whose output is missing
        or changed, a new or changed spec, a failed or interrupted (running/queued) job is queued again."""
        run, skip = [], []
        with self._tx():
            for seq, (key, spec, digest) in enumerate(jobs):
                row = self.db.execute("SELECT digest, state, sha256 FROM jobs WHERE key = ?", (key,)).fetchone()
                if row is not None and row[0] == digest and row[1] == "done" \
                        and row[2] is not None and file_sha256(self.folder / key) == row[2]:
                    self.db.execute("UPDATE jobs SET seq = ? WHERE key = ?", (seq, key))
                    skip.append(key)
                    continue
                if row is None or row[0] != digest:
                    self.db.execute(
                        "INSERT OR REPLACE INTO jobs (key, seq, spec, digest, state, attempts) VALUES (?,?,?,?,?,0)",
                        (key, seq, json.dumps(spec, sort_keys=True), digest, "queued"))
                else:
                    self.db.execute("UPDATE jobs SET seq = ?, state = 'queued' WHERE key = ?", (seq, key))
                run.append(key)
        return run, skip

    def reject(self, key: str, seq: int, spec: dict, error: str) -> None:
        """Record a job that could not even be built (a bad manifest row): failed, permanent, with its error."""
        with self._tx():
            self.db.execute(
                "INSERT OR REPLACE INTO jobs (key, seq, spec, digest, state, attempts, error, permanent, finished) "
                "VALUES (?, ?, ?, '', 'failed', 1, ?, 1, ?)",
                (key, seq, json.dumps(spec, sort_keys=True, default=str), error, time.time()))

    # -------------------------------------------------------------------------------------------- updates

    def start(self, key: str, worker: str = "") -> None:
        """Mark an attempt started by this process (its owner: should it die, readers see `interrupted`)."""
        with self._tx():
            self.db.execute("UPDATE jobs SET state = 'running', attempts = attempts + 1, worker = ?, started = ?, "
                            "finished = NULL, owner_host = ?, owner_pid = ?, owner_start = ? WHERE key = ?",
                            (worker, time.time(), socket.gethostname(), os.getpid(), process_start(os.getpid()),
                             key))

    def finish(self, key: str, sha256: str, seconds: dict[str, float], losses: dict[str, float], steps: int,
               worker: str = "") -> None:
        with self._tx():
            self.db.execute(
                "UPDATE jobs SET state = 'done', error = NULL, permanent = 0, sha256 = ?, worker = ?, steps = ?, "
                "t_load = ?, t_targets = ?, t_steps = ?, t_encode = ?, t_total = ?, losses = ?, finished = ? "
                "WHERE key = ?",
                (sha256, worker, steps, *(seconds.get(t) for t in TIMINGS), json.dumps(losses), time.time(), key))

    def fail(self, key: str, error: str, permanent: bool, seconds: dict[str, float] | None = None,
             final: bool = True, worker: str = "") -> None:
        """Record a failed attempt: state failed when `final`, else queued again (a retry follows)."""
        seconds = seconds or {}
        with self._tx():
            self.db.execute(
                "UPDATE jobs SET state = ?, error = ?, permanent = ?, sha256 = NULL, worker = ?, "
                "t_load = ?, t_targets = ?, t_steps = ?, t_encode = ?, t_total = ?, finished = ? WHERE key = ?",
                ("failed" if final else "queued", error, int(permanent), worker,
                 *(seconds.get(t) for t in TIMINGS), time.time(), key))

    # -------------------------------------------------------------------------------------------- reading

    def rows(self, keys: Iterable[str] | None = None) -> list[Row]:
        """The jobs in batch order; `state` as read: a running job whose process is gone is `interrupted`."""
        cur = self.db.execute("SELECT key, seq, spec, digest, state, attempts, error, permanent, sha256, worker, "
                              "steps, t_load, t_targets, t_steps, t_encode, t_total, losses, started, finished, "
                              "owner_host, owner_pid, owner_start FROM jobs ORDER BY seq, key")
        wanted = None if keys is None else set(keys)
        gone = _Gone()
        out = []
        for r in cur.fetchall():
            if wanted is not None and r[0] not in wanted:
                continue
            state = "interrupted" if r[4] == "running" and gone(*r[19:22]) else r[4]
            out.append(Row(r[0], r[1], json.loads(r[2]), r[3], state, r[5], r[6], bool(r[7]), r[8], r[9], r[10],
                           dict(zip(TIMINGS, r[11:16])), json.loads(r[16]) if r[16] else {}, r[17], r[18]))
        return out

    def row(self, key: str) -> Row | None:
        rows = self.rows([key])
        return rows[0] if rows else None

    def counts(self) -> dict[str, int]:
        """Jobs by state as read (REPORTED: `interrupted` for running jobs whose process is gone)."""
        counts = dict.fromkeys(REPORTED, 0)
        gone = _Gone()
        for state, host, pid, start, n in self.db.execute(
                "SELECT state, owner_host, owner_pid, owner_start, COUNT(*) FROM jobs "
                "GROUP BY state, owner_host, owner_pid, owner_start"):
            counts["interrupted" if state == "running" and gone(host, pid, start) else state] += n
        return counts

    def _tx(self):
        return _Transaction(self.db)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, *_) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


# ---------------------------------------------------------------------------------------- owners and the lock


def _proc_stat(pid: int) -> list[str] | None:
    """Fields 3 on of /proc/PID/stat (proc(5)): state, ppid, ...; None where there is no such file."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": comm may hold spaces and parentheses


def process_start(pid: int) -> str | None:
    """What tells process `pid` from a later one given the same pid: the boot's id and the process's start time
    in clock ticks since boot (Linux /proc). None where /proc does not say (another system, no such process)."""
    fields = _proc_stat(pid)
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None
    return None if fields is None else f"{boot}:{fields[19]}"  # field 22, starttime


def process_gone(host: str | None, pid: int | None, start: str | None) -> bool:
    """Whether the process recorded as (host, pid, start) has ended. False where this cannot be told: no owner
    recorded (a row written before owners were), another host's process, a system without POSIX signals."""
    if host != socket.gethostname() or not pid or pid < 0 or os.name != "posix":
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # it exists, as another user's process
    fields = _proc_stat(pid)
    if fields is not None and fields[0] in ("Z", "X"):
        return True  # a zombie: it has ended, only its exit status waits to be collected
    now = process_start(pid)
    return start is not None and now is not None and now != start  # the pid was given to another process


class _Gone:
    """`process_gone`, asked once per owner while reading one table."""

    def __init__(self) -> None:
        self.known: dict[tuple, bool] = {}

    def __call__(self, host: str | None, pid: int | None, start: str | None) -> bool:
        key = (host, pid, start)
        if key not in self.known:
            self.known[key] = process_gone(host, pid, start)
        return self.known[key]


_held: dict[str, tuple[int, int, int]] = {}  # lock file -> (fd, thread id, depth): the locks this process holds
_held_guard = threading.Lock()


@contextmanager
def exclusive(folder: str | Path) -> Iterator[None]:
    """Hold `folder`'s batch lock (flock on folder/LOCK_NAME, which records the holder's pid and host) for the
    block: one batch at a time on a folder. The kernel releases it when the holder's process ends, even by kill -9,
    so a lock file left behind never blocks. Nests within one thread. Raises StoreBusy while another process (or
    thread) holds it. Without fcntl (Windows) there is no lock."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    path = os.path.realpath(Path(folder) / LOCK_NAME)
    me = threading.get_ident()
    with _held_guard:
        held = _held.get(path)
        if held is not None and held[1] != me:
            raise StoreBusy(f"another batch is running on {folder} (in this process)")
        if held is None:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise StoreError(f"cannot lock {folder}: {exc.strerror or exc}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(fd, 256).decode(errors="replace").split()
                os.close(fd)
                raise StoreBusy(f"another batch is running on {folder}{_holder(holder)}; wait for it to end or "
                                "stop it") from None
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
            held = (fd, me, 0)
        _held[path] = (held[0], me, held[2] + 1)
    try:
        yield
    finally:
        with _held_guard:
            fd, _, depth = _held.pop(path)
            if depth > 1:
                _held[path] = (fd, me, depth - 1)
            else:
                os.close(fd)  # releases the flock; the file stays (removing it would let two holders in)


def _holder(fields: list[str]) -> str:
    """' (pid N)' or ' (pid N on HOST)' from a lock file's "pid host" line, '' when it says nothing."""
    if not fields or not fields[0].isdigit():
        return ""
    host = fields[1] if len(fields) > 1 else None
    return f" (pid {fields[0]})" if host in (None, socket.gethostname()) else f" (pid {fields[0]} on {host})"
