"""`deon up` follows symlinked folders and files, as the original deoncli did
(`os.walk(followlinks=True)`), with keys as seen through the links and no loops."""

from __future__ import annotations

import os

from tests.conftest import Lab, assert_no_traceback, make_h5, run_deon


def test_up_follows_symlinked_folders_and_files_with_keys_through_the_links(lab: Lab) -> None:
    other_disk = lab.tmp / "disk2" / "sawyer_runs"
    make_h5(other_disk / "t0.h5", {"robot": "sawyer"})
    make_h5(other_disk / "deeper" / "t1.h5", {"robot": "sawyer"}, seed=1)
    elsewhere = make_h5(lab.tmp / "disk3" / "calib.h5", {"robot": "franka"}, seed=2)
    src = lab.tmp / "src"
    make_h5(src / "own.h5", {"robot": "widowx"}, seed=3)
    os.symlink(other_disk, src / "sawyer")  # a folder from another disk
    os.symlink(elsewhere, src / "calib_link.h5")  # a file
    os.symlink(src, src / "sawyer_loop")  # a loop back to the top
    os.symlink(other_disk, other_disk / "deeper" / "up")  # a loop further down

    dry = run_deon("up", "-n", "s3://lab/x", str(src))
    r = run_deon("up", "s3://lab/x", str(src))

    want = [
        "s3://lab/x/calib_link.h5",
        "s3://lab/x/own.h5",
        "s3://lab/x/sawyer/deeper/t1.h5",
        "s3://lab/x/sawyer/t0.h5",
    ]
    assert dry.returncode == 0, dry.stderr
    assert sorted(dry.stdout.split()) == want
    assert lab.list_keys() == sorted(u.removeprefix("s3://lab/") for u in want)
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.split()) == want
    assert lab.get("x/sawyer/deeper/t1.h5") == (other_disk / "deeper" / "t1.h5").read_bytes()
    loops = [line for line in r.stderr.splitlines() if "(a loop)" in line]
    assert len(loops) == 2 and any("sawyer_loop" in line for line in loops), r.stderr
    assert_no_traceback(r.stderr)


def test_a_folder_linked_twice_goes_up_under_both_paths(lab: Lab) -> None:
    shared = lab.tmp / "shared"
    make_h5(shared / "t.h5", {"robot": "sawyer"})
    src = lab.tmp / "src"
    src.mkdir()
    os.symlink(shared, src / "a")
    os.symlink(shared, src / "b")

    r = run_deon("up", "s3://lab/y", str(src))

    assert r.returncode == 0, r.stderr
    assert lab.list_keys() == ["y/a/t.h5", "y/b/t.h5"]
    assert "(a loop)" not in r.stderr
