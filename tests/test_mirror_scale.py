"""The mirror at scale, against the synthetic endpoint (tests/synthetic_s3.py): memory is
bounded by a batch, not by the bucket; the result is what a HEAD of everything gives."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deon.catalog.db import ObjectRow, open_catalog
from tests.conftest import DEON_CMD
from tests.synthetic_s3 import BUCKET, WHEN, Objects, etag_of

ROOT = Path(__file__).resolve().parent.parent
N = 200_000
EVERY = 1000  # every 1000th object is gone, changed, or new to the catalog
#: What a refresh of N objects may take at its peak beyond a refresh of 1000 (resident
#: set, MB). The refresh that loaded the catalog's rows into a dict and the listed keys
#: into a set took ~80 MB more here; the streaming one takes a few.
BOUND_MB = 25


def synthetic(tmp_path: Path, snapshot: bool = False, **options: int) -> Iterator[str]:
    args = [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
    args += ["--snapshot"] if snapshot else []
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.synthetic_s3", "--port", "0", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait(10)


def fill_catalog(path: Path, objects: Objects, skip_every: int) -> None:
    """The rows a mirror of the plain objects would have made (no metadata columns:
    the refresh compares key, ETag and LastModified only), but without every
    `skip_every`-th object, which the refresh must then find new."""
    when = dt.datetime.fromisoformat(WHEN.replace("Z", "+00:00"))
    catalog = open_catalog(str(path))
    batch: list[ObjectRow] = []
    for i in range(objects.count):
        if i % skip_every == 3:
            continue
        batch.append(ObjectRow(BUCKET, objects.key(i), objects.size, etag_of(i), when))
        if len(batch) == 20_000:
            catalog.write(batch)
            batch = []
    catalog.write(batch)
    catalog.close()


def peak_rss_mb(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Run deon; its peak resident set (VmHWM, which exec resets) and its stderr."""
    proc = subprocess.Popen(
        [*DEON_CMD, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    peak = 0
    status = Path(f"/proc/{proc.pid}/status")
    while proc.poll() is None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    err = proc.stderr.read() if proc.stderr else ""
    assert proc.returncode == 0, err
    return peak / 1024, err


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc (Linux)")
def test_a_refresh_of_200k_objects_stays_within_a_memory_bound(isolated_env: Path) -> None:
    env = isolated_env
    folders = N // 1000  # of 1000 objects: the small run refreshes one, the big one all
    plain = Objects(N, folders=folders)
    path = env / "catalog.sqlite"
    fill_catalog(path, plain, EVERY)
    gen = synthetic(env, objects=N, folders=folders, gone_every=EVERY, changed_every=EVERY)
    url = next(gen)
    run_env = {**os.environ, "AWS_ENDPOINT_URL": url, "DEON_CATALOG": str(path)}
    try:
        # The same command on the first 1000 objects: what deon takes whatever the size.
        small, err = peak_rss_mb(
            ["metadata", "down", "--no-snapshot", f"s3://{BUCKET}/many/f00000/"], run_env
        )
        assert "1 new, 1 changed, 1 deleted, 997 unchanged" in err, err

        big, err = peak_rss_mb(
            ["metadata", "down", "--no-snapshot", f"s3://{BUCKET}/many/"], run_env
        )

        n = N // EVERY - 1  # the small run refreshed one of each already
        assert f"{n} new, {n} changed, {n} deleted, {N - N // EVERY - 2 * n} unchanged" in err, err
        assert big - small < BOUND_MB, f"{big:.0f} MB for {N} objects, {small:.0f} MB for 1000"
        # the catalog is what the endpoint serves now
        db = sqlite3.connect(path)
        rows = db.execute(
            "SELECT key, etag FROM objects WHERE bucket = ? ORDER BY key", (BUCKET,)
        ).fetchall()
        db.close()
        served = Objects(N, folders=folders, gone_every=EVERY, changed_every=EVERY)
        assert rows == [(served.key(i), served.etag(i)) for i in range(N) if served.exists(i)]
    finally:
        gen.close()


#: What a cold start from a published snapshot of N objects may take at its peak beyond
#: one of 1000 (resident set, MB). Holding the snapshot's bytes and a dict of its entries
#: took ~280 MB more here (385 MB against 106); a temporary database of them, ~13.
SNAPSHOT_BOUND_MB = 25


def _stats(url: str) -> dict[str, int]:
    import json
    import urllib.request

    with urllib.request.urlopen(f"{url}/_stats") as r:  # noqa: S310 - 127.0.0.1
        return json.loads(r.read())


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc (Linux)")
def test_a_cold_start_from_a_snapshot_of_200k_objects_stays_within_a_memory_bound(
    isolated_env: Path,
) -> None:
    env = isolated_env
    # the snapshot describes the plain set; the endpoint serves it with every EVERY-th
    # object gone or changed since (those are HEADed, the rest taken from the snapshot)
    # folders of 1000 objects: the small run mirrors one, the big one all of them
    folders = N // 1000
    gen = synthetic(env, True, objects=N, folders=folders, gone_every=EVERY, changed_every=EVERY)
    url = next(gen)
    tmp = env / "tmp"
    tmp.mkdir()
    run_env = {**os.environ, "AWS_ENDPOINT_URL": url, "TMPDIR": str(tmp)}
    try:
        small_env = {**run_env, "DEON_CATALOG": str(env / "small.sqlite")}
        small, err = peak_rss_mb(["metadata", "down", f"s3://{BUCKET}/many/f00000"], small_env)
        assert f"{1000 - 1} new ({1000 - 2} from a snapshot)" in err, err

        heads_before = _stats(url).get("HEAD", 0)
        path = env / "big.sqlite"
        big, err = peak_rss_mb(
            ["metadata", "down", f"s3://{BUCKET}/many/"], {**run_env, "DEON_CATALOG": str(path)}
        )
        heads = _stats(url).get("HEAD", 0) - heads_before

        n = N // EVERY
        taken = N - 2 * n  # neither gone nor changed
        assert f"{N - n} new ({taken} from a snapshot), 0 changed" in err, err
        assert "not used" not in err and "disagrees" not in err, err
        # the changed objects, and the spot checks: the first 3, then 1 in 100
        assert heads <= n + 3 + taken // 100 + 1, heads
        assert big - small < SNAPSHOT_BOUND_MB, (
            f"{big:.0f} MB for {N} objects, {small:.0f} MB for 1000"
        )
        assert list(tmp.iterdir()) == []  # the temporary database is gone
        # the catalog is what a HEAD of every object would have made it
        served = Objects(N, folders, gone_every=EVERY, changed_every=EVERY)
        db = sqlite3.connect(path)
        rows = db.execute(
            "SELECT key, etag FROM objects WHERE bucket = ? ORDER BY key", (BUCKET,)
        ).fetchall()
        docs = dict(
            db.execute(
                "SELECT key, metadata FROM objects WHERE key IN (?, ?, ?)",
                (served.key(0), served.key(2), served.key(N - 1)),
            ).fetchall()
        )
        db.close()
        assert rows == [(served.key(i), served.etag(i)) for i in range(N) if served.exists(i)]
        import json

        for i in (0, 2, N - 1):  # from the snapshot, HEADed (changed), from the snapshot
            assert json.loads(docs[served.key(i)]) == served.metadata(i)
    finally:
        gen.close()
