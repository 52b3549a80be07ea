"""Published snapshots of a prefix's catalog rows, for a cold start with few HEADs.

`deon metadata publish s3://B/P` writes `P.deon/snapshot.jsonl.gz` (the `.deon/` prefix
is deon's own: `down` and `metadata down` never treat it as data). It is gzip-compressed
JSON lines (format in the README):

    {"format": "deon-snapshot", "version": 1, "bucket": "B", "prefix": "P",
     "created": "...", "count": N}
    {"k": KEY, "e": ETAG, "t": LAST_MODIFIED, "s": SIZE, "h": SHA256 or null,
     "m": DOCUMENT AS JSON TEXT, "x": ERROR, "v": VERSION_ID}
    ...

`metadata down` takes an object from a snapshot only when its key, ETag and
LastModified equal the listing's; everything else is HEADed. Because a snapshot is
written by whoever can write the bucket, entries that do match are spot-checked: a
deterministic sample (1 in 100, at least 3) is HEADed as well and compared, and any
difference makes the run distrust the snapshot and HEAD everything it supplied. A
stale or tampered snapshot therefore costs speed, not correctness.

Memory does not grow with the snapshot (issue 15: 200,000 entries held in a dict took
~280 MB): `Snapshots` streams each one to a temporary file, reads its entries into a
temporary SQLite database that `lookup` queries by key, records there the objects it
supplied (what a HEAD of them needs), and reads those back in batches on distrust.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import os
import shutil
import sqlite3
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from deon.errors import (
    DeonError,
    DeonWarning,
    KeyNotFound,
    MetadataError,
    StorageError,
    WarningCode,
)
from deon.metadata.wire import MAX_DOCUMENT_BYTES
from deon.s3.client import ObjectInfo, stream_errors
from deon.uri import RESERVED_SEGMENT

SNAPSHOT_NAME = f"{RESERVED_SEGMENT}/snapshot.jsonl.gz"
FORMAT = "deon-snapshot"
VERSION = 1
#: A snapshot is untrusted input: never inflate more than this.
MAX_SNAPSHOT_BYTES = 4 * 1024**3
#: One in this many snapshot-matched objects is also HEADed to check the snapshot.
CHECK_EVERY = 100
MIN_CHECKS = 3


def snapshot_key(prefix: str) -> str:
    """The key of the snapshot of a prefix ("" or ending in "/")."""
    return f"{prefix}{SNAPSHOT_NAME}"


def ancestor_prefixes(prefix: str) -> list[str]:
    """The prefix and every parent folder up to the bucket root, nearest first."""
    out = [prefix]
    parts = [p for p in prefix.split("/") if p]
    while parts:
        parts.pop()
        out.append("".join(f"{p}/" for p in parts))
    return list(dict.fromkeys(out))


def _iso(value: dt.datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value.isoformat(timespec="microseconds") + "Z"


def _parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.rstrip("Z"))


@dataclass(frozen=True)
class Entry:
    """What a snapshot says about one object."""

    key: str
    etag: str
    last_modified: dt.datetime  # naive UTC
    size: int
    sha256: str | None
    text: str | None  # the metadata document as JSON text; None when it has none
    error: str | None
    version_id: str | None = None


def build(bucket: str, prefix: str, rows: Iterator[tuple[Any, ...]], count: int) -> bytes:
    """A snapshot from catalog rows (key, etag, last_modified, size, sha256, metadata
    JSON text, metadata_error, version_id)."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=6, mtime=0) as gz:
        header = {
            "format": FORMAT,
            "version": VERSION,
            "bucket": bucket,
            "prefix": prefix,
            "created": _iso(dt.datetime.now(dt.timezone.utc)),
            "count": count,
        }
        gz.write(json.dumps(header).encode() + b"\n")
        for key, etag, last_modified, size, sha256, metadata, error, version_id in rows:
            if isinstance(last_modified, str):
                last_modified = dt.datetime.fromisoformat(last_modified)
            line: dict[str, Any] = {
                "k": key,
                "e": etag,
                "t": _iso(last_modified),
                "s": size,
                "h": sha256,
            }
            if metadata is not None:
                line["m"] = metadata  # JSON text: stored by readers as is
            if error is not None:
                line["x"] = error
            if version_id is not None:
                line["v"] = version_id
            gz.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
    return buf.getvalue()


#: The longest line read from a snapshot: a document (at most MAX_DOCUMENT_BYTES) as a
#: JSON string, escapes doubling it, and the line's other fields.
MAX_LINE_BYTES = 2 * MAX_DOCUMENT_BYTES + (1 << 20)


