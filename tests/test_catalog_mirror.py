"""`deon metadata down` end to end: rows, requests sent, changes, deletions, interruption."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from deon.catalog import flatten as fl
from deon.metadata import wire as meta
from tests.conftest import DEON_CMD, Lab, assert_no_traceback, make_h5, run_deon


def put_doc(lab: Lab, key: str, doc: Any, body: bytes | None = None) -> None:
    body = body if body is not None else json.dumps(doc).encode()
    encoded = meta.encode(doc, None, lambda d: f"x/.deon/meta/{d}.json")
    lab.put(key, body, encoded.metadata)


def test_mirror_makes_one_row_per_object_with_flattened_columns(lab: Lab) -> None:
    src = lab.tmp / "src"
    docs = {
        "a.h5": {
            "robot": "sawyer",
            "traj_ok": True,
            "gripper": {"type": "default"},
            "object_classes": ["cup", "bowl"],
            "img_T": 30,
            "scale": 0.5,
        },
        "b.h5": {"robot": "franka", "traj_ok": False, "camera_configuration": "multiview3"},
    }
    for name, doc in docs.items():
        make_h5(src / name, doc)
    (src / "notes.txt").write_text("no metadata here")
    assert run_deon("up", "s3://lab/alice", str(src)).returncode == 0

    r = run_deon("metadata", "down", "s3://lab/alice")

    assert r.returncode == 0, r.stderr
    assert "3 new, 0 changed, 0 deleted, 0 unchanged" in r.stderr
    got = {row["key"]: row for row in lab.rows()}
    assert set(got) == {"alice/a.h5", "alice/b.h5", "alice/notes.txt"}
    a = got["alice/a.h5"]
    assert a["uri"] == "s3://lab/alice/a.h5"
    assert a["size"] == (src / "a.h5").stat().st_size
    assert a["robot"] == "sawyer" and a["traj_ok"] == 1 and a["gripper_type"] == "default"
    assert json.loads(a["object_classes"]) == ["cup", "bowl"]
    assert a["img_t"] == 30 and a["scale"] == 0.5
    assert json.loads(a["metadata"]) == docs["a.h5"]
    assert len(a["sha256"]) == 64
    assert got["alice/b.h5"]["camera_configuration"] == "multiview3"
    assert got["alice/notes.txt"]["metadata"] is None and got["alice/notes.txt"]["robot"] is None
    # the plain sqlite3 shell works on the catalog
    if shutil.which("sqlite3"):
        out = subprocess.run(
            ["sqlite3", str(lab.catalog), "SELECT uri FROM objects WHERE robot='sawyer'"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert out.split() == ["s3://lab/alice/a.h5"]


def test_an_unchanged_prefix_costs_no_head(lab: Lab) -> None:
    for i in range(30):
        put_doc(lab, f"p/{i:03d}.h5", {"i": i})
    assert run_deon("metadata", "down", "s3://lab/p").returncode == 0
    assert lab.proxy.count("HEAD") == 30
    lab.proxy.reset()

    r = run_deon("metadata", "down", "s3://lab/p")

    assert r.returncode == 0, r.stderr
    assert lab.proxy.count("HEAD") == 0
    assert lab.proxy.count("LIST") == 1
    assert "0 new, 0 changed, 0 deleted, 30 unchanged" in r.stderr


def test_only_new_and_changed_objects_are_headed_and_gone_ones_deleted(lab: Lab) -> None:
    for i in range(10):
        put_doc(lab, f"p/{i}.h5", {"i": i, "robot": "sawyer"})
    assert run_deon("metadata", "down", "s3://lab/p").returncode == 0
    put_doc(lab, "p/new.h5", {"robot": "widowx", "extra_key": [1, 2]})  # new, with a new key
    put_doc(lab, "p/3.h5", {"i": 3, "robot": "baxter"}, body=b"changed bytes")  # changed
    lab.client.delete_object(Bucket="lab", Key="p/7.h5")  # gone
    lab.proxy.reset()

    r = run_deon("metadata", "down", "s3://lab/p")

    assert r.returncode == 0, r.stderr
    assert "1 new, 1 changed, 1 deleted, 8 unchanged" in r.stderr
    assert sorted(k for kind, k in lab.proxy.log if kind == "HEAD") == ["p/3.h5", "p/new.h5"]
    got = {row["key"]: row for row in lab.rows()}
    assert "p/7.h5" not in got and len(got) == 10
    assert got["p/3.h5"]["robot"] == "baxter"
    assert got["p/new.h5"]["extra_key"] == "[1,2]"  # a new column, no user action
    assert got["p/0.h5"]["extra_key"] is None


def test_a_metadata_only_rewrite_is_noticed(lab: Lab) -> None:
    put_doc(lab, "p/t.h5", {"robot": "sawyer", "traj_ok": True}, body=b"same bytes")
    assert run_deon("metadata", "down", "s3://lab/p").returncode == 0
    etag = lab.head("p/t.h5")["ETag"]
    new = meta.encode({"robot": "sawyer", "traj_ok": False}, None, lambda d: "")
    time.sleep(1.1)  # S3 lists LastModified to the second
    lab.client.copy_object(
        Bucket="lab",
        Key="p/t.h5",
        CopySource={"Bucket": "lab", "Key": "p/t.h5"},
        Metadata=new.metadata,
        MetadataDirective="REPLACE",
    )
    assert lab.head("p/t.h5")["ETag"] == etag  # same bytes, same ETag
    lab.proxy.reset()

    r = run_deon("metadata", "down", "s3://lab/p")

    assert r.returncode == 0, r.stderr
    assert lab.proxy.count("HEAD") == 1
    assert lab.rows()[0]["traj_ok"] == 0


def test_malformed_and_missing_metadata_get_rows_and_named_warnings(lab: Lab) -> None:
    lab.put("p/bad.h5", b"x", {"deon-meta": "json:{not json"})
    lab.put("p/unknown-form.h5", b"x", {"deon-meta": "yaml:robot: x"})
    lab.put("p/none.h5", b"x")
    put_doc(lab, "p/good.h5", {"robot": "sawyer"})

    r = run_deon("metadata", "down", "s3://lab/p")

    assert r.returncode == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert any("s3://lab/p/bad.h5" in w and "malformed metadata" in w for w in warnings)
    assert any("s3://lab/p/unknown-form.h5" in w for w in warnings)
    got = {row["key"]: row for row in lab.rows()}
    assert len(got) == 4
    assert (
        got["p/bad.h5"]["metadata"] is None
        and "not valid JSON" in got["p/bad.h5"]["metadata_error"]
    )
    assert got["p/none.h5"]["metadata"] is None and got["p/none.h5"]["metadata_error"] is None
    assert got["p/good.h5"]["robot"] == "sawyer"
    assert_no_traceback(r.stderr)


def test_headers_of_the_original_deoncli_are_read(lab: Lab) -> None:
    doc = {"robot": "sawyer", "camera_configuration": "sudri0", "traj_ok": True}
    lab.put(
        "old/t.hdf5",
        b"data",
        {
            "metajson": json.dumps(doc),
            "uid": "1000",
            "gid": "1000",
            "mode": "33188",
            "mtime": "1500000000",
            "size": "4",
        },
    )

    r = run_deon("metadata", "down", "s3://lab/old")

    assert r.returncode == 0, r.stderr
    row = lab.rows()[0]
    assert row["robot"] == "sawyer" and row["traj_ok"] == 1
    assert json.loads(row["metadata"]) == doc


def test_documents_stored_in_a_sidecar_are_mirrored_whole(lab: Lab) -> None:
    src = lab.tmp / "src"
    big = {f"field_{i}": hashlib.sha256(str(i).encode()).hexdigest() for i in range(200)}
    big["robot"] = "franka"
    make_h5(src / "big.h5", big)
    assert run_deon("up", "s3://lab/x", str(src)).returncode == 0
    assert lab.head("x/big.h5")["Metadata"]["deon-meta"].startswith("ref:")

    r = run_deon("metadata", "down", "s3://lab/x")

    assert r.returncode == 0, r.stderr
    got = lab.rows()
    assert [row["key"] for row in got] == ["x/big.h5"]  # the sidecar is not a row
    assert json.loads(got[0]["metadata"]) == big
    assert got[0]["robot"] == "franka" and got[0]["field_199"] == big["field_199"]


def test_colliding_keys_keep_their_values_under_documented_names(lab: Lab) -> None:
    put_doc(lab, "c/t.h5", {"size": 7, "a_b": 1, "a": {"b": 2}, "Robot": "x"})

    r = run_deon("metadata", "down", "s3://lab/c")

    assert r.returncode == 0, r.stderr
    row = lab.rows()[0]
    assert row["meta_size"] == 7 and row["size"] == len(
        json.dumps({"size": 7, "a_b": 1, "a": {"b": 2}, "Robot": "x"})
    )
    assert row["a_b"] == 1
    renamed = [k for k in row if k.startswith("a_b__")]
    assert len(renamed) == 1 and row[renamed[0]] == 2
    assert row["robot"] == "x"
    assert "is stored in column" in r.stderr


def test_a_key_of_higher_rank_arriving_later_takes_the_plain_name(lab: Lab) -> None:
    put_doc(lab, "c/1.h5", {"a": {"b": 2}})
    assert run_deon("metadata", "down", "s3://lab/c").returncode == 0
    assert lab.rows()[0]["a_b"] == 2
    put_doc(lab, "c/2.h5", {"a_b": 1})

    r = run_deon("metadata", "down", "s3://lab/c")

    assert r.returncode == 0, r.stderr
    moved = "a_b__" + fl.path_hash(("a", "b"))
    assert f"column 'a_b' now holds metadata key 'a_b'; 'a.b' moved to column '{moved}'" in r.stderr
    rows = {row["key"]: row for row in lab.rows()}
    assert (rows["c/1.h5"]["a_b"], rows["c/1.h5"][moved]) == (None, 2)
    assert (rows["c/2.h5"]["a_b"], rows["c/2.h5"][moved]) == (1, None)
    assert run_deon("query", f"{moved} = 2").stdout.split() == ["s3://lab/c/1.h5"]


def test_no_address_refreshes_every_known_source(lab: Lab) -> None:
    put_doc(lab, "a/1.h5", {"x": 1})
    put_doc(lab, "b/1.h5", {"x": 2})
    assert run_deon("metadata", "down", "s3://lab/a", "lab/b").returncode == 0
    put_doc(lab, "b/2.h5", {"x": 3})

    r = run_deon("metadata", "down")

    assert r.returncode == 0, r.stderr
    assert "s3://lab/a/ s3://lab/b/" in r.stderr
    assert "1 new" in r.stderr
    assert len(lab.rows()) == 3


@pytest.fixture
def elsewhere(lab: Lab) -> Any:
    """A second S3 endpoint on 127.0.0.1, with its own empty bucket of the same name (a
    process of its own: moto servers in one process share their buckets)."""
    import socket
    import sys
    import urllib.request

    import boto3

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(
            Bucket=lab.bucket
        )
        yield url
    finally:
        server.terminate()
        server.wait(10)


def test_a_refresh_never_compares_a_source_with_another_servers_bucket(
    lab: Lab, elsewhere: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bucket of the same name on another endpoint is another bucket: a refresh from
    there (or from AWS) is refused and named, and the catalog keeps its rows. The catalog
    itself never decides where requests go."""
    for i in range(3):
        put_doc(lab, f"p/{i}.h5", {"i": i})
    assert run_deon("metadata", "down", "s3://lab/p").returncode == 0
    put_doc(lab, "p/3.h5", {"i": 3})

    r = run_deon("--endpoint-url", elsewhere, "metadata", "down")

    assert r.returncode == 1
    assert (
        f"error: s3://lab/p/: mirrored from {lab.endpoint}, not {elsewhere}: pass "
        f"--endpoint-url {lab.endpoint}" in r.stderr
    )
    assert len(lab.rows()) == 3  # nothing deleted, nothing asked of the other server
    monkeypatch.delenv("AWS_ENDPOINT_URL")  # the user's shell no longer names one: AWS
    r = run_deon("metadata", "down")
    assert r.returncode == 1 and f"mirrored from {lab.endpoint}, not AWS" in r.stderr
    assert_no_traceback(r.stderr)

    r = run_deon(
        "--endpoint-url", lab.endpoint.replace("http://", "HTTP://") + "/", "metadata", "down"
    )

    assert r.returncode == 0, r.stderr  # the same server, however it is spelled
    assert "1 new, 0 changed, 0 deleted, 3 unchanged" in r.stderr


