"""`deon down` end to end: bytes, skipping, hostile keys, corruption, interruption."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tests.conftest import Lab, assert_no_traceback, run_deon, run_deon_killed_at_get

MiB = 1024 * 1024


def files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def sha_meta(data: bytes) -> dict[str, str]:
    return {"deon-sha256": hashlib.sha256(data).hexdigest()}


def test_down_mirrors_a_prefix_and_prints_the_paths(lab: Lab) -> None:
    objects = {"bob/a.h5": b"A" * 100, "bob/day2/b.h5": b"B" * 5000, "bob/c.txt": b""}
    for key, body in objects.items():
        lab.put(key, body, sha_meta(body))
    lab.put("bob/folder/", b"")  # a console "folder" marker is not a file
    lab.put("bobby/not-under-the-prefix.h5", b"x")
    dest = lab.tmp / "mirror"

    r = run_deon("down", "s3://lab/bob", str(dest))

    assert r.returncode == 0, r.stderr
    assert files_under(dest) == {"a.h5": b"A" * 100, "day2/b.h5": b"B" * 5000, "c.txt": b""}
    assert sorted(r.stdout.split()) == sorted(str(dest / k) for k in ("a.h5", "day2/b.h5", "c.txt"))
    assert "3 downloaded" in r.stderr
    # no temporary file is left behind
    assert not [p for p in dest.rglob(".deon-tmp-*")]


def test_down_defaults_to_data_dir_bucket_prefix(lab: Lab) -> None:
    lab.put("bob/a.h5", b"hello")

    r = run_deon("down", "lab/bob")

    assert r.returncode == 0, r.stderr
    assert (lab.data_dir / "lab" / "bob" / "a.h5").read_bytes() == b"hello"


def test_a_no_op_rerun_downloads_nothing(lab: Lab) -> None:
    lab.put("bob/plain.h5", b"p" * 1000)  # plain-MD5 ETag, no sha256 header
    lab.put("bob/with-sha.h5", b"s" * 1000, sha_meta(b"s" * 1000))
    big = os.urandom(20 * MiB)
    assert (
        run_deon("up", "s3://lab/bob", str(_write(lab.tmp / "src" / "big.bin", big))).returncode
        == 0
    )
    assert run_deon("down", "s3://lab/bob").returncode == 0
    lab.proxy.reset()

    r = run_deon("down", "s3://lab/bob")

    assert r.returncode == 0, r.stderr
    assert lab.proxy.count("GET", "HEAD") == 0
    assert "0 downloaded" in r.stderr and "3 unchanged" in r.stderr
    assert len(r.stdout.split()) == 3  # every file in place is still listed


def test_changed_objects_and_changed_local_files_are_fetched_again(lab: Lab) -> None:
    lab.put("bob/a.h5", b"version 1")
    lab.put("bob/b.h5", b"original!")
    assert run_deon("down", "s3://lab/bob").returncode == 0
    lab.put("bob/a.h5", b"version 2")  # changed in the bucket
    local_b = lab.data_dir / "lab" / "bob" / "b.h5"
    local_b.write_bytes(b"tampered!")  # same size, different bytes locally

    r = run_deon("down", "s3://lab/bob")

    assert r.returncode == 0, r.stderr
    assert (lab.data_dir / "lab" / "bob" / "a.h5").read_bytes() == b"version 2"
    assert local_b.read_bytes() == b"original!"
    assert "2 replaced" in r.stderr


def test_hostile_keys_are_refused_and_nothing_is_written_outside(lab: Lab) -> None:
    hostile = [
        "h/../../evil.h5",
        "h//double.h5",
        "h/back\\slash.h5",
        "h/./dot.h5",
        "h/.deon-tmp-123",
    ]
    for key in hostile:
        lab.put(key, b"evil")
    lab.put("h/ok.h5", b"fine")
    dest = lab.tmp / "a" / "b" / "dest"

    r = run_deon("down", "s3://lab/h", str(dest))

    assert r.returncode == 1
    assert files_under(dest) == {"ok.h5": b"fine"}
    for key in hostile:
        assert f"s3://lab/{key}" in r.stderr
    assert "refused unsafe key" in r.stderr
    # nothing anywhere else in the test's folder holds the evil bytes
    outside = [p for p in lab.tmp.rglob("*") if p.is_file() and p.read_bytes() == b"evil"]
    assert outside == []
    assert_no_traceback(r.stderr)


def test_an_absolute_key_is_refused(lab: Lab) -> None:
    lab.put("/abs.h5", b"evil")
    lab.put("fine.h5", b"fine")

    r = run_deon("down", "s3://lab", str(lab.tmp / "dest"))

    assert r.returncode == 1
    assert "s3://lab//abs.h5" in r.stderr
    assert files_under(lab.tmp / "dest") == {"fine.h5": b"fine"}


def test_a_symlink_inside_the_destination_cannot_carry_a_write_outside(lab: Lab) -> None:
    dest = lab.tmp / "dest"
    outside = lab.tmp / "outside"
    dest.mkdir()
    outside.mkdir()
    (dest / "link").symlink_to(outside)
    lab.put("p/link/x.h5", b"evil")

    r = run_deon("down", "s3://lab/p", str(dest))

    assert r.returncode == 1
    assert "s3://lab/p/link/x.h5" in r.stderr
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("size", [3000, 20 * MiB])
def test_a_corrupt_object_is_named_and_never_takes_the_final_name(lab: Lab, size: int) -> None:
    good = os.urandom(size)
    lab.put("c/bad.h5", good, sha_meta(good))
    lab.put("c/good.h5", b"fine", sha_meta(b"fine"))
    lab.proxy.rules.corrupt["c/bad.h5"] = b"\xff" * 64  # first bytes flipped in transit

    r = run_deon("down", "s3://lab/c", str(lab.tmp / "dest"))

    assert r.returncode == 1
    assert "s3://lab/c/bad.h5" in r.stderr and "corrupt" in r.stderr
    assert files_under(lab.tmp / "dest") == {"good.h5": b"fine"}
    assert "1 downloaded" in r.stderr and "1 failed" in r.stderr
    assert_no_traceback(r.stderr)


def test_corruption_is_caught_by_the_md5_etag_when_there_is_no_sha256(lab: Lab) -> None:
    lab.put("c/plain.h5", b"p" * 4000)  # written by another tool: no deon headers
    lab.proxy.rules.corrupt["c/plain.h5"] = b"q"

    r = run_deon("down", "s3://lab/c", str(lab.tmp / "dest"))

    assert r.returncode == 1
    assert "MD5" in r.stderr
    assert not (lab.tmp / "dest" / "plain.h5").exists()


def test_a_failing_object_is_named_and_the_rest_completes(lab: Lab) -> None:
    lab.put("f/broken.h5", b"x")
    for i in range(5):
        lab.put(f"f/ok{i}.h5", b"ok")
    lab.proxy.rules.fail_keys.add("f/broken.h5")

    r = run_deon(
        "down", "s3://lab/f", str(lab.tmp / "dest"), env={**os.environ, "AWS_MAX_ATTEMPTS": "2"}
    )

    assert r.returncode == 1
    assert "s3://lab/f/broken.h5" in r.stderr
    assert sorted(files_under(lab.tmp / "dest")) == [f"ok{i}.h5" for i in range(5)]


def test_an_interrupted_large_download_resumes(lab: Lab) -> None:
    data = os.urandom(48 * MiB)  # six 8 MiB ranges
    lab.put("big/traj.h5", data, sha_meta(data))
    dest = lab.tmp / "dest"

    run_deon_killed_at_get(lab, "big/traj.h5", 4, "-j", "1", "down", "s3://lab/big", str(dest))

    assert not (dest / "traj.h5").exists()  # no partial file under the final name
    assert len(list(dest.glob(".deon-tmp-*"))) == 2  # the partial file and its journal
    lab.proxy.reset()

    r = run_deon("down", "s3://lab/big", str(dest))

    assert r.returncode == 0, r.stderr
    assert (dest / "traj.h5").read_bytes() == data
    assert lab.proxy.count("GET") == 3  # only the three ranges not finished before the kill
    assert list(dest.glob(".deon-tmp-*")) == []


def test_down_of_a_missing_bucket_exits_2(lab: Lab) -> None:
    r = run_deon("down", "s3://no-such-bucket/x", str(lab.tmp / "d"))

    assert r.returncode == 2
    assert r.stderr.strip() == "Error: no such bucket: no-such-bucket"


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("s3://lab/../../../escaped", "'..' segment in key"),
        ("s3://lab/p//q", "empty path segment in key"),
        ("s3://lab//abs", "absolute key"),
        ("s3://lab/./p", "'.' segment in key"),
    ],
)
def test_down_refuses_an_address_whose_prefix_leaves_the_data_folder(
    lab: Lab, address: str, reason: str
) -> None:
    """The default destination is DATA_DIR/BUCKET/PREFIX: a prefix with `..` would put
    files outside DATA_DIR, whatever the keys under it."""
    key = address.split("/", 3)[3] + "/t.h5"
    lab.put(key, b"planted by someone")
    lab.data_dir.mkdir(parents=True)

    r = run_deon("down", address)

    assert r.returncode == 2
    assert r.stderr.strip() == f"Error: unsafe prefix in {address!r}: {reason}"
    assert not (lab.tmp / "escaped").exists() and list(lab.data_dir.iterdir()) == []
    assert lab.proxy.count("LIST", "GET") == 0


def test_down_of_an_empty_prefix_or_an_object_key_says_so(lab: Lab) -> None:
    lab.put("alice/a.h5", b"a")

    r = run_deon("down", "s3://lab/alcie", str(lab.tmp / "d"))

    assert r.returncode == 0
    assert "warning: nothing under s3://lab/alcie/" in r.stderr
    r = run_deon("down", "s3://lab/alice/a.h5", str(lab.tmp / "d"))

    assert (
        "warning: nothing under s3://lab/alice/a.h5/; s3://lab/alice/a.h5 is an object: "
        "deon pull s3://lab/alice/a.h5 fetches it" in r.stderr
    )


def test_down_dry_run_downloads_nothing(lab: Lab) -> None:
    lab.put("d/a.h5", b"a")

    r = run_deon("down", "-n", "s3://lab/d", str(lab.tmp / "dest"))

    assert r.returncode == 0, r.stderr
    assert not (lab.tmp / "dest" / "a.h5").exists()
    assert "1 would be downloaded" in r.stderr


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path.parent