def entries(gz: gzip.GzipFile, bucket: str, prefix: str) -> Iterator[Entry]:
    """The entries of a snapshot (a readable gzip stream) under `prefix`, in the order
    it holds them; none when it is another bucket's.

    Raises:
        MetadataError: not a deon snapshot, or damaged (possibly after some entries).
    """
    try:
        header = json.loads(gz.readline(1 << 20) or b"{}")
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise MetadataError("not a deon snapshot")
        if header.get("version") != VERSION:
            raise MetadataError(f"snapshot version {header.get('version')!r} is not {VERSION}")
        if header.get("bucket") != bucket:
            return
        inflated = 0
        while raw := gz.readline(MAX_LINE_BYTES + 1):
            inflated += len(raw)
            if inflated > MAX_SNAPSHOT_BYTES:
                raise MetadataError("snapshot inflates past the size limit")
            if len(raw) > MAX_LINE_BYTES:
                raise MetadataError("a snapshot line is over the size limit")
            line = json.loads(raw)
            key = line["k"]
            if not isinstance(key, str) or not key.startswith(prefix):
                continue
            yield Entry(
                key=key,
                etag=str(line["e"]),
                last_modified=_parse_time(str(line["t"])),
                size=int(line["s"]),
                sha256=line.get("h"),
                text=line["m"] if isinstance(line.get("m"), str) else None,
                error=line.get("x"),
                version_id=line["v"] if isinstance(line.get("v"), str) else None,
            )
    except MetadataError:
        raise
    except (OSError, EOFError, zlib.error, ValueError, KeyError, TypeError, RecursionError) as e:
        raise MetadataError(f"damaged snapshot: {e}") from e


#: Rows per insert into the temporary database, and per read back on distrust.
_BATCH = 1000

_SCHEMA = """
CREATE TABLE entries (
    key TEXT PRIMARY KEY, etag TEXT, last_modified TEXT, size INTEGER, sha256 TEXT,
    text TEXT, error TEXT, version_id TEXT
);
CREATE TABLE used (
    n INTEGER PRIMARY KEY, key TEXT, size INTEGER, etag TEXT, last_modified TEXT,
    known INTEGER
);
"""


