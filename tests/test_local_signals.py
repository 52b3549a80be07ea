"""Ctrl-C (SIGINT) and SIGTERM sent to a running `deon` at seeded points (as the kill -9
tests do, tests/test_kills.py): exit 130 / 143 with one line and no traceback, no
temporary file left but a ranged download's resumable partial, no multipart upload
left open, the catalog consistent; a re-run finishes the work; a second Ctrl-C exits
at once (issue 13, case 3)."""

from __future__ import annotations

import json
import random
import re
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from deon.metadata import wire as meta
from tests.conftest import DEON_CMD, Lab, make_h5, run_deon

MiB = 1024 * 1024
POINTS = 5  # seeded signal points per command and signal
RESUMABLE = re.compile(r"\.deon-tmp-[0-9a-f]{16}(\.parts)?")
EXPECTED = {
    signal.SIGINT: (130, "interrupted (Ctrl-C): stopped; run it again to finish"),
    signal.SIGTERM: (143, "terminated (SIGTERM): stopped; run it again to finish"),
}


def signalled_at(lab: Lab, request: int, sig: int, args: list[str]) -> tuple[int, str]:
    """Run deon, send it `sig` as its `request`-th request reaches the server (that
    request is answered 0.3 s later). Returns (exit status, stderr)."""
    seen = [0]
    proc: subprocess.Popen[str] | None = None

    def hook(method: str, key: str, query: str) -> None:
        seen[0] += 1
        if seen[0] == request and proc is not None:
            proc.send_signal(sig)
            time.sleep(0.3)

    lab.proxy.rules.before = hook
    try:
        proc = subprocess.Popen(
            [*DEON_CMD, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        _, err = proc.communicate(timeout=120)
        return proc.returncode, err
    finally:
        lab.proxy.rules.before = None


def request_count(lab: Lab, args: list[str]) -> int:
    lab.proxy.reset()
    assert run_deon(*args).returncode == 0
    return sum(lab.proxy.counts.values())


def assert_interrupted(status: int, err: str, sig: int) -> bool:
    """True when the signal landed mid-run (then the exit and the line are the promised
    ones); False when the run had finished first."""
    if status == 0:
        return False
    code, line = EXPECTED[sig]
    assert status == code, err
    assert "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == line, err
    return True


def temp_files(root: Path) -> list[Path]:
    """deon's temporary files under root, but resumable partial downloads."""
    return [p for p in root.rglob(".deon-tmp-*") if not RESUMABLE.fullmatch(p.name)]


def open_uploads(lab: Lab) -> list[str]:
    got = lab.client.list_multipart_uploads(Bucket=lab.bucket)
    return [u["Key"] for u in got.get("Uploads", [])]


def data(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith(".deon-tmp-")
    }


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_during_up_aborts_multipart_uploads_and_exits_with_one_line(
    lab: Lab, sig: int
) -> None:
    """Promise: a signal during `up` exits 130 (SIGINT) or 143 (SIGTERM) with one line,
    leaves no multipart upload open and only whole objects; a re-run uploads the rest."""
    src = lab.tmp / "src"
    for i in range(4):
        make_h5(src / f"u{i}.h5", {"i": i}, seed=i)
    (src / "big.bin").write_bytes(random.Random(1).randbytes(34 * MiB))  # 5 parts
    expected = data(src)
    n = request_count(lab, ["up", "s3://lab/ref", str(src)])
    rng = random.Random(int(sig))
    landed = 0
    for _ in range(POINTS):
        status, err = signalled_at(
            lab, rng.randint(2, n - 1), sig, ["-j", "2", "up", "s3://lab/u", str(src)]
        )
        landed += assert_interrupted(status, err, sig)
        assert open_uploads(lab) == []
        for key in lab.list_keys("u/"):
            assert lab.get(key) == expected[key.split("/", 1)[1]], key
    assert landed
    assert run_deon("up", "s3://lab/u", str(src)).returncode == 0
    assert {k.split("/", 1)[1]: lab.get(k) for k in lab.list_keys("u/")} == expected


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_during_down_and_pull_leaves_no_temp_file_but_a_resumable_one(
    lab: Lab, sig: int
) -> None:
    """Promise: a signal during `down` or `pull` exits with the promised status and
    line, removes temporary downloads (a ranged download keeps its resumable partial
    file, as documented), never leaves a partial file under a final name, and a re-run
    completes."""
    rng = random.Random(5)
    bodies = {f"d/f{i}.bin": rng.randbytes(200_000) for i in range(6)}
    bodies["d/big.bin"] = rng.randbytes(26 * MiB)  # ranged
    for key, body in bodies.items():
        lab.put(key, body)
    dest = lab.tmp / "dest"
    n = request_count(lab, ["down", "s3://lab/d", str(lab.tmp / "ref")])
    points = random.Random(int(sig) + 100)
    landed = 0
    for i in range(POINTS):
        pulling = i % 2 == 1
        args = (
            ["-j", "2", "--data-dir", str(dest), "pull", *[f"s3://lab/{k}" for k in bodies]]
            if pulling
            else ["-j", "2", "down", "s3://lab/d", str(dest / "lab" / "d")]
        )
        status, err = signalled_at(lab, points.randint(1, n), sig, args)
        landed += assert_interrupted(status, err, sig)
        assert temp_files(dest) == []
        for name, body in data(dest / "lab").items():
            assert body == bodies[name], name
    assert landed
    assert run_deon("down", "s3://lab/d", str(dest / "lab" / "d")).returncode == 0
    assert data(dest / "lab") == bodies
    assert list(dest.rglob(".deon-tmp-*")) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_during_metadata_down_keeps_the_catalog_consistent(lab: Lab, sig: int) -> None:
    """Promise: a signal during `metadata down` exits with the promised status and line;
    the catalog passes SQLite's integrity check and claims nothing it did not see; a
    re-run mirrors everything."""
    docs = {}
    for i in range(40):
        docs[f"m/{i:03d}.h5"] = doc = {"i": i, "robot": ["sawyer", "franka"][i % 2]}
        lab.put(f"m/{i:03d}.h5", f"{i}".encode(), meta.encode(doc, None, lambda d: "").metadata)
    catalog = lab.tmp / "c.sqlite"
    args = ["-j", "1", "--catalog", str(catalog), "metadata", "down", "--no-snapshot", "s3://lab/m"]
    n = request_count(lab, ["--catalog", str(lab.tmp / "ref.sqlite"), *args[4:]])
    rng = random.Random(int(sig) + 7)
    landed = 0
    for _ in range(POINTS):
        status, err = signalled_at(lab, rng.randint(1, n), sig, args)
        landed += assert_interrupted(status, err, sig)
        if catalog.exists():
            db = sqlite3.connect(catalog)
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            for key, metadata in db.execute("SELECT key, metadata FROM objects"):
                assert json.loads(metadata) == docs[key]
            db.close()
    assert landed
    assert run_deon(*args).returncode == 0
    db = sqlite3.connect(catalog)
    assert db.execute("SELECT count(*) FROM objects").fetchone()[0] == 40
    db.close()


def test_a_second_ctrl_c_exits_at_once(lab: Lab) -> None:
    """Promise: while deon cleans up after a Ctrl-C (here: a worker stuck in a
    response that does not come), a second Ctrl-C exits 130 at once, saying so."""
    lab.put("s/a.bin", b"a" * 1000)
    stuck = threading.Event()
    release = threading.Event()

    def hook(method: str, key: str, query: str) -> None:
        if method == "GET" and key == "s/a.bin":
            stuck.set()
            release.wait(60)

    lab.proxy.rules.before = hook
    try:
        proc = subprocess.Popen(
            [*DEON_CMD, "down", "s3://lab/s", str(lab.tmp / "dest")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert stuck.wait(60)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
        assert proc.poll() is None  # still waiting for its worker: the first one is polite
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)  # long before the stuck response comes
    finally:
        release.set()
        lab.proxy.rules.before = None
    assert proc.returncode == 130, err
    assert "interrupted again: exiting at once" in err
    assert "Traceback" not in err
