"""The benchmark runs (tiny size, moto server, no peers), so it cannot rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_benchmark_runs_and_reports_every_target(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"

    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            "--quick",
            "--work",
            str(tmp_path / "work"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert r.returncode == 0, r.stderr[-3000:]
    report = out.read_text()
    for heading in ("## Targets", "## All figures", "Versions: python"):
        assert heading in report
    for workload in (
        "mirror cold (HEADs)",
        "mirror warm, nothing changed",
        "mirror, 1 % changed",
        "mirror cold, new user, published snapshot",
        "down small objects, fresh",
        "down small objects, nothing changed",
        "download large objects",
        "upload large objects (with sha256)",
        "mirror cold, memory",
        "query, 1/4 of the rows match",
        "deon --help",
    ):
        assert f"| {workload} |" in report, workload
    assert "cold start with a snapshot: >= 10x the serial loop" in report
    assert not list((tmp_path / "work").glob("deon-bench-*"))  # scratch removed
