"""The transfer engine shared by `up`, `down` and `pull`.

Downloads land atomically: bytes go to a temporary file beside the target, are checked
(size, then the sha256 the object carries, else its plain-MD5 ETag) and only then renamed
into place. Objects above the multipart threshold are fetched as concurrent ranged GETs
into a resumable temporary file with a journal of finished parts, so an interrupted
large download continues where it stopped. Uploads are conditional (If-None-Match /
If-Match) and sign the sha256 of every body they send (x-amz-content-sha256, whole
object or part), so S3 rejects bytes that changed on the way.

s3transfer is not used for the transfers themselves: it cannot pass conditional-write
headers, verify before renaming, or resume. Its chunk-size rules are reused (digest.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import (
    FIRST_COMPLETED,
    FIRST_EXCEPTION,
    Future,
    ThreadPoolExecutor,
    wait,
)
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from deon.errors import (
    AccessDenied,
    DeonError,
    DiskFull,
    IntegrityError,
    KeyNotFound,
    LocalPathError,
    PreconditionFailed,
)
from deon.metadata import wire as meta
from deon.results import Outcome, Progress, Status
from deon.s3.client import ObjectHead, Storage, stream_errors
from deon.transfer import disk
from deon.transfer.digest import (
    PART_SIZE,
    READ_SIZE,
    Cancelled,
    Digest,
    EtagHasher,
    etag_is_md5,
    etag_part_count,
    part_ranges,
    read_buffer,
    uses_multipart,
)
from deon.transfer.state import State
from deon.uri import TEMP_PREFIX

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

T = TypeVar("T")
_preadv = getattr(os, "preadv", None)

#: Attempts at a response body that breaks while streaming (each resumes where it broke).
STREAM_ATTEMPTS = 6
#: Longest delay between an item finishing and its being reported done (see Engine.run).
REPORT_SECONDS = 0.1


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def resumable_temp_path(dest: Path, etag: str) -> Path:
    """The temporary file of a resumable download: fixed for a (file name, ETag) pair,
    so a re-run finds it; a changed object gets a fresh one."""
    tag = hashlib.sha1(f"{dest.name}\0{etag}".encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return dest.with_name(f"{TEMP_PREFIX}{tag}")


def unique_temp_path(dest: Path) -> Path:
    return dest.with_name(f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(6)}")


_UNIQUE_TEMP = re.compile(re.escape(TEMP_PREFIX) + r"(\d+)-[0-9a-f]{12}")
_RESUMABLE_TEMP = re.compile(re.escape(TEMP_PREFIX) + r"[0-9a-f]{16}(\.parts)?")
#: A resumable partial download nobody touched for this long is abandoned.
STALE_PARTIAL_SECONDS = 7 * 24 * 3600


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_temps(folder: Path) -> int:
    """Remove what killed runs left in a folder: temporary downloads whose process is
    gone, and resumable partial downloads abandoned for a week (a live one is locked).
    Returns how many files were removed. deon's temporary names never look like data:
    `up` skips them and no key may take such a name."""
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    now = time.time()
    for entry in entries:
        name = entry.name
        if not name.startswith(TEMP_PREFIX) or not entry.is_file(follow_symlinks=False):
            continue
        m = _UNIQUE_TEMP.fullmatch(name)
        stale = False
        if m is not None:
            stale = int(m.group(1)) != os.getpid() and not _alive(int(m.group(1)))
        elif _RESUMABLE_TEMP.fullmatch(name):
            try:
                stale = now - entry.stat(follow_symlinks=False).st_mtime > STALE_PARTIAL_SECONDS
            except OSError:
                stale = False
            if stale and name.endswith(".parts") and fcntl is not None:
                try:
                    with open(entry.path, "rb") as f:
                        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # nobody is using it
                except OSError:
                    stale = False
        if stale:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed += 1
    return removed


#: The most one write() hands the kernel. Linux 6.x caches a file in folios as large
#: as the write (ext4, XFS), and high-order folios are dear: writing 800 MiB to fresh
#: files on the 2-core benchmark VM took 1.1-1.4 s of system CPU in 1 MiB writes,
#: 0.85-1.05 s in 512 KiB, 0.22-0.28 s in 64-256 KiB. In `deon down` of 200 x 8 MiB
#: (bench/run.py --only large) 1 MiB writes were most of the client's CPU (median sys
#: 6.3 s; 4.0 s at 256 KiB; 2.2 s at 64 KiB; s5cmd, which writes 32 KiB, 1.6 s).
#: A write per 64 KiB costs ~1 us of Python each: noise.
WRITE_SIZE = 64 * 1024


def _write_all(fd: int, data: memoryview, offset: int | None = None) -> None:
    """Write all of `data` (at `offset`, else at the file position) in WRITE_SIZE
    pieces: os.write and os.pwrite may write less than they are given, and the rest
    must not be lost."""
    while data:
        piece = data[:WRITE_SIZE]
        n = os.write(fd, piece) if offset is None else os.pwrite(fd, piece, offset)
        if n <= 0:
            raise OSError("a write to disk made no progress")
        data = data[n:]
        if offset is not None:
            offset += n


def expected_sha256(head: ObjectHead) -> str | None:
    """The sha256 an object's headers claim for its bytes, if any."""
    value = head.metadata.get(meta.SHA256_KEY, "").strip().lower()
    if len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value
    return None


