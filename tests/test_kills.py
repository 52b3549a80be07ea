"""kill -9 at 20 seeded points during `metadata down`, `up` and `down`. After every kill
the state is consistent (catalog integrity, only whole objects in the bucket, only
verified files under final names); a plain re-run converges to what an uninterrupted
run gives; temporary files are cleaned up or reused, never mistaken for data."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

from deon.metadata import wire as meta
from tests.conftest import DEON_CMD, Lab, make_h5, run_deon

KILLS = 20
MiB = 1024 * 1024


def killed_at(lab: Lab, request: int, args: list[str]) -> int:
    """Run deon, SIGKILL it as its `request`-th request reaches the server; returns its
    exit status (-9 when the kill happened, else what it exited with)."""
    seen = [0]
    proc: subprocess.Popen[bytes] | None = None

    def hook(method: str, key: str, query: str) -> None:
        seen[0] += 1
        if seen[0] == request and proc is not None:
            proc.send_signal(signal.SIGKILL)
            time.sleep(0.2)  # let it die before this request is answered

    lab.proxy.rules.before = hook
    try:
        proc = subprocess.Popen(
            [*DEON_CMD, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        return proc.wait(timeout=120)
    finally:
        lab.proxy.rules.before = None


def request_count(lab: Lab, args: list[str]) -> int:
    """How many requests an uninterrupted run sends (the range of kill points)."""
    lab.proxy.reset()
    assert run_deon(*args).returncode == 0
    return sum(lab.proxy.counts.values())


def files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith(".deon-tmp-")
    }


def test_kills_during_metadata_down(lab: Lab) -> None:
    docs = {}
    for i in range(60):
        doc = {"i": i, "robot": ["sawyer", "franka"][i % 2], "classes": ["cup"] * (i % 3)}
        docs[f"m/{i:03d}.h5"] = doc
        lab.put_doc(f"m/{i:03d}.h5", f"{i}".encode(), doc)
    reference = lab.tmp / "reference.sqlite"
    n = request_count(lab, ["--catalog", str(reference), "metadata", "down", "s3://lab/m"])
    catalog = lab.tmp / "catalog.sqlite"
    rng = random.Random(2026)

    kills = 0
    while kills < KILLS:
        status = killed_at(
            lab,
            rng.randint(1, n),
            [
                "-j",
                "1",
                "--catalog",
                str(catalog),
                "metadata",
                "down",
                "--no-snapshot",
                "s3://lab/m",
            ],
        )
        if status != -signal.SIGKILL:  # it finished first: start over, so kills stay mid-run
            for f in lab.tmp.glob("catalog.sqlite*"):
                f.unlink()
            continue
        kills += 1
        if not catalog.exists():
            continue
        db = sqlite3.connect(catalog)
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        for key, metadata in db.execute("SELECT key, metadata FROM objects"):
            assert json.loads(metadata) == docs[key]  # no row claims what was not seen
        db.close()

    r = run_deon("--catalog", str(catalog), "metadata", "down", "s3://lab/m")
    assert r.returncode == 0, r.stderr
    assert rows(catalog) == rows(reference)


def rows(catalog: Path) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(catalog)
    try:
        return db.execute(
            "SELECT bucket, key, uri, size, etag, last_modified, sha256, metadata, robot, i "
            "FROM objects ORDER BY key"
        ).fetchall()
    finally:
        db.close()


def test_kills_during_up(lab: Lab) -> None:
    src = lab.tmp / "src"
    for i in range(10):
        make_h5(src / f"u{i}.h5", {"i": i}, seed=i)
    (src / "big.bin").write_bytes(random.Random(1).randbytes(18 * MiB))  # multipart
    expected = files(src)
    n = request_count(lab, ["up", "s3://lab/ref", str(src)])
    rng = random.Random(7)

    kills = 0
    while kills < KILLS:
        status = killed_at(lab, rng.randint(1, n), ["-j", "2", "up", "s3://lab/u", str(src)])
        if status != -signal.SIGKILL:
            for key in lab.list_keys("u/"):
                lab.client.delete_object(Bucket="lab", Key=key)
            continue
        kills += 1
        for key in lab.list_keys("u/"):  # only whole objects, with their own bytes
            assert lab.get(key) == expected[key.split("/", 1)[1]], key

    r = run_deon("up", "s3://lab/u", str(src))
    assert r.returncode == 0, r.stderr
    assert {k.split("/", 1)[1]: lab.get(k) for k in lab.list_keys("u/")} == expected
    for key in lab.list_keys("u/"):
        sha = meta.decode(lab.head(key)["Metadata"]).sha256
        assert sha == hashlib.sha256(expected[key.split("/", 1)[1]]).hexdigest()


def test_kills_during_down(lab: Lab) -> None:
    src = lab.tmp / "src"
    for i in range(10):
        make_h5(src / f"d{i}.h5", {"i": i}, seed=i)
    rng_data = random.Random(3)
    for name in ("big1.bin", "big2.bin"):  # ranged, resumable downloads
        (src / name).write_bytes(rng_data.randbytes(26 * MiB))
    assert run_deon("up", "s3://lab/d", str(src)).returncode == 0
    expected = files(src)
    dest = lab.tmp / "dest"
    n = request_count(lab, ["down", "s3://lab/d", str(lab.tmp / "ref")])
    rng = random.Random(11)

    kills = 0
    while kills < KILLS:
        status = killed_at(lab, rng.randint(1, n), ["-j", "2", "down", "s3://lab/d", str(dest)])
        if status != -signal.SIGKILL:
            shutil.rmtree(dest)
            continue
        kills += 1
        for name, data in files(dest).items():  # only verified files take final names
            assert data == expected[name], name
        for tmp in dest.glob(".deon-tmp-*"):
            assert tmp.stat().st_mode & 0o777 == 0o600

    r = run_deon("down", "s3://lab/d", str(dest))
    assert r.returncode == 0, r.stderr
    assert files(dest) == expected
    assert list(dest.rglob(".deon-tmp-*")) == []  # swept or reused, never left behind
