"""`deon pull`: URIs from arguments or standard input, to DATA_DIR/BUCKET/KEY."""

from __future__ import annotations

import hashlib
import os

import pytest

import deon
from deon.results import Status
from tests.conftest import Lab, assert_no_traceback, run_deon, run_deon_killed_at_get


def test_pull_from_arguments(lab: Lab) -> None:
    lab.put("alice/t1.h5", b"one")
    lab.put("alice/deep/t2.h5", b"two")

    r = run_deon("pull", "s3://lab/alice/t1.h5", "lab/alice/deep/t2.h5")

    assert r.returncode == 0, r.stderr
    t1 = lab.data_dir / "lab" / "alice" / "t1.h5"
    t2 = lab.data_dir / "lab" / "alice" / "deep" / "t2.h5"
    assert t1.read_bytes() == b"one" and t2.read_bytes() == b"two"
    assert sorted(r.stdout.splitlines()) == sorted([str(t1), str(t2)])


def test_pull_reads_stdin_skipping_blanks_comments_and_duplicates(lab: Lab) -> None:
    lab.put("a/1.h5", b"1")
    lab.put("a/2.h5", b"2")
    stdin = "# wanted trajectories\ns3://lab/a/1.h5\n\n   s3://lab/a/2.h5  \ns3://lab/a/1.h5\n"

    r = run_deon("pull", input=stdin)
    r_dash = run_deon("pull", "-", input="s3://lab/a/1.h5\n")

    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 2
    assert (lab.data_dir / "lab" / "a" / "2.h5").read_bytes() == b"2"
    assert lab.proxy.count("GET") == 2  # the duplicate was fetched once
    assert r_dash.returncode == 0 and "1 unchanged" in r_dash.stderr


def test_a_missing_object_is_named_and_the_rest_is_pulled(lab: Lab) -> None:
    lab.put("a/here.h5", b"here")

    r = run_deon("pull", "s3://lab/a/here.h5", "s3://lab/a/gone.h5")

    assert r.returncode == 1
    assert "error: s3://lab/a/gone.h5: no such object" in r.stderr
    assert (lab.data_dir / "lab" / "a" / "here.h5").read_bytes() == b"here"
    assert r.stdout.splitlines() == [str(lab.data_dir / "lab" / "a" / "here.h5")]
    assert_no_traceback(r.stderr)


def test_a_malformed_uri_exits_2_before_any_download(lab: Lab) -> None:
    lab.put("a/1.h5", b"1")

    r = run_deon("pull", input="s3://lab/a/1.h5\nnot a uri at all\n")

    assert r.returncode == 2
    assert "URI 2" in r.stderr and "not an S3 address" in r.stderr
    assert not (lab.data_dir / "lab").exists()


def test_pull_refuses_keys_that_escape_the_data_dir(lab: Lab) -> None:
    lab.put("a/../../../escape.h5", b"evil")

    r = run_deon("pull", "s3://lab/a/../../../escape.h5")

    assert r.returncode == 1
    assert "refused unsafe key" in r.stderr
    assert [p for p in lab.tmp.rglob("escape.h5")] == []


def test_pulling_again_downloads_nothing(lab: Lab) -> None:
    body = b"x" * 2048
    lab.put("a/t.h5", body, {"deon-sha256": hashlib.sha256(body).hexdigest()})
    assert run_deon("pull", "s3://lab/a/t.h5").returncode == 0
    lab.proxy.reset()

    r = run_deon("pull", "s3://lab/a/t.h5")

    assert r.returncode == 0
    assert lab.proxy.count("GET") == 0
    assert "1 unchanged" in r.stderr


def test_python_api_pull(lab: Lab) -> None:
    lab.put("a/t.h5", b"api")

    result = deon.pull(["s3://lab/a/t.h5", "s3://lab/a/missing.h5"], data_dir=lab.tmp / "d")

    assert (lab.tmp / "d" / "lab" / "a" / "t.h5").read_bytes() == b"api"
    assert [o.status for o in result.outcomes] == [Status.FAILED, Status.TRANSFERRED]
    assert result.failed[0].uri == "s3://lab/a/missing.h5"
    assert not result.ok


def test_short_writes_to_disk_never_leave_a_short_file(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """os.write may write fewer bytes than it was given; the rest must still land."""
    body = bytes(range(256)) * 64  # 16 KiB
    lab.put("a/short.bin", body)
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, bytes(data[:1000])))

    result = deon.pull(["s3://lab/a/short.bin"], data_dir=lab.tmp / "d")

    assert result.ok
    assert (lab.tmp / "d" / "lab" / "a" / "short.bin").read_bytes() == body


def test_an_interrupted_pull_of_an_object_the_catalog_does_not_know_resumes(lab: Lab) -> None:
    """Without a catalog row, a HEAD gives the size and ETag, so a large pull goes by
    ranges and a re-run after kill -9 fetches only what was not finished."""
    data = os.urandom(48 * 1024 * 1024)  # six 8 MiB ranges
    lab.put("big/traj.h5", data, {"deon-sha256": hashlib.sha256(data).hexdigest()})

    run_deon_killed_at_get(lab, "big/traj.h5", 4, "-j", "1", "pull", "s3://lab/big/traj.h5")

    dest = lab.data_dir / "lab" / "big" / "traj.h5"
    assert not dest.exists()
    lab.proxy.reset()

    r = run_deon("pull", "s3://lab/big/traj.h5")

    assert r.returncode == 0, r.stderr
    assert dest.read_bytes() == data
    assert lab.proxy.count("HEAD") == 1
    assert lab.proxy.count("GET") == 3  # only the three ranges not finished before the kill
