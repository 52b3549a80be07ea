"""A full disk (ENOSPC) and a read-only, vanished or odd destination, on real file
systems (a small tmpfs; issue 13 cases 2 and 5)."""

from __future__ import annotations

import os
import random
import sqlite3
from pathlib import Path

import pytest

from deon.metadata import wire as meta
from tests.conftest import Lab, assert_no_traceback, run_deon
from tests.localfs import leftovers, read_only_later, remount, tmpfs

KiB = 1024
MiB = 1024 * KiB


def fill(lab: Lab, prefix: str, count: int, size: int, seed: int = 1) -> dict[str, bytes]:
    rng = random.Random(seed)
    bodies = {f"{prefix}/{i:03d}.bin": rng.randbytes(size) for i in range(count)}
    for key, body in bodies.items():
        lab.put(key, body)
    return bodies


def fill_up(folder: Path) -> None:
    """Fill the file system holding `folder` to the last byte."""
    fd = os.open(folder / f"filler-{random.random()}", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)


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


def test_metadata_down_on_a_full_disk_rolls_back_and_works_once_space_is_freed(
    lab: Lab,
) -> None:
    """Promise: `metadata down` into a catalog on a full disk fails with one line, the
    catalog stays consistent (the transaction that cannot commit is rolled back), and
    the next run, once space is freed, mirrors everything."""
    for i in range(400):
        doc = {"i": i, "robot": "sawyer", "note": f"{i}" * 300}
        lab.put(f"m/{i:03d}.h5", b"x", meta.encode(doc, None, lambda d: "").metadata)
    with tmpfs(lab.tmp / "small", "200k") as where:
        catalog = where / "catalog.sqlite"
        args = ["--catalog", str(catalog), "metadata", "down", "--no-snapshot", "s3://lab/m"]
        r = run_deon(*args)

        assert r.returncode == 1, r.stderr
        assert_no_traceback(r.stderr)
        assert r.stderr.strip().splitlines()[-1] == (
            f"Error: no space left on {where} for the catalog {catalog}: its last "
            "transaction was rolled back (free some space, then run again)"
        )
        if catalog.exists():
            db = sqlite3.connect(catalog)
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            db.close()

        remount(where, "size=16m")
        r = run_deon(*args)

        assert r.returncode == 0, r.stderr
        db = sqlite3.connect(catalog)
        assert db.execute("SELECT count(*) FROM objects").fetchone()[0] == 400
        db.close()


def test_a_full_disk_under_the_hash_cache_warns_once_and_transfers_go_on(lab: Lab) -> None:
    """Promise: when the disk holding deon's state file (hash cache, upload ledger) is
    full, `down` and `up` still do their work (exit 0), with one warning naming the
    file; nothing is cached wrongly. Fresh and existing state files alike."""
    bodies = fill(lab, "h", 20, 8 * KiB)
    with tmpfs(lab.tmp / "xdg-data", "1m") as xdg:
        # an existing state file first, then the disk fills up
        assert run_deon("down", "s3://lab/h", str(lab.tmp / "first")).returncode == 0
        fill_up(xdg)

        r = run_deon("down", "s3://lab/h", str(lab.tmp / "dest"))

        assert r.returncode == 0, r.stderr
        assert_no_traceback(r.stderr)
        assert final_files(lab.tmp / "dest") == {k[2:]: v for k, v in bodies.items()}
        warnings = [x for x in r.stderr.splitlines() if "cannot write deon's state file" in x]
        assert len(warnings) == 1, r.stderr
        assert (
            "no space left on the device; the transfers themselves are not affected"
            in (warnings[0])
        )
        r = run_deon("up", "s3://lab/up", str(lab.tmp / "dest"))
        assert r.returncode == 0, r.stderr
        assert "20 uploaded" in r.stderr

        # a fresh state file on the full disk
        for f in xdg.glob("deon/state.sqlite*"):
            f.unlink()
        fill_up(xdg)
        r = run_deon("down", "s3://lab/h", str(lab.tmp / "third"))
        assert r.returncode == 0, r.stderr
        assert_no_traceback(r.stderr)
        assert final_files(lab.tmp / "third") == {k[2:]: v for k, v in bodies.items()}


def test_a_folder_made_read_only_mid_run_fails_its_items_and_the_rest_continue(
    lab: Lab,
) -> None:
    """Promise: when a destination folder becomes read-only mid-run (a read-only bind
    mount; root ignores permission bits), each item bound there fails with one line
    naming the read-only file system, the items elsewhere are downloaded, the run is
    not stopped early, and nothing crashes; once writable again, a re-run completes and
    sweeps what could not be removed."""
    bodies = fill(lab, "r/ro", 6, 10 * KiB)
    bodies.update(fill(lab, "r/rw", 6, 10 * KiB, seed=3))
    data = lab.tmp / "data" / "lab" / "r"
    ro = data / "ro"
    with read_only_later(ro) as make_read_only:

        def hook(method: str, key: str, query: str) -> None:
            if method == "GET" and key.startswith("r/ro/"):
                make_read_only()

        lab.proxy.rules.before = hook
        try:
            r = run_deon("-j", "1", "down", "s3://lab/r", str(data))
        finally:
            lab.proxy.rules.before = None

        assert r.returncode == 1, r.stderr
        assert_no_traceback(r.stderr)
        errors = [x for x in r.stderr.splitlines() if x.startswith("error: ")]
        assert len(errors) == 6, r.stderr
        for line in errors:
            assert f"read-only file system at {ro}: cannot write {ro}/" in line, line
        assert "stopped early" not in r.stderr
        assert final_files(data / "rw") == {
            k[5:]: v for k, v in bodies.items() if k.startswith("r/rw/")
        }
    assert run_deon("down", "s3://lab/r", str(data)).returncode == 0
    assert final_files(ro) == {k[5:]: v for k, v in bodies.items() if k.startswith("r/ro/")}
    assert leftovers(data) == []


