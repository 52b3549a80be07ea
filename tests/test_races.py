"""Concurrent writers: two uploads to one key at the same moment, and readers of the
catalog while a mirror writes it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from deon.metadata import wire as meta
from tests.conftest import DEON_CMD, Lab, assert_no_traceback, make_h5, run_deon


def test_two_uploads_to_one_key_at_once_exactly_one_wins(lab: Lab) -> None:
    alice = make_h5(lab.tmp / "alice" / "same.h5", {"by": "alice"}, seed=1)
    bob = make_h5(lab.tmp / "bob" / "same.h5", {"by": "bob"}, seed=2)
    met = threading.Event()
    arrived: list[float] = []
    arrivals = threading.Lock()

    def meet(method: str, key: str, query: str) -> None:
        if method == "PUT" and key == "race/same.h5":
            # Hold the first conditional PUT until the second is in flight too, so that
            # neither lands before the other was sent. Bounded: a wait that runs out
            # lets the PUT through (the test then fails on what arrived, not on a hang).
            with arrivals:
                arrived.append(time.monotonic())
                if len(arrived) >= 2:
                    met.set()
            met.wait(timeout=20)

    lab.proxy.rules.before = meet
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}  # SIGABRT on a hang dumps its threads
    logs = [lab.tmp / f"{who}.err" for who in ("alice", "bob")]
    procs = []
    for folder, log in zip((lab.tmp / "alice", lab.tmp / "bob"), logs, strict=True):
        with open(log, "w") as err:
            procs.append(
                subprocess.Popen(
                    [*DEON_CMD, "up", "s3://lab/race", str(folder)],
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    env=env,
                )
            )
    deadline = time.monotonic() + 120
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
    hung = [p for p in procs if p.poll() is None]
    for p in hung:
        p.send_signal(signal.SIGABRT)
        p.wait(timeout=30)
    errs = [log.read_text() for log in logs]
    assert not hung, (
        f"deon up hung; PUTs reached the proxy at {arrived}; requests: {lab.proxy.log}; "
        f"stderr: {errs}"
    )

    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 1], errs
    assert met.is_set(), (
        f"the two PUTs were not in flight together: {arrived}; requests: {lab.proxy.log}; "
        f"stderr: {errs}"
    )
    winner, loser = (0, 1) if codes[0] == 0 else (1, 0)
    loser_err = errs[loser]
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
        lab.put_doc(f"p/{i:03d}.h5", f"object {i}".encode(), {"i": i})
    assert run_deon("metadata", "down", "s3://lab/p").returncode == 0
    for i in range(150, 300):  # new objects the next mirror has to HEAD, slowly
        lab.put_doc(f"p/{i:03d}.h5", f"object {i}".encode(), {"i": i})
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


def test_processes_creating_the_state_file_at_once_all_succeed(tmp_path: Path) -> None:
    """Several deon runs of one user starting together on a new machine: creating the
    per-user state file must not fail with "database is locked" (SQLite answers that at
    once, without waiting, when two first schema writes deadlock). This killed one of two
    concurrent `deon up` runs in CI."""
    script = (
        "import os, sys, time\n"
        "from pathlib import Path\n"
        "from deon.transfer.state import State\n"
        "t = float(sys.argv[2])\n"
        "while time.time() < t: pass\n"
        "s = State(Path(sys.argv[1]))\n"
        "s.lookup(Path(sys.executable), os.stat(sys.executable))\n"
        "s.record_upload('b', 'k', 'etag', 'sha')\n"
        "s.close()\n"
    )
    failures = []
    for round_ in range(10):
        path = tmp_path / f"r{round_}" / "state.sqlite"
        path.parent.mkdir()
        start = time.time() + 1.0
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", script, str(path), str(start)],
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        for p in procs:
            _, err = p.communicate(timeout=60)
            if p.returncode != 0:
                failures.append(err.strip().splitlines()[-1])
    assert failures == []