def test_a_prefix_overlapping_a_source_of_another_endpoint_is_refused(
    lab: Lab, elsewhere: str
) -> None:
    put_doc(lab, "a/1.h5", {"i": 1})
    assert run_deon("metadata", "down", "s3://lab/").returncode == 0

    r = run_deon("--endpoint-url", elsewhere, "metadata", "down", "s3://lab/a")

    assert r.returncode == 1
    assert (
        f"error: s3://lab/a/: overlaps source s3://lab/, mirrored from {lab.endpoint}, not "
        f"{elsewhere}; one catalog cannot hold both" in r.stderr
    )
    assert [row["key"] for row in lab.rows()] == ["a/1.h5"]


def test_naming_a_source_mirrors_it_from_the_endpoint_given_and_says_so(
    lab: Lab, elsewhere: str
) -> None:
    put_doc(lab, "p/0.h5", {"i": 0})
    assert run_deon("metadata", "down", "s3://lab/p").returncode == 0

    r = run_deon("--endpoint-url", elsewhere, "metadata", "down", "s3://lab/p")

    assert r.returncode == 0, r.stderr
    assert (
        f"warning: s3://lab/p/: mirrored from {lab.endpoint} until now, from {elsewhere} "
        "from now on" in r.stderr
    )
    assert "0 new, 0 changed, 1 deleted" in r.stderr and lab.rows() == []


