"""Local state that is not the catalog: what this user uploaded, and a hash cache.

`deon up` may replace an object without `--overwrite` only when the object in the
bucket is exactly the one this user last uploaded there (the same ETag): then the
local file is a newer version of the user's own data. Anything else at the key is
someone else's, and is refused.

The hash cache remembers, for a local file identified by (device, inode, size, mtime,
ctime), its sha256 and the ETag of the object it was downloaded from or uploaded as.
Any change to a file changes its ctime (which no user can set), so a hit means the
bytes are the ones hashed: a no-op `down` or `up` reads no file contents (as DVC's
state database does).
"""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from deon import config

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    dev INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    md5 TEXT,
    etag TEXT
);
CREATE TABLE IF NOT EXISTS uploads (
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    etag TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    uploaded_at REAL NOT NULL,
    PRIMARY KEY (bucket, key)
)
"""


def state_path() -> Path:
    return config.data_home() / "state.sqlite"


class State:
    """A small SQLite file in the per-user data folder, shared by concurrent deon runs."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or state_path()
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._pending: list[tuple[object, ...]] = []

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)  # readable by the user only
            os.close(fd)
            db = sqlite3.connect(
                self.path, timeout=30, check_same_thread=False, isolation_level=None
            )
            # Two deon processes creating the file at once can deadlock on its first
            # schema write (SQLite then answers "database is locked" at once, without
            # waiting): take the write lock first, and try again for a while if needed.
            deadline = time.monotonic() + 30
            while True:
                try:
                    db.execute("PRAGMA journal_mode=WAL")
                    db.execute("BEGIN IMMEDIATE")
                    for statement in _SCHEMA.split(";"):
                        db.execute(statement)
                    db.execute("COMMIT")
                    break
                except sqlite3.OperationalError as e:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    if "locked" not in str(e) or time.monotonic() > deadline:
                        raise
                    time.sleep(random.uniform(0.01, 0.05))
            db.execute("PRAGMA synchronous=NORMAL")
            db.isolation_level = "DEFERRED"  # transactions around writes again, as before
            self._db = db
        return self._db

    def uploaded_etag(self, bucket: str, key: str) -> str | None:
        """The ETag of what this user last uploaded at the key, if anything."""
        with self._lock:
            row = (
                self._conn()
                .execute("SELECT etag FROM uploads WHERE bucket = ? AND key = ?", (bucket, key))
                .fetchone()
            )
        return row[0] if row else None

    def record_upload(self, bucket: str, key: str, etag: str, sha256: str) -> None:
        with self._lock:
            db = self._conn()
            db.execute(
                "INSERT OR REPLACE INTO uploads VALUES (?, ?, ?, ?, ?)",
                (bucket, key, etag, sha256, time.time()),
            )
            db.commit()

    # -- the hash cache ----------------------------------------------------------------

    def lookup(self, path: Path, st: os.stat_result) -> Cached | None:
        """What is known of a file's bytes, if it has not changed since."""
        with self._lock:
            row = (
                self._conn()
                .execute(
                    "SELECT dev, ino, size, mtime_ns, ctime_ns, sha256, md5, etag FROM files "
                    "WHERE path = ?",
                    (os.fsdecode(path),),
                )
                .fetchone()
            )
        if row is None or tuple(row[:5]) != _identity(st):
            return None
        return Cached(sha256=row[5], md5=row[6], etag=row[7])

    def under(self, root: Path) -> dict[str, tuple[object, ...]]:
        """Every cached row for files under a folder, by path: one query instead of one
        per file. Rows are (dev, ino, size, mtime_ns, ctime_ns, sha256, md5, etag)."""
        low = os.fsdecode(root).rstrip("/") + "/"
        high = low[:-1] + "0"  # "/" + 1: every path that starts with low
        with self._lock:
            rows = (
                self._conn()
                .execute(
                    "SELECT path, dev, ino, size, mtime_ns, ctime_ns, sha256, md5, etag FROM files "
                    "WHERE path >= ? AND path < ?",
                    (low, high),
                )
                .fetchall()
            )
        return {r[0]: tuple(r[1:]) for r in rows}

    def remember(
        self,
        path: Path,
        st: os.stat_result,
        sha256: str,
        *,
        md5: str | None = None,
        etag: str | None = None,
    ) -> None:
        """Record a file's hashes (written in batches; see `flush`)."""
        row = (os.fsdecode(path), *_identity(st), sha256, md5, etag)
        with self._lock:
            self._pending.append(row)
            if len(self._pending) >= 500:
                self._flush_locked()

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if self._pending:
            db = self._conn()
            db.executemany(
                "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", self._pending
            )
            db.commit()
            self._pending.clear()

    def close(self) -> None:
        with self._lock:
            if self._pending:
                # A cache: losing it costs a re-hash, never correctness.
                with contextlib.suppress(sqlite3.Error, OSError):
                    self._flush_locked()
            if self._db is not None:
                self._db.close()
                self._db = None


@dataclass(frozen=True)
class Cached:
    """What the hash cache knows of a file."""

    sha256: str
    md5: str | None
    etag: str | None


def identity(st: os.stat_result) -> tuple[int, int, int, int, int]:
    """What identifies a file's bytes without reading them."""
    return _identity(st)


def _identity(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
