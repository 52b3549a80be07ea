"""`deon metadata down`: mirror the header metadata of every object into the catalog.

Incremental: LIST the prefix and compare each (key, ETag, LastModified) with the catalog;
HEAD only new or changed objects (a metadata-only rewrite keeps the ETag but changes
LastModified), concurrently; delete the rows of objects that are gone. Rows are written
in batches, each in one transaction, and deletions happen only after a complete listing,
so an interrupted run leaves a consistent catalog and a re-run finishes the job.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from deon.catalog.db import Catalog, ObjectRow, naive_utc
from deon.catalog.flatten import flatten, valid_json
from deon.errors import DeonError, KeyNotFound, MetadataError
from deon.metadata import wire as meta
from deon.mirror.snapshot import Entry, Snapshots
from deon.results import Progress
from deon.s3.client import ObjectInfo, Storage, safe_url
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
    jobs: int = 16,
    progress: Progress | None = None,
    snapshots: bool = True,
) -> MirrorResult:
    """Mirror the metadata under each address into the catalog (see module doc).

    An address that fails as a whole (no such bucket, access denied, the listing broke
    off) is named in `failed` with its rows left as they were; the others still go on.
    With `snapshots`, objects a published snapshot describes exactly (same key, ETag
    and LastModified) are taken from it instead of HEADed; see snapshot.py.
    """
    progress = progress or Progress()
    result = MirrorResult()
    started = time.monotonic()
    progress.begin("metadata down", 0, 0)
    sidecars = _Sidecars(storage)
    try:
        with ThreadPoolExecutor(jobs, thread_name_prefix="deon-head") as pool:
            for address in addresses:
                snaps = None
                try:
                    if snapshots:
                        snaps = Snapshots(storage, address.bucket, address.prefix)
                    _mirror_one(
                        catalog, storage, address, pool, jobs, sidecars, progress, result, snaps
                    )
                except DeonError as e:
                    result.failed.append((f"s3://{address.bucket}/{address.prefix}", str(e)))
                    result.source_errors.append(e)
                    continue
                if snaps is not None:
                    for w in snaps.warnings:
                        result.warnings.append(w)
                        progress.warn(w)
    finally:
        result.seconds = time.monotonic() - started
        progress.end()
    catalog.index_columns()  # so that filters on new metadata columns stay fast
    return result


def _mirror_one(
    catalog: Catalog,
    storage: Storage,
    address: S3Address,
    pool: ThreadPoolExecutor,
    jobs: int,
    sidecars: _Sidecars,
    progress: Progress,
    result: MirrorResult,
    snaps: Snapshots | None = None,
) -> None:
    bucket, prefix = address.bucket, address.prefix
    supplied: dict[str, ObjectInfo] = {}  # objects whose rows came from a snapshot
    rechecking: set[str] = set()  # ... being HEADed after all, the snapshot distrusted
    known = catalog.listed_state(bucket, prefix)
    seen: set[str] = set()
    batch: list[ObjectRow] = []
    gone: list[tuple[str, str]] = []
    last_flush = time.monotonic()
    # Workers put their results on a queue; the main thread writes. (Waiting on a set
    # of futures re-arms every one of them at each completion: too dear per object.)
    done: queue.SimpleQueue[_Fetched | _Check | BaseException] = queue.SimpleQueue()
    pending = 0
    limit = jobs * 4
    registered = False

    def work(obj: ObjectInfo, expected: ObjectRow | None = None) -> None:
        try:
            fetched = fetch_row(storage, sidecars, obj)
            done.put(fetched if expected is None else _Check(expected, fetched))
        except BaseException as e:  # noqa: BLE001 - re-raised by the main thread
            done.put(e)

    def submit(obj: ObjectInfo, expected: ObjectRow | None = None) -> None:
        nonlocal pending
        while pending >= limit:
            collect(done.get())
        pool.submit(work, obj, expected)
        pending += 1

    def flush(force: bool = False) -> None:
        nonlocal last_flush
        due = len(batch) + len(gone) >= BATCH_ROWS or time.monotonic() - last_flush > BATCH_SECONDS
        if (batch or gone) and (force or due):
            for w in catalog.write(batch, gone):
                result.warnings.append(w)
                progress.warn(w)
            batch.clear()
            gone.clear()
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
                for key in snaps.distrust(f"{fetched.obj.uri} differs"):
                    result.from_snapshot -= 1
                    if key != fetched.obj.key:
                        rechecking.add(key)
                        submit(supplied[key])
            return
        obj = item.obj
        if obj.key in rechecking:  # counted already, when the snapshot supplied it
            rechecking.discard(obj.key)
            if item.row is not None:
                batch.append(item.row)
            elif item.error is not None:
                result.failed.append((obj.uri, item.error))
            return
        if item.error is not None:
            # The row (if any) stays as it was: nothing unseen is claimed.
            result.failed.append((obj.uri, item.error))
        elif item.row is None:  # deleted between LIST and HEAD
            if obj.key in known:
                gone.append((bucket, obj.key))
                result.deleted += 1
        else:
            batch.append(item.row)
            if obj.key in known:
                result.changed += 1
            else:
                result.new += 1
            if item.warning:
                result.warnings.append(item.warning)
                progress.warn(item.warning)
        progress.advance(1)

    try:
        for obj in listed(storage, address):
            if not registered:
                catalog.add_source(bucket, prefix, safe_url(storage.endpoint_url))
                registered = True
            seen.add(obj.key)
            progress.add_total(1, 0)
            state = known.get(obj.key)
            listed_at = naive_utc(obj.last_modified)
            if state is not None and state == (obj.etag, listed_at):
                result.unchanged += 1
                progress.advance(1)
                continue
            while not done.empty():
                collect(done.get())
            entry = snaps.lookup(obj.key, obj.etag, listed_at) if snaps is not None else None
            if entry is not None:
                row = row_from_entry(obj, entry)
                batch.append(row)
                supplied[obj.key] = obj
                result.from_snapshot += 1
                if obj.key in known:
                    result.changed += 1
                else:
                    result.new += 1
                progress.advance(1)
                if snaps is not None and snaps.take(obj.key):
                    submit(obj, row)  # spot-check the snapshot
            else:
                submit(obj)
            flush()
        while pending:
            collect(done.get())
            flush()
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
    if not seen:
        message = (
            f"nothing under s3://{bucket}/{prefix}: it stays a source, refreshed by `deon "
            f"metadata down` (`deon metadata forget s3://{bucket}/{prefix}` removes it)"
        )
        result.warnings.append(message)
        progress.warn(message)
    # The listing was complete: rows of objects no longer listed are gone.
    missing = [(bucket, k) for k in known if k not in seen]
    for i in range(0, len(missing), BATCH_ROWS):
        catalog.write([], missing[i : i + BATCH_ROWS])
    result.deleted += len(missing)
    catalog.mark_mirrored(bucket, prefix)
    result.sources.append(f"s3://{bucket}/{prefix}")
