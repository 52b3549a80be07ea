"""`deon up --watch` and `--every`: files go up only once complete, nothing is lost to
network outages, kills or signals, and repeated commands keep going after an error.

Settle and poll times are tiny here so that each test takes seconds; the writers pause
longer than the settle time between chunks, so only the "open for writing" and HDF5
checks stand between a half-written file and the bucket.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BUCKET, DEON_CMD, Lab, make_h5

PY = sys.executable

#: A robot: writes trajectories slowly, chunk by chunk, flushing, keeping each file open
#: (pauses longer than --settle); others are written elsewhere and renamed in; some are
#: rewritten afterwards. Each complete version's sha256 is logged after it is closed.
WRITER = textwrap.dedent(
    """
    import hashlib, json, os, sys, time
    import h5py, numpy as np

    out, log, pause = sys.argv[1], sys.argv[2], float(sys.argv[3])
    rng = np.random.default_rng(1)

    def done(path):
        sha = hashlib.sha256(open(path, "rb").read()).hexdigest()
        with open(log, "a") as f:
            f.write(json.dumps({"name": os.path.basename(path), "sha256": sha}) + "\\n")

    def slow(name, chunks, **kw):
        path = os.path.join(out, name)
        with h5py.File(path, "w", **kw) as f:
            f.attrs["metadata"] = json.dumps({"robot": "sawyer", "name": name})
            d = f.create_dataset("obs", shape=(0, 2000), maxshape=(None, 2000), dtype="f8",
                                 chunks=(5, 2000))
            for i in range(chunks):
                d.resize((i + 1) * 5, axis=0)
                d[-5:] = rng.random((5, 2000))
                f.flush()
                time.sleep(pause)
        done(path)

    def renamed(name):
        tmp = os.path.join(out, name + ".tmp")
        with h5py.File(tmp, "w") as f:
            f.attrs["metadata"] = json.dumps({"robot": "widowx", "name": name})
            f.create_dataset("obs", data=rng.random((20, 100)))
        sha = hashlib.sha256(open(tmp, "rb").read()).hexdigest()
        os.replace(tmp, os.path.join(out, name))
        with open(log, "a") as f:
            f.write(json.dumps({"name": name, "sha256": sha}) + "\\n")

    slow("traj_0.h5", 3)                                  # HDF5's lock says: open
    renamed("traj_1.h5")
    slow("traj_2.h5", 3, locking=False)                   # no lock: /proc says open
    slow("traj_3.h5", 3, libver="latest", locking=False)  # the superblock says open
    renamed("traj_4.h5")
    time.sleep(pause * 3)                                 # traj_1 has gone up by now
    slow("traj_1.h5", 2)                                  # rewritten in place
    renamed("traj_4.h5")                                  # replaced by a rename
    with open(log, "a") as f:
        f.write(json.dumps({"end": True}) + "\\n")
    """
)


def start(args: list[str], tmp: Path, name: str, env: dict[str, str] | None = None) -> Any:
    """Start a deon process; its stdout and stderr go to files (read them with out())."""
    out = open(tmp / f"{name}.out", "wb")  # noqa: SIM115 - closed with the process
    err = open(tmp / f"{name}.err", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [*DEON_CMD, *args], stdout=out, stderr=err, env={**os.environ, **(env or {})}
    )
    proc.files = (out, err)  # type: ignore[attr-defined]
    proc.name = name  # type: ignore[attr-defined]
    return proc


def output(tmp: Path, name: str) -> tuple[str, str]:
    return (tmp / f"{name}.out").read_text(), (tmp / f"{name}.err").read_text()


def stop(proc: Any, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        code = proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
        for f in proc.files:
            f.close()
    return int(code)


def wait_for(check: Callable[[], bool], timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(0.1)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def watch_args(local: Path, prefix: str = "robot", *extra: str) -> list[str]:
    return [
        "up",
        "--watch",
        f"s3://{BUCKET}/{prefix}",
        str(local),
        "--settle",
        "0.3",
        *extra,
    ]


def bucket_matches(lab: Lab, local: Path, prefix: str = "robot/") -> bool:
    files = {p.relative_to(local).as_posix(): p for p in local.rglob("*") if p.is_file()}
    files = {k: v for k, v in files.items() if not k.endswith(".tmp")}
    keys = [k for k in lab.list_keys(prefix) if "/.deon/" not in k]
    if sorted(prefix + k for k in files) != keys:
        return False
    return all(lab.get(prefix + k) == p.read_bytes() for k, p in files.items())


# -- complete files only ------------------------------------------------------------------


def test_only_complete_files_go_up_and_a_follower_catalog_converges(lab: Lab) -> None:
    local = lab.tmp / "robot"
    local.mkdir()
    log = lab.tmp / "complete.jsonl"
    lab.proxy.rules.record_bodies = True
    watcher = start(watch_args(local), lab.tmp, "watch")
    follower = start(
        ["metadata", "down", "--every", "1s", f"s3://{BUCKET}/robot"], lab.tmp, "follower"
    )
    try:
        wait_for(lambda: "watch s3://lab/robot" in output(lab.tmp, "watch")[1], what="listing")
        writer = subprocess.run(
            [PY, "-c", WRITER, str(local), str(log), "0.8"], capture_output=True, timeout=120
        )
        assert writer.returncode == 0, writer.stderr.decode()
        wait_for(lambda: bucket_matches(lab, local), what="the bucket to hold every file")
    finally:
        code = stop(watcher)
    out, err = output(lab.tmp, "watch")
    assert code == 0, err
    assert "Traceback" not in err, err

    # Every body sent for a data object was a complete version of its file.
    complete: dict[str, set[str]] = defaultdict(set)
    for line in log.read_text().splitlines():
        rec = json.loads(line)
        if "name" in rec:
            complete["robot/" + rec["name"]].add(rec["sha256"])
    sent = [(key, body) for kind, key, body in lab.proxy.bodies if kind == "PUT"]
    data = [(key, body) for key, body in sent if "/.deon/" not in key]
    assert {key for key, _ in data} == set(complete)
    for key, body in data:
        assert sha(body) in complete[key], f"a PUT of {key} carried bytes never complete"
    # The rewritten and replaced files went up again, with their final bytes.
    assert len([k for k, _ in data if k == "robot/traj_1.h5"]) >= 2
    assert len([k for k, _ in data if k == "robot/traj_4.h5"]) >= 2
    assert set(out.split()) == {f"s3://{BUCKET}/{k}" for k in complete}

    def converged() -> bool:
        try:
            rows = lab.rows("SELECT key, sha256, robot FROM objects ORDER BY key")
        except Exception:
            return False
        want = [(k, sha((local / k.split("/", 1)[1]).read_bytes())) for k in sorted(complete)]
        return [(r["key"], r["sha256"]) for r in rows] == want

    try:
        wait_for(converged, timeout=30, what="the follower's catalog to converge")
    finally:
        assert stop(follower) == 0
    _, ferr = output(lab.tmp, "follower")
    assert "round 1 (" in ferr and "metadata down" in ferr, ferr


# -- failures -------------------------------------------------------------------------------


def test_nothing_is_lost_while_the_network_is_down(lab: Lab) -> None:
    local = lab.tmp / "robot"
    local.mkdir()
    make_h5(local / "before.h5", {"n": 0})
    lab.proxy.rules.fault_rate = 1.0
    lab.proxy.rules.fault_kinds = ("error500",)
    watcher = start(
        watch_args(local),
        lab.tmp,
        "watch",
        env={"AWS_MAX_ATTEMPTS": "1"},  # deon's own retries would hide the outage
    )
    try:
        for i in range(3):
            make_h5(local / f"during_{i}.h5", {"n": i}, seed=i)
        time.sleep(3)  # the outage: the LIST and every upload fail
        assert lab.list_keys("robot/") == []
        lab.proxy.rules.fault_rate = 0.0
        wait_for(lambda: bucket_matches(lab, local), timeout=60, what="every file")
    finally:
        code = stop(watcher)
    out, err = output(lab.tmp, "watch")
    assert code == 0, err
    assert "cannot list s3://lab/robot" in err or "error: s3://lab/robot/" in err, err
    assert "Traceback" not in err


def test_uploads_failing_for_a_while_are_retried_until_they_go_up(lab: Lab) -> None:
    local = lab.tmp / "robot"
    local.mkdir()
    watcher = start(watch_args(local, "robot", "-v"), lab.tmp, "watch", {"AWS_MAX_ATTEMPTS": "1"})
    try:
        # The status line comes once the folder is listed; then the network goes down.
        wait_for(lambda: "watch s3://lab/robot" in output(lab.tmp, "watch")[1], what="listing")
        lab.proxy.rules.fault_rate = 1.0
        lab.proxy.rules.fault_kinds = ("error500", "reset")
        for i in range(3):
            make_h5(local / f"t{i}.h5", {"n": i}, seed=i)
        wait_for(lambda: "error: s3://lab/robot/t" in output(lab.tmp, "watch")[1], what="fail")
        time.sleep(2)
        lab.proxy.rules.fault_rate = 0.0
        wait_for(lambda: bucket_matches(lab, local), timeout=60, what="every file")
    finally:
        code = stop(watcher)
    out, err = output(lab.tmp, "watch")
    assert code == 0, err
    assert "retrying in" in err
    assert sorted(out.split()) == [f"s3://lab/robot/t{i}.h5" for i in range(3)]
    assert "uploaded s3://lab/robot/t0.h5" in err  # -v: one line per upload


def test_kill_9_then_a_restart_uploads_everything_once(lab: Lab) -> None:
    local = lab.tmp / "robot"
    local.mkdir()
    stop_writing = threading.Event()
    written: list[str] = []

    def robot() -> None:
        i = 0
        while not stop_writing.is_set():
            tmp = local / f".t{i}.h5.part"
            make_h5(tmp, {"n": i}, seed=i, frames=(2, 8, 8, 3))
            os.replace(tmp, local / f"t{i}.h5")
            written.append(f"robot/t{i}.h5")
            i += 1
            time.sleep(0.15)

    thread = threading.Thread(target=robot)
    thread.start()
    try:
        first = start(watch_args(local), lab.tmp, "first")
        wait_for(lambda: len(lab.list_keys("robot/")) >= 3, what="a few uploads")
        first.send_signal(signal.SIGKILL)
        assert stop(first) == -signal.SIGKILL
        time.sleep(1)  # files keep appearing with nobody watching
        second = start(watch_args(local), lab.tmp, "second")
        time.sleep(1)
    finally:
        stop_writing.set()
        thread.join()
    try:
        wait_for(lambda: bucket_matches(lab, local), timeout=60, what="every file")
    finally:
        code = stop(second)
    assert code == 0, output(lab.tmp, "second")[1]
    puts = defaultdict(int)
    # Uploads that landed: a conditional PUT refused with 412 (the killed watcher's last
    # upload had landed unrecorded, and the restart finds it there) sends no bytes.
    for kind, key, status in lab.proxy.answered:
        if kind in ("PUT", "COMPLETE_MULTIPART") and "/.deon/" not in key and status == 200:
            puts[key] += 1
    assert sorted(puts) == sorted(written)
    assert set(puts.values()) == {1}, {k: n for k, n in puts.items() if n != 1}


@pytest.mark.parametrize("how", ["sigterm-abandon", "sigterm-finish", "ctrl-c-twice"])
def test_sigterm_mid_upload_exits_0_and_leaves_no_multipart_upload(lab: Lab, how: str) -> None:
    local = lab.tmp / "robot"
    local.mkdir()
    parts: list[str] = []

    def slow_parts(method: str, key: str, query: str) -> None:
        if "partNumber" in query:
            parts.append(key)
            time.sleep(0.3)

    lab.proxy.rules.before = slow_parts
    grace = "60" if how == "sigterm-finish" else "0.2"
    # One part at a time (-j 1): the signal comes while parts are still to be sent.
    watcher = start(["-j", "1", *watch_args(local, "robot", "--grace", grace)], lab.tmp, "watch")
    big = local / "big.bin"
    big.write_bytes(os.urandom(40 * 1024 * 1024))  # 5 parts of 8 MiB
    wait_for(lambda: bool(parts), what="the first part")
    if how == "ctrl-c-twice":
        watcher.send_signal(signal.SIGINT)
        wait_for(lambda: "stopping" in output(lab.tmp, "watch")[1], what="stopping")
        code = stop(watcher, signal.SIGINT)
    else:
        code = stop(watcher, signal.SIGTERM)
    out, err = output(lab.tmp, "watch")
    assert code == (130 if how == "ctrl-c-twice" else 0), err
    assert "stopping: taking no new files" in err
    assert "Traceback" not in err
    assert lab.client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    if how == "sigterm-finish":
        assert lab.get("robot/big.bin") == big.read_bytes()
        assert out.split() == ["s3://lab/robot/big.bin"]
    else:
        assert lab.list_keys("robot/") == []
        assert "abandoned" in err and out == ""


# -- --every ------------------------------------------------------------------------------


def test_every_round_reports_its_error_and_the_next_round_still_runs(lab: Lab) -> None:
    lab.put("bob/a.bin", b"a")
    dest = lab.tmp / "bob"
    lab.proxy.rules.fault_rate = 1.0
    lab.proxy.rules.fault_kinds = ("error500",)
    proc = start(
        ["down", "--interval", "0.01", f"s3://{BUCKET}/bob", str(dest)],  # 0.6 s
        lab.tmp,
        "down",
        {"AWS_MAX_ATTEMPTS": "1"},
    )
    try:
        wait_for(lambda: "error: round 1:" in output(lab.tmp, "down")[1], what="round 1 error")
        lab.proxy.rules.fault_rate = 0.0
        wait_for(lambda: (dest / "a.bin").exists(), what="a later round")
        lab.put("bob/b.bin", b"b")
        wait_for(lambda: (dest / "b.bin").exists(), what="a new object in a later round")
    finally:
        code = stop(proc, signal.SIGINT)
    out, err = output(lab.tmp, "down")
    assert code == 0, err
    assert "next round at" in err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "down: 1 downloaded" in line]
    assert lines and lines[0].startswith("round "), err
    assert sorted(set(out.split())) == [str(dest / "a.bin"), str(dest / "b.bin")]


def test_every_refuses_bad_usage_in_one_line(lab: Lab) -> None:
    from tests.conftest import run_deon

    for args, message in [
        (["up", "--every", "5x", "s3://lab/a"], "not a duration"),
        (["up", "--every", "0s", "s3://lab/a"], "more than zero"),
        (["up", "--every", "1m", "--interval", "1", "s3://lab/a"], "not both"),
        (["up", "--watch", "--every", "1m", "s3://lab/a"], "not both"),
        (["up", "--settle", "1", "s3://lab/a"], "--settle needs --watch"),
        (["up", "--watch", "-n", "s3://lab/a"], "no --dry-run"),
        (["down", "--every", "1s", "s3://no-such-bucket/a", str(lab.tmp / "x")], "no such bucket"),
        (["up", "--watch", "s3://lab/a", str(lab.tmp / "missing")], "no such folder"),
        (["up", "--watch", "s3://lab/a", str(make_h5(lab.tmp / "f.h5"))], "not a file"),
    ]:
        r = run_deon(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)


def test_rounds_never_overlap_and_an_error_does_not_stop_them() -> None:
    from deon.tools.schedule import parse_duration, repeat

    spans: list[tuple[float, float]] = []
    errors: list[int] = []

    def one_round() -> None:
        began = time.monotonic()
        time.sleep(0.25 if len(spans) == 1 else 0.01)  # round 2 overruns its slot
        spans.append((began, time.monotonic()))
        if len(spans) == 3:
            raise RuntimeError("boom")

    n = repeat(
        one_round,
        0.1,
        on_error=lambda info, e: errors.append(info.number),
        handle_signals=False,
        max_rounds=5,
    )
    assert n == 5 and len(spans) == 5
    assert errors == [3]  # reported, and rounds 4 and 5 still ran
    for (_, end), (began, _) in zip(spans, spans[1:], strict=False):
        assert began >= end  # one at a time
    assert parse_duration("1h30m") == 5400 and parse_duration("30s") == 30
    assert parse_duration("5m") == 300 and parse_duration("2") == 2


# -- what "complete" means --------------------------------------------------------------------


HOLD = textwrap.dedent(
    """
    import sys, time, h5py, numpy as np
    path, mode = sys.argv[1], sys.argv[2]
    kw = {"default": {}, "nolock": {"locking": False},
          "latest": {"libver": "latest", "locking": False}}[mode]
    f = h5py.File(path, "w", **kw)
    f.create_dataset("x", data=np.arange(1000.0))
    f.flush()
    print("ready", flush=True)
    time.sleep(60)
    """
)


@pytest.mark.parametrize("mode", ["default", "nolock", "latest"])
def test_a_file_held_open_by_an_hdf5_writer_is_not_complete(tmp_path: Path, mode: str) -> None:
    from deon.transfer.state import identity
    from deon.transfer.watch import hdf5_incomplete, open_for_writing

    path = tmp_path / "t.h5"
    proc = subprocess.Popen([PY, "-c", HOLD, str(path), mode], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        st = path.stat()
        writers = open_for_writing({(st.st_dev, st.st_ino)})
        why = hdf5_incomplete(path)
        if mode == "default":
            assert why is not None and "locked" in why
        elif mode == "latest":
            assert why is not None and "h5clear" in why
        else:
            assert why is None  # nothing in the file tells: only /proc does
        if sys.platform.startswith("linux"):
            assert f"pid {proc.pid} (python" in writers[(st.st_dev, st.st_ino)]
    finally:
        proc.kill()
        proc.wait()
    # A libver=latest writer that died keeps the "open for write" flag: still not complete.
    after = hdf5_incomplete(path)
    assert (after is not None) == (mode == "latest")
    assert identity(path.stat()) == identity(path.stat())


def test_a_truncated_or_unclosed_file_is_not_complete(tmp_path: Path) -> None:
    from deon.transfer.watch import hdf5_incomplete, open_for_writing

    whole = make_h5(tmp_path / "whole.h5", {"a": 1})
    assert hdf5_incomplete(whole) is None
    cut = tmp_path / "cut.h5"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert hdf5_incomplete(cut) == "truncated"
    empty = tmp_path / "new.h5"
    empty.write_bytes(b"")
    assert hdf5_incomplete(empty) == "no HDF5 signature yet"
    if sys.platform.startswith("linux"):
        with open(tmp_path / "plain.bin", "ab") as f:
            st = os.fstat(f.fileno())
            # deon's own process is not counted: a child holds it instead
            child = subprocess.Popen(
                [PY, "-c", f"import time; f = open({str(f.name)!r}, 'ab'); time.sleep(30)"]
            )
            try:
                wait_for(lambda: bool(open_for_writing({(st.st_dev, st.st_ino)})))
            finally:
                child.kill()
                child.wait()
        assert open_for_writing({(st.st_dev, st.st_ino)}) == {}


def test_up_does_not_send_a_file_that_changed_while_it_was_read(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deon.transfer import sync
    from deon.transfer.watch import excluded

    local = lab.tmp / "up"
    path = make_h5(local / "a.h5", {"a": 1})
    real = sync._encode_metadata

    def and_then_a_write(p: Path, *args: Any) -> Any:
        got = real(p, *args)
        with open(p, "ab") as f:
            f.write(b"more")  # the writer goes on while deon reads
        return got

    monkeypatch.setattr(sync, "_encode_metadata", and_then_a_write)
    import deon

    lab.proxy.reset()
    result = deon.up(f"s3://{BUCKET}/up", local)
    assert [o.message for o in result.failed] == [sync.CHANGED_WHILE_READ]
    assert lab.proxy.count("PUT") == 0
    assert path.exists()
    assert excluded("a/.x.swp", ("*.tmp", ".*.swp")) and excluded("b.tmp", ("*.tmp",))
    assert not excluded("b.h5", ("*.tmp",))


def test_the_readme_service_examples_run_up_watch_and_restart_only_on_failure() -> None:
    import plistlib
    import re
    import shlex

    from deon.cli import cli

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Running `deon up --watch` as a service", 1)[1].split("\n## ")[0]
    unit = re.search(r"```ini\n(.*?)```", section, re.S)
    plist = re.search(r"```xml\n(.*?)```", section, re.S)
    assert unit is not None and plist is not None
    settings = dict(
        line.split("=", 1) for line in unit.group(1).splitlines() if "=" in line and line[0] != "#"
    )
    assert settings["Restart"] == "on-failure" and settings["RestartPreventExitStatus"] == "2"
    assert int(settings["TimeoutStopSec"]) > 20  # longer than the default --grace
    assert settings["StandardError"] == "journal"
    job = plistlib.loads(plist.group(1).encode())
    assert job["KeepAlive"] == {"SuccessfulExit": False} and job["RunAtLoad"] is True
    assert job["ExitTimeOut"] > 20
    for argv in (shlex.split(settings["ExecStart"]), job["ProgramArguments"]):
        assert Path(argv[0]).name == "deon"
        assert argv[1] == "up"
        sub = cli.commands["up"].make_context("up", list(argv[2:]))
        assert sub.params["watch"] is True and sub.params["address"].startswith("s3://")


def test_polling_instead_of_events_finds_new_files_in_new_folders(lab: Lab) -> None:
    local = lab.tmp / "robot"
    local.mkdir()
    make_h5(local / "old.h5", {"n": 0})
    watcher = start(
        watch_args(local, "robot", "--poll", "0.2", "--exclude", "skip/*"), lab.tmp, "w"
    )
    try:
        wait_for(lambda: lab.list_keys("robot/") == ["robot/old.h5"], what="the first file")
        make_h5(local / "day2" / "new.h5", {"n": 1})
        make_h5(local / "skip" / "no.h5", {"n": 2})
        (local / "notes.part").write_bytes(b"half")
        wait_for(
            lambda: lab.list_keys("robot/") == ["robot/day2/new.h5", "robot/old.h5"],
            what="the file in the new folder",
        )
        time.sleep(1)  # several scans: the excluded and temporary files stay local
    finally:
        code = stop(watcher)
    out, err = output(lab.tmp, "w")
    assert code == 0, err
    assert "(polling)" in err
    assert lab.list_keys("robot/") == ["robot/day2/new.h5", "robot/old.h5"]
    # What the watcher sent is what `deon up` would have: a plain up finds nothing to do
    # (after leaving out what the watcher leaves out).
    (local / "notes.part").unlink()
    (local / "skip" / "no.h5").unlink()
    lab.proxy.reset()
    from tests.conftest import run_deon

    r = run_deon("up", f"s3://{BUCKET}/robot", str(local))
    assert r.returncode == 0, r.stderr
    assert "up: 0 uploaded, 2 unchanged" in r.stderr
    assert lab.proxy.count("PUT", "HEAD", "COPY") == 0


def test_sigterm_during_an_every_round_exits_0_and_leaves_no_multipart_upload(lab: Lab) -> None:
    local = lab.tmp / "alice"
    local.mkdir()
    (local / "big.bin").write_bytes(os.urandom(40 * 1024 * 1024))
    parts: list[str] = []

    def slow_parts(method: str, key: str, query: str) -> None:
        if "partNumber" in query:
            parts.append(key)
            time.sleep(0.3)

    lab.proxy.rules.before = slow_parts
    proc = start(
        ["-j", "1", "up", "--every", "1m", f"s3://{BUCKET}/alice", str(local)], lab.tmp, "up"
    )
    wait_for(lambda: bool(parts), what="the first part")
    code = stop(proc, signal.SIGTERM)
    _, err = output(lab.tmp, "up")
    assert code == 0, err
    assert "Traceback" not in err
    assert lab.client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