class Snapshots:
    """The snapshots that cover a prefix, loaded on first use.

    Memory does not grow with the snapshot: each one is streamed to a temporary file,
    its entries go into a temporary SQLite database (deleted by `close`) that `lookup`
    queries, and the objects taken from it are recorded there too, to be read back in
    batches if the snapshot must be distrusted.
    """

    def __init__(self, storage: Any, bucket: str, prefix: str) -> None:
        self.storage = storage
        self.bucket = bucket
        self.prefix = prefix
        self.warnings: list[str] = []
        self.trusted = True
        self._dir: str | None = None
        self._db: sqlite3.Connection | None = None
        self._used: list[tuple[str, int, str, str, int]] = []  # not yet in the database
        self._matched = 0
        self._handed = False  # distrust() gave out the objects taken

    def __enter__(self) -> Snapshots:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove the temporary database and files."""
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _not_used(self, key: str, why: object) -> None:
        self.warnings.append(
            DeonWarning(WarningCode.SNAPSHOT_UNUSED, f"s3://{self.bucket}/{key}: not used ({why})")
        )

    def load(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="deon-snapshot-")
        db = sqlite3.connect(os.path.join(self._dir, "entries.sqlite"), isolation_level=None)
        self._db = db
        db.execute("PRAGMA journal_mode = OFF")  # a scratch database: nothing to recover
        db.execute("PRAGMA synchronous = OFF")
        db.executescript(_SCHEMA)
        download = os.path.join(self._dir, "snapshot.jsonl.gz")
        for prefix in reversed(ancestor_prefixes(self.prefix)):  # nearest prefix wins
            key = snapshot_key(prefix)
            try:
                if not self._download(key, download):
                    continue
            except DeonError as e:
                self._not_used(key, e)
                continue
            try:
                self._insert(download)
            except MetadataError as e:
                self._not_used(key, e)
            finally:
                os.unlink(download)
        db.execute("BEGIN")  # the objects taken: one transaction, never committed

    def _download(self, key: str, path: str) -> bool:
        """Stream a snapshot object into `path`; False when there is none."""
        where = f"s3://{self.bucket}/{key}"
        try:
            head, body = self.storage.get(self.bucket, key)
        except KeyNotFound:
            return False
        with body, open(path, "wb") as f:
            if head.size > MAX_SNAPSHOT_BYTES:
                raise StorageError(f"{where}: {head.size} bytes is over {MAX_SNAPSHOT_BYTES}")
            written = 0
            try:
                for chunk in body.iter_chunks():
                    written += len(chunk)
                    if written > MAX_SNAPSHOT_BYTES:
                        raise StorageError(f"{where}: over {MAX_SNAPSHOT_BYTES} bytes")
                    f.write(chunk)
            except stream_errors() as e:
                raise StorageError(f"{where}: the download broke off ({e})") from e
            except OSError as e:  # the temporary file: a full disk, say
                raise StorageError(f"{where}: could not be kept in a temporary file ({e})") from e
        return True

    def _insert(self, path: str) -> None:
        """Add a downloaded snapshot's entries, replacing the same keys' (all or none)."""
        assert self._db is not None
        db = self._db
        sql = "INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        db.execute("BEGIN")
        try:
            with gzip.open(path, "rb") as gz:
                batch: list[tuple[Any, ...]] = []
                for e in entries(gz, self.bucket, self.prefix):
                    sha = e.sha256 if isinstance(e.sha256, str) else None
                    error = e.error if isinstance(e.error, str) else None
                    lm = e.last_modified.isoformat()
                    batch.append((e.key, e.etag, lm, e.size, sha, e.text, error, e.version_id))
                    if len(batch) == _BATCH:
                        db.executemany(sql, batch)
                        batch = []
                db.executemany(sql, batch)
        except BaseException as e:
            db.execute("ROLLBACK")
            if isinstance(e, sqlite3.Error):  # the temporary database: a full disk, say
                raise MetadataError(f"could not be kept in a temporary database ({e})") from e
            raise
        db.execute("COMMIT")

    def lookup(self, key: str, etag: str, last_modified: dt.datetime) -> Entry | None:
        """The entry for an object if it describes exactly the listed version."""
        if not self.trusted:
            return None
        if self._db is None:
            self.load()
        assert self._db is not None
        row = self._db.execute(
            "SELECT etag, last_modified, size, sha256, text, error, version_id "
            "FROM entries WHERE key = ?",
            (key,),
        ).fetchone()
        if row is None or row[0] != etag:
            return None
        when = dt.datetime.fromisoformat(row[1])
        if when != last_modified:
            return None
        return Entry(key, row[0], when, row[2], row[3], row[4], row[5], row[6])

    def take(self, obj: ObjectInfo, known: bool) -> bool:
        """Record that an entry was used for `obj` (`known`: the catalog had a row for
        it); True when this one should also be HEADed to check the snapshot (a
        deterministic 1 in CHECK_EVERY, and the first MIN_CHECKS)."""
        self._used.append((obj.key, obj.size, obj.etag, obj.last_modified.isoformat(), int(known)))
        if len(self._used) == _BATCH:
            self._flush_used()
        self._matched += 1
        return self._matched <= MIN_CHECKS or self._matched % CHECK_EVERY == 0

    def _flush_used(self) -> None:
        assert self._db is not None
        self._db.executemany(
            "INSERT INTO used (key, size, etag, last_modified, known) VALUES (?, ?, ?, ?, ?)",
            self._used,
        )
        self._used = []

    def distrust(self, why: str) -> Iterator[tuple[ObjectInfo, bool]]:
        """Stop using the snapshots; returns the objects they supplied, each with whether
        the catalog had a row for it (to HEAD them), read back in batches. Only the first
        call returns them."""
        if self.trusted:
            self.trusted = False
            self.warnings.append(
                DeonWarning(
                    WarningCode.SNAPSHOT_UNUSED,
                    f"snapshot of s3://{self.bucket}/{self.prefix} disagrees with the "
                    f"objects ({why}); HEADing everything it supplied",
                )
            )
        if self._handed or self._db is None:
            return iter(())
        self._handed = True
        self._flush_used()
        return self._supplied()

    def _supplied(self) -> Iterator[tuple[ObjectInfo, bool]]:
        after = 0
        while self._db is not None:
            rows = self._db.execute(
                "SELECT n, key, size, etag, last_modified, known FROM used "
                "WHERE n > ? ORDER BY n LIMIT ?",
                (after, _BATCH),
            ).fetchall()
            if not rows:
                return
            after = rows[-1][0]
            for _, key, size, etag, lm, known in rows:
                obj = ObjectInfo(self.bucket, key, size, etag, dt.datetime.fromisoformat(lm))
                yield obj, bool(known)
