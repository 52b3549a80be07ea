"""Planning `up`, `down` and `pull`: which items to transfer, which are already in place,
which must be refused. The transfers themselves are the engine's (engine.py).

A local file and an object are "the same" when their sizes match and either the
object's sha256 header (or the catalog's copy of it) equals the file's, or its ETag is
a plain MD5 (or deon's multipart ETag) equal to the file's. Only when neither proves
it does deon send a HEAD.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from deon.errors import (
    DeonError,
    DeonWarning,
    IntegrityError,
    KeyNotFound,
    LocalPathError,
    PreconditionFailed,
    UnsafeKey,
    WarningCode,
)
from deon.metadata import wire as meta
from deon.metadata.hdf5 import is_hdf5, read_metadata
from deon.metadata.readers import Reader
from deon.metadata.readers import resolve as resolve_readers
from deon.results import Outcome, Progress, Status, SyncResult
from deon.s3.client import ObjectInfo, Storage
from deon.transfer.digest import (
    Cancelled,
    Digest,
    digest_bytes,
    digest_file,
    etag_is_md5,
    file_matches_etag,
    matches_etag,
    uses_multipart,
)
from deon.transfer.engine import Engine, expected_sha256, failed
from deon.transfer.state import State, identity
from deon.uri import (
    RESERVED_SEGMENT,
    TEMP_PREFIX,
    LocalTree,
    S3Address,
    check_relative_key,
    is_directory_marker,
    is_reserved,
    local_path_for,
)

HDF5_CONTENT_TYPE = "application/x-hdf5"
#: Why a file that was written to while deon read it was not sent.
CHANGED_WHILE_READ = "changed while it was being read; not sent (run again once it is complete)"


@dataclass(frozen=True)
class Known:
    """What is already known about an object (from LIST or the catalog)."""

    size: int
    etag: str
    sha256: str | None = None


# -- shared ---------------------------------------------------------------------------


def _is_current(engine: Engine, bucket: str, key: str, dest: Path, known: Known) -> bool:
    """Whether the local file already holds the object's bytes.

    The hash cache answers without reading the file when it can; otherwise the file
    is hashed once (and the result cached).
    """
    try:
        st = dest.lstat()
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(st.st_mode) or st.st_size != known.size:
        return False
    state = engine.state
    cached = state.lookup(dest, st, bucket, key) if state is not None else None
    if cached is not None:
        if cached.etag is not None and cached.etag == known.etag:
            return True
        if known.sha256:
            return cached.sha256 == known.sha256
        if cached.md5 is not None and etag_is_md5(known.etag):
            return cached.md5 == known.etag.lower()
    digest = digest_file(dest, engine.cancel, md5=True)
    if known.sha256:
        current = digest.sha256 == known.sha256
    elif etag_is_md5(known.etag) or matches_etag(digest, known.etag):
        current = matches_etag(digest, known.etag)
    elif file_matches_etag(dest, known.etag, engine.cancel):
        # Another tool's multipart ETag (the original deoncli's 8 MiB parts on a file
        # under deon's own 16 MiB threshold, say), with the part size inferred.
        current = True
    else:
        # A multipart ETag from another tool's part size: only the sha256 header can tell.
        try:
            head = engine.storage.head(bucket, key)
        except KeyNotFound:
            return False
        current = head.etag == known.etag and expected_sha256(head) == digest.sha256
    if state is not None:
        state.remember(
            dest,
            st,
            digest.sha256,
            md5=digest.md5,
            etag=known.etag if current else None,
            bucket=bucket,
            key=key,
        )
    return current


def _fetch(
    engine: Engine,
    address: S3Address,
    dest: Path,
    known: Known | None,
    *,
    force: bool,
    dry_run: bool,
) -> Outcome:
    """Bring one object to `dest` unless it is already there."""
    uri = address.uri
    try:
        replacing = dest.exists()
        if known is None:
            # An object the catalog does not know: a HEAD tells whether the local file is
            # current, and the size and ETag let a large download resume after a kill.
            head = engine.storage.head(address.bucket, address.key)
            known = Known(head.size, head.etag, expected_sha256(head))
        if (
            replacing
            and not force
            and _is_current(engine, address.bucket, address.key, dest, known)
        ):
            engine.progress.advance(known.size)
            return Outcome(uri, dest, Status.UNCHANGED, known.size)
        if dry_run:
            return Outcome(uri, dest, Status.PLANNED, known.size)
        got = engine.download(address.bucket, address.key, dest, size=known.size, etag=known.etag)
        status = Status.REPLACED if replacing else Status.TRANSFERRED
        return Outcome(uri, dest, status, got.nbytes)
    except Cancelled:
        raise
    except (DeonError, OSError) as e:
        return failed(uri, dest, e)


def _collect(
    result: SyncResult,
    outcomes: Iterator[Outcome],
    progress: Progress,
    started: float,
    engine: Engine | None = None,
) -> SyncResult:
    try:
        for outcome in outcomes:
            result.outcomes.append(outcome)
    finally:
        result.seconds = time.monotonic() - started
        if engine is not None:
            _stopped(result, engine)
        progress.end()
    result.outcomes.sort(key=lambda o: o.uri)
    return result


def _stopped(result: SyncResult, engine: Engine) -> None:
    """Warn once that the run stopped early, and that the state file could not be
    written (neither fails an item by itself)."""
    messages = []
    if engine.state is not None:
        engine.state.flush()  # so that a state file that cannot be written is told now
    if engine.halted is not None and engine.untried:
        messages.append(
            DeonWarning(
                WarningCode.STOPPED_EARLY,
                f"stopped early: {engine.halted}; {engine.untried} item(s) not tried",
            )
        )
    if engine.state is not None and engine.state.problem is not None:
        messages.append(
            DeonWarning(
                WarningCode.STATE_UNWRITABLE,
                f"{engine.state.problem}; the transfers themselves are not affected",
            )
        )
    for message in messages:
        result.warnings.append(message)
        engine.progress.warn(message)


# -- down and pull -----------------------------------------------------------------------


def listed(storage: Storage, address: S3Address) -> Iterator[ObjectInfo]:
    """The data objects under an address: no directory markers, nothing reserved."""
    for obj in storage.iter_objects(address.bucket, address.prefix):
        if is_directory_marker(obj.key, obj.size) or is_reserved(obj.key):
            continue
        yield obj


def down(
    engine: Engine,
    address: S3Address,
    local_dir: Path,
    *,
    force: bool = False,
    dry_run: bool = False,
    known: Callable[[list[str]], dict[str, Known]] | None = None,
) -> SyncResult:
    """Make `local_dir` hold every object under `address` (see `deon.api.down`).

    Pages of the listing are handled as they arrive: files the hash cache proves
    current are settled at once, the rest go to the workers while the next page loads.
    `known` looks up what the catalog holds for a page of URIs: its sha256 is used
    to decide whether a local file is current when its ETag equals the listed one.
    """
    started = time.monotonic()
    progress = engine.progress
    result = SyncResult("down")
    progress.begin("down", 0, 0)
    prefix = address.prefix
    tree = LocalTree(local_dir)
    cached = engine.state.under(local_dir) if engine.state is not None and not force else {}

    def settle(outcome: Outcome) -> None:
        result.outcomes.append(outcome)
        progress.item_done(outcome)

    def tasks() -> Iterator[tuple[ObjectInfo, Path, str | None]]:
        for page in engine.storage.iter_pages(address.bucket, prefix):
            page = [
                o for o in page if not is_directory_marker(o.key, o.size) and not is_reserved(o.key)
            ]
            progress.add_total(len(page), sum(o.size for o in page))
            hints = known([o.uri for o in page]) if known is not None else {}
            for obj in page:
                try:
                    dest = tree.path_for(obj.key[len(prefix) :])
                except UnsafeKey as e:
                    settle(
                        Outcome(obj.uri, None, Status.FAILED, message=f"refused unsafe key: {e}")
                    )
                    continue
                engine.sweep_once(dest.parent)  # what killed runs left, even if all is current
                hint = hints.get(obj.uri)
                sha = hint.sha256 if hint is not None and hint.etag == obj.etag else None
                if cached and _cached_current(engine.state, dest, obj, sha, cached):
                    progress.advance(obj.size)
                    settle(Outcome(obj.uri, dest, Status.UNCHANGED, obj.size))
                    continue
                yield obj, dest, sha

    def one(task: tuple[ObjectInfo, Path, str | None]) -> Outcome:
        obj, dest, sha = task
        return _fetch(
            engine,
            S3Address(obj.bucket, obj.key),
            dest,
            Known(obj.size, obj.etag, sha),
            force=force,
            dry_run=dry_run,
        )

    done = _collect(result, engine.run(one, tasks()), progress, started, engine)
    if not done.outcomes:
        message = f"nothing under s3://{address.bucket}/{prefix}"
        if address.key and not address.key.endswith("/"):
            try:
                engine.storage.head(address.bucket, address.key)
                message += f"; {address.uri} is an object: deon pull {address.uri} fetches it"
            except KeyNotFound:
                pass
        done.warnings.append(message)
        progress.warn(message)
    return done


def _cached_current(
    state: State | None,
    dest: Path,
    obj: ObjectInfo,
    sha256: str | None,
    cached: dict[str, tuple[object, ...]],
) -> bool:
    """Whether the preloaded hash cache proves the file holds the object's bytes."""
    row = cached.get(os.fsdecode(dest))
    if row is None:
        return False
    try:
        st = dest.lstat()
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode) or row[:5] != identity(st) or st.st_size != obj.size:
        return False
    if state is not None and state.etag_of(row, obj.bucket, obj.key) == obj.etag:
        return True
    return sha256 is not None and row[5] == sha256


