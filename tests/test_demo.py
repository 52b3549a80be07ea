"""`deon demo`, the README's main-job command, runs end to end and leaves nothing behind."""

from __future__ import annotations

import re
import socket
from pathlib import Path

from tests.conftest import assert_no_traceback, run_deon


def test_demo_runs_every_step_and_leaves_nothing_running(isolated_env: Path) -> None:
    work = isolated_env / "demo"

    r = run_deon("demo", "--per-member", "3", "--workdir", str(work), timeout=300)

    assert r.returncode == 0, r.stdout + r.stderr
    assert "# all steps succeeded" in r.stdout
    assert "$ deon up s3://lab-data/alice" in r.stdout
    assert "up: 0 uploaded, 3 unchanged" in r.stdout
    assert "frames  (30, 2, 48, 64, 3) uint8" in r.stdout
    assert "metadata down s3://lab-data/: 6 new, 0 changed, 0 deleted, 0 unchanged" in r.stdout
    assert "0 new, 0 changed, 0 deleted, 6 unchanged" in r.stdout  # the refresh
    assert "$ deon query \"robot = 'sawyer' AND traj_ok\" | deon pull" in r.stdout
    matched = r.stdout.split("$ deon query \"robot = 'sawyer' AND traj_ok\"\n", 1)[1]
    uris = [line.strip() for line in matched.splitlines() if line.strip().startswith("s3://")]
    assert uris and all(u.startswith("s3://lab-data/alice/") for u in uris)
    assert f"pull: {len(uris)} downloaded" in r.stdout
    assert f"pull: 0 downloaded, {len(uris)} unchanged" in r.stdout
    assert_no_traceback(r.stdout + r.stderr)
    assert not work.exists()  # the scratch folder is removed
    port = int(re.search(r"http://127\.0\.0\.1:(\d+)", r.stdout).group(1))  # type: ignore[union-attr]
    with socket.socket() as s:  # the local S3 server is gone
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_demo_refuses_a_workdir_that_holds_files(isolated_env: Path) -> None:
    work = isolated_env / "mine"
    work.mkdir()
    (work / "thesis.txt").write_text("years of work")

    r = run_deon("demo", "--per-member", "1", "--workdir", str(work))

    assert r.returncode == 2
    assert r.stderr.strip() == f"Error: --workdir {work} is not empty: give a new or empty folder"
    assert (work / "thesis.txt").read_text() == "years of work"
