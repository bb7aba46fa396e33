"""The web app's tables: uploads and jobs, in DATA/stylelab-web.sqlite; the only module of web/ that speaks SQL.

Own tables rather than the batch store's: that one is keyed by output file name, has no `cancelled` state and its
`plan()` re-queues by spec digest, while the web needs numbered jobs (texture or run), a cancel, a parent job (edit
and continue) and uploads by content hash. Opened, checked and migrated by stylelab.jobs.store.open_versioned, the
machinery of every stylelab SQLite file (versioned migrations, one transaction, a foreign file refused).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from ..jobs.store import Schema, column_names, open_versioned, table_names

__all__ = ["APPLICATION_ID", "DB_NAME", "MAX_ID", "WEB_DB", "Database"]

DB_NAME = "stylelab-web.sqlite"
APPLICATION_ID = 0x53544C57  # "STLW" in the file header: a stylelab web database
MAX_ID = 2**63 - 1  # SQLite's largest INTEGER: a larger id is no job (not an overflow)

# Migration k brings the file from version k to k + 1. Version 1 is the first data folders' schema.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    ("""CREATE TABLE uploads (
    sha256 TEXT PRIMARY KEY, file TEXT NOT NULL, name TEXT, width INTEGER, height INTEGER, added REAL
)""", """CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('run', 'texture')),
    content TEXT,                  -- sha256 of the content upload (NULL for a texture)
    styles TEXT NOT NULL,          -- JSON list of style upload sha256s
    settings TEXT NOT NULL,        -- JSON: the form's values (names of `stylelab run` options)
    init TEXT,                     -- sha256 of an upload to start from, else NULL
    parent INTEGER,                -- the job this one continues or restarts
    priority INTEGER NOT NULL DEFAULT 0,  -- higher runs first (continue / restart of the running job)
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    error TEXT, steps INTEGER NOT NULL DEFAULT 0, losses TEXT, result TEXT,
    created REAL, started REAL, finished REAL
)"""),
    # 2: regions, JSON list of {content_mask, style (from 1), style_mask}: uploads
    ("ALTER TABLE jobs ADD COLUMN masks TEXT",),
    # 3: 1 when `init` is the image of the job it continues (edit and continue), not a chosen start image
    ("ALTER TABLE jobs ADD COLUMN continued INTEGER NOT NULL DEFAULT 0",),
    # 4: the form now shows a preset's values, and a field counts as the user's when it differs from them; before, it
    # showed stylelab's defaults, so a stored job with the nnst preset holds those where the preset's applied
    ("UPDATE jobs SET settings = json_set(settings, '$.style_loss', 'nn') WHERE json_extract(settings, '$.preset') = "
     "'nnst' AND json_extract(settings, '$.style_loss') = 'gram:0.5,sliced-wasserstein:0.5'",
     "UPDATE jobs SET settings = json_set(settings, '$.style_weight', 30.0) WHERE json_extract(settings, '$.preset') "
     "= 'nnst' AND json_extract(settings, '$.style_weight') = 10.0"),
)
_V1_JOBS = {"id", "kind", "content", "styles", "settings", "init", "parent", "priority", "state", "error", "steps",
            "losses", "result", "created", "started", "finished"}
_ADDED = ("masks", "continued")  # the columns that versions 2 and 3 add, which unversioned files got one by one


def _unversioned(db: sqlite3.Connection) -> int | None:
    """The version of a data folder made before the schema was versioned: version 1's tables plus the columns it
    had been given (masks, then continued); None for anything else."""
    if table_names(db) != {"uploads", "jobs"}:
        return None
    columns = column_names(db, "jobs")
    have = [name in columns for name in _ADDED]
    k = have.index(False) if False in have else len(have)
    return 1 + k if _V1_JOBS <= columns and not any(have[k:]) else None


WEB_DB = Schema(APPLICATION_ID, _MIGRATIONS, _unversioned, "the web database",
                "{path} is not a stylelab database (damaged?)")


class Database:
    """The uploads and jobs tables of one data folder; safe to call from any thread (one connection, a lock)."""

    def __init__(self, path: Path) -> None:
        self.db = open_versioned(path, WEB_DB, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.lock = threading.Lock()

    def close(self) -> None:
        with self.lock:
            self.db.close()

    def _all(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self.lock:
            return self.db.execute(sql, args).fetchall()

    def _run(self, sql: str, args: tuple = ()) -> int:
        """One change (its own transaction); returns the last inserted row id."""
        with self.lock:
            return int(self.db.execute(sql, args).lastrowid or 0)

    # -------------------------------------------------------------------------------------------- uploads

    def add_upload(self, sha: str, file: str, name: str, size: tuple[int, int]) -> None:
        self._run("INSERT OR REPLACE INTO uploads (sha256, file, name, width, height, added) VALUES (?, ?, ?, ?, ?, ?)",
                  (sha, file, name, size[0], size[1], time.time()))

    def upload(self, sha: str) -> dict | None:
        rows = self._all("SELECT * FROM uploads WHERE sha256 = ?", (sha,))
        return dict(rows[0]) if rows else None

    def uploads(self, limit: int) -> list[dict]:
        return [dict(r) for r in self._all("SELECT * FROM uploads ORDER BY added DESC LIMIT ?", (limit,))]

    # ----------------------------------------------------------------------------------------------- jobs

    def add_job(self, kind: str, content: str | None, styles: list[str], settings: dict[str, Any], init: str | None,
                masks: list[dict], continued: bool, parent: int | None, priority: int) -> int:
        """A queued job; returns its id."""
        return self._run(
            "INSERT INTO jobs (kind, content, styles, settings, init, masks, continued, parent, priority, state, "
            "created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?)",
            (kind, content, json.dumps(styles), json.dumps(settings), init, json.dumps(masks) if masks else None,
             int(continued), parent, priority, time.time()))

    def job(self, job_id: int) -> dict | None:
        rows = self._all("SELECT * FROM jobs WHERE id = ?", (job_id,)) if 0 < job_id <= MAX_ID else []
        return _job(rows[0]) if rows else None

    def jobs(self) -> list[dict]:
        """Every job, newest first."""
        return [_job(r) for r in self._all("SELECT * FROM jobs ORDER BY id DESC")]

    def queue(self) -> list[int]:
        """Queued job ids in the order they will run."""
        return [r["id"] for r in self._all("SELECT id FROM jobs WHERE state = 'queued' ORDER BY priority DESC, id")]

    def update(self, job_id: int, **values: Any) -> None:
        """Set columns of a job (`losses`: a dict, stored as JSON)."""
        if "losses" in values:
            values["losses"] = json.dumps(values["losses"]) if values["losses"] else None
        cols = ", ".join(f"{k} = ?" for k in values)
        self._run(f"UPDATE jobs SET {cols} WHERE id = ?", (*values.values(), job_id))

    def delete(self, job_id: int) -> None:
        self._run("DELETE FROM jobs WHERE id = ?", (job_id,))

    def interrupt_running(self, error: str) -> None:
        """A job found running when a server starts was interrupted (the server died): failed, with `error`."""
        self._run("UPDATE jobs SET state = 'failed', error = ?, finished = ? WHERE state = 'running'",
                  (error, time.time()))


def _job(r: sqlite3.Row) -> dict:
    d = dict(r)
    d["styles"] = json.loads(d["styles"])
    d["settings"] = json.loads(d["settings"])
    d["losses"] = json.loads(d["losses"]) if d["losses"] else {}
    d["masks"] = json.loads(d["masks"]) if d["masks"] else []
    return d
