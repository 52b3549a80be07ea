"""The catalog as others read it: DataFrame columns named by metadata keys as written
(as the original deoncli's `df` was), and NaN/±Infinity as valid JSON everywhere."""

from __future__ import annotations

import json
import math
import sqlite3
from typing import Any

import pytest

from deon import api
from deon.metadata import wire as meta
from tests.conftest import Lab, run_deon


def put_doc(lab: Lab, key: str, doc: Any) -> None:
    encoded = meta.encode(doc, None, lambda d: f"x/.deon/meta/{d}.json")
    lab.put(key, json.dumps(doc).encode(), encoded.metadata)


def test_dataframe_columns_are_the_metadata_keys_as_written(lab: Lab) -> None:
    put_doc(
        lab,
        "p/a.h5",
        {
            "img_T": 30,
            "state_T": 31,
            "Robot": "Sawyer",
            "robot": "sawyer",
            "gripper": {"type": "default"},
            "size": "large",  # named like a fixed column
            "a.b": 1,
        },
    )
    put_doc(lab, "p/b.h5", {"img_T": 12, "robot": "franka", "traj_ok": True})
    assert run_deon("metadata", "down", "s3://lab/p").returncode == 0

    df = api.open_catalog(str(lab.catalog)).to_pandas()
    r = run_deon("metadata", "load", input="print(df['img_T'].tolist(), df['state_T'].dtype)\n")

    metadata_columns = set(df.columns) - {
        "bucket",
        "key",
        "size",
        "etag",
        "last_modified",
        "sha256",
        "metadata",
        "metadata_error",
        "mirrored_at",
        "version_id",
    }
    assert metadata_columns == {
        "img_T",
        "state_T",
        "Robot",
        "robot",
        "gripper.type",
        "meta_size",
        '["a.b"]',
        "traj_ok",
    }
    row = df.loc["s3://lab/p/a.h5"]
    assert (row["img_T"], row["Robot"], row["robot"], row["gripper.type"]) == (
        30,
        "Sawyer",
        "sawyer",
        "default",
    )
    assert row["meta_size"] == "large" and row["size"] > 0  # the fixed column keeps its name
    assert list(df[df["robot"] == "sawyer"].index) == ["s3://lab/p/a.h5"]
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("] ")[0] + "]" == "[30, 12]" and "Int64" in r.stdout
    # SQL stays case-insensitive, on the catalog's own names
    q = run_deon("query", "img_T = 30")
    assert q.stdout.split() == ["s3://lab/p/a.h5"]


NON_FINITE = {"robot": "sawyer", "x_nan": math.nan, "x_inf": math.inf, "deep": [-math.inf, 1.5]}


@pytest.fixture
def non_finite(lab: Lab) -> Lab:
    put_doc(lab, "n/a.h5", NON_FINITE)
    put_doc(lab, "n/b.h5", {"robot": "franka", "x_inf": 2.5})
    r = run_deon("metadata", "down", "s3://lab/n")
    assert r.returncode == 0, r.stderr
    return lab


def test_the_metadata_column_is_valid_json_and_typed_columns_keep_infinity(
    non_finite: Lab,
) -> None:
    db = sqlite3.connect(non_finite.catalog)
    text, x_inf, x_nan, deep = db.execute(
        "SELECT metadata, x_inf, x_nan, json_extract(metadata, '$.deep[1]') FROM objects "
        "WHERE key = 'n/a.h5'"
    ).fetchone()
    extracted = db.execute(
        "SELECT key FROM objects WHERE json_extract(metadata, '$.robot') = 'sawyer'"
    ).fetchall()

    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in metadata column")) == {
        "robot": "sawyer",
        "x_nan": None,
        "x_inf": None,
        "deep": [None, 1.5],
    }
    assert x_inf == math.inf and x_nan is None  # SQLite has no NaN: NULL
    assert deep == 1.5 and extracted == [("n/a.h5",)]


def test_jsonl_exports_of_non_finite_rows_succeed_and_read_back(non_finite: Lab) -> None:
    import duckdb

    out = non_finite.tmp / "rows.jsonl"
    r = run_deon("export", "--format", "jsonl", "-o", str(out))
    q = run_deon("query", "--format", "json")

    assert r.returncode == 0, r.stderr
    for text in (out.read_text(), q.stdout):
        lines = [json.loads(line, parse_constant=pytest.fail) for line in text.splitlines()]
        a = next(x for x in lines if x["key"] == "n/a.h5")
        assert a["x_inf"] is None and a["x_nan"] is None
        assert a["metadata"]["deep"] == [None, 1.5]
    got = duckdb.sql(
        f"SELECT key, x_inf, metadata.deep FROM read_json_auto('{out}') ORDER BY key"
    ).fetchall()
    assert got[0][0] == "n/a.h5" and got[0][1] is None and list(got[0][2]) == [None, 1.5]
    assert got[1][:2] == ("n/b.h5", 2.5)