def etag_hasher(head: ObjectHead) -> EtagHasher | None:
    """What checks a download of an object without a sha256 whose ETag is multipart
    (uploaded by another tool, or by the original deoncli): its part size inferred."""
    if expected_sha256(head) is not None or head.encryption not in (None, "AES256"):
        return None  # with SSE-KMS or SSE-C the ETag is not made of MD5s
    if etag_part_count(head.etag) is None:
        return None
    size = head.total_size if head.total_size is not None else head.size
    hasher = EtagHasher(size, head.etag)
    return hasher if hasher.sizes else None


def verify(
    uri: str, head: ObjectHead, sha256: str, md5: str | None, etag_ok: bool | None = None
) -> None:
    """Check downloaded bytes against the sha256 the object claims or, lacking one,
    against its ETag: a plain MD5, or (`etag_ok`, from `etag_hasher`) a multipart one.
    Size was checked while receiving.

    Raises:
        IntegrityError: the bytes are not the object's.
    """
    want = expected_sha256(head)
    if want is not None:
        if sha256 != want:
            raise IntegrityError(
                f"{uri}: corrupt: sha256 {sha256[:12]}… does not match "
                f"the {want[:12]}… the object claims"
            )
    elif md5 is not None and etag_is_md5(head.etag, head.encryption) and md5 != head.etag.lower():
        raise IntegrityError(f"{uri}: corrupt: MD5 does not match ETag")
    elif etag_ok is False:
        raise IntegrityError(f"{uri}: corrupt: the bytes do not give its multipart ETag")


@dataclass(frozen=True)
class Pin:
    """The exact bytes a download must get (an entry of a manifest): that version, or
    the object only while it still has that ETag; and then that sha256."""

    etag: str
    sha256: str | None = None
    version_id: str | None = None

    def check(self, uri: str, head: ObjectHead, sha256: str) -> None:
        """Raises IntegrityError unless the downloaded bytes are the pinned ones."""
        if self.sha256 is not None and sha256 != self.sha256:
            raise IntegrityError(
                f"{uri}: sha256 {sha256[:12]}… is not the {self.sha256[:12]}… the manifest "
                "names; refused"
            )
        if self.sha256 is None and head.etag != self.etag:
            raise IntegrityError(
                f"{uri}: ETag {head.etag} is not the {self.etag} the manifest names"
            )


