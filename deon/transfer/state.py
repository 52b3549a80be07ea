"""Local state that is not the catalog: what this user uploaded, and a hash cache.

`deon up` may replace an object without `--overwrite` only when the object in the
bucket is exactly the one this user last uploaded there (the same ETag): then the
local file is a newer version of the user's own data. Anything else at the key is
someone else's, and is refused. The ledger is keyed by (endpoint, bucket, key): a bucket
of the same name on another server is another bucket.

The hash cache remembers, for a local file identified by (device, inode, size, mtime,
ctime), its sha256 and MD5, and the ETag of the object (endpoint, bucket, key) it was
downloaded from or uploaded as. That ETag answers only for that object: a file uploaded
to one bucket proves nothing about a same-named key elsewhere.
Any change to a file changes its ctime (which no user can set), so a hit means the
bytes are the ones hashed: a no-op `down` or `up` reads no file contents (as DVC's
state database does).
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from deon import config

#: Version 2 keys what is cached by destination. Version 1 (`files` and `uploads`, keyed by
#: local path and by bucket and key alone) let what deon knew of one destination answer
#: for another (issue 13): its tables are left as they are, unread; the sha256 and MD5
#: of its rows are copied into `hashes` (they are facts about the bytes), their ETags are
#: not (nobody knows which endpoint they came from), and its ledger is not taken over:
#: after an upgrade, replacing an object uploaded before needs `--overwrite` once.
SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS hashes (
    path TEXT PRIMARY KEY,
    dev INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    md5 TEXT,
    etag TEXT,
    endpoint TEXT,
    bucket TEXT,
    key TEXT
);
CREATE TABLE IF NOT EXISTS ledger (
    endpoint TEXT NOT NULL,
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    etag TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    uploaded_at REAL NOT NULL,
    PRIMARY KEY (endpoint, bucket, key)
)
"""

#: Rows of a version-1 hash cache, without their ETags, when the file is upgraded.
_FROM_V1 = """
INSERT OR IGNORE INTO hashes (path, dev, ino, size, mtime_ns, ctime_ns, sha256, md5)
SELECT path, dev, ino, size, mtime_ns, ctime_ns, sha256, md5 FROM files
"""


def state_path() -> Path:
    return config.data_home() / "state.sqlite"


