"""The job store: one SQLite file (standard library sqlite3, WAL mode) in a batch's output folder.

One row per job (keyed by its output name): spec (JSON), spec digest, state queued / running / done / failed,
attempts, the last one-line error, the output's sha256 and where the time went. Only the driver writes; every
change is one transaction, so a batch killed at any point leaves a consistent store (a job left `running` was
interrupted and is queued again by the next `plan`). WAL lets `stylelab batch --status` read during a run.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import StylelabError

STORE_NAME = ".stylelab-jobs.sqlite"
STATES = ("queued", "running", "done", "failed")
TIMINGS = ("load", "targets", "steps", "encode", "total")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
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
);
"""


class StoreError(StylelabError):
    """The job store cannot be opened or is not a stylelab job store."""


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
    """The job store at `folder / STORE_NAME` (created if missing, unless `create` is False)."""

    def __init__(self, folder: str | Path, create: bool = True) -> None:
        self.folder = Path(folder)
        self.path = self.folder / STORE_NAME
        if not create and not self.path.is_file():
            raise StoreError(f"no batch job store in {self.folder} (expected {STORE_NAME})")
        try:
            # isolation_level=None: autocommit; each change below is one explicit transaction.
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: a power cut may lose the last commits, never corrupt the file
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the job store {self.path}: {exc}") from None

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
        with self._tx():
            self.db.execute("UPDATE jobs SET state = 'running', attempts = attempts + 1, worker = ?, started = ?, "
                            "finished = NULL WHERE key = ?", (worker, time.time(), key))

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
        cur = self.db.execute("SELECT key, seq, spec, digest, state, attempts, error, permanent, sha256, worker, "
                              "steps, t_load, t_targets, t_steps, t_encode, t_total, losses, started, finished "
                              "FROM jobs ORDER BY seq, key")
        wanted = None if keys is None else set(keys)
        out = []
        for r in cur.fetchall():
            if wanted is not None and r[0] not in wanted:
                continue
            out.append(Row(r[0], r[1], json.loads(r[2]), r[3], r[4], r[5], r[6], bool(r[7]), r[8], r[9], r[10],
                           dict(zip(TIMINGS, r[11:16])), json.loads(r[16]) if r[16] else {}, r[17], r[18]))
        return out

    def row(self, key: str) -> Row | None:
        rows = self.rows([key])
        return rows[0] if rows else None

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATES, 0)
        counts.update(dict(self.db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()))
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
