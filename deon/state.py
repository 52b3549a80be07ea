"""Local state that is not the catalog: what this user uploaded.

`deon up` may replace an object without `--overwrite` only when the object in the
bucket is exactly the one this user last uploaded there (the same ETag): then the
local file is a newer version of the user's own data. Anything else at the key is
someone else's, and is refused.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

from deon import config

_SCHEMA = """
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

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)  # readable by the user only
            os.close(fd)
            db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(_SCHEMA)
            db.commit()
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

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
