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
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from deon.errors import DeonError, DeonWarning, KeyNotFound, MetadataError, WarningCode
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


def parse(data: bytes, bucket: str, prefix: str) -> dict[str, Entry]:
    """Read a snapshot; entries outside `prefix` (or another bucket's) are ignored.

    Raises:
        MetadataError: not a deon snapshot, or damaged.
    """
    out: dict[str, Entry] = {}
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as gz:
            header = json.loads(gz.readline(1 << 20) or b"{}")
            if not isinstance(header, dict) or header.get("format") != FORMAT:
                raise MetadataError("not a deon snapshot")
            if header.get("version") != VERSION:
                raise MetadataError(f"snapshot version {header.get('version')!r} is not {VERSION}")
            if header.get("bucket") != bucket:
                return out
            inflated = 0
            for raw in gz:
                inflated += len(raw)
                if inflated > MAX_SNAPSHOT_BYTES:
                    raise MetadataError("snapshot inflates past the size limit")
                line = json.loads(raw)
                key = line["k"]
                if not isinstance(key, str) or not key.startswith(prefix):
                    continue
                out[key] = Entry(
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
    return out


class Snapshots:
    """The snapshots that cover a prefix, loaded on first use."""

    def __init__(self, storage: Any, bucket: str, prefix: str) -> None:
        self.storage = storage
        self.bucket = bucket
        self.prefix = prefix
        self.entries: dict[str, Entry] | None = None
        self.warnings: list[str] = []
        self.trusted = True
        self.used: list[str] = []  # keys taken from a snapshot, in order
        self._matched = 0

    def load(self) -> None:
        self.entries = {}
        for prefix in reversed(ancestor_prefixes(self.prefix)):  # nearest prefix wins
            key = snapshot_key(prefix)
            try:
                data = self.storage.get_bytes(self.bucket, key, MAX_SNAPSHOT_BYTES)
            except KeyNotFound:
                continue
            except DeonError as e:
                self.warnings.append(
                    DeonWarning(
                        WarningCode.SNAPSHOT_UNUSED, f"s3://{self.bucket}/{key}: not used ({e})"
                    )
                )
                continue
            try:
                self.entries.update(parse(data, self.bucket, self.prefix))
            except MetadataError as e:
                self.warnings.append(
                    DeonWarning(
                        WarningCode.SNAPSHOT_UNUSED, f"s3://{self.bucket}/{key}: not used ({e})"
                    )
                )

    def lookup(self, key: str, etag: str, last_modified: dt.datetime) -> Entry | None:
        """The entry for an object if it describes exactly the listed version."""
        if not self.trusted:
            return None
        if self.entries is None:
            self.load()
        assert self.entries is not None
        entry = self.entries.get(key)
        if entry is None or entry.etag != etag or entry.last_modified != last_modified:
            return None
        return entry

    def take(self, key: str) -> bool:
        """Record that an entry was used; True when this one should also be HEADed to
        check the snapshot (a deterministic 1 in CHECK_EVERY, and the first MIN_CHECKS)."""
        self.used.append(key)
        self._matched += 1
        return self._matched <= MIN_CHECKS or self._matched % CHECK_EVERY == 0

    def distrust(self, why: str) -> list[str]:
        """Stop using the snapshots; returns the keys they supplied (to HEAD them)."""
        if self.trusted:
            self.trusted = False
            self.warnings.append(
                DeonWarning(
                    WarningCode.SNAPSHOT_UNUSED,
                    f"snapshot of s3://{self.bucket}/{self.prefix} disagrees with the "
                    f"objects ({why}); HEADing everything it supplied",
                )
            )
        used, self.used = self.used, []
        return used