@dataclass(frozen=True)
class Downloaded:
    """What a finished download verified."""

    nbytes: int
    sha256: str
    head: ObjectHead


class Engine:
    """Thread pools for whole items and for parts of large objects.

    Item tasks may wait on part tasks, never the reverse, so the two separate pools
    cannot deadlock. `cancel` stops every task at its next chunk.
    """

    def __init__(
        self,
        storage: Storage,
        workers: int,
        progress: Progress | None = None,
        state: State | None = None,
    ) -> None:
        self.storage = storage
        self.state = state
        self.workers = max(1, workers)
        self.progress = progress or Progress()
        self.cancel = threading.Event()
        #: Why the run stopped early (a full disk), and how many items it did not try.
        self.halted: str | None = None
        self.untried = 0
        self.dirs = disk.DirSync()
        self._umask = _umask()
        self._swept: set[Path] = set()
        self._sweep_lock = threading.Lock()
        self._items = ThreadPoolExecutor(self.workers, thread_name_prefix="deon-item")
        self._parts = ThreadPoolExecutor(self.workers, thread_name_prefix="deon-part")

    def close(self) -> None:
        self.cancel.set()
        self._items.shutdown(wait=True, cancel_futures=True)
        self._parts.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- running many items ---------------------------------------------------------

    def run(self, fn: Callable[[T], Outcome], items: Iterable[T]) -> Iterator[Outcome]:
        """Run `fn` on every item concurrently; yield outcomes as they complete.

        `fn` reports its own failures as FAILED outcomes; an unexpected exception in
        it propagates. On KeyboardInterrupt, workers stop at their next chunk.
        """
        futures: list[Future[Outcome | None]] = []

        def guarded(item: T) -> Outcome | None:
            if self.halted is not None:
                return None  # not tried: the run stopped early
            return fn(item)

        try:
            futures = [self._items.submit(guarded, item) for item in items]
            # Outcomes are reported in batches, at most REPORT_SECONDS after they come:
            # one sync of each folder makes a whole batch's renames durable before any of
            # them is reported done.
            waiting: set[Future[Outcome | None]] = set(futures)
            batch: list[Outcome] = []
            since = time.monotonic()
            while waiting:
                finished, waiting = wait(
                    waiting, timeout=REPORT_SECONDS, return_when=FIRST_COMPLETED
                )
                for future in finished:
                    outcome = future.result()
                    if outcome is None:
                        self.untried += 1
                    else:
                        batch.append(outcome)
                now = time.monotonic()
                if batch and (not waiting or not finished or now - since >= REPORT_SECONDS):
                    self.dirs.flush()  # what they renamed is durable before it is reported
                    since = now
                    for outcome in batch:
                        if disk.trace is not None and outcome.local is not None:
                            disk.record("done", outcome.local)
                        self.progress.item_done(outcome)
                        yield outcome
                    batch = []
        except BaseException:
            self.cancel.set()
            for f in futures:
                f.cancel()
            raise

    def halt(self, reason: str) -> None:
        """Stop the run early: items not started yet are not tried."""
        if self.halted is None:
            self.halted = reason

    def check_cancel(self) -> None:
        if self.cancel.is_set():
            raise Cancelled()

    def _retrying(self) -> Any:
        from tenacity import (
            Retrying,
            retry_if_exception_type,
            stop_after_attempt,
            wait_exponential,
            wait_random,
        )

        return Retrying(
            stop=stop_after_attempt(STREAM_ATTEMPTS),
            wait=wait_exponential(multiplier=0.2, max=8) + wait_random(0, 0.2),
            retry=retry_if_exception_type(stream_errors()),
            reraise=True,
        )

    # -- downloads ------------------------------------------------------------------

    def download(
        self,
        bucket: str,
        key: str,
        dest: Path,
        *,
        size: int | None = None,
        etag: str | None = None,
        pin: Pin | None = None,
    ) -> Downloaded:
        """Download one object to `dest`, atomically and verified. With `pin`, only the
        pinned bytes (a manifest's): GETs name its version, or carry If-Match on its ETag.

        Raises:
            DeonError: the object could not be fetched or did not verify; nothing was
                written under `dest`.
            Cancelled: the run was interrupted.
        """
        try:
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
            except FileExistsError as e:
                raise LocalPathError(f"a file is in the way of folder {dest.parent}") from e
            except OSError as e:
                if disk.local_error(e, dest) is not None:
                    raise
                raise LocalPathError(f"cannot create folder {dest.parent}: {e.strerror}") from e
            if dest.is_dir():
                raise LocalPathError(f"a folder is in the way of file {dest}")
            self.sweep_once(dest.parent)
            if size is not None and etag and uses_multipart(size):
                return self._download_ranged(bucket, key, dest, size, etag, pin)
            return self._download_whole(bucket, key, dest, pin)
        except OSError as e:
            error = disk.local_error(e, dest, size)
            if error is None:
                raise
            # A partial download is kept for resuming after an interruption or a network
            # failure, not after the disk refused it: it would hold on to the space that
            # is missing, or wait for a name that cannot be made.
            if size is not None and etag:
                tmp = resumable_temp_path(dest, etag)
                for leftover in (tmp, tmp.with_name(tmp.name + ".parts")):
                    with contextlib.suppress(OSError):
                        leftover.unlink()
            if isinstance(error, DiskFull):
                self.halt(str(error))  # every further item would fail the same way
            raise error from e

    def sweep_once(self, folder: Path) -> None:
        """Clean up what killed runs left in a folder (`sweep_temps`), once per run."""
        with self._sweep_lock:
            if folder in self._swept:
                return
            self._swept.add(folder)
        sweep_temps(folder)

    def _download_whole(self, bucket: str, key: str, dest: Path, pin: Pin | None) -> Downloaded:
        tmp = unique_temp_path(dest)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        view = read_buffer()
        try:
            sha = hashlib.sha256()
            md5: Any = None
            multipart: EtagHasher | None = None
            written = 0
            head: ObjectHead | None = None
            for attempt in self._retrying():
                with attempt:
                    start = written if head is not None else None
                    first = pin.etag if pin is not None and not pin.version_id else None
                    h, body = self.storage.get(
                        bucket,
                        key,
                        start=start,
                        if_match=head.etag if head else first,
                        version_id=pin.version_id if pin is not None else None,
                    )
                    with body:
                        if head is None:
                            head = h
                            # MD5 only when it is all there is to check the bytes against.
                            if expected_sha256(h) is None and etag_is_md5(h.etag, h.encryption):
                                md5 = hashlib.md5(usedforsecurity=False)
                            multipart = etag_hasher(h)
                        elif h.size == head.total_size and written:
                            # The server ignored the Range: start over from byte 0.
                            os.lseek(fd, 0, os.SEEK_SET)
                            os.ftruncate(fd, 0)
                            sha = hashlib.sha256()
                            md5 = md5 and hashlib.md5(usedforsecurity=False)
                            if multipart is not None:
                                multipart.reset()
                            self.progress.advance(-written)
                            written = 0
                        while True:
                            n = body.readinto(view)
                            if not n:
                                break
                            chunk = view[:n]
                            self.check_cancel()
                            _write_all(fd, chunk)
                            sha.update(chunk)
                            if md5 is not None:
                                md5.update(chunk)
                            if multipart is not None:
                                multipart.update(chunk)
                            written += n
                            self.progress.advance(n)
            assert head is not None
            disk.fsync_file(fd, tmp)
            os.close(fd)
            fd = -1
            total = head.total_size if head.total_size is not None else head.size
            if written != total:
                raise IntegrityError(f"s3://{bucket}/{key}: got {written} of {total} bytes")
            got = sha.hexdigest()
            verify(
                f"s3://{bucket}/{key}",
                head,
                got,
                md5.hexdigest() if md5 else None,
                multipart.matches() if multipart is not None else None,
            )
            if pin is not None:
                pin.check(f"s3://{bucket}/{key}", head, got)
            self._finalize(tmp, dest, bucket, key, head.last_modified, got, head.etag)
            return Downloaded(written, got, head)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            tmp.unlink(missing_ok=True)
            raise

    def _download_ranged(
        self, bucket: str, key: str, dest: Path, size: int, etag: str, pin: Pin | None = None
    ) -> Downloaded:
        tmp = resumable_temp_path(dest, etag)
        journal = tmp.with_name(tmp.name + ".parts")
        ranges = part_ranges(size, PART_SIZE)
        header = json.dumps({"etag": etag, "size": size, "part_size": PART_SIZE})
        with open(journal, "a+", encoding="utf-8") as jf:
            os.chmod(journal, 0o600)
            if fcntl is not None:
                try:
                    fcntl.flock(jf, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as e:
                    raise LocalPathError(
                        f"{dest} is being downloaded by another deon process"
                    ) from e
            done = self._read_journal(jf, header, tmp, size)
            if not done:
                jf.seek(0)
                jf.truncate()
                jf.write(header + "\n")
                jf.flush()
                fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
                os.ftruncate(fd, size)
            else:
                fd = os.open(tmp, os.O_RDWR)
            try:
                resumed = sum(ranges[i][1] for i in done)
                self.progress.advance(resumed)
                failed = threading.Event()
                lock = threading.Lock()
                version = pin.version_id if pin is not None else None

                def fetch(index: int) -> ObjectHead:
                    offset, length = ranges[index]
                    head = self._fetch_range(bucket, key, etag, fd, offset, length, failed, version)
                    with lock:
                        jf.write(f"{index}\n")
                        jf.flush()
                    return head

                todo = [i for i in range(len(ranges)) if i not in done]
                futures = [self._parts.submit(fetch, i) for i in todo]
                finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
                errors = [f.exception() for f in finished if f.exception() is not None]
                if errors:
                    failed.set()
                    wait(futures)
                    raise errors[0]  # type: ignore[misc]
                if futures:
                    head = futures[0].result()
                elif pin is not None:  # all parts were in place: the pin says what they are
                    head = ObjectHead(size, etag, None)
                else:
                    head = self.storage.head(bucket, key)
                multipart = etag_hasher(head)
                got = self._hash_file(fd, size, multipart)
                disk.fsync_file(fd, tmp)
            finally:
                os.close(fd)
            try:
                etag_ok = multipart.matches() if multipart is not None else None
                verify(f"s3://{bucket}/{key}", head, got, None, etag_ok)
                if pin is not None:
                    pin.check(f"s3://{bucket}/{key}", head, got)
            except IntegrityError:
                tmp.unlink(missing_ok=True)
                journal.unlink(missing_ok=True)
                raise
            self._finalize(tmp, dest, bucket, key, head.last_modified, got, etag)
            journal.unlink(missing_ok=True)
        return Downloaded(size, got, head)

    @staticmethod
    def _read_journal(jf: Any, header: str, tmp: Path, size: int) -> set[int]:
        """Finished part numbers of an earlier attempt at the same object, if usable."""
        jf.seek(0)
        lines = jf.read().splitlines()
        if not lines or lines[0] != header:
            return set()
        try:
            if tmp.stat().st_size != size:
                return set()
        except FileNotFoundError:
            return set()
        return {int(line) for line in lines[1:] if line.strip().isdigit()}

    def _fetch_range(
        self,
        bucket: str,
        key: str,
        etag: str,
        fd: int,
        offset: int,
        length: int,
        failed: threading.Event,
        version_id: str | None = None,
    ) -> ObjectHead:
        done = 0
        head: ObjectHead | None = None
        view = read_buffer()
        for attempt in self._retrying():
            with attempt:
                start = offset + done
                head, body = self.storage.get(
                    bucket,
                    key,
                    start=start,
                    end=offset + length - 1,
                    if_match=etag,
                    version_id=version_id,
                )
                if head.size != length - done:
                    raise IntegrityError(
                        f"s3://{bucket}/{key}: server sent {head.size} bytes for a range "
                        f"of {length - done}"
                    )
                with body:
                    while True:
                        n = body.readinto(view)
                        if not n:
                            break
                        if failed.is_set():
                            raise Cancelled()
                        self.check_cancel()
                        _write_all(fd, view[:n], offset + done)
                        done += n
                        self.progress.advance(n)
        if done != length:
            raise IntegrityError(f"s3://{bucket}/{key}: short range at {offset}")
        assert head is not None
        return head

    def _hash_file(self, fd: int, size: int, multipart: EtagHasher | None = None) -> str:
        # Into this thread's buffer: a fresh bytes object per read (os.pread) is fresh
        # memory, page-faulted in every time.
        sha = hashlib.sha256()
        view = read_buffer()
        offset = 0
        while offset < size:
            self.check_cancel()
            if _preadv is not None:
                n = _preadv(fd, [view], offset)
                chunk = view[:n]
            else:  # pragma: no cover - no preadv (Windows)
                chunk = memoryview(os.pread(fd, READ_SIZE, offset))
                n = len(chunk)
            if not n:
                break
            sha.update(chunk)
            if multipart is not None:
                multipart.update(chunk)
            offset += n
        return sha.hexdigest()

    def _finalize(
        self,
        tmp: Path,
        dest: Path,
        bucket: str,
        key: str,
        last_modified: datetime | None,
        sha256: str,
        etag: str,
    ) -> None:
        """Give the verified file normal permissions and the object's time, rename it
        into place, and remember what its bytes are."""
        os.chmod(tmp, 0o666 & ~self._umask)
        if last_modified is not None:
            os.utime(tmp, (time.time(), last_modified.timestamp()))
        if dest.is_dir():
            raise LocalPathError(f"a folder is in the way of file {dest}")
        disk.replace(tmp, dest)
        self.dirs.note(dest.parent)  # synced before the item is reported done (run)
        if self.state is not None:
            self.state.remember(dest, os.stat(dest), sha256, etag=etag, bucket=bucket, key=key)

    # -- uploads --------------------------------------------------------------------

    def upload(
        self,
        bucket: str,
        key: str,
        src: Path,
        digest: Digest,
        metadata: dict[str, str],
        *,
        data: bytes | None = None,
        if_none_match: bool = False,
        if_match: str | None = None,
        content_type: str | None = None,
    ) -> str:
        """Upload a digested file, conditionally. Returns the new ETag.

        `data`, when given, is the file's bytes as digested (small files are read once).
        Every request carries the sha256 of its body as the signed payload hash, so S3
        refuses bytes that are not the ones hashed (a file that changed meanwhile).

        Raises:
            PreconditionFailed: the condition failed (the key changed meanwhile).
            StorageError: S3 refused the request.
        """
        if not digest.multipart:
            if data is None:
                data = src.read_bytes()
                if hashlib.sha256(data).hexdigest() != digest.sha256:
                    raise IntegrityError(f"{src} changed while it was being uploaded")
            etag = self.storage.put(
                bucket,
                key,
                data,
                sha256=digest.sha256,
                metadata=metadata,
                if_none_match=if_none_match,
                if_match=if_match,
                content_type=content_type,
            )
            self.progress.advance(digest.size)
            return etag
        upload_id = self.storage.create_multipart(bucket, key, metadata, content_type)
        try:
            ranges = part_ranges(digest.size, digest.part_size)
            failed = threading.Event()
            whole = hashlib.sha256()
            hashed = [0]
            order = threading.Condition()
            with open(src, "rb") as f:
                fd = f.fileno()

                def send(index: int) -> str:
                    if failed.is_set():
                        raise Cancelled()
                    self.check_cancel()
                    offset, length = ranges[index]
                    part = os.pread(fd, length, offset)
                    # The whole-file hash is fed in part order, from the very bytes sent.
                    with order:
                        order.wait_for(lambda: hashed[0] == index or failed.is_set())
                        whole.update(part)
                        hashed[0] += 1
                        order.notify_all()
                    part_etag = self.storage.upload_part(
                        bucket, key, upload_id, index + 1, part, hashlib.sha256(part).hexdigest()
                    )
                    self.progress.advance(length)
                    return part_etag

                futures = [self._parts.submit(send, i) for i in range(len(ranges))]
                finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
                errors = [fut.exception() for fut in finished if fut.exception() is not None]
                if errors:
                    failed.set()
                    with order:
                        order.notify_all()
                    wait(futures)
                    raise errors[0]  # type: ignore[misc]
                etags = [fut.result() for fut in futures]
            if whole.hexdigest() != digest.sha256:
                raise IntegrityError(f"{src} changed while it was being uploaded")
            try:
                return self.storage.complete_multipart(
                    bucket, key, upload_id, etags, if_none_match=if_none_match, if_match=if_match
                )
            except KeyNotFound:
                # NoSuchUpload: a completion whose reply was lost, retried. If the object
                # holds our bytes, the upload did complete.
                head = self.storage.head(bucket, key)
                if expected_sha256(head) == digest.sha256 and head.size == digest.size:
                    return head.etag
                raise
        except BaseException:
            self.storage.abort_multipart(bucket, key, upload_id)
            raise

    def put_bytes_once(self, bucket: str, key: str, body: bytes) -> None:
        """Write a small content-addressed object (a metadata sidecar, named by the
        sha256 of its bytes) unless it already exists with these bytes.

        Other bytes under that name can only be damage or a plant, and would make the
        metadata of every object pointing at it unreadable: they are replaced (on the
        condition of their ETag), with a warning.
        """
        sha256 = hashlib.sha256(body).hexdigest()

        def put(if_match: str | None) -> None:
            self.storage.put(
                bucket,
                key,
                body,
                sha256=sha256,
                metadata={},
                if_none_match=if_match is None,
                if_match=if_match,
                content_type="application/json",
            )

        try:
            put(None)
            return
        except PreconditionFailed:
            pass  # it exists: the same name should mean the same content
        try:
            head, stream = self.storage.get(bucket, key)
        except KeyNotFound:
            put(None)  # deleted meanwhile
            return
        except AccessDenied:
            return  # an uploader who may write but not read: take the name on trust
        with stream:
            there = bytearray()
            if head.size == len(body):
                for chunk in stream.iter_chunks():
                    there += chunk
        if there == body:
            return
        put(head.etag)  # replaces exactly what was compared
        self.progress.warn(
            f"s3://{bucket}/{key} held other bytes than the metadata its name stands for; replaced"
        )


def failed(
    uri: str, local: Path | None, error: BaseException, *, fatal_stops: bool = True
) -> Outcome:
    """A FAILED outcome with a one-line message. An error that is the same for every
    item (`DeonError.fatal`: expired credentials, a refused certificate, the clock) is
    raised again instead, so that the run stops and says it once, unless `fatal_stops`
    is False (`up --watch` keeps retrying: credentials refresh, clocks get synced)."""
    if fatal_stops and isinstance(error, DeonError) and error.fatal:
        raise error
    if isinstance(error, DeonError):
        message = str(error)
    elif isinstance(error, OSError):
        message = f"{error.strerror or error}" + (f": {error.filename}" if error.filename else "")
    else:
        message = f"{type(error).__name__}: {error}"
    prefix = uri + ": "
    if message.startswith(prefix):
        message = message[len(prefix) :]
    return Outcome(uri, local, Status.FAILED, message=message)
