"""`deon pull --manifest`: exactly a manifest's bytes, or a refusal naming the object.

For each entry, DATA_DIR/BUCKET/KEY is compared with the entry's size and sha256 (or
its ETag) through the hash cache or by hashing the file: a file already holding the
bytes costs no request. Otherwise the object is fetched pinned (transfer.engine.Pin):
by the entry's VersionId when it has one, else with If-Match on its ETag, and the bytes
are checked against the entry's sha256 before they take the file's name. An object
replaced or deleted since the freeze, with no VersionId in the entry, is looked for
among the bucket's versions (ListObjectVersions: a versioned bucket mirrored before
deon recorded VersionIds); when no version holds the frozen bytes it is refused and
named, and the new bytes are never taken.
"""

from __future__ import annotations

import stat
import time
from collections.abc import Sequence
from pathlib import Path

from deon.errors import AccessDenied, DeonError, KeyNotFound, PreconditionFailed
from deon.manifest.format import Entry
from deon.results import Outcome, Status, SyncResult
from deon.transfer.digest import Cancelled, digest_file, etag_is_md5, matches_etag
from deon.transfer.engine import Engine, Pin, failed
from deon.transfer.sync import _collect as collect
from deon.transfer.sync import home


def holds(engine: Engine, dest: Path, entry: Entry) -> bool:
    """Whether the local file holds the entry's bytes: never a request."""
    try:
        st = dest.lstat()
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(st.st_mode) or st.st_size != entry.size:
        return False
    state = engine.state
    cached = state.lookup(dest, st, entry.bucket, entry.key) if state is not None else None
    if cached is not None:
        if entry.sha256 is not None:
            return cached.sha256 == entry.sha256
        if cached.etag is not None and cached.etag == entry.etag:
            return True
        if cached.md5 is not None and etag_is_md5(entry.etag):
            return cached.md5 == entry.etag.lower()
    digest = digest_file(dest, engine.cancel, md5=entry.sha256 is None)
    if entry.sha256 is not None:
        current = digest.sha256 == entry.sha256
    else:
        current = matches_etag(digest, entry.etag)
    if engine.state is not None:
        engine.state.remember(
            dest,
            st,
            digest.sha256,
            md5=digest.md5,
            etag=entry.etag if current else None,
            bucket=entry.bucket,
            key=entry.key,
        )
    return current


def _refusal(entry: Entry, gone: bool, why: str = "") -> str:
    what = "deleted" if gone else "replaced"
    return (
        f"{what} since the manifest was frozen, and the bucket keeps no version with the "
        f"frozen bytes{why}: refused (never other bytes)"
    )


def _fetch(engine: Engine, entry: Entry, dest: Path, *, force: bool, dry_run: bool) -> Outcome:
    uri = entry.uri
    try:
        replacing = dest.exists()
        if replacing and not force and holds(engine, dest, entry):
            engine.progress.advance(entry.size)
            return Outcome(uri, dest, Status.UNCHANGED, entry.size)
        if dry_run:
            return Outcome(uri, dest, Status.PLANNED, entry.size)
        pin = Pin(entry.etag, entry.sha256, entry.version_id)
        try:
            got = engine.download(
                entry.bucket, entry.key, dest, size=entry.size, etag=entry.etag, pin=pin
            )
        except (PreconditionFailed, KeyNotFound) as e:
            if entry.version_id is not None:
                if isinstance(e, KeyNotFound):
                    lost = KeyNotFound(f"version {entry.version_id} is gone from the bucket")
                    return failed(uri, dest, lost)
                raise
            gone = isinstance(e, KeyNotFound)
            try:
                version = engine.storage.find_version(
                    entry.bucket, entry.key, entry.etag, entry.size
                )
            except AccessDenied:
                why = " (these credentials may not list its versions: s3:ListBucketVersions)"
                return Outcome(uri, dest, Status.FAILED, message=_refusal(entry, gone, why))
            if version is None:
                return Outcome(uri, dest, Status.FAILED, message=_refusal(entry, gone))
            pin = Pin(entry.etag, entry.sha256, version)
            got = engine.download(
                entry.bucket, entry.key, dest, size=entry.size, etag=entry.etag, pin=pin
            )
        return Outcome(uri, dest, Status.REPLACED if replacing else Status.TRANSFERRED, got.nbytes)
    except Cancelled:
        raise
    except (DeonError, OSError) as e:
        return failed(uri, dest, e)


def pull(
    engine: Engine,
    entries: Sequence[Entry],
    data_dir: Path,
    *,
    force: bool = False,
    dry_run: bool = False,
) -> SyncResult:
    """Bring every entry's bytes to DATA_DIR/BUCKET/KEY (see module doc)."""
    result, started = SyncResult("pull"), time.monotonic()
    engine.progress.begin("pull", len(entries), sum(e.size for e in entries))
    tasks = [
        (e, dest) for e in entries if (dest := home(engine, result, e.bucket, e.key, data_dir))
    ]

    def one(task: tuple[Entry, Path]) -> Outcome:
        entry, dest = task
        return _fetch(engine, entry, dest, force=force, dry_run=dry_run)

    return collect(result, engine.run(one, tasks), engine.progress, started, engine)
