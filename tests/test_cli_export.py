"""`deon export`: typed Parquet, CSV and JSON lines that other tools read as they are."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import pytest

from tests.conftest import Lab, assert_no_traceback, run_deon

ROBOTS = ["sawyer", "franka", "widowx"]


@pytest.fixture
def mirrored(lab: Lab) -> Lab:
    for i in range(30):
        doc = {
            "robot": ROBOTS[i % 3],
            "traj_ok": i % 4 != 0,
            "img_T": 30 + i,
            "gripper": {"max_width": 0.05 + i / 1000},
            "object_classes": ["cup"] * (i % 3),
            "note": "ünïcode ✓" if i == 1 else None,
        }
        lab.put_doc(f"e/{i:03d}.h5", f"{i}".encode(), doc, f"{i:064x}")
    assert run_deon("metadata", "down", "s3://lab/e").returncode == 0
    return lab


def test_parquet_reads_back_typed_in_pyarrow_and_duckdb(mirrored: Lab) -> None:
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = mirrored.tmp / "sawyer.parquet"
    r = run_deon("export", "robot = 'sawyer'", "-o", str(out))

    assert r.returncode == 0, r.stderr
    assert "export: 10 rows" in r.stderr
    table = pq.read_table(out)
    schema = {f.name: f.type for f in table.schema}
    assert schema["traj_ok"] == pa.bool_()
    assert schema["img_t"] == pa.int64() and schema["size"] == pa.int64()
    assert schema["gripper_max_width"] == pa.float64()
    assert schema["robot"] == pa.string() and schema["object_classes"] == pa.string()
    assert schema["last_modified"] == pa.timestamp("us", tz="UTC")
    rows = table.to_pylist()
    assert [r["uri"] for r in rows] == [f"s3://lab/e/{i:03d}.h5" for i in range(0, 30, 3)]
    first = rows[0]
    assert first["traj_ok"] is False and first["img_t"] == 30 and first["sha256"] == f"{0:064x}"
    assert json.loads(first["metadata"])["robot"] == "sawyer"
    assert isinstance(first["last_modified"], dt.datetime)

    got = (
        duckdb.connect()
        .execute(
            "SELECT count(*), sum(CASE WHEN traj_ok THEN 1 ELSE 0 END), max(img_t) "
            "FROM read_parquet(?)",
            [str(out)],
        )
        .fetchall()
    )
    assert got == [(10, 7, 57)]


def test_parquet_of_the_whole_catalog_keeps_every_row_and_value(mirrored: Lab) -> None:
    import pyarrow.parquet as pq

    out = mirrored.tmp / "all.parquet"
    assert run_deon("export", "-o", str(out)).returncode == 0

    rows = {r["key"]: r for r in pq.read_table(out).to_pylist()}
    assert len(rows) == 30
    assert rows["e/001.h5"]["note"] == "ünïcode ✓"
    assert rows["e/002.h5"]["note"] is None
    assert json.loads(rows["e/005.h5"]["object_classes"]) == ["cup", "cup"]


def test_csv_and_jsonl(mirrored: Lab) -> None:
    out = mirrored.tmp / "e.csv"
    assert run_deon("export", "traj_ok", "--format", "csv", "-o", str(out)).returncode == 0
    table = list(csv.DictReader(out.open(encoding="utf-8")))
    assert len(table) == 22 and table[0]["robot"] == "franka"

    r = run_deon("export", "img_t > 55", "--format", "jsonl", "-o", "-")
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in r.stdout.splitlines()]
    assert [rec["img_t"] for rec in records] == [56, 57, 58, 59]
    rec = records[0]
    assert rec["traj_ok"] is True and rec["object_classes"] == ["cup", "cup"]
    assert rec["metadata"]["gripper"] == {"max_width": 0.076}


def test_sql_results_export_too(mirrored: Lab) -> None:
    import pyarrow.parquet as pq

    out = mirrored.tmp / "counts.parquet"
    r = run_deon(
        "export", "--sql", "SELECT robot, count(*) AS n FROM objects GROUP BY robot", "-o", str(out)
    )

    assert r.returncode == 0, r.stderr
    assert sorted((r["robot"], r["n"]) for r in pq.read_table(out).to_pylist()) == [
        ("franka", 10),
        ("sawyer", 10),
        ("widowx", 10),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["robt = 1", "-o", "x.parquet"], "unknown column 'robt'"),
        (["-o", "-"], "Parquet cannot go to standard output"),
        (["robot = 'x'", "--sql", "SELECT 1", "-o", "x.csv"], "not both"),
    ],
)
def test_bad_exports_exit_2_and_write_nothing(mirrored: Lab, args: list[str], message: str) -> None:
    r = run_deon("export", *args, cwd=str(mirrored.tmp))

    assert r.returncode == 2
    assert message in r.stderr
    assert_no_traceback(r.stderr)
    assert not list(Path(mirrored.tmp).glob("x.*")) and not list(Path(mirrored.tmp).glob(".x.*"))
