"""Local files changed behind deon's back during `up` (issue 13, case 6): a file
modified between hashing and uploading never ends up in the bucket with a stale sha256
header; a file deleted mid-run is named, not a crash."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import pytest

from deon.metadata import wire as meta
from tests.conftest import Lab, assert_no_traceback, make_h5, run_deon

MiB = 1024 * 1024


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def edit(path: Path, seed: int) -> None:
    """A user's edit in place: same size, other bytes (so only mtime and ctime tell)."""
    data = bytearray(path.read_bytes())
    rng = random.Random(seed)
    for _ in range(64):
        data[rng.randrange(len(data))] ^= 0xFF
    with open(path, "r+b") as f:
        f.write(data)


@pytest.mark.parametrize("kind", ["small", "multipart"])
def test_a_file_edited_while_it_goes_up_is_sent_again_never_with_a_stale_sha256(
    lab: Lab, kind: str
) -> None:
    """Promise: a file edited after deon hashed it (here: as its PUT, or its completion,
    reaches the server) ends up in the bucket as it is now, with the sha256 of what is
    now on disk; the object never keeps the bytes or header of the version that is
    gone."""
    src = lab.tmp / "src"
    if kind == "small":
        f = make_h5(src / "t.h5", {"robot": "sawyer"})
        when = ("PUT", "t/t.h5")
    else:
        f = src / "big.bin"
        src.mkdir()
        f.write_bytes(random.Random(2).randbytes(20 * MiB))
        when = ("POST", "t/big.bin")  # CompleteMultipartUpload: every part was read
    edits = []

    def hook(method: str, key: str, query: str) -> None:
        if (method, key) == when and not edits and (kind == "small" or "uploadId" in query):
            edits.append(1)
            edit(f, 1)

    lab.proxy.rules.before = hook
    try:
        r = run_deon("up", "s3://lab/t", str(src))
    finally:
        lab.proxy.rules.before = None

    assert r.returncode == 0, r.stderr
    assert edits == [1]
    now = f.read_bytes()
    key = f"t/{f.name}"
    assert lab.get(key) == now
    assert meta.decode(lab.head(key)["Metadata"]).sha256 == sha256(now)
    r = run_deon("up", "s3://lab/t", str(src))  # and nothing is left to do
    assert "0 uploaded" in r.stderr and "1 unchanged" in r.stderr


def test_a_file_that_keeps_changing_fails_after_three_attempts(lab: Lab) -> None:
    """Promise: a file rewritten every time it goes up fails with one line saying so,
    rather than being sent forever; the object holds no stale header."""
    src = lab.tmp / "src"
    f = make_h5(src / "busy.h5", {"robot": "sawyer"})
    n = [0]

    def hook(method: str, key: str, query: str) -> None:
        if method == "PUT" and key == "b/busy.h5":
            n[0] += 1
            edit(f, n[0])

    lab.proxy.rules.before = hook
    try:
        r = run_deon("up", "s3://lab/b", str(src))
    finally:
        lab.proxy.rules.before = None

    assert r.returncode == 1, r.stderr
    assert_no_traceback(r.stderr)
    assert (
        f"error: s3://lab/b/busy.h5: {f} kept changing while it went up (3 attempts); "
        "run again once it is written" in r.stderr
    )
    assert n[0] == 3


def test_a_file_deleted_mid_up_is_named_and_the_rest_go_up(lab: Lab) -> None:
    """Promise: a file deleted after `up` listed the folder fails with one line naming
    it; the other files go up; exit 1, no traceback."""
    src = lab.tmp / "src"
    for i in range(4):
        make_h5(src / f"f{i}.h5", {"i": i}, seed=i)
    gone = src / "f3.h5"

    def hook(method: str, key: str, query: str) -> None:
        if method == "PUT" and key == "d/f0.h5" and gone.exists():
            os.unlink(gone)

    lab.proxy.rules.before = hook
    try:
        r = run_deon("-j", "1", "up", "s3://lab/d", str(src))
    finally:
        lab.proxy.rules.before = None

    assert r.returncode == 1, r.stderr
    assert_no_traceback(r.stderr)
    assert f"error: s3://lab/d/f3.h5: deleted before it could go up: {gone}" in r.stderr
    assert lab.list_keys("d/") == ["d/f0.h5", "d/f1.h5", "d/f2.h5"]
