"""`deon metadata publish` and the cold start it gives others: few HEADs, same rows,
and a stale, tampered or damaged snapshot costing speed, never correctness."""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from deon.metadata import wire as meta
from deon.mirror.snapshot import CHECK_EVERY, MIN_CHECKS
from tests.conftest import Lab, assert_no_traceback, run_deon

N = 120
SNAPSHOT = "p/.deon/snapshot.jsonl.gz"


def put_doc(lab: Lab, key: str, doc: Any, body: bytes) -> None:
    import hashlib

    enc = meta.encode(doc, hashlib.sha256(body).hexdigest(), lambda d: "")
    lab.put(key, body, enc.metadata)


def rows(catalog: Path) -> dict[str, tuple[Any, ...]]:
    db = sqlite3.connect(catalog)
    try:
        return {
            r[0]: r[1:]
            for r in db.execute("SELECT key, size, etag, sha256, metadata, robot, i FROM objects")
        }
    finally:
        db.close()


@pytest.fixture
def published(lab: Lab) -> Lab:
    for i in range(N):
        put_doc(
            lab,
            f"p/{i:04d}.h5",
            {"robot": ["sawyer", "franka"][i % 2], "i": i},
            f"body {i}".encode(),
        )
    r = run_deon("--catalog", str(lab.tmp / "alice.sqlite"), "metadata", "publish", "s3://lab/p")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"s3://lab/{SNAPSHOT}"
    lab.proxy.reset()
    return lab


def bob(lab: Lab, *args: str) -> Any:
    """A colleague with a brand-new catalog."""
    return run_deon(
        "--catalog", str(lab.tmp / "bob.sqlite"), "metadata", "down", *args, "s3://lab/p"
    )


def expected_checks(n: int) -> int:
    return sum(1 for m in range(1, n + 1) if m <= MIN_CHECKS or m % CHECK_EVERY == 0)


def test_the_snapshot_is_documented_json_lines(published: Lab) -> None:
    lines = gzip.decompress(published.get(SNAPSHOT)).decode().splitlines()
    header = json.loads(lines[0])
    assert header["format"] == "deon-snapshot" and header["version"] == 1
    assert header["bucket"] == "lab" and header["prefix"] == "p/" and header["count"] == N
    entry = json.loads(lines[1])
    assert entry["k"] == "p/0000.h5" and len(entry["h"]) == 64
    assert json.loads(entry["m"]) == {"robot": "sawyer", "i": 0}
    assert len(lines) == N + 1


def test_a_new_user_mirrors_from_the_snapshot_with_only_spot_check_heads(published: Lab) -> None:
    r = bob(published)

    assert r.returncode == 0, r.stderr
    assert f"{N} new ({N} from a snapshot)" in r.stderr
    assert published.proxy.count("HEAD") == expected_checks(N)
    assert rows(published.tmp / "bob.sqlite") == rows(published.tmp / "alice.sqlite")


def test_a_stale_snapshot_costs_heads_not_correctness(published: Lab) -> None:
    time.sleep(1.1)  # LastModified has one-second resolution
    put_doc(published, "p/0005.h5", {"robot": "widowx", "i": 5}, b"rewritten 5")
    put_doc(published, "p/0100.h5", {"robot": "baxter", "i": 100}, b"rewritten 100")
    put_doc(published, "p/new.h5", {"robot": "widowx", "i": -1}, b"new")
    published.client.delete_object(Bucket="lab", Key="p/0007.h5")
    published.proxy.reset()

    r = bob(published)

    assert r.returncode == 0, r.stderr
    heads = [k for kind, k in published.proxy.log if kind == "HEAD"]
    assert {"p/0005.h5", "p/0100.h5", "p/new.h5"} <= set(heads)
    assert len(heads) == 3 + expected_checks(N - 3)
    got = rows(published.tmp / "bob.sqlite")
    assert len(got) == N  # 120 - 1 deleted + 1 new
    assert got["p/0005.h5"][4] == "widowx" and got["p/0100.h5"][4] == "baxter"
    assert "p/0007.h5" not in got


def test_a_tampered_snapshot_is_caught_and_everything_is_headed(published: Lab) -> None:
    lines = gzip.decompress(published.get(SNAPSHOT)).decode().splitlines()
    forged = [lines[0]]
    for line in lines[1:]:  # same key, ETag and time; lies about the metadata
        entry = json.loads(line)
        doc = json.loads(entry["m"])
        doc["robot"] = "forged"
        entry["m"] = json.dumps(doc)
        forged.append(json.dumps(entry))
    published.put(SNAPSHOT, gzip.compress("\n".join(forged).encode() + b"\n"))
    published.proxy.reset()

    r = bob(published)

    assert r.returncode == 0, r.stderr
    assert "disagrees with the objects" in r.stderr
    assert published.proxy.count("HEAD") >= N
    got = rows(published.tmp / "bob.sqlite")
    assert got == rows(published.tmp / "alice.sqlite")
    assert all(row[4] != "forged" for row in got.values())
    assert_no_traceback(r.stderr)


@pytest.mark.parametrize(
    "damage",
    [
        b"not gzip at all",
        gzip.compress(b'{"format": "something else"}\n'),
        gzip.compress(b'{"format": "deon-snapshot", "version": 1, "bucket": "lab"}\n{broken'),
        gzip.compress(b'{"format": "deon-snapshot", "version": 99}\n'),
    ],
    ids=["not-gzip", "other-format", "broken-line", "future-version"],
)
def test_a_damaged_snapshot_is_named_and_ignored(published: Lab, damage: bytes) -> None:
    published.put(SNAPSHOT, damage)
    published.proxy.reset()

    r = bob(published)

    assert r.returncode == 0, r.stderr
    assert f"s3://lab/{SNAPSHOT}: not used" in r.stderr
    assert published.proxy.count("HEAD") == N
    assert rows(published.tmp / "bob.sqlite") == rows(published.tmp / "alice.sqlite")
    assert_no_traceback(r.stderr)


def test_no_snapshot_heads_everything(published: Lab) -> None:
    r = bob(published, "--no-snapshot")

    assert r.returncode == 0, r.stderr
    assert published.proxy.count("HEAD") == N
    assert "from a snapshot" not in r.stderr


def test_a_snapshot_of_a_parent_prefix_serves_a_sub_prefix(lab: Lab) -> None:
    for i in range(10):
        put_doc(lab, f"p/sub/{i}.h5", {"i": i, "robot": "sawyer"}, f"{i}".encode())
        put_doc(lab, f"p/other/{i}.h5", {"i": i, "robot": "franka"}, f"o{i}".encode())
    assert (
        run_deon(
            "--catalog", str(lab.tmp / "alice.sqlite"), "metadata", "publish", "s3://lab/p"
        ).returncode
        == 0
    )
    lab.proxy.reset()

    r = run_deon("--catalog", str(lab.tmp / "bob.sqlite"), "metadata", "down", "s3://lab/p/sub")

    assert r.returncode == 0, r.stderr
    assert "10 new (10 from a snapshot)" in r.stderr
    assert lab.proxy.count("HEAD") == expected_checks(10)


def test_the_snapshot_is_not_data(published: Lab) -> None:
    r = run_deon("down", "s3://lab/p", str(published.tmp / "copy"))

    assert r.returncode == 0, r.stderr
    assert not (published.tmp / "copy" / ".deon").exists()
    assert len(os.listdir(published.tmp / "copy")) == N