class State:
    """A small SQLite file in the per-user data folder, shared by concurrent deon runs.

    What it holds about objects is bound to one endpoint (`endpoint`, "" for AWS) and to
    the bucket and key: nothing known of one destination answers for another.

    Writes that fail because the disk is full or read-only do not fail the transfer
    they describe: the first such failure is kept in `problem` (the caller warns once)
    and further writes are skipped; a lost cache row costs a re-hash, a lost ledger row
    an `--overwrite`, never a wrong answer.
    """

    def __init__(self, path: Path | None = None, *, endpoint: str = "") -> None:
        self.path = path or state_path()
        self.endpoint = endpoint
        self.problem: str | None = None
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._pending: list[tuple[object, ...]] = []
        self._skip_writes = False

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            try:
                self._db = self._open()
            except (sqlite3.OperationalError, OSError) as e:
                if not _cannot_write(e):
                    raise
                # A full or read-only disk: this run keeps its cache in memory.
                self.problem = (
                    f"cannot write deon's state file {self.path}: {_reason(e, self.path)}"
                )
                db = sqlite3.connect(":memory:", check_same_thread=False)
                for statement in _SCHEMA.split(";"):
                    db.execute(statement)
                self._db = db
        return self._db

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)  # readable by the user only
        os.close(fd)
        db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        # Two deon processes creating the file at once can deadlock on its first
        # schema write (SQLite then answers "database is locked" at once, without
        # waiting): take the write lock first, and try again for a while if needed.
        deadline = time.monotonic() + 30
        while True:
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("BEGIN IMMEDIATE")
                version = db.execute("PRAGMA user_version").fetchone()[0]
                if version < SCHEMA_VERSION:
                    for statement in _SCHEMA.split(";"):
                        db.execute(statement)
                    had_v1 = db.execute(
                        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'files'"
                    ).fetchone()
                    if had_v1:
                        db.execute(_FROM_V1)
                    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
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
        return db

    def _write(self, sql: str, rows: list[tuple[object, ...]]) -> None:
        """Write rows in one transaction, unless writing already failed this run."""
        db = self._conn()
        if self._skip_writes:
            return
        try:
            db.executemany(sql, rows)
            db.commit()
        except (sqlite3.OperationalError, OSError) as e:
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.rollback()
            if not _cannot_write(e):
                raise
            self.problem = self._cannot(e)
            self._skip_writes = True

    def _cannot(self, e: BaseException) -> str:
        return f"cannot write deon's state file {self.path}: {_reason(e, self.path)}"

    # -- the upload ledger ----------------------------------------------------------

    def upload(self, bucket: str, key: str) -> Uploaded | None:
        """What this user last uploaded at the key on this endpoint, if anything."""
        with self._lock:
            row = (
                self._conn()
                .execute(
                    "SELECT etag, sha256 FROM ledger WHERE endpoint = ? AND bucket = ? AND key = ?",
                    (self.endpoint, bucket, key),
                )
                .fetchone()
            )
        return Uploaded(row[0], row[1]) if row else None

    def uploaded_etag(self, bucket: str, key: str) -> str | None:
        """The ETag of what this user last uploaded at the key, if anything."""
        got = self.upload(bucket, key)
        return got.etag if got is not None else None

    def record_upload(self, bucket: str, key: str, etag: str, sha256: str) -> None:
        with self._lock:
            self._write(
                "INSERT OR REPLACE INTO ledger VALUES (?, ?, ?, ?, ?, ?)",
                [(self.endpoint, bucket, key, etag, sha256, time.time())],
            )

    # -- the hash cache ----------------------------------------------------------------

    def lookup(
        self, path: Path, st: os.stat_result, bucket: str | None = None, key: str | None = None
    ) -> Cached | None:
        """What is known of a file's bytes, if it has not changed since. Its `etag` is
        that of the object at (this endpoint, `bucket`, `key`) the file was downloaded
        from or uploaded as; None when it came from or went anywhere else."""
        with self._lock:
            row = (
                self._conn()
                .execute(
                    "SELECT dev, ino, size, mtime_ns, ctime_ns, sha256, md5, etag, endpoint, "
                    "bucket, key FROM hashes WHERE path = ?",
                    (os.fsdecode(path),),
                )
                .fetchone()
            )
        if row is None or tuple(row[:5]) != _identity(st):
            return None
        return Cached(sha256=row[5], md5=row[6], etag=self.etag_of(tuple(row), bucket, key))

    def etag_of(self, row: tuple[object, ...], bucket: str | None, key: str | None) -> str | None:
        """The ETag a cached row (as `under` returns it) holds for the object at
        (this endpoint, `bucket`, `key`): None unless it was recorded for exactly that."""
        etag = row[7]
        if etag is None or bucket is None or key is None:
            return None
        if tuple(row[8:11]) != (self.endpoint, bucket, key):
            return None
        return str(etag)

    def under(self, root: Path) -> dict[str, tuple[object, ...]]:
        """Every cached row for files under a folder, by path: one query instead of one
        per file. Rows are (dev, ino, size, mtime_ns, ctime_ns, sha256, md5, etag,
        endpoint, bucket, key); read the ETag with `etag_of`."""
        low = os.fsdecode(root).rstrip("/") + "/"
        high = low[:-1] + "0"  # "/" + 1: every path that starts with low
        with self._lock:
            rows = (
                self._conn()
                .execute(
                    "SELECT path, dev, ino, size, mtime_ns, ctime_ns, sha256, md5, etag, "
                    "endpoint, bucket, key FROM hashes WHERE path >= ? AND path < ?",
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
        bucket: str | None = None,
        key: str | None = None,
    ) -> None:
        """Record a file's hashes (written in batches; see `flush`) and, with `bucket`
        and `key`, the ETag of the object at that key (on this endpoint) it holds the
        bytes of. An ETag without its destination is not kept."""
        if bucket is None or key is None:
            etag = None
        if etag is None:
            bucket = key = None
        endpoint = self.endpoint if etag is not None else None
        row = (os.fsdecode(path), *_identity(st), sha256, md5, etag, endpoint, bucket, key)
        with self._lock:
            self._pending.append(row)
            if len(self._pending) >= 500:
                self._flush_locked()

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if self._pending:
            rows, self._pending = self._pending, []
            self._write(
                "INSERT OR REPLACE INTO hashes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
            )

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
class Uploaded:
    """A row of the upload ledger: what this user uploaded at a key, as which ETag."""

    etag: str
    sha256: str


def _cannot_write(e: BaseException) -> bool:
    """A write failed because of the disk (full, read-only, gone), not a bug."""
    if isinstance(e, OSError):
        return e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.ENOENT)
    text = str(e).lower()
    return any(w in text for w in ("full", "readonly", "read-only", "disk i/o", "unable to open"))


def _reason(e: BaseException, path: Path) -> str:
    if isinstance(e, OSError):
        return e.strerror or str(e)
    text = str(e)
    if "full" in text.lower():
        return "no space left on the device"
    if "disk i/o" in text.lower():  # SQLite's answer when its WAL cannot grow
        with contextlib.suppress(OSError):
            if shutil.disk_usage(path.parent).free < 64 * 1024:
                return "no space left on the device"
    return text


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