def home(engine: Engine, result: SyncResult, bucket: str, key: str, data_dir: Path) -> Path | None:
    """DATA_DIR/BUCKET/KEY, its folder swept of what killed runs left; None (and a
    FAILED outcome in `result`) for a key that would escape it."""
    try:
        dest = local_path_for(data_dir / bucket, key)
    except UnsafeKey as e:
        outcome = Outcome(
            f"s3://{bucket}/{key}", None, Status.FAILED, message=f"refused unsafe key: {e}"
        )
        result.outcomes.append(outcome)
        engine.progress.item_done(outcome)
        return None
    engine.sweep_once(dest.parent)
    return dest


def pull(
    engine: Engine,
    addresses: Iterable[S3Address],
    data_dir: Path,
    *,
    force: bool = False,
    dry_run: bool = False,
    known: dict[str, Known] | None = None,
) -> SyncResult:
    """Download the given objects to DATA_DIR/BUCKET/KEY (see `deon.api.pull`)."""
    started = time.monotonic()
    progress = engine.progress
    result = SyncResult("pull")
    unique = list(dict.fromkeys(addresses))
    known = known or {}
    progress.begin("pull", len(unique), sum(k.size for a in unique if (k := known.get(a.uri))))
    tasks: list[tuple[S3Address, Path]] = []
    for address in unique:
        dest = home(engine, result, address.bucket, address.key, data_dir)
        if dest is not None:
            tasks.append((address, dest))

    def one(task: tuple[S3Address, Path]) -> Outcome:
        address, dest = task
        return _fetch(engine, address, dest, known.get(address.uri), force=force, dry_run=dry_run)

    return _collect(result, engine.run(one, tasks), progress, started, engine)