def test_one_failing_source_does_not_stop_the_others(lab: Lab) -> None:
    lab.client.create_bucket(Bucket="gone")
    lab.client.put_object(Bucket="gone", Key="q/0.h5", Body=b"x")
    put_doc(lab, "p/0.h5", {"i": 0})
    assert run_deon("metadata", "down", "s3://gone/q", "s3://lab/p").returncode == 0
    lab.client.delete_object(Bucket="gone", Key="q/0.h5")
    lab.client.delete_bucket(Bucket="gone")
    put_doc(lab, "p/1.h5", {"i": 1})

    r = run_deon("metadata", "down")

    assert r.returncode == 1
    assert "error: s3://gone/q/: no such bucket: gone" in r.stderr
    assert "1 new, 0 changed, 0 deleted, 1 unchanged, 1 failed" in r.stderr
    assert [row["key"] for row in lab.rows()] == ["p/0.h5", "p/1.h5", "q/0.h5"]
    assert_no_traceback(r.stderr)


def test_a_mistyped_prefix_is_named_and_can_be_forgotten(lab: Lab) -> None:
    put_doc(lab, "alice/1.h5", {"x": 1})
    put_doc(lab, "alice/2.h5", {"x": 2})
    assert run_deon("metadata", "down", "s3://lab/", "s3://lab/alice").returncode == 0

    r = run_deon("metadata", "down", "s3://lab/alcie")

    assert r.returncode == 0
    assert "warning: nothing under s3://lab/alcie/: it stays a source" in r.stderr
    assert "deon metadata forget s3://lab/alcie/" in r.stderr

    r = run_deon("metadata", "forget", "s3://lab/alcie")

    assert r.returncode == 0, r.stderr
    assert "metadata forget s3://lab/alcie: 0 rows removed" in r.stderr
    r = run_deon("metadata", "forget", "s3://lab/alice")  # s3://lab/ still covers its rows
    assert "0 rows removed" in r.stderr and len(lab.rows()) == 2
    r = run_deon("metadata", "forget", "s3://lab")
    assert "2 rows removed" in r.stderr and lab.rows() == []
    r = run_deon("metadata", "down")
    assert r.returncode == 2 and "no sources yet" in r.stderr

    r = run_deon("metadata", "forget", "s3://lab/bob")

    assert r.returncode == 2
    assert r.stderr.strip() == "Error: s3://lab/bob/ is not a source of the catalog (sources: none)"


