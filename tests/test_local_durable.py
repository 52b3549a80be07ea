"""Durability (issue 13, case 4): a simulated power cut. Every fsync and rename deon
makes is recorded through `deon.transfer.disk.trace` (a Python-level seam, no strace,
no LD_PRELOAD), in order; replaying that log tells what a power cut at any point would
keep. The promise: a file under its final name after a cut holds all its bytes, and a
file reported done survives a cut."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest

from deon import api
from deon.results import Status
from deon.transfer import disk
from tests.conftest import Lab

MiB = 1024 * 1024


def traced(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    events: list[tuple[str, ...]] = []
    lock = threading.Lock()

    def hook(op: str, *paths: str) -> None:
        with lock:
            events.append((op, *paths))

    monkeypatch.setattr(disk, "trace", hook)
    return events


def replay(events: list[tuple[str, ...]]) -> set[str]:
    """What a power cut after the last event keeps, checking at every step that no
    name could point at bytes not yet on disk and that nothing was reported done
    before it was durable. Returns the files reported done."""
    synced: set[str] = set()  # files whose bytes are on disk
    renamed: dict[str, set[str]] = {}  # folder -> names not yet durable in it
    durable: set[str] = set()
    done: set[str] = set()
    for op, *paths in events:
        if op == "fsync":
            synced.add(paths[0])
        elif op == "rename":
            tmp, dest = paths
            assert tmp in synced, f"{dest} renamed into place before its bytes were synced"
            renamed.setdefault(str(Path(dest).parent), set()).add(dest)
        elif op == "fsync-dir":
            durable |= renamed.pop(paths[0], set())
        elif op == "done":
            assert paths[0] in durable, f"{paths[0]} reported done before its rename was durable"
            done.add(paths[0])
    return done


def test_a_finished_download_is_durable_before_it_is_reported_done(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Promise: fsync of the file before its rename, fsync of its folder after it and
    before the item is reported done, for whole and ranged downloads, in `down` and
    `pull` alike."""
    rng = random.Random(4)
    for i in range(12):
        lab.put(f"p/{'sub/' if i % 3 else ''}f{i}.bin", rng.randbytes(5000 + i))
    lab.put("p/big.bin", rng.randbytes(17 * MiB))  # ranged
    events = traced(monkeypatch)

    result = api.down("s3://lab/p", lab.tmp / "dest")
    pulled = api.pull(["s3://lab/p/f0.bin", "s3://lab/p/sub/f1.bin"], lab.tmp / "data")

    assert result.ok and pulled.ok
    reported = {
        str(o.local)
        for r in (result, pulled)
        for o in r.outcomes
        if o.status is Status.TRANSFERRED and o.local is not None
    }
    assert len(reported) == 15
    assert replay(events) == reported
    dir_syncs = sum(1 for e in events if e[0] == "fsync-dir")
    assert dir_syncs <= len(reported)  # batched: never more than one per file


def test_the_replay_catches_a_missing_fsync(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above is not vacuous: without the file fsync the replay fails."""
    lab.put("q/a.bin", b"x" * 100)
    events = traced(monkeypatch)
    monkeypatch.setattr(disk, "fsync_file", lambda fd, path: None)

    assert api.down("s3://lab/q", lab.tmp / "dest").ok

    with pytest.raises(AssertionError, match="before its bytes were synced"):
        replay(events)


def test_the_durability_benchmark_runs(tmp_path: Path) -> None:
    """bench/durability.py (the cost of the fsyncs, as a ratio against none in the same
    run) runs in its tiny size, so it cannot rot."""
    import subprocess
    import sys

    out = tmp_path / "DURABILITY.md"
    root = Path(__file__).resolve().parent.parent
    r = subprocess.run(
        [sys.executable, str(root / "bench" / "durability.py"), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    report = out.read_text()
    assert "| download | no fsync s | fsync s | ratio |" in report
    assert "| 60 x 4 KiB |" in report and "| 1 x 17 MiB |" in report