def test_a_folder_that_vanishes_mid_download_is_named_and_the_rest_continue(lab: Lab) -> None:
    """Promise: a destination folder removed while an item downloads into it fails that
    item with one line naming the folder; the other items are downloaded."""
    import shutil

    bodies = fill(lab, "v/gone", 1, 300 * KiB)
    bodies.update(fill(lab, "v/kept", 4, 10 * KiB, seed=5))
    dest = lab.tmp / "dest"

    def hook(method: str, key: str, query: str) -> None:
        if method == "GET" and key.startswith("v/gone/"):
            shutil.rmtree(dest / "gone", ignore_errors=True)

    lab.proxy.rules.before = hook
    try:
        r = run_deon("-j", "1", "down", "s3://lab/v", str(dest))
    finally:
        lab.proxy.rules.before = None

    assert r.returncode == 1, r.stderr
    assert_no_traceback(r.stderr)
    errors = [x for x in r.stderr.splitlines() if x.startswith("error: ")]
    assert errors == [f"error: s3://lab/v/gone/000.bin: folder vanished while writing: {dest}/gone"]
    assert sorted(final_files(dest)) == [f"kept/{i:03d}.bin" for i in range(4)]
    assert run_deon("down", "s3://lab/v", str(dest)).returncode == 0
    assert final_files(dest) == {k[2:]: v for k, v in bodies.items()}


def test_data_dir_on_another_file_system_than_the_temp_dir(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Promise: deon stages downloads beside their final names, never in TMPDIR, so a
    DATA_DIR on another file system than the temporary folder works (no EXDEV), and the
    temporary folder is left untouched."""
    bodies = fill(lab, "x", 5, 50 * KiB)
    bodies.update(fill(lab, "x/big", 1, 17 * MiB, seed=9))
    with tmpfs(lab.tmp / "tmpdir", "1m") as tmpdir, tmpfs(lab.tmp / "data", "64m") as data:
        env = {**os.environ, "TMPDIR": str(tmpdir)}
        r = run_deon("--data-dir", str(data), "pull", *[f"s3://lab/{k}" for k in bodies], env=env)

        assert r.returncode == 0, r.stderr
        assert {f"x/{k}": v for k, v in final_files(data / "lab" / "x").items()} == bodies
        assert list(tmpdir.iterdir()) == []


def test_a_name_the_file_system_cannot_hold_fails_that_item_only(lab: Lab) -> None:
    """Promise: an object whose key has a segment longer than the local file system's
    255 bytes fails with one line saying so; the others are downloaded; no temporary
    file is left."""
    long_name = "n" * 300 + ".h5"
    lab.put(f"l/{long_name}", b"long")
    lab.put("l/sub" + "d" * 290 + "/x.h5", b"deep")
    bodies = fill(lab, "l", 3, 1000)
    dest = lab.tmp / "dest"

    r = run_deon("down", "s3://lab/l", str(dest))

    assert r.returncode == 1, r.stderr
    assert_no_traceback(r.stderr)
    errors = sorted(x for x in r.stderr.splitlines() if x.startswith("error: "))
    assert len(errors) == 2, r.stderr
    assert errors[0] == (
        f"error: s3://lab/l/{long_name}: refused unsafe key: path segment longer than 255 bytes"
    )
    assert errors[1].endswith("/x.h5: refused unsafe key: path segment longer than 255 bytes")
    assert final_files(dest) == {k[2:]: v for k, v in bodies.items()}
    assert leftovers(dest) == []


def test_a_name_with_characters_the_file_system_refuses_fails_that_item_only(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Promise: a name the local file system refuses for its characters (EILSEQ or
    EINVAL, as vfat/NTFS answer for `:` or `?`) fails that item with one line, and the
    rest continue. No file system here refuses characters an S3 key can hold (Linux
    ones take any byte but `/` and NUL), so the refusal is injected at the rename."""
    import errno

    from deon import api
    from deon.transfer import disk

    fill(lab, "c", 3, 1000)
    lab.put("c/what?.bin", b"q")
    real = disk.replace

    def refusing(tmp: Path, dest: Path) -> None:
        if "?" in dest.name:
            raise OSError(
                errno.EILSEQ, "Invalid or incomplete multibyte or wide character", str(dest)
            )
        real(tmp, dest)

    monkeypatch.setattr(disk, "replace", refusing)
    dest = lab.tmp / "dest"

    result = api.down("s3://lab/c", dest)

    assert [(o.uri, o.message) for o in result.failed] == [
        ("s3://lab/c/what?.bin", f"the local file system cannot hold this name: {dest}/what?.bin")
    ]
    assert sorted(final_files(dest)) == ["000.bin", "001.bin", "002.bin"]
    assert leftovers(dest) == []
