"""`deon metadata down`: mirror the header metadata of every object into the catalog.

Incremental: LIST the prefix and compare each (key, ETag, LastModified) with the catalog;
HEAD only new or changed objects (a metadata-only rewrite keeps the ETag but changes
LastModified), concurrently; delete the rows of objects that are gone. Rows are written
in batches, each in one transaction, and deletions happen only after a complete listing,
so an interrupted run leaves a consistent catalog and a re-run finishes the job.

Streaming: the listing and the catalog's rows are merged as two streams sorted the same
way (UTF-8 byte order, as S3 lists), so a refresh holds a page of the listing, a page of
rows, the HEADs in flight and one write batch — not the prefix. The keys of rows to
delete wait in a temporary file until the listing is complete (issue 15: a no-op refresh
of 1 M objects peaked at 489 MB when the rows were loaded into a dict).
"""

from __future__ import annotations

import datetime as dt
import json
import queue
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from deon.catalog.db import Catalog, ObjectRow, naive_utc
from deon.catalog.flatten import flatten, valid_json
from deon.errors import CatalogError, DeonError, KeyNotFound, MetadataError, StorageError
from deon.metadata import wire as meta
from deon.mirror.snapshot import Entry, Snapshots
from deon.results import Progress
from deon.s3.client import ObjectInfo, Storage, safe_url
from deon.transfer.budget import Budget, Workers
from deon.transfer.sync import listed
from deon.uri import S3Address

#: Rows per write transaction, and the longest a finished row waits to be written.
BATCH_ROWS = 500
BATCH_SECONDS = 1.0


@dataclass
class MirrorResult:
    """What `metadata down` did: counts per kind of change, failures, warnings."""

    sources: list[str] = field(default_factory=list)
    new: int = 0
    changed: int = 0
    #: new or changed objects whose rows came from a published snapshot (no HEAD)
    from_snapshot: int = 0
    deleted: int = 0
    unchanged: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (uri, message)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: the errors that stopped whole addresses (each also in `failed`)
    source_errors: list[DeonError] = field(default_factory=list)
    #: the HEADs' budget, with the limit it reached (`peak`)
    head_budget: Budget | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return not self.failed


@dataclass
class _Check:
    """A HEAD that checks a row a snapshot supplied."""

    expected: ObjectRow
    fetched: _Fetched


@dataclass
class _Fetched:
    obj: ObjectInfo
    row: ObjectRow | None  # None: the object is gone, or could not be read
    warning: str | None = None
    error: str | None = None
    #: whether the catalog had a row for the object when it was listed
    known: bool = False
    #: a snapshot supplied the object, then was distrusted: counted already
    recheck: bool = False


