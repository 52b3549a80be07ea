"""A full disk (ENOSPC) and a read-only, vanished or odd destination, on real file
systems (a small tmpfs; issue 13 cases 2 and 5)."""

from __future__ import annotations

import os
import random
from pathlib import Path

from tests.conftest import Lab, assert_no_traceback, run_deon
from tests.localfs import leftovers, remount, tmpfs

KiB = 1024
MiB = 1024 * KiB


def fill(lab: Lab, prefix: str, count: int, size: int, seed: int = 1) -> dict[str, bytes]:
    rng = random.Random(seed)
    bodies = {f"{prefix}/{i:03d}.bin": rng.randbytes(size) for i in range(count)}
    for key, body in bodies.items():
        lab.put(key, body)
    return bodies


def final_files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith(".deon-tmp-")
    }


def test_down_on_a_full_disk_fails_one_line_per_item_and_stops_early(lab: Lab) -> None:
    """Promise: on a full disk `down` names each failed item in one line ("no space
    left on MOUNT: N bytes needed"), leaves no partial file under a final name and no
    temporary file, stops early instead of failing every remaining item, and the next
    run (once space is freed) completes."""
    bodies = fill(lab, "d", 60, 96 * KiB)
    bodies.update(fill(lab, "d/big", 1, 20 * MiB, seed=2))  # a ranged, resumable download
    with tmpfs(lab.tmp / "small", "1m") as dest:
        r = run_deon("-j", "2", "down", "s3://lab/d", str(dest))

        assert r.returncode == 1, r.stderr
        assert_no_traceback(r.stderr)
        errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
        assert errors, r.stderr
        assert len(errors) <= 4, r.stderr  # the items in flight, not the sixty
        for line in errors:
            assert f"no space left on {dest}: " in line and " bytes needed" in line, line
        assert "warning: stopped early: no space left on" in r.stderr
        assert "item(s) not tried" in r.stderr
        assert leftovers(dest) == []
        for name, data in final_files(dest).items():  # whole and verified, or absent
            assert data == bodies[f"d/{name}"], name

        remount(dest, "size=64m")
        r = run_deon("down", "s3://lab/d", str(dest))

        assert r.returncode == 0, r.stderr
        assert final_files(dest) == {k[2:]: v for k, v in bodies.items()}
        assert leftovers(dest) == []


def test_pull_on_a_full_disk_stops_early_and_resumes(lab: Lab) -> None:
    """Promise: `pull` on a full DATA_DIR fails the item, stops early, leaves no temp
    files, and pulls everything once space is freed."""
    bodies = fill(lab, "p", 30, 128 * KiB)
    with tmpfs(lab.tmp / "small", "1m") as data:
        uris = [f"s3://lab/{k}" for k in bodies]
        r = run_deon("--data-dir", str(data), "-j", "1", "pull", *uris)

        assert r.returncode == 1, r.stderr
        assert_no_traceback(r.stderr)
        assert "no space left on" in r.stderr and "stopped early" in r.stderr
        assert len([x for x in r.stderr.splitlines() if x.startswith("error: ")]) <= 2
        assert leftovers(data) == []
        remount(data, "size=16m")
        r = run_deon("--data-dir", str(data), "pull", *uris)
        assert r.returncode == 0, r.stderr
        assert {f"p/{k}": v for k, v in final_files(data / "lab" / "p").items()} == bodies