# -- up ------------------------------------------------------------------------------------


#: Times `up` sends a file that changes while it goes up before giving up on it.
UPLOAD_ATTEMPTS = 3


class ChangedWhileRead(Exception):
    """The bytes sent are not the ones hashed: the file changed while it was read."""


def _deleted(path: Path) -> str:
    return f"deleted before it could go up: {path}"


def _epoch() -> datetime:
    return datetime.fromtimestamp(0, timezone.utc)


@dataclass(frozen=True)
class LocalFile:
    path: Path
    relative: str  # POSIX, relative to the folder being uploaded
    size: int


def scan(root: Path) -> tuple[list[LocalFile], list[str]]:
    """Every regular file under `root`, following symlinked files and folders (as the
    original deoncli's `os.walk(followlinks=True)` did: labs link dataset folders from
    other disks), skipping deon's temporary files and reserved folders. A file's
    relative path is the one seen through the links. A link to a folder that contains
    it (a loop) is not followed, with a warning. Returns (files, warnings)."""
    files: list[LocalFile] = []
    warnings: list[str] = []

    def walk(folder: Path, rel: tuple[str, ...], ancestors: frozenset[tuple[int, int]]) -> None:
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            warnings.append(f"cannot read {folder}: {e.strerror}")
            return
        for entry in entries:
            path = Path(entry.path)
            try:
                st = os.stat(path)  # through the link, if it is one
            except OSError as e:
                warnings.append(f"cannot read {path}: {e.strerror}")
                continue
            if stat.S_ISDIR(st.st_mode):
                if entry.name == RESERVED_SEGMENT:
                    continue
                if (st.st_dev, st.st_ino) in ancestors:
                    warnings.append(
                        DeonWarning(
                            WarningCode.SYMLINK_LOOP,
                            f"{path} links to a folder that contains it; not followed (a loop)",
                        )
                    )
                    continue
                walk(path, (*rel, entry.name), ancestors | {(st.st_dev, st.st_ino)})
            elif stat.S_ISREG(st.st_mode) and not entry.name.startswith(TEMP_PREFIX):
                files.append(LocalFile(path, "/".join((*rel, entry.name)), st.st_size))

    try:
        top = os.stat(root)
    except OSError as e:
        return files, [f"cannot read {root}: {e.strerror}"]
    walk(root, (), frozenset({(top.st_dev, top.st_ino)}))
    return files, warnings