def test_no_address_and_no_sources_is_a_usage_error(isolated_env: Path) -> None:
    r = run_deon("metadata", "down")

    assert r.returncode == 2
    assert "no sources yet" in r.stderr


def test_a_missing_bucket_is_a_usage_error(lab: Lab) -> None:
    r = run_deon("metadata", "down", "s3://no-such-bucket")

    assert r.returncode == 2
    assert "no such bucket: no-such-bucket" in r.stderr
    r = run_deon("metadata", "down")  # and it did not become a source
    assert r.returncode == 2 and "no sources yet" in r.stderr


def test_with_several_addresses_a_bad_one_is_an_item_whatever_the_order(lab: Lab) -> None:
    put_doc(lab, "p/0.h5", {"i": 0})
    for order in (["s3://nosuch-bucket/", "s3://lab/p"], ["s3://lab/p", "s3://nosuch-bucket/"]):
        r = run_deon("metadata", "down", *order)

        assert r.returncode == 1, r.stderr
        assert "error: s3://nosuch-bucket/: no such bucket: nosuch-bucket" in r.stderr
        assert "metadata down s3://lab/p/:" in r.stderr
    assert [row["key"] for row in lab.rows()] == ["p/0.h5"]


def test_an_unreadable_object_is_named_and_keeps_no_invented_row(lab: Lab) -> None:
    put_doc(lab, "p/ok.h5", {"x": 1})
    put_doc(lab, "p/locked.h5", {"x": 2})
    lab.proxy.rules.fail_keys.add("p/locked.h5")

    r = run_deon("metadata", "down", "s3://lab/p", env={**os.environ, "AWS_MAX_ATTEMPTS": "1"})

    assert r.returncode == 1
    assert "error: s3://lab/p/locked.h5" in r.stderr
    assert [row["key"] for row in lab.rows()] == ["p/ok.h5"], r.stderr


