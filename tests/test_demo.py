"""`deon demo`, the README's main-job command, runs end to end and leaves nothing behind."""

from __future__ import annotations

import threading
from pathlib import Path

from tests.conftest import assert_no_traceback, run_deon


def test_demo_runs_every_step(isolated_env: Path) -> None:
    work = isolated_env / "demo"
    threads_before = threading.active_count()

    r = run_deon("demo", "--per-member", "3", "--workdir", str(work), timeout=300)

    assert r.returncode == 0, r.stdout + r.stderr
    assert "# all steps succeeded" in r.stdout
    assert "$ deon up s3://lab-data/alice" in r.stdout
    assert "up: 0 uploaded, 3 unchanged" in r.stdout
    assert "frames  (30, 2, 48, 64, 3) uint8" in r.stdout
    assert not work.exists()  # the scratch folder is removed
    assert threading.active_count() == threads_before
    assert_no_traceback(r.stdout + r.stderr)
