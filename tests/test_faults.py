"""A misbehaving server: seeded faults through the test proxy (503 SlowDown, 500, resets
before and after the headers, bodies cut short, delays). deon must finish with the
right bytes, headers and catalog rows, name what could not be done, and never leave a
partial file under a final name."""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from deon.metadata import wire as meta
from tests.conftest import Lab, assert_no_traceback, make_h5, run_deon
from tests.s3proxy import FAULT_KINDS

MiB = 1024 * 1024


def docs_and_files(src: Path, n: int = 20) -> dict[str, Any]:
    docs = {}
    for i in range(n):
        doc = {"robot": ["sawyer", "franka", "widowx"][i % 3], "i": i, "traj_ok": i % 4 != 0}
        make_h5(src / f"t{i:03d}.h5", doc, seed=i)
        docs[f"t{i:03d}.h5"] = doc
    rng = random.Random(7)
    for name in ("big-a.bin", "big-b.bin"):  # multipart uploads, ranged downloads
        (src / name).write_bytes(rng.randbytes(20 * MiB + 12345))
    return docs


def local_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def faults(lab: Lab, rate: float, kinds: tuple[str, ...] = FAULT_KINDS, seed: int = 1) -> None:
    lab.proxy.rules.fault_rate = rate
    lab.proxy.rules.fault_kinds = kinds
    lab.proxy.rules.rng = random.Random(seed)


def no_temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob(".deon-tmp-*")]


def test_every_command_survives_10_percent_faulted_requests(lab: Lab) -> None:
    src = lab.tmp / "src"
    docs = docs_and_files(src, n=40)
    faults(lab, 0.10)

    r = run_deon("up", "s3://lab/f", str(src), timeout=300)
    assert r.returncode == 0, r.stderr
    r = run_deon("metadata", "down", "s3://lab/f", timeout=300)
    assert r.returncode == 0, r.stderr
    r = run_deon("down", "s3://lab/f", str(lab.tmp / "mirror"), timeout=300)
    assert r.returncode == 0, r.stderr
    uris = "".join(f"s3://lab/f/{name}\n" for name in sorted(local_files(src)))
    r = run_deon("pull", input=uris, timeout=300)
    assert r.returncode == 0, r.stderr
    assert_no_traceback(r.stderr)

    injected = lab.proxy.rules.faults
    faults(lab, 0.0)
    # (requests arrive in a different order each run, so which kinds are drawn varies)
    assert sum(injected.values()) >= 15 and len(injected) >= 4, injected
    # the bucket holds exactly the files, with their metadata and sha256
    assert sorted(lab.list_keys("f/")) == sorted(f"f/{n}" for n in local_files(src))
    for name, data in local_files(src).items():
        assert lab.get(f"f/{name}") == data
        decoded = meta.decode(lab.head(f"f/{name}")["Metadata"])
        assert decoded.sha256 == hashlib.sha256(data).hexdigest()
        if name in docs:
            assert decoded.document == docs[name]
    # the catalog has one true row per object
    db = sqlite3.connect(lab.tmp / "catalog.sqlite")
    rows = {k: (m, s) for k, m, s in db.execute("SELECT key, metadata, sha256 FROM objects")}
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    assert len(rows) == len(local_files(src))
    for name, doc in docs.items():
        assert json.loads(rows[f"f/{name}"][0]) == doc
    # downloads and pulls arrived whole, and nothing partial is left anywhere
    assert local_files(lab.tmp / "mirror") == local_files(src)
    assert local_files(lab.data_dir / "lab" / "f") == local_files(src)
    assert no_temp_files(lab.tmp) == []


def test_throttling_slows_deon_down_instead_of_failing_it(lab: Lab) -> None:
    src = lab.tmp / "src"
    docs_and_files(src, n=30)
    faults(lab, 0.35, ("slowdown",), seed=3)

    up = run_deon("up", "s3://lab/t", str(src), timeout=300)
    mirror = run_deon("metadata", "down", "s3://lab/t", timeout=300)
    down = run_deon("down", "s3://lab/t", str(lab.tmp / "copy"), timeout=300)

    assert (up.returncode, mirror.returncode, down.returncode) == (0, 0, 0), (
        up.stderr + mirror.stderr + down.stderr
    )
    assert lab.proxy.rules.faults["slowdown"] >= 20
    faults(lab, 0.0)
    assert local_files(lab.tmp / "copy") == local_files(src)


