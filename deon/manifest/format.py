"""The manifest file: one header line, then one line per object, sorted (README
"Manifest format" is the specification; this module is its reference reader).

    {"format":"deon-manifest","version":1,"created":...,"query":{...},"sources":[...],
     "count":N,"bytes":TOTAL,"digest":"sha256:HEX"}
    {"bucket":"lab","key":"a/t1.h5","size":123,"etag":"...","sha256":"...",
     "last_modified":"2026-11-24T15:25:47.000Z","version_id":"..."}

Every line is JSON written one way only (fixed field order, no spaces, ASCII with
`\\uXXXX` escapes, `\\n` ends each line), so that the same selection gives the same
bytes and a manifest diffs well in git. `digest` is the sha256 of the entry lines' bytes
(everything after the header line): `tail -n +2 F | sha256sum` recomputes it. A reader
refuses a file whose entries do not hash to the digest, whose entry lines are not in
that one form (a duplicated field could read differently in another parser), or whose
entries are not sorted and unique.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from deon.errors import UsageError

FORMAT = "deon-manifest"
VERSION = 1
#: the file name ending `deon freeze` suggests (any name works)
SUFFIX = ".manifest.jsonl"

_SHA256 = re.compile(r"[0-9a-f]{64}")
_ENCODE = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), allow_nan=False)


class ManifestError(UsageError):
    """A file that is not a deon manifest, or one that was damaged or edited (exit 2)."""


def iso_time(value: Any) -> str | None:
    """A time as manifests write it: UTC, milliseconds, `Z` (S3's own listing form).
    Takes datetimes (naive means UTC) and the text SQLite stores them as."""
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    text: str = value.strftime("%Y-%m-%dT%H:%M:%S.")
    return text + f"{value.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Entry:
    """One object of a manifest: which bytes it means."""

    bucket: str
    key: str
    size: int
    etag: str
    sha256: str | None
    last_modified: str
    #: where the bucket keeps versions; None otherwise
    version_id: str | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def order(self) -> tuple[str, str]:
        """Manifests are sorted by this: bucket, then key (code points, as UTF-8 bytes)."""
        return (self.bucket, self.key)

    def line(self) -> bytes:
        """The entry's one canonical line, newline included."""
        doc: dict[str, Any] = {
            "bucket": self.bucket,
            "key": self.key,
            "size": self.size,
            "etag": self.etag,
            "sha256": self.sha256,
            "last_modified": self.last_modified,
        }
        if self.version_id is not None:
            doc["version_id"] = self.version_id
        return _ENCODE.encode(doc).encode("ascii") + b"\n"

    def same_bytes(self, other: Entry) -> bool:
        """Whether two entries mean the same bytes: same size and sha256 (the ETag when
        either has no sha256). A new version with the same bytes is the same."""
        if self.size != other.size:
            return False
        if self.sha256 is not None and other.sha256 is not None:
            return self.sha256 == other.sha256
        return self.etag == other.etag


@dataclass(frozen=True)
class Source:
    """A catalog source an entry was mirrored from, and its endpoint (None: AWS)."""

    uri: str
    endpoint: str | None


@dataclass
class Manifest:
    """A frozen selection: its entries (sorted by bucket, key) and where they came from.

    Attributes:
        entries: the objects, sorted by (bucket, key), each once.
        query: {"where": CONDITION or None} or {"sql": SELECT}: what was selected.
        sources: the catalog's sources covering the entries, with their endpoints.
        created: when the catalog last wrote one of the selected rows (ISO 8601 UTC):
            the state of the catalog the manifest reflects. Not the time of the freeze,
            so that freezing the same catalog again gives the same bytes.
        name: where it was read from (a path or s3:// URI), for messages.
    """

    entries: list[Entry]
    query: dict[str, str | None] = field(default_factory=lambda: {"where": None})
    sources: list[Source] = field(default_factory=list)
    created: str | None = None
    name: str = ""

    @property
    def digest(self) -> str:
        h = hashlib.sha256()
        for e in self.entries:
            h.update(e.line())
        return "sha256:" + h.hexdigest()

    @property
    def nbytes(self) -> int:
        return sum(e.size for e in self.entries)

    def header(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "created": self.created,
            "query": self.query,
            "sources": [{"uri": s.uri, "endpoint": s.endpoint} for s in self.sources],
            "count": len(self.entries),
            "bytes": self.nbytes,
            "digest": self.digest,
        }

    def to_bytes(self) -> bytes:
        """The manifest file: the same manifest always gives the same bytes."""
        lines = [_ENCODE.encode(self.header()).encode("ascii") + b"\n"]
        lines.extend(e.line() for e in self.entries)
        return b"".join(lines)

    def to_pandas(self, catalog: Any = None, data_dir: Any = None) -> Any:
        """The entries as a DataFrame indexed by `uri` (bucket, key, size, etag, sha256,
        last_modified, version_id, and `path` under `data_dir` when given), joined with
        the metadata columns of the catalog's rows that describe the same bytes;
        `in_catalog` says which rows do (an object replaced since has the new object's
        metadata in the catalog, which is not joined).

        Args:
            catalog: a deon Catalog (`deon.open_catalog()`); None: the entries alone.
            data_dir: the local root; adds `path`, DATA_DIR/BUCKET/KEY, for each entry.
        """
        import pandas as pd

        df = pd.DataFrame.from_records(
            [
                (e.uri, e.bucket, e.key, e.size, e.etag, e.sha256, e.last_modified, e.version_id)
                for e in self.entries
            ],
            columns=[
                "uri", "bucket", "key", "size", "etag", "sha256", "last_modified", "version_id"
            ],
        )  # fmt: skip
        df["size"] = df["size"].astype("Int64")
        df["last_modified"] = pd.to_datetime(df["last_modified"], utc=True)
        df = df.set_index("uri")
        if data_dir is not None:
            from pathlib import Path

            root = Path(data_dir)
            df["path"] = [str(root.joinpath(e.bucket, *e.key.split("/"))) for e in self.entries]
        if catalog is None:
            return df
        fixed = set(df.columns) | {"metadata_error", "mirrored_at", "metadata"}
        frames = []
        uris = list(df.index)
        for i in range(0, len(uris), 5000):  # one IN list per 5000 objects
            chunk = ", ".join("'" + u.replace("'", "''") + "'" for u in uris[i : i + 5000])
            frames.append(catalog.to_pandas(f"uri IN ({chunk})"))
        cat = pd.concat(frames) if frames else pd.DataFrame()
        if cat.empty:
            df["in_catalog"] = False
            return df
        by_uri = {e.uri: e for e in self.entries}

        def describes(uri: str, row: Any) -> bool:
            e = by_uri[uri]
            sha = row["sha256"] if isinstance(row["sha256"], str) else None
            there = Entry(e.bucket, e.key, int(row["size"]), str(row["etag"]), sha, "")
            return e.same_bytes(there)

        same = [uri for uri, row in cat.iterrows() if describes(str(uri), row)]
        meta = cat.loc[same, [c for c in cat.columns if c not in fixed]]
        out = df.join(meta, how="left")
        out["in_catalog"] = out.index.isin(same)
        return out


def build(
    entries: Iterable[Entry],
    *,
    query: dict[str, str | None],
    sources: Sequence[Source],
    created: str | None,
) -> Manifest:
    """A manifest of these entries, sorted; a (bucket, key) given twice is refused."""
    ordered = sorted(entries, key=lambda e: e.order)
    for a, b in zip(ordered, ordered[1:], strict=False):
        if a.order == b.order:
            raise ManifestError(f"{a.uri} is selected twice")
    return Manifest(ordered, dict(query), list(sources), created)


# -- reading --------------------------------------------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"field {k!r} appears twice")
        out[k] = v
    return out


def _entry(doc: Any) -> Entry:
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    bucket, key, size = doc.get("bucket"), doc.get("key"), doc.get("size")
    etag, sha, lm, vid = doc.get("etag"), doc.get("sha256"), doc.get("last_modified"), None
    if not isinstance(bucket, str) or not bucket or not isinstance(key, str) or not key:
        raise ValueError("bucket and key must be non-empty strings")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ValueError("size must be a whole number of bytes")
    if not isinstance(etag, str) or not etag:
        raise ValueError("etag must be a non-empty string")
    if sha is not None and not (isinstance(sha, str) and _SHA256.fullmatch(sha)):
        raise ValueError("sha256 must be 64 lower-case hex digits or null")
    if not isinstance(lm, str):
        raise ValueError("last_modified must be a string")
    if "version_id" in doc:
        vid = doc["version_id"]
        if not isinstance(vid, str) or not vid:
            raise ValueError("version_id must be a non-empty string")
    return Entry(bucket, key, size, etag, sha, lm, vid)


def parse(data: bytes, name: str = "manifest") -> Manifest:
    """Read and verify a manifest.

    Raises:
        ManifestError: not a deon manifest, an unknown version, or damaged or edited:
            entries that do not hash to the header's digest, a count that does not
            match, a line not in canonical form, entries out of order or repeated.
    """

    def bad(why: str) -> ManifestError:
        return ManifestError(f"{name}: {why}")

    if not data.endswith(b"\n"):
        raise bad("not a deon manifest (empty, or its last line is cut short)")
    head, _, body = data.partition(b"\n")
    try:
        header = json.loads(head, object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError) as e:
        raise bad(f"not a deon manifest (line 1: {e})") from e
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise bad(f'not a deon manifest (line 1 has no "format": "{FORMAT}")')
    if header.get("version") != VERSION:
        raise bad(
            f"manifest version {header.get('version')!r}, this deon reads version {VERSION}: "
            "upgrade deon"
        )
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    if header.get("digest") != digest:
        raise bad(
            f"refused: its entries hash to {digest[:19]}…, its header says "
            f"{str(header.get('digest'))[:19]}…: edited or damaged since it was frozen"
        )
    entries: list[Entry] = []
    lines = body.split(b"\n")[:-1]  # the file ends with "\n"
    for n, raw in enumerate(lines, 2):
        try:
            entry = _entry(json.loads(raw, object_pairs_hook=_no_duplicates))
        except (ValueError, RecursionError) as e:
            raise bad(f"refused: line {n}: {e}") from e
        if entry.line() != raw + b"\n":
            raise bad(f"refused: line {n} is not written as deon writes entries (edited?)")
        if entries and not entries[-1].order < entry.order:
            raise bad(f"refused: line {n}: entries out of order or repeated ({entry.uri})")
        entries.append(entry)
    if header.get("count") != len(entries):
        raise bad(
            f"refused: the header counts {header.get('count')!r} entries, it has {len(entries)}"
        )
    query = header.get("query")
    sources = header.get("sources")
    return Manifest(
        entries,
        query if isinstance(query, dict) else {},
        [
            Source(str(s.get("uri")), ep if isinstance(ep := s.get("endpoint"), str) else None)
            for s in (sources if isinstance(sources, list) else [])
            if isinstance(s, dict)
        ],
        header.get("created") if isinstance(header.get("created"), str) else None,
        name,
    )


# -- comparing -------------------------------------------------------------------------


@dataclass
class Difference:
    """What changed from manifest A to B: objects added (in B only), removed (in A
    only) and changed (same key, other bytes), each sorted by URI."""

    added: list[Entry] = field(default_factory=list)
    removed: list[Entry] = field(default_factory=list)
    changed: list[tuple[Entry, Entry]] = field(default_factory=list)
    unchanged: int = 0

    @property
    def differs(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def lines(self) -> list[tuple[str, str]]:
        """(mark, uri) in URI order, marked as rclone check --combined does: `+` added,
        `-` removed, `*` changed."""
        marked = [("+", e.uri) for e in self.added] + [("-", e.uri) for e in self.removed]
        marked += [("*", b.uri) for _, b in self.changed]
        return sorted(marked, key=lambda m: m[1])


def diff(a: Sequence[Entry], b: Sequence[Entry]) -> Difference:
    """Compare two selections by (bucket, key) and bytes (see Entry.same_bytes)."""
    before = {(e.bucket, e.key): e for e in a}
    after = {(e.bucket, e.key): e for e in b}
    out = Difference()
    for k, e in sorted(before.items()):
        other = after.get(k)
        if other is None:
            out.removed.append(e)
        elif e.same_bytes(other):
            out.unchanged += 1
        else:
            out.changed.append((e, other))
    out.added = [e for k, e in sorted(after.items()) if k not in before]
    return out
