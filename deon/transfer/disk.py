"""The local disk: durable renames, and disk errors named as a user reads them.

Durability. A finished download is fsynced before it is renamed to its final name, and
its folder is fsynced after the rename, before the file is reported done: after a power
cut, a file under its final name holds all its bytes, and a file reported done is there.
Folder syncs are batched (`DirSync`): one fsync covers every rename made in the folder
before it started, so a thousand small files in one folder cost a few folder syncs, not
a thousand.

`trace`, when set, receives every durability step as (operation, path) in the order
they happen: the test of the power-cut promise reads it (tests/test_local_durable.py).
"""

from __future__ import annotations

import errno
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

from deon.errors import DiskFull, LocalFileError

#: Receives ("fsync", file), ("rename", tmp, dest), ("fsync-dir", folder) and, from
#: the engine, ("done", file) as they happen. None in normal runs.
trace: Callable[..., None] | None = None


def record(op: str, *paths: Path | str) -> None:
    """Pass one step to `trace`, if set."""
    hook = trace
    if hook is not None:
        hook(op, *(os.fsdecode(p) for p in paths))


def fsync_file(fd: int, path: Path) -> None:
    """Make a file's bytes durable (before it is renamed into place)."""
    os.fsync(fd)
    record("fsync", path)


def replace(tmp: Path, dest: Path) -> None:
    """Rename a finished file into place (atomic; durable once its folder is synced)."""
    os.replace(tmp, dest)
    record("rename", tmp, dest)


def fsync_dir(folder: Path) -> None:
    """Make the renames in a folder durable. File systems that cannot sync a folder
    (some network and FUSE file systems answer EINVAL) are left as they are."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)
    record("fsync-dir", folder)


class DirSync:
    """Folder syncs batched across worker threads.

    A worker `note`s a folder after renaming a file into it; before an item is reported
    done, `flush` syncs every folder noted so far. Each folder is synced once per flush,
    however many files landed in it meanwhile.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dirty: set[Path] = set()
        self._flushing = threading.Lock()

    def note(self, folder: Path) -> None:
        with self._lock:
            self._dirty.add(folder)

    def flush(self) -> None:
        with self._flushing:  # one flusher at a time; a second waits and finds less to do
            with self._lock:
                dirty, self._dirty = self._dirty, set()
            for folder in sorted(dirty):
                fsync_dir(folder)


# -- errors ------------------------------------------------------------------------------

#: The longest name (one path segment) most local file systems hold: ext4, XFS, btrfs,
#: tmpfs, APFS, NTFS.
NAME_MAX = 255


def mount_point(path: Path) -> Path:
    """The mount point of the file system holding `path` (or its nearest existing
    parent), to name it in a message."""
    p = Path(os.path.realpath(path))
    mounts = _mount_points()
    if mounts:
        best = max((m for m in mounts if p == m or m in p.parents), key=lambda m: len(m.parts))
        return best
    while not p.exists() and p != p.parent:
        p = p.parent
    while p != p.parent and not os.path.ismount(p):
        p = p.parent
    return p


def _mount_points() -> list[Path]:
    """Linux's mount table (bind mounts included, which os.path.ismount misses)."""
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    points = []
    for line in lines:
        fields = line.split(" ")
        if len(fields) > 1:
            raw = fields[1]
            for code in ("\\040", "\\011", "\\012", "\\134"):
                raw = raw.replace(code, chr(int(code[1:], 8)))
            points.append(Path(raw))
    return points if Path("/") in points else []


def free_bytes(path: Path) -> int | None:
    try:
        return shutil.disk_usage(mount_point(path)).free
    except OSError:
        return None


def local_error(e: OSError, path: Path, needed: int | None = None) -> LocalFileError | None:
    """A write under `path` failed: the error a user reads, naming the cause.

    ENOSPC and quotas become DiskFull (the run stops early); a read-only or vanished
    folder, a name too long or with characters the file system refuses become
    LocalFileError (that item fails, the rest continue). None: not an error of the
    local disk (a network error is an OSError too).
    """
    code = e.errno
    if code in (errno.ENOSPC, errno.EDQUOT):
        where = mount_point(path)
        what = "no space left on" if code == errno.ENOSPC else "disk quota exceeded on"
        need = f": {needed} bytes needed" if needed is not None else ""
        free = free_bytes(path)
        have = f", {free} free" if free is not None and needed is not None else ""
        return DiskFull(f"{what} {where}{need}{have} (free some space, then run again)")
    if code == errno.EROFS:
        return LocalFileError(f"read-only file system at {mount_point(path)}: cannot write {path}")
    if code == errno.ENAMETOOLONG:
        longest = max((len(os.fsencode(part)) for part in path.parts), default=0)
        return LocalFileError(
            f"name too long for the local file system ({longest} bytes; at most {NAME_MAX} "
            f"per name on most): {path}"
        )
    if code in (errno.EILSEQ, errno.EINVAL) and e.filename is not None:
        return LocalFileError(f"the local file system cannot hold this name: {path}")
    if code == errno.ENOENT and e.filename is not None:
        return LocalFileError(f"folder vanished while writing: {path.parent}")
    if code in (errno.EACCES, errno.EPERM) and e.filename is not None:
        return LocalFileError(f"permission denied: cannot write {path}")
    if code == errno.EXDEV:
        return LocalFileError(f"cannot move a file across file systems to {path}")
    if code == errno.EIO:
        return LocalFileError(f"input/output error writing {path} (a failing disk?)")
    return None


def is_disk_full(e: BaseException) -> bool:
    """ENOSPC, a quota, or SQLite's SQLITE_FULL ("database or disk is full"), also as
    SQLAlchemy wraps it."""
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return "database or disk is full" in str(e)


def catalog_full(path: Path | None, display: str) -> DiskFull:
    """The error for a catalog that could not commit for lack of space."""
    where = f" on {mount_point(path)}" if path is not None else ""
    return DiskFull(
        f"no space left{where} for the catalog {display}: its last transaction was rolled "
        "back (free some space, then run again)"
    )