@pytest.mark.parametrize("command", ["up", "down", "pull", "metadata down"])
def test_a_key_that_always_fails_is_named_and_the_rest_completes(lab: Lab, command: str) -> None:
    src = lab.tmp / "src"
    for i in range(6):
        make_h5(src / f"k{i}.h5", {"i": i}, seed=i)
    bad = "x/k3.h5"
    env = {**os.environ, "AWS_MAX_ATTEMPTS": "3"}
    if command != "up":
        assert run_deon("up", "s3://lab/x", str(src)).returncode == 0
    lab.proxy.rules.fail_keys.add(bad)

    if command == "up":
        r = run_deon("up", "s3://lab/x", str(src), env=env)
    elif command == "down":
        r = run_deon("down", "s3://lab/x", str(lab.tmp / "copy"), env=env)
    elif command == "pull":
        r = run_deon("pull", input="".join(f"s3://lab/x/k{i}.h5\n" for i in range(6)), env=env)
    else:
        r = run_deon("metadata", "down", "s3://lab/x", env=env)

    assert r.returncode == 1
    assert f"s3://lab/{bad}" in r.stderr
    assert_no_traceback(r.stderr)
    lab.proxy.rules.fail_keys.clear()
    others = [f"x/k{i}.h5" for i in range(6) if i != 3]
    if command == "up":
        assert lab.list_keys("x/") == sorted(others)
    elif command in ("down", "pull"):
        root = lab.tmp / "copy" if command == "down" else lab.data_dir / "lab" / "x"
        assert sorted(local_files(root)) == sorted(k.split("/", 1)[1] for k in others)
        assert no_temp_files(root) == []  # no partial file, under any name
    else:
        db = sqlite3.connect(lab.tmp / "catalog.sqlite")
        keys = sorted(k for (k,) in db.execute("SELECT key FROM objects"))
        db.close()
        assert keys == sorted(others)  # no row claims what was not seen


def test_an_upload_whose_reply_was_lost_counts_as_the_users_own(lab: Lab) -> None:
    """The PUT reached the server but the connection broke before the reply; the retry
    meets If-None-Match and is refused. deon must see its own bytes there, say so, and
    later update the object as the user's own (no --overwrite needed)."""
    src = lab.tmp / "src"
    f = make_h5(src / "t.h5", {"v": 1})
    lab.proxy.rules.once[("PUT", "own/t.h5")] = "lost_reply"

    r = run_deon("up", "s3://lab/own", str(src))

    assert r.returncode == 0, r.stderr
    assert lab.get("own/t.h5") == f.read_bytes()
    assert lab.proxy.count("PUT") == 2  # the first landed; the retry was refused
    make_h5(f, {"v": 2}, seed=9)

    r = run_deon("up", "s3://lab/own", str(src))

    assert r.returncode == 0, r.stderr
    assert "1 replaced" in r.stderr
    assert meta.decode(lab.head("own/t.h5")["Metadata"]).document == {"v": 2}


def test_a_multipart_completion_whose_reply_was_lost_is_not_a_failure(lab: Lab) -> None:
    src = lab.tmp / "src"
    src.mkdir()
    data = random.Random(5).randbytes(18 * MiB)
    (src / "big.bin").write_bytes(data)
    # The first POST creates the upload (left to succeed); make the completion's reply
    # vanish: the retry then finds the upload gone (or moto repeats the answer).
    original = lab.proxy.rules.before

    def lose_completion(method: str, key: str, query: str) -> None:
        if method == "POST" and "uploadId" in query and key == "mp/big.bin":
            lab.proxy.rules.once[("POST", key)] = "lost_reply"
            lab.proxy.rules.before = original

    lab.proxy.rules.before = lose_completion

    r = run_deon("up", "s3://lab/mp", str(src))

    assert r.returncode == 0, r.stderr
    assert lab.proxy.rules.faults["lost_reply"] == 1
    assert lab.get("mp/big.bin") == data


def test_a_body_cut_short_every_time_is_named_and_leaves_nothing(lab: Lab) -> None:
    lab.put("cut/a.h5", b"a" * 100_000)
    lab.put("cut/b.h5", b"b" * 100_000)
    faults(lab, 1.0, ("truncate",))
    lab.proxy.rules.fault_prefix = "cut/a.h5"
    env = {**os.environ, "AWS_MAX_ATTEMPTS": "2"}

    r = run_deon("down", "s3://lab/cut", str(lab.tmp / "copy"), env=env, timeout=300)

    assert r.returncode == 1
    assert "s3://lab/cut/a.h5" in r.stderr
    assert local_files(lab.tmp / "copy") == {"b.h5": b"b" * 100_000}
    assert no_temp_files(lab.tmp / "copy") == []