def up(
    engine: Engine,
    state: State,
    address: S3Address,
    local: Path,
    *,
    overwrite: bool = False,
    dry_run: bool = False,
    readers: Sequence[Reader] | None = None,
) -> SyncResult:
    """Upload new or changed files under `local` to `address` (see `deon.api.up`).
    `readers` find each HDF5 file's metadata (default: deon.metadata.readers' order)."""
    started = time.monotonic()
    progress = engine.progress
    result = SyncResult("up")
    if readers is None:
        readers = resolve_readers()  # once, not once per file
    if not local.exists():
        raise LocalPathError(f"no such folder: {local}")
    if local.is_file():
        files = [LocalFile(local, local.name, local.stat().st_size)]
    else:
        files, warnings = scan(local)
        result.warnings.extend(warnings)
    remote = {o.key: o for o in engine.storage.iter_objects(address.bucket, address.prefix)}
    progress.begin("up", len(files), sum(f.size for f in files))
    for w in result.warnings:
        progress.warn(w)
    not_hdf5: list[str] = []

    def one(item: LocalFile) -> Outcome:
        key = address.prefix + item.relative
        return upload_file(
            engine, state, address, item, remote.get(key), result,
            overwrite=overwrite, dry_run=dry_run, not_hdf5=not_hdf5, readers=readers,
        )  # fmt: skip

    done = _collect(result, engine.run(one, files), progress, started, engine)
    if not_hdf5:
        done.warnings.append(
            DeonWarning(
                WarningCode.NOT_HDF5_SUMMARY,
                f"{len(not_hdf5)} file(s) are not HDF5: their objects carry no metadata "
                f"(e.g. {sorted(not_hdf5)[0]})",
            )
        )
    return done