def test_scalar_columns_are_indexed_for_fast_filters(lab: Lab) -> None:
    put_doc(lab, "p/t.h5", {"robot": "sawyer", "traj_ok": True, "classes": ["cup"]})

    assert run_deon("metadata", "down", "s3://lab/p").returncode == 0

    db = sqlite3.connect(lab.catalog)
    plan = " ".join(
        str(r)
        for r in db.execute("EXPLAIN QUERY PLAN SELECT uri FROM objects WHERE robot = 'sawyer'")
    )
    indexes = {r[1] for r in db.execute("PRAGMA index_list(object_rows)")}
    db.close()
    assert "ix_objects_m_robot" in plan
    assert {"ix_objects_m_robot", "ix_objects_m_traj_ok"} <= indexes
    assert "ix_objects_m_classes" not in indexes  # JSON lists are not indexed


def test_an_interrupted_mirror_leaves_a_consistent_catalog_and_a_rerun_finishes(lab: Lab) -> None:
    for i in range(120):
        put_doc(lab, f"k/{i:03d}.h5", {"i": i, "robot": ["sawyer", "franka"][i % 2]})
    proc: subprocess.Popen[bytes] | None = None
    heads: list[str] = []

    def kill_midway(method: str, key: str, query: str) -> None:
        # Slow HEADs so that a batch or two is written (at most a second apart) before
        # the kill, which comes with rows still being fetched.
        if method == "HEAD":
            heads.append(key)
            time.sleep(0.05)
            if len(heads) == 100 and proc is not None:
                proc.send_signal(signal.SIGKILL)
                time.sleep(0.3)

    lab.proxy.rules.before = kill_midway
    proc = subprocess.Popen(
        [*DEON_CMD, "-j", "1", "metadata", "down", "s3://lab/k"],  # 2 HEADs in flight
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    db = sqlite3.connect(lab.catalog)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    partial = db.execute("SELECT key, robot, json_extract(metadata, '$.i') FROM objects").fetchall()
    db.close()
    assert 0 < len(partial) < 120
    for key, robot, i in partial:  # every row written describes its object truly
        assert key == f"k/{i:03d}.h5" and robot == ["sawyer", "franka"][i % 2]
    lab.proxy.rules.before = None
    lab.proxy.reset()

    r = run_deon("metadata", "down", "s3://lab/k")

    assert r.returncode == 0, r.stderr
    assert lab.proxy.count("HEAD") == 120 - len(partial)  # only what was not mirrored
    assert len(lab.rows()) == 120


def test_two_mirrors_on_one_catalog_both_succeed(lab: Lab) -> None:
    for i in range(60):
        put_doc(lab, f"a/{i}.h5", {"who": "a", f"key_a{i % 7}": i})
        put_doc(lab, f"b/{i}.h5", {"who": "b", f"key_b{i % 5}": i})

    procs = [
        subprocess.Popen(
            [*DEON_CMD, "-j", "4", "metadata", "down", f"s3://lab/{p}"],
            env={**os.environ, "DEON_DEBUG": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in ("a", "b")
    ]
    outs = [p.communicate(timeout=120) for p in procs]

    assert [p.returncode for p in procs] == [0, 0], outs
    assert len(lab.rows()) == 120
    assert len(lab.rows("SELECT * FROM objects WHERE key_b3 IS NOT NULL")) == 12


def test_mirror_progress_and_summary_go_to_stderr_only(lab: Lab) -> None:
    put_doc(lab, "p/t.h5", {"x": 1})

    r = run_deon("metadata", "down", "s3://lab/p")

    assert r.stdout == ""
    assert "metadata down s3://lab/p/" in r.stderr


@pytest.mark.parametrize("quiet", [True])
def test_quiet_silences_the_summary(lab: Lab, quiet: bool) -> None:
    put_doc(lab, "p/t.h5", {"x": 1})

    r = run_deon("-q", "metadata", "down", "s3://lab/p")

    assert r.returncode == 0 and r.stderr == ""