class _Sidecars:
    """Metadata documents stored as sidecar objects, fetched once per run."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.docs: dict[str, Any] = {}
        self.lock = threading.Lock()

    def get(self, bucket: str, ref: meta.SidecarRef) -> Any:
        with self.lock:
            if ref.sha256 in self.docs:
                return self.docs[ref.sha256]
        try:
            body = self.storage.get_bytes(bucket, ref.key, ref.size)
        except DeonError as e:
            if e.fatal:
                raise
            raise MetadataError(f"metadata sidecar {ref.key}: {e}") from e
        doc = meta.resolve_sidecar(ref, body)
        with self.lock:
            self.docs[ref.sha256] = doc
        return doc


_READABLE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_ASCII = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"))


def document_json(doc: Any) -> str:
    """The document as stored in the `metadata` column: compact JSON, readable
    non-ASCII (escaped only where a database could not store it)."""
    try:
        text = _READABLE.encode(doc)
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return _ASCII.encode(doc)


def fetch_row(storage: Storage, sidecars: _Sidecars, obj: ObjectInfo) -> _Fetched:
    """HEAD one object and turn its headers into a catalog row."""
    try:
        head = storage.head(obj.bucket, obj.key)
    except KeyNotFound:
        return _Fetched(obj, None)
    except DeonError as e:
        if e.fatal:  # the same for every object: stop and say it once
            raise
        return _Fetched(obj, None, error=str(e).removeprefix(f"{obj.uri}: "))
    # Keep LIST's ETag and LastModified (the next LIST compares against them, exactly)
    # unless the object changed between LIST and HEAD; then the HEAD describes what we
    # record, and its coarser (whole-second) time costs one more HEAD next run.
    if head.etag == obj.etag or head.last_modified is None:
        etag, last_modified = obj.etag, obj.last_modified
    else:
        etag, last_modified = head.etag, head.last_modified
    row = ObjectRow(obj.bucket, obj.key, head.size, etag, last_modified)
    row.version_id = head.version_id
    warning = None
    try:
        decoded = meta.decode(head.metadata)
        row.sha256 = decoded.sha256
        if decoded.sidecar is not None:
            decoded.document = sidecars.get(obj.bucket, decoded.sidecar)
        if decoded.has_document:
            row.metadata = valid_json(decoded.text or document_json(decoded.document))
            row.flat = flatten(decoded.document)
        if decoded.warnings:
            warning = f"{obj.uri}: " + "; ".join(decoded.warnings)
    except MetadataError as e:
        partial = getattr(e, "partial", None)
        if partial is not None:  # else (a sidecar failed) the sha256 was read already
            row.sha256 = partial.sha256
        row.metadata_error = str(e)
        warning = f"{obj.uri}: malformed metadata ({e}); catalogued without it"
    return _Fetched(obj, row, warning)


def row_from_entry(obj: ObjectInfo, entry: Entry) -> ObjectRow:
    """The row a snapshot entry describes (for the listed version of the object)."""
    # what a snapshot claims is checked as a header would be (lower-case, as deon writes)
    claimed = entry.sha256
    sha = claimed if isinstance(claimed, str) and meta.is_sha256(claimed) else None
    if sha is not None and sha != sha.lower():
        sha = None
    row = ObjectRow(obj.bucket, obj.key, entry.size, obj.etag, obj.last_modified, sha)
    row.version_id = entry.version_id if isinstance(entry.version_id, str) else None
    if entry.text is not None:
        try:
            row.flat = flatten(meta.parse_json(entry.text))
            row.metadata = valid_json(entry.text)
        except MetadataError as e:
            row.metadata_error = f"snapshot entry: {e}"
    if isinstance(entry.error, str):
        row.metadata_error = entry.error
    return row


def _same(a: ObjectRow, b: ObjectRow) -> bool:
    def doc(r: ObjectRow) -> Any:
        return json.loads(r.metadata) if r.metadata is not None else None

    # A snapshot that names no VersionId (written before deon recorded them) is not
    # wrong about it; one that names another is.
    versions = b.version_id is None or a.version_id == b.version_id
    return (
        (a.size, a.sha256, a.metadata_error is None)
        == (
            b.size,
            b.sha256,
            b.metadata_error is None,
        )
        and versions
        and doc(a) == doc(b)
    )


def mirror(
    catalog: Catalog,
    storage: Storage,
    addresses: Iterable[S3Address],
    *,
    jobs: int = 256,
    start_jobs: int = 32,
    adaptive: bool = True,
    progress: Progress | None = None,
    snapshots: bool = True,
) -> MirrorResult:
    """Mirror the metadata under each address into the catalog (see module doc).

    An address that fails as a whole (no such bucket, access denied, the listing broke
    off) is named in `failed` with its rows left as they were; the others still go on.
    With `snapshots`, objects a published snapshot describes exactly (same key, ETag
    and LastModified) are taken from it instead of HEADed; see snapshot.py.

    HEADs in flight: `start_jobs` at first, then as many as raise throughput, up to
    `jobs` (transfer/budget.py); with `adaptive` False, `jobs` all along.
    """
    progress = progress or Progress()
    result = MirrorResult()
    started = time.monotonic()
    progress.begin("metadata down", 0, 0)
    sidecars = _Sidecars(storage)
    budget = Budget(
        start_jobs if adaptive else jobs,
        jobs,
        throttled=storage.throttled_until,
        adaptive=adaptive,
    )
    result.head_budget = budget
    try:
        with Workers(budget, "deon-head") as pool:
            for address in addresses:
                snaps = None
                try:
                    if snapshots:
                        snaps = Snapshots(storage, address.bucket, address.prefix)
                    _mirror_one(
                        catalog, storage, address, pool, budget, sidecars, progress, result, snaps
                    )
                except DeonError as e:
                    if e.fatal:  # the same for every object: stop and say it once
                        raise
                    result.failed.append((f"s3://{address.bucket}/{address.prefix}", str(e)))
                    result.source_errors.append(e)
                    continue
                finally:
                    if snaps is not None:
                        snaps.close()  # its temporary database
                if snaps is not None:
                    for w in snaps.warnings:
                        result.warnings.append(w)
                        progress.warn(w)
    finally:
        result.seconds = time.monotonic() - started
        progress.end()
    catalog.index_columns()  # so that filters on new metadata columns stay fast
    return result


class _Spool:
    """Keys of rows to delete once the listing is complete, kept in a temporary file
    rather than in memory (a prefix whose objects all went is as big as the prefix)."""

    def __init__(self) -> None:
        self.file: Any = None
        self.count = 0

    def add(self, key: str) -> None:
        if self.file is None:
            self.file = tempfile.TemporaryFile(  # noqa: SIM115 - closed by close()
                "w+", encoding="utf-8", prefix="deon-gone-"
            )
        self.file.write(json.dumps(key) + "\n")  # a key may hold a newline; JSON cannot
        self.count += 1

    def batches(self, size: int) -> Iterator[list[str]]:
        if self.file is None:
            return
        self.file.seek(0)
        batch: list[str] = []
        for line in self.file:
            batch.append(json.loads(line))
            if len(batch) == size:
                yield batch
                batch = []
        if batch:
            yield batch

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def _merge(
    listing: Iterable[ObjectInfo],
    rows: Iterator[tuple[str, str, dt.datetime]],
    where: str,
    gone: _Spool,
) -> Iterator[tuple[ObjectInfo, tuple[str, dt.datetime] | None]]:
    """Merge the listing with the catalog's rows, both in UTF-8 byte order (which is
    Python's order for str): each listed object with the (etag, last_modified) its row
    has, or None when the catalog has no row for it; rows no object was listed for go
    to `gone`. Memory: one row and one object at a time.

    A listing out of order would make the merge take present objects for gone ones, so
    it stops the source (before any deletion: those wait for a complete listing).
    """
    row = next(rows, None)
    previous: str | None = None
    for obj in listing:
        key = obj.key
        if previous is not None and key <= previous:
            raise StorageError(
                f"{where}: the listing is not in UTF-8 byte order ({previous!r} came before "
                f"{key!r}), as S3 lists keys; this server cannot be mirrored incrementally"
            )
        previous = key
        while row is not None and row[0] < key:
            gone.add(row[0])
            row = _next_row(rows, row[0])
        if row is not None and row[0] == key:
            state: tuple[str, dt.datetime] | None = (row[1], row[2])
            row = _next_row(rows, row[0])
        else:
            state = None
        yield obj, state
    while row is not None:
        gone.add(row[0])
        row = _next_row(rows, row[0])


def _next_row(
    rows: Iterator[tuple[str, str, dt.datetime]], previous: str
) -> tuple[str, str, dt.datetime] | None:
    row = next(rows, None)
    if row is not None and row[0] <= previous:
        raise CatalogError(
            f"the catalog returned keys out of order ({previous!r} before {row[0]!r}): "
            "its database does not order text by code point; use SQLite or PostgreSQL"
        )
    return row


def _mirror_one(
    catalog: Catalog,
    storage: Storage,
    address: S3Address,
    pool: Workers,
    budget: Budget,
    sidecars: _Sidecars,
    progress: Progress,
    result: MirrorResult,
    snaps: Snapshots | None = None,
) -> None:
    bucket, prefix = address.bucket, address.prefix
    where = f"s3://{bucket}/{prefix}"
    gone = _Spool()
    listed_any = False
    batch: list[ObjectRow] = []
    vanished: list[tuple[str, str]] = []  # deleted between LIST and HEAD
    last_flush = time.monotonic()
    # Workers put their results on a queue; the main thread writes. (Waiting on a set
    # of futures re-arms every one of them at each completion: too dear per object.)
    done: queue.SimpleQueue[_Fetched | _Check | BaseException] = queue.SimpleQueue()
    pending = 0
    registered = False

    def work(
        obj: ObjectInfo, known: bool, expected: ObjectRow | None = None, recheck: bool = False
    ) -> None:
        try:
            with budget:
                fetched = fetch_row(storage, sidecars, obj)
            fetched.known = known
            fetched.recheck = recheck
            done.put(fetched if expected is None else _Check(expected, fetched))
        except BaseException as e:  # noqa: BLE001 - re-raised by the main thread
            done.put(e)

    def submit(
        obj: ObjectInfo, known: bool, expected: ObjectRow | None = None, recheck: bool = False
    ) -> None:
        nonlocal pending
        # Twice the budget queued: workers keep busy while this thread writes a batch.
        while pending >= 2 * budget.limit:
            collect(done.get())
        pool.submit(work, obj, known, expected, recheck)
        pending += 1

    def flush(force: bool = False) -> None:
        nonlocal last_flush
        due = (
            len(batch) + len(vanished) >= BATCH_ROWS
            or time.monotonic() - last_flush > BATCH_SECONDS
        )
        if (batch or vanished) and (force or due):
            for w in catalog.write(batch, vanished):
                result.warnings.append(w)
                progress.warn(w)
            batch.clear()
            vanished.clear()
            last_flush = time.monotonic()

    def collect(item: _Fetched | _Check | BaseException) -> None:
        nonlocal pending
        pending -= 1
        if isinstance(item, BaseException):
            raise item
        if isinstance(item, _Check):
            fetched = item.fetched
            if fetched.row is not None and not _same(fetched.row, item.expected):
                assert snaps is not None
                batch.append(fetched.row)
                for obj, known in snaps.distrust(f"{fetched.obj.uri} differs"):
                    result.from_snapshot -= 1
                    if obj.key != fetched.obj.key:
                        submit(obj, known, recheck=True)
            return
        obj = item.obj
        if item.recheck:  # counted already, when the snapshot supplied it
            if item.row is not None:
                batch.append(item.row)
            elif item.error is not None:
                result.failed.append((obj.uri, item.error))
            return
        if item.error is not None:
            # The row (if any) stays as it was: nothing unseen is claimed.
            result.failed.append((obj.uri, item.error))
        elif item.row is None:  # deleted between LIST and HEAD
            if item.known:
                vanished.append((bucket, obj.key))
                result.deleted += 1
        else:
            batch.append(item.row)
            if item.known:
                result.changed += 1
            else:
                result.new += 1
            if item.warning:
                result.warnings.append(item.warning)
                progress.warn(item.warning)
        progress.advance(1)

    try:
        rows = catalog.iter_listed_state(bucket, prefix)
        for obj, state in _merge(listed(storage, address), rows, where, gone):
            if not registered:
                catalog.add_source(bucket, prefix, safe_url(storage.endpoint_url))
                registered = True
            listed_any = True
            progress.add_total(1, 0)
            while not done.empty():
                collect(done.get())
            listed_at = naive_utc(obj.last_modified)
            if state is not None and state == (obj.etag, listed_at):
                result.unchanged += 1
                progress.advance(1)
                flush()
                continue
            entry = snaps.lookup(obj.key, obj.etag, listed_at) if snaps is not None else None
            if entry is not None:
                row = row_from_entry(obj, entry)
                batch.append(row)
                result.from_snapshot += 1
                if state is not None:
                    result.changed += 1
                else:
                    result.new += 1
                progress.advance(1)
                if snaps is not None and snaps.take(obj, state is not None):
                    submit(obj, state is not None, row)  # spot-check the snapshot
            else:
                submit(obj, state is not None)
            flush()
        while pending:
            collect(done.get())
            flush()
    except BaseException:
        gone.close()
        raise
    finally:
        # Whatever was fetched is written, even when the run is interrupted.
        while pending and not done.empty():
            item = done.get()
            pending -= 1
            if isinstance(item, _Fetched) and item.row is not None and item.error is None:
                batch.append(item.row)
        flush(force=True)
    if not registered:
        catalog.add_source(bucket, prefix, safe_url(storage.endpoint_url))
    if not listed_any:
        message = (
            f"nothing under s3://{bucket}/{prefix}: it stays a source, refreshed by `deon "
            f"metadata down` (`deon metadata forget s3://{bucket}/{prefix}` removes it)"
        )
        result.warnings.append(message)
        progress.warn(message)
    # The listing was complete: rows of objects no longer listed are gone.
    try:
        for keys in gone.batches(BATCH_ROWS):
            catalog.write([], [(bucket, k) for k in keys])
    finally:
        gone.close()
    result.deleted += gone.count
    catalog.mark_mirrored(bucket, prefix)
    result.sources.append(f"s3://{bucket}/{prefix}")
