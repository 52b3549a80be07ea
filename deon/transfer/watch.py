"""`deon up --watch`: keep a folder uploaded, one file at a time as each is complete.

A robot writes a trajectory file every few seconds and keeps each open while it
writes. Uploading such a file early would share half a trajectory, so a file goes up
only once it is *complete*:

1. its identity (device, inode, size, mtime, ctime) has not changed for `settle`
   seconds (a file first seen with an older ctime counts as settled that long already);
2. no process has it open for writing (Linux: /proc/PID/fd of the processes we may
   look at; elsewhere this check is skipped);
3. an HDF5 file (by name or signature) opens read-only: h5py refuses a file whose
   writer holds HDF5's lock (`unable to lock file`), one whose superblock says it is
   open for writing (libver v110/latest: the flag stays after a writer crashed, until
   `h5clear -s`), and a truncated one.

Then the file is read between two stats (`sync.upload_file`): if it changed while read,
nothing is sent and it waits again. A file that changes after it went up is uploaded
again. Failures are retried with backoff until they succeed. Changes are seen through
watchfiles (inotify, FSEvents) with a full rescan now and then as a safety net (events
can be dropped), or by polling alone (`poll`). What is already in the bucket is known
from one LIST at start and deon's upload ledger and hash cache (state.py), so after a
crash or a reboot the next run sends only what is missing.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import queue
import random
import signal
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deon.errors import DeonError, ExitStatus, LocalPathError
from deon.metadata.hdf5 import SIGNATURE, is_hdf5
from deon.results import Outcome, Progress, Status, SyncResult
from deon.s3.client import ObjectInfo, Storage
from deon.transfer import sync
from deon.transfer.digest import Cancelled
from deon.transfer.engine import Engine, failed
from deon.transfer.state import State, identity
from deon.uri import RESERVED_SEGMENT, TEMP_PREFIX, S3Address

#: Names writers use for files in progress, never uploaded by `up --watch`.
TEMP_PATTERNS = ("*.tmp", ".*.swp", "*.part")
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")

Identity = tuple[int, int, int, int, int]


@dataclass(frozen=True)
class WatchOptions:
    """How `watch` decides that a file is complete, and how it keeps going.

    Attributes:
        settle: seconds a file must stay unchanged.
        poll: look for changes by scanning every `poll` seconds, without events.
        rescan: with events, also scan everything this often (events can be lost).
        exclude: more fnmatch patterns, matched against the name and the relative path.
        grace: on stop, seconds uploads in flight may take to finish; then abandoned.
        retry_min, retry_max: backoff between attempts at a failing upload.
        overwrite: replace different objects someone else uploaded (as `up --overwrite`).
        readers: the metadata readers to try (as `up`'s; None: the default order).
    """

    settle: float = 5.0
    poll: float | None = None
    rescan: float = 60.0
    exclude: tuple[str, ...] = ()
    grace: float = 20.0
    retry_min: float = 1.0
    retry_max: float = 300.0
    overwrite: bool = False
    readers: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class WatchStatus:
    """A snapshot of the watcher, for its status line."""

    seen: int  # files under the folder, not excluded
    uploaded: int  # sent (new, replaced or given metadata) since start
    in_bucket: int  # already there at start, or found there since
    uploading: int
    waiting: list[tuple[str, str]]  # (relative path, why) of files not complete yet
    failing: list[tuple[str, str]]  # (relative path, last error) of uploads being retried
    events: bool  # False: polling


@dataclass
class WatchResult:
    """How a watch ended."""

    uploaded: int = 0
    in_bucket: int = 0
    abandoned: list[str] = field(default_factory=list)  # in flight when stopped
    interrupted: bool = False  # a second Ctrl-C: exit 130
    seconds: float = 0.0


class WatchReport(Progress):
    """Receives what a watch does (from several threads). The base ignores it all."""

    def uploaded(self, outcome: Outcome, seconds: float) -> None:
        """A file is in the bucket: sent (TRANSFERRED, REPLACED, TAGGED) or found there."""

    def failing(self, outcome: Outcome, retry_in: float) -> None:
        """An upload failed (first failure, or a new reason); it is retried later."""

    def status(self, status: WatchStatus) -> None:
        """The state of things changed (called from the watching thread)."""

    def stopping(self, inflight: int, grace: float) -> None:
        """Stop was asked: no new file is taken; `inflight` uploads get `grace` seconds."""


@dataclass
class _File:
    rel: str
    path: Path
    ident: Identity | None = None
    stable_since: float = 0.0
    next_check: float = 0.0
    waiting: str = "changing"
    failures: int = 0
    error: str = ""
    inflight: bool = False


def excluded(rel: str, patterns: tuple[str, ...]) -> bool:
    """Whether a relative path is left out: deon's temporary names, `.deon` folders,
    writers' temporary names, and the user's patterns (name or whole path)."""
    parts = rel.split("/")
    name = parts[-1]
    if name.startswith(TEMP_PREFIX) or RESERVED_SEGMENT in parts[:-1]:
        return True
    return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(rel, p) for p in patterns)


# -- is it complete? ------------------------------------------------------------------------


def open_for_writing(targets: set[tuple[int, int]]) -> dict[tuple[int, int], str]:
    """Which of these (device, inode) pairs some process has open for writing, with who
    ("pid 123 (python3)"). Linux only: /proc/PID/fd lists each process's open files
    and /proc/PID/fdinfo their open flags; processes we may not look at are skipped
    (HDF5's lock and the settle time still hold for them). Empty elsewhere."""
    found: dict[tuple[int, int], str] = {}
    if not targets or not sys.platform.startswith("linux"):
        return found
    me = os.getpid()
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return found
    for pid in pids:
        if pid == me:
            continue  # deon itself only reads
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                st = os.stat(f"{fd_dir}/{fd}")  # follows the link to the open file itself
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in targets:
                continue
            try:
                with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                    flags = next(
                        (int(line.split()[1], 8) for line in info if line.startswith("flags:")),
                        0,
                    )
            except (OSError, ValueError):
                flags = os.O_RDWR  # cannot tell: assume the worst
            if flags & (os.O_WRONLY | os.O_RDWR):
                try:
                    with open(f"/proc/{pid}/comm") as c:
                        name = c.read().strip()
                except OSError:
                    name = "?"
                found[(st.st_dev, st.st_ino)] = f"pid {pid} ({name})"
    return found


def looks_hdf5(path: Path) -> bool:
    """An HDF5 file by its name, or by its signature whatever its name."""
    return path.suffix.lower() in HDF5_SUFFIXES or is_hdf5(path)


def hdf5_incomplete(path: Path) -> str | None:
    """Why an HDF5 file cannot be taken as complete yet, or None when it opens cleanly
    read-only (as checked against HDF5 2.0 in tests/test_watch.py)."""
    import h5py

    try:
        with open(path, "rb") as f:
            head = f.read(len(SIGNATURE))
    except OSError as e:
        return f"cannot read: {e.strerror}"
    if head != SIGNATURE and not is_hdf5(path):
        return "no HDF5 signature yet"
    try:
        with h5py.File(path, "r") as f:
            f.attrs.get("metadata")  # reads the root group's header as well
    except Exception as e:  # h5py raises OSError, KeyError, RuntimeError, ...
        text = str(e)
        if isinstance(e, BlockingIOError) or "unable to lock file" in text:
            return "open by an HDF5 writer (file locked)"
        if "already open for write" in text:
            return (
                "open for writing, or its writer stopped without closing it "
                "(h5clear -s FILE clears that flag)"
            )
        if "truncated file" in text:
            return "truncated"
        return f"not readable as HDF5 ({text.splitlines()[0] if text else type(e).__name__})"
    return None


# -- the watcher ----------------------------------------------------------------------------


class Watcher:
    """Uploads everything under `local` to `address`, then each file as it is complete,
    until `stop()`. Run it with `run()` (blocking, from one thread)."""

    def __init__(
        self,
        storage: Storage,
        state: State,
        address: S3Address,
        local: Path,
        *,
        jobs: int,
        options: WatchOptions | None = None,
        report: WatchReport | None = None,
    ) -> None:
        self.storage = storage
        self.state = state
        self.address = address
        self.local = local
        self.jobs = max(1, jobs)
        self.opts = options or WatchOptions()
        self.report = report or WatchReport()
        self.patterns = TEMP_PATTERNS + tuple(self.opts.exclude)
        self.files: dict[str, _File] = {}
        self.done: dict[str, Identity] = {}  # what is in the bucket, as it was then
        self.result = WatchResult()
        self._stop = threading.Event()
        self._abort = threading.Event()
        self._wake = threading.Event()
        self._events: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._results: queue.SimpleQueue[tuple[str, Identity, Outcome | None, float]] = (
            queue.SimpleQueue()
        )
        self._futures: dict[str, Future[None]] = {}
        self._using_events = self.opts.poll is None
        self._last_status: WatchStatus | None = None

    # -- control (any thread, signal handlers) ---------------------------------------------

    def stop(self) -> None:
        """Take no new file; let uploads in flight finish within the grace time."""
        self._stop.set()
        self._wake.set()

    def abort(self) -> None:
        """Abandon uploads in flight now (multipart uploads are aborted)."""
        self._abort.set()
        self._stop.set()
        self._wake.set()
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.cancel.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> WatchResult:
        started = time.monotonic()
        if self.local.is_file():
            raise LocalPathError(f"up --watch watches a folder, not a file: {self.local}")
        if not self.local.is_dir():
            raise LocalPathError(f"no such folder: {self.local}")
        self.engine = Engine(self.storage, self.jobs, self.report, self.state)
        pool = ThreadPoolExecutor(self.jobs, thread_name_prefix="deon-watch")
        events: threading.Thread | None = None
        try:
            remote = self._initial_listing()
            if remote is None:
                return self.result  # stopped before the bucket could be reached
            self._scan(remote)
            remote.clear()
            if self._using_events:
                events = self._start_events()
            last_scan = time.monotonic()
            while not self._stop.is_set():
                if self._using_events and (events is None or not events.is_alive()):
                    self._fall_back_to_polling("the event watcher stopped")
                self._drain_events()
                now = time.monotonic()
                period = self.opts.poll if not self._using_events else self.opts.rescan
                if period is not None and now - last_scan >= period:
                    self._scan(None)
                    last_scan = now
                self._collect()
                self._advance(pool, now)
                self._emit_status()
                self._sleep(last_scan, period)
            self._finish()
            return self.result
        finally:
            self._stop.set()
            self.engine.cancel.set()
            pool.shutdown(wait=True, cancel_futures=True)
            self.engine.close()
            if events is not None:
                events.join(timeout=5)
            self.state.flush()
            self.result.seconds = time.monotonic() - started

    def _sleep(self, last_scan: float, period: float | None) -> None:
        now = time.monotonic()
        tick = min(max(self.opts.settle / 4, 0.05), 1.0)
        wake = now + tick
        pending = [f.next_check for f in self.files.values() if not f.inflight]
        if pending:
            wake = min(wake, max(min(pending), now + 0.02))
        if period is not None:
            wake = min(wake, last_scan + period)
        self._wake.wait(max(0.0, wake - now))
        self._wake.clear()

    def _initial_listing(self) -> dict[str, ObjectInfo] | None:
        """The objects under the address, as `up` lists them. A bad address (no such
        bucket) stops the watch; a network that is down is waited for."""
        delay = self.opts.retry_min
        while True:
            try:
                return {
                    o.key: o
                    for o in self.storage.iter_objects(self.address.bucket, self.address.prefix)
                }
            except DeonError as e:
                if e.exit_status == ExitStatus.USAGE:
                    raise
                self.report.warn(
                    f"cannot list {self.address.uri}: {e}; trying again in {delay:.0f} s"
                )
            if self._stop.wait(delay):
                return None
            delay = min(self.opts.retry_max, delay * 2)

    def _walk(self, top: Path) -> Iterator[tuple[str, Path]]:
        files, warnings = sync.scan(top)
        for w in warnings:
            self.report.warn(w)
        for f in files:
            rel = f.path.relative_to(self.local).as_posix()
            if not excluded(rel, self.patterns):
                yield rel, f.path

    def _scan(self, remote: dict[str, ObjectInfo] | None, top: Path | None = None) -> None:
        """Look at every file (under `top`): new and changed ones become candidates.
        With `remote` (the first scan), files whose bytes the bucket already holds, as
        the hash cache knows them, are settled at once, as `up` settles them."""
        present: set[str] = set()
        for rel, path in self._walk(top or self.local):
            present.add(rel)
            if remote is not None and self._already_up(rel, path, remote):
                continue
            self._touch(rel, path)
        if top is None:
            for rel in [r for r in self.files if r not in present and not self.files[r].inflight]:
                del self.files[rel]  # deleted locally: the object stays, as with `up`
            for rel in [r for r in self.done if r not in present]:
                del self.done[rel]

    def _already_up(self, rel: str, path: Path, remote: dict[str, ObjectInfo]) -> bool:
        obj = remote.get(self.address.prefix + rel)
        try:
            st = path.stat()
        except OSError:
            return False
        if obj is None or obj.size != st.st_size:
            return False
        cached = self.state.lookup(path, st)
        if cached is None or cached.etag != obj.etag:
            return False
        self.done[rel] = identity(st)
        self.result.in_bucket += 1
        self.report.uploaded(Outcome(obj.uri, path, Status.UNCHANGED, st.st_size), 0.0)
        return True

    def _touch(self, rel: str, path: Path) -> None:
        """The file may have changed: look at it again soon."""
        f = self.files.get(rel)
        if f is None:
            try:
                st = path.stat()
            except OSError:
                return
            if self.done.get(rel) == identity(st):
                return
            f = self.files[rel] = _File(rel, path)
            f.ident = identity(st)
            # A file whose last change is older than the settle time (a catch-up after
            # a restart) has settled already; ctime cannot be set by any writer.
            age = min(max(time.time() - st.st_ctime, 0.0), self.opts.settle)
            f.stable_since = time.monotonic() - age
        elif not f.failures:
            f.next_check = 0.0

    def _drain_events(self) -> None:
        while True:
            try:
                raw = self._events.get_nowait()
            except queue.Empty:
                return
            path = Path(raw)
            try:
                rel = path.relative_to(self.local).as_posix()
            except ValueError:
                continue
            if path.is_dir():
                self._scan(None, top=path)  # a new folder: what is in it already
            elif not excluded(rel, self.patterns):
                self._touch(rel, path)

    def _advance(self, pool: ThreadPoolExecutor, now: float) -> None:
        """Settle, check and send the candidates whose time has come."""
        settled: list[tuple[_File, os.stat_result]] = []
        for f in list(self.files.values()):
            if f.inflight or now < f.next_check:
                continue
            try:
                st = f.path.stat()
            except OSError:
                del self.files[f.rel]
                continue
            ident = identity(st)
            if ident != f.ident:
                f.ident, f.stable_since, f.waiting = ident, now, "changing"
            if self.done.get(f.rel) == ident:
                del self.files[f.rel]  # back to what is in the bucket
                continue
            if now - f.stable_since < self.opts.settle:
                f.next_check = f.stable_since + self.opts.settle
                if not f.failures:
                    f.waiting = "changing"
                continue
            settled.append((f, st))
        if not settled:
            return
        writers = open_for_writing({(st.st_dev, st.st_ino) for _, st in settled})
        for f, st in settled:
            why = writers.get((st.st_dev, st.st_ino))
            if why is not None:
                why = f"open for writing by {why}"
            elif looks_hdf5(f.path):
                why = hdf5_incomplete(f.path)
            if why is not None:
                f.waiting = why
                f.next_check = now + max(self.opts.settle, 0.2)
                continue
            try:
                if identity(f.path.stat()) != f.ident:
                    continue  # changed while being checked: settle again
            except OSError:
                continue
            f.waiting = ""
            f.inflight = True
            assert f.ident is not None
            self._futures[f.rel] = pool.submit(self._upload, f.rel, f.path, f.ident)

    def _upload(self, rel: str, path: Path, ident: Identity) -> None:
        """One upload, on a worker thread; the outcome goes back to the loop."""
        started = time.monotonic()
        key = self.address.prefix + rel
        outcome: Outcome | None
        try:
            existing = None
            for obj in self.storage.iter_objects(self.address.bucket, key):
                existing = obj if obj.key == key else None
                break  # the key itself sorts first among those it prefixes
            item = sync.LocalFile(path, rel, ident[2])
            outcome = sync.upload_file(
                self.engine,
                self.state,
                self.address,
                item,
                existing,
                SyncResult("up"),
                overwrite=self.opts.overwrite,
                expect=ident,
                readers=self.opts.readers,
            )
        except Cancelled:
            outcome = None
        except Exception as e:  # a bug, too, must not end the watch: named, and retried
            outcome = failed(f"s3://{self.address.bucket}/{key}", path, e, fatal_stops=False)
        self._results.put((rel, ident, outcome, time.monotonic() - started))
        self._wake.set()

    def _collect(self) -> None:
        got = False
        while True:
            try:
                rel, ident, outcome, seconds = self._results.get_nowait()
            except queue.Empty:
                if got:
                    # The hash cache is written in batches; a long-running watcher saves
                    # it as it goes, so that a restart after kill -9 reads no file again.
                    self.state.flush()
                return
            got = True
            self._futures.pop(rel, None)
            f = self.files.get(rel)
            if f is None:
                continue
            f.inflight = False
            now = time.monotonic()
            if outcome is None:  # abandoned at stop
                self.result.abandoned.append(rel)
                f.waiting = "abandoned at stop"
                continue
            try:
                current: Identity | None = identity(f.path.stat())
            except OSError:
                current = None
            if outcome.ok:
                if outcome.status in (Status.TRANSFERRED, Status.REPLACED, Status.TAGGED):
                    self.result.uploaded += 1
                else:
                    self.result.in_bucket += 1
                self.report.uploaded(outcome, seconds)
                if current == ident:
                    self.done[rel] = ident
                    del self.files[rel]
                else:  # changed while it went up: the new bytes go up too
                    f.failures, f.error, f.next_check = 0, "", 0.0
                continue
            if current != ident or outcome.message == sync.CHANGED_WHILE_READ:
                f.next_check = 0.0  # it changed: settle and check again, no penalty
                continue
            f.failures += 1
            delay = min(self.opts.retry_max, self.opts.retry_min * 2 ** (f.failures - 1))
            delay *= random.uniform(0.8, 1.2)  # many failing files do not retry in step
            f.next_check = now + delay
            if outcome.message != f.error:
                self.report.failing(outcome, delay)
            f.error = outcome.message

    def _emit_status(self) -> None:
        waiting = sorted(
            (f.rel, f.waiting) for f in self.files.values() if not f.inflight and not f.failures
        )
        failing = sorted((f.rel, f.error) for f in self.files.values() if f.failures)
        status = WatchStatus(
            seen=len(self.done) + len(self.files),
            uploaded=self.result.uploaded,
            in_bucket=self.result.in_bucket,
            uploading=sum(1 for f in self.files.values() if f.inflight),
            waiting=waiting,
            failing=failing,
            events=self._using_events,
        )
        if status != self._last_status:
            self._last_status = status
            self.report.status(status)

    def _finish(self) -> None:
        """Stop: nothing new; uploads in flight get the grace time, then are abandoned."""
        inflight = [r for r, f in self.files.items() if f.inflight]
        self.report.stopping(len(inflight), self.opts.grace)
        deadline = time.monotonic() + self.opts.grace
        while self._futures and not self._abort.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._wake.wait(min(left, 0.2))
            self._wake.clear()
            self._collect()
        # Abandon what is left: each worker stops at its next chunk, and an unfinished
        # multipart upload is aborted (engine.upload), so none is left behind.
        self.engine.cancel.set()
        for future in list(self._futures.values()):
            with contextlib.suppress(Exception):
                future.result(timeout=60)
        self._collect()
        self._emit_status()
        self.result.interrupted = self._abort.is_set()

    # -- events ----------------------------------------------------------------------------

    def _start_events(self) -> threading.Thread | None:
        """A thread feeding changed paths from watchfiles; polling if it cannot start."""
        started = threading.Event()
        failed: list[BaseException] = []

        def feed() -> None:
            try:
                import watchfiles

                for changes in watchfiles.watch(
                    self.local,
                    watch_filter=None,
                    debounce=200,
                    step=50,
                    stop_event=self._stop,
                    rust_timeout=500,
                    yield_on_timeout=True,
                    raise_interrupt=False,
                    force_polling=False,
                ):
                    started.set()
                    for _change, raw in changes:
                        self._events.put(raw)
                    if changes:
                        self._wake.set()
            except BaseException as e:  # no inotify watches left, say
                failed.append(e)
            finally:
                started.set()

        thread = threading.Thread(target=feed, name="deon-watch-events", daemon=True)
        thread.start()
        started.wait(5)
        if failed:
            self._fall_back_to_polling(str(failed[0]))
            return None
        return thread

    def _fall_back_to_polling(self, why: str) -> None:
        """Events cannot be had (no inotify watches left, the folder went away): scan."""
        self._using_events = False
        poll = min(self.opts.rescan, 10.0)
        self.opts = _replace(self.opts, poll=poll)
        self.report.warn(
            f"cannot watch {self.local} for changes ({why}); scanning every "
            f"{poll:g} s instead (--poll sets how often)"
        )


def _replace(opts: WatchOptions, **changes: Any) -> WatchOptions:
    from dataclasses import replace

    return replace(opts, **changes)


@contextlib.contextmanager
def stop_on_signals(watcher: Any) -> Iterator[None]:
    """SIGTERM or Ctrl-C stops `watcher` (`.stop()`); a second Ctrl-C aborts it
    (`.abort()`). Only in the main thread (signals are delivered there); the previous
    handlers come back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if watcher.stopping and signum == signal.SIGINT:
            watcher.abort()
        else:
            watcher.stop()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