def upload_file(
    engine: Engine,
    state: State,
    address: S3Address,
    item: LocalFile,
    existing: ObjectInfo | None,
    result: SyncResult,
    *,
    overwrite: bool = False,
    dry_run: bool = False,
    not_hdf5: list[str] | None = None,
    expect: tuple[int, int, int, int, int] | None = None,
    readers: Sequence[Reader] | None = None,
) -> Outcome:
    """Upload one file to ADDRESS/RELATIVE (see `deon.api.up`), given what LIST said of
    the object at its key (`existing`). Warnings go to `result` and the progress.

    The file is read (and its metadata taken) between two looks at it: when it changed
    in between, nothing is sent, because the bytes read may be half old and half new
    (a FAILED outcome saying so). With `expect`, the file must also still be the one
    with that identity (`state.identity`), e.g. the one `up --watch` found complete.

    After it is sent, the file is looked at again: when it changed since it was hashed,
    the object holds a version that is gone, so it is compared again and sent again
    (UPLOAD_ATTEMPTS in all; `up --watch`, which gives `expect`, settles it itself). A
    file deleted meanwhile is named.

    `readers` find its metadata (default: deon.metadata.readers' order).
    """
    key = address.prefix + item.relative
    uri = f"s3://{address.bucket}/{key}"
    try:
        check_relative_key(item.relative)
    except UnsafeKey as e:
        return Outcome(uri, item.path, Status.FAILED, message=f"unshareable name: {e}")
    progress = engine.progress
    for _ in range(UPLOAD_ATTEMPTS):
        try:
            outcome, st = _upload_once(
                engine, state, address, item, key, existing, result,
                overwrite=overwrite, dry_run=dry_run, not_hdf5=not_hdf5, expect=expect,
                readers=readers,
            )  # fmt: skip
        except FileNotFoundError:
            return Outcome(uri, item.path, Status.FAILED, message=_deleted(item.path))
        except ChangedWhileRead:
            outcome, st = None, None
        if outcome is not None and (not outcome.ok or outcome.status is Status.PLANNED):
            return outcome
        try:
            now = os.stat(item.path)
        except FileNotFoundError:
            if outcome is None:
                return Outcome(uri, item.path, Status.FAILED, message=_deleted(item.path))
            message = DeonWarning(
                WarningCode.DELETED_DURING_UP,
                f"{item.path} was deleted while it went up; {uri} holds it as it was",
            )
            result.warnings.append(message)
            progress.warn(message)
            return outcome
        if outcome is not None and (
            expect is not None or (st is not None and identity(now) == identity(st))
        ):
            return outcome
        # Changed since it was hashed: what went up (if anything) is not the file as it
        # is now. Compare again with what is at the key now, and send it again.
        try:
            head = engine.storage.head(address.bucket, key)
            existing = ObjectInfo(
                address.bucket, key, head.size, head.etag, head.last_modified or _epoch()
            )
        except KeyNotFound:
            existing = None
        except (DeonError, OSError) as e:
            return failed(uri, item.path, e)
    return Outcome(
        uri,
        item.path,
        Status.FAILED,
        message=f"{item.path} kept changing while it went up ({UPLOAD_ATTEMPTS} attempts); "
        "run again once it is written",
    )


def _upload_once(
    engine: Engine,
    state: State,
    address: S3Address,
    item: LocalFile,
    key: str,
    existing: ObjectInfo | None,
    result: SyncResult,
    *,
    overwrite: bool,
    dry_run: bool,
    not_hdf5: list[str] | None,
    expect: tuple[int, int, int, int, int] | None,
    readers: Sequence[Reader] | None,
) -> tuple[Outcome, os.stat_result | None]:
    """Hash and send the file once: the outcome, and the file as it was hashed.

    Raises:
        FileNotFoundError: the file is gone.
        ChangedWhileRead: the bytes sent were not the ones hashed (a multipart upload's
            parts, read again, differed); nothing was completed.
    """
    progress = engine.progress
    uri = f"s3://{address.bucket}/{key}"
    sidecar_root = f"{address.prefix}{RESERVED_SEGMENT}/meta/"
    st: os.stat_result | None = None
    try:
        st = os.stat(item.path)
        if expect is not None and identity(st) != expect:
            return Outcome(uri, item.path, Status.FAILED, message=CHANGED_WHILE_READ), st
        cached = state.lookup(item.path, st)
        mine = state.upload(address.bucket, key) if existing is not None else None
        if (
            existing is not None
            and cached is not None
            and mine is not None
            and existing.size == st.st_size
            and mine.etag == existing.etag
            and mine.sha256 == cached.sha256
        ):
            # This user uploaded these very bytes, with deon's headers, to this
            # endpoint, bucket and key, and the object is still that one.
            progress.advance(st.st_size)
            return Outcome(uri, item.path, Status.UNCHANGED, st.st_size), st
        # MD5 only to compare with an object of the same size by its ETag.
        md5 = existing is not None and existing.size == st.st_size
        data: bytes | None = None
        if uses_multipart(st.st_size):
            digest = digest_file(item.path, engine.cancel, md5=md5)
        else:
            data = item.path.read_bytes()  # read once: hashed, then sent as is
            digest = digest_bytes(data, md5=md5)
        encoded, hdf5 = _encode_metadata(item.path, digest, sidecar_root, result, progress, readers)
        if identity(os.stat(item.path)) != identity(st):
            # Written to while read: what was read may be no version the file ever had.
            return Outcome(uri, item.path, Status.FAILED, message=CHANGED_WHILE_READ), st
        state.remember(item.path, st, digest.sha256, md5=digest.md5)
        if not hdf5 and not_hdf5 is not None:
            not_hdf5.append(item.relative)
        upload = _Upload(address.bucket, key, item.path, st, digest, encoded, hdf5, data)
        return _put(engine, state, upload, existing, overwrite=overwrite, dry_run=dry_run), st
    except (Cancelled, FileNotFoundError):
        raise
    except IntegrityError as e:
        if "changed while it was being uploaded" in str(e):
            raise ChangedWhileRead() from e
        return failed(uri, item.path, e), st
    except (DeonError, OSError) as e:
        return failed(uri, item.path, e), st


