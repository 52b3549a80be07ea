"""Concurrent writers: two uploads to one key at the same moment, and readers of the
catalog while a mirror writes it."""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time

from deon import meta
from tests.conftest import DEON_CMD, Lab, assert_no_traceback, make_h5, run_deon


def test_two_uploads_to_one_key_at_once_exactly_one_wins(lab: Lab) -> None:
    alice = make_h5(lab.tmp / "alice" / "same.h5", {"by": "alice"}, seed=1)
    bob = make_h5(lab.tmp / "bob" / "same.h5", {"by": "bob"}, seed=2)
    both_sent = threading.Barrier(2, timeout=60)

    def meet(method: str, key: str, query: str) -> None:
        if method == "PUT" and key == "race/same.h5":
            # Both conditional PUTs are in flight before either lands; a retry after the
            # meeting finds the barrier broken and goes through.
            with contextlib.suppress(threading.BrokenBarrierError):
                both_sent.wait()

    lab.proxy.rules.before = meet
    procs = [
        subprocess.Popen(
            [*DEON_CMD, "up", "s3://lab/race", str(folder)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for folder in (lab.tmp / "alice", lab.tmp / "bob")
    ]
    outs = [p.communicate(timeout=60) for p in procs]

    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 1], outs
    winner, loser = (0, 1) if codes[0] == 0 else (1, 0)
    loser_err = outs[loser][1]
    assert "s3://lab/race/same.h5" in loser_err and "refused" in loser_err
    assert_no_traceback(loser_err)
    stored = lab.get("race/same.h5")
    assert stored == (alice, bob)[winner].read_bytes()  # the winner's bytes, whole
    assert meta.decode(lab.head("race/same.h5")["Metadata"]).document == {
        "by": ("alice", "bob")[winner]
    }
    # nothing lost: the loser's file is still there to be uploaded elsewhere
    assert (alice, bob)[loser].exists()


def test_a_pull_while_a_mirror_writes_both_succeed(lab: Lab) -> None:
    for i in range(150):
        lab.put(
            f"p/{i:03d}.h5",
            f"object {i}".encode(),
            meta.encode({"i": i}, None, lambda d: "").metadata,
        )
    assert run_deon("metadata", "down", "s3://lab/p").returncode == 0
    for i in range(150, 300):  # new objects the next mirror has to HEAD, slowly
        lab.put(
            f"p/{i:03d}.h5",
            f"object {i}".encode(),
            meta.encode({"i": i}, None, lambda d: "").metadata,
        )
    lab.proxy.rules.before = lambda method, key, query: (
        time.sleep(0.01) if method == "HEAD" else None
    )

    mirror = subprocess.Popen(
        [*DEON_CMD, "-j", "2", "metadata", "down", "s3://lab/p"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.5)
    pulls = [
        run_deon("pull", input="".join(f"s3://lab/p/{i:03d}.h5\n" for i in range(k, k + 20)))
        for k in (0, 40, 80)
    ]
    queries = [run_deon("query", "--count") for _ in range(3)]
    out, err = mirror.communicate(timeout=120)

    assert mirror.returncode == 0, err
    assert all(p.returncode == 0 for p in pulls), [p.stderr for p in pulls]
    assert all(q.returncode == 0 for q in queries), [q.stderr for q in queries]
    for i in range(0, 100):
        if i % 40 < 20:
            assert (
                lab.data_dir / "lab" / "p" / f"{i:03d}.h5"
            ).read_bytes() == f"object {i}".encode()
    assert run_deon("query", "--count").stdout.strip() == "300"
