"""Real local file systems for the local-reliability tests (issue 13): a small tmpfs
that fills up, remounted read-only or larger mid-test. Needs root and mount(8) (CI runs
as root on the same kind of machine); a test skips, saying why, when it cannot mount."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True)


def can_mount() -> str | None:
    """None when tmpfs can be mounted here, else why not."""
    if os.geteuid() != 0:
        return "not root: mounting a small tmpfs needs root (CI runs these as root)"
    if shutil.which("mount") is None:
        return "mount(8) is not installed"
    return None


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` (e.g. "1m") mounted at `path` for the block."""
    why = can_mount()
    if why is not None:
        pytest.skip(why)
    path.mkdir(parents=True, exist_ok=True)
    r = _mount("-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path))
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def remount(path: Path, options: str) -> None:
    """Remount a tmpfs mounted by `tmpfs` with new options ("ro", "rw", "size=64m")."""
    r = _mount("-o", f"remount,{options}", str(path))
    assert r.returncode == 0, r.stderr


def leftovers(root: Path) -> list[Path]:
    """deon's temporary files under a folder."""
    return sorted(p for p in root.rglob(".deon-tmp-*"))


@contextmanager
def read_only_later(path: Path) -> Iterator[Callable[[], None]]:
    """Yields a function that makes `path` read-only at once, files open for writing or
    not (a read-only bind mount over it: tmpfs refuses `remount,ro` while a file is open
    for writing). Unmounted after the block."""
    why = can_mount()
    if why is not None:
        pytest.skip(why)
    path.mkdir(parents=True, exist_ok=True)
    mounted: list[bool] = []

    def now() -> None:
        if mounted:
            return
        r = _mount("--bind", str(path), str(path))
        assert r.returncode == 0, r.stderr
        mounted.append(True)
        r = _mount("-o", "remount,bind,ro", str(path))
        assert r.returncode == 0, r.stderr

    try:
        yield now
    finally:
        if mounted:
            subprocess.run(["umount", str(path)], capture_output=True)