def _encode_metadata(
    path: Path,
    digest: Digest,
    sidecar_root: str,
    result: SyncResult,
    progress: Progress,
    readers: Sequence[Reader] | None = None,
) -> tuple[meta.Encoded, bool]:
    """The headers for a file: its sha256 and, for HDF5 files, its metadata document."""
    hdf5 = is_hdf5(path)
    document, has_document = None, False
    if hdf5:
        read = read_metadata(path, readers)
        if read.status == "ok":
            document, has_document = read.document, True
        else:
            message = DeonWarning(
                WarningCode.NO_METADATA, f"{path}: {read.detail}; its object carries no metadata"
            )
            result.warnings.append(message)
            progress.warn(message)
    try:
        encoded = meta.encode(
            document,
            digest.sha256,
            sidecar_key=lambda d: f"{sidecar_root}{d}.json",
            has_document=has_document,
        )
    except ValueError as e:
        message = DeonWarning(
            WarningCode.NO_METADATA,
            f"{path}: metadata cannot be stored ({e}); its object carries no metadata",
        )
        result.warnings.append(message)
        progress.warn(message)
        encoded = meta.encode(None, digest.sha256, lambda d: "", has_document=False)
    return encoded, hdf5


@dataclass(frozen=True)
class _Upload:
    """One file going up to one key: the file as it was hashed, and its headers."""

    bucket: str
    key: str
    path: Path
    st: os.stat_result
    digest: Digest
    encoded: meta.Encoded
    hdf5: bool
    data: bytes | None = None  # the bytes read once, when small enough to send as is

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def content_type(self) -> str | None:
        return HDF5_CONTENT_TYPE if self.hdf5 else None

    def outcome(self, status: Status, message: str | None = None) -> Outcome:
        if message is not None:
            return Outcome(self.uri, self.path, status, message=message)
        return Outcome(self.uri, self.path, status, self.digest.size)


def _record_upload(state: State, up: _Upload, etag: str) -> None:
    """The object at the key now holds the file's bytes as this user's: remember it as
    theirs, and the file as current unless it changed while it went up."""
    d = up.digest
    state.record_upload(up.bucket, up.key, etag, d.sha256)
    if os.stat(up.path) == up.st:
        state.remember(up.path, up.st, d.sha256, md5=d.md5, etag=etag, bucket=up.bucket, key=up.key)


#: The largest object S3 copies in one request (CopyObject).
MAX_COPY_BYTES = 5 * 1024**3


def _same_bytes(
    engine: Engine, state: State, up: _Upload, etag: str, *, overwrite: bool, dry_run: bool
) -> Outcome | None:
    """The object at the key holds the file's bytes (its ETag proves it). Unchanged when
    deon's headers are on it. An object uploaded by another tool (`aws s3 cp`) or
    carrying someone else's metadata is left as it is, with a warning, unless
    `overwrite`: then it is given deon's headers in place (a copy onto itself, on the
    condition of its ETag) without sending the bytes again. None: it changed or is gone,
    compare again as for any object.
    """
    bucket, key, digest = up.bucket, up.key, up.digest

    def unchanged(ours: bool, current: str | None) -> Outcome:
        if ours and current is not None:
            state.record_upload(bucket, key, current, digest.sha256)
        state.remember(
            up.path, up.st, digest.sha256, md5=digest.md5, etag=current, bucket=bucket, key=key
        )
        engine.progress.advance(digest.size)
        return up.outcome(Status.UNCHANGED)

    if state.uploaded_etag(bucket, key) == etag:
        return unchanged(False, etag)  # deon's headers went up with it
    try:
        head = engine.storage.head(bucket, key)
    except KeyNotFound:
        return None
    if head.etag != etag:
        return None  # replaced since the listing: compare again as for any object
    if expected_sha256(head) == digest.sha256:
        return unchanged(True, etag)  # deon put it there, from this file or the same one
    if not overwrite:
        # Someone else's object: giving it headers rewrites it (a copy resets its ACL,
        # storage class and caching headers, as a re-upload would), so only on request.
        what = "metadata deon did not write" if head.metadata else "no deon metadata"
        engine.progress.warn(
            f"{up.uri} holds the bytes of {up.path} but {what}; left as it is (--overwrite "
            "gives it this file's metadata)"
        )
        return unchanged(False, None)  # not cached as current: asked again next time
    if head.size > MAX_COPY_BYTES:
        return None  # too large to copy in one request: sent again whole, as any replacement
    if dry_run:
        return up.outcome(Status.PLANNED)
    if up.encoded.sidecar is not None:
        engine.put_bytes_once(bucket, up.encoded.sidecar.key, up.encoded.sidecar.body)
    try:
        new_etag = engine.storage.replace_metadata(
            bucket, key, etag, up.encoded.metadata, up.content_type
        )
    except PreconditionFailed:
        return None  # someone wrote the key meanwhile: compare again
    _record_upload(state, up, new_etag)
    engine.progress.advance(digest.size)
    return up.outcome(Status.TAGGED)


def _put(
    engine: Engine,
    state: State,
    up: _Upload,
    existing: ObjectInfo | None,
    *,
    overwrite: bool,
    dry_run: bool,
) -> Outcome:
    bucket, key, digest = up.bucket, up.key, up.digest
    storage = engine.storage
    if_match: str | None = None
    if existing is not None:
        if existing.size == digest.size and matches_etag(digest, existing.etag):
            same = _same_bytes(
                engine, state, up, existing.etag, overwrite=overwrite, dry_run=dry_run
            )
            if same is not None:
                return same
        try:
            head = storage.head(bucket, key)
        except KeyNotFound:
            head = None  # deleted since the listing: upload as new
        if head is not None:
            if expected_sha256(head) == digest.sha256:
                engine.progress.advance(digest.size)
                return up.outcome(Status.UNCHANGED)
            mine = state.uploaded_etag(bucket, key) == head.etag
            if not (overwrite or mine):
                return up.outcome(
                    Status.FAILED,
                    "refused: a different object already exists at this key and it is "
                    "not one you uploaded (use --overwrite to replace it)",
                )
            if_match = head.etag
    if dry_run:
        return up.outcome(Status.PLANNED)
    if up.encoded.sidecar is not None:
        engine.put_bytes_once(bucket, up.encoded.sidecar.key, up.encoded.sidecar.body)
    try:
        etag = engine.upload(
            bucket,
            key,
            up.path,
            digest,
            up.encoded.metadata,
            data=up.data,
            if_none_match=if_match is None,
            if_match=if_match,
            content_type=up.content_type,
        )
    except PreconditionFailed:
        # Someone wrote the key since we looked. If it holds our bytes (a retried
        # request of ours, or the same file from a colleague), all is well.
        try:
            head = storage.head(bucket, key)
        except KeyNotFound:
            head = None
        if head is not None and expected_sha256(head) == digest.sha256:
            # Our bytes are there: a retry of ours whose first attempt landed, or the
            # same file uploaded by someone else. Either way it is now known as ours.
            _record_upload(state, up, head.etag)
            return up.outcome(Status.UNCHANGED)
        return up.outcome(
            Status.FAILED,
            "refused: someone else wrote a different object at this key while "
            "uploading; nothing was replaced (run again to compare, or use --overwrite)",
        )
    _record_upload(state, up, etag)
    return up.outcome(Status.TRANSFERRED if if_match is None else Status.REPLACED)
