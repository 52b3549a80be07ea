#!/usr/bin/env python3
"""Catalog bytes per object, and query times, for the layouts considered in issue 15.

    python bench/catalog_size.py [--rows 100000]

Writes a RoboNet-like catalog through deon's own writer (bench/run.py synth_catalog),
then measures copies of it: as deon makes it; without the uri and sha256 indexes
(revision 0003); without the metadata-column indexes too; and with the flattened columns
as VIRTUAL generated columns over json_extract(metadata) (no second copy of the
document), bare and with two indexes. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from run import synth_catalog  # noqa: E402

Q1 = "SELECT uri FROM objects WHERE robot = 'sawyer' ORDER BY bucket, key"
Q2 = "SELECT count(*) FROM objects WHERE camera_configuration = 'sudri0'"
FIXED = "bucket, key, uri, size, etag, last_modified, sha256, version_id, metadata, "
FIXED += "metadata_error, mirrored_at"


def size(path: Path, rows: int) -> float:
    db = sqlite3.connect(path)
    db.execute("VACUUM")
    db.close()
    return os.path.getsize(path) / rows


def best(path: Path, sql: str) -> float:
    db = sqlite3.connect(path)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        db.execute(sql).fetchall()
        times.append(time.perf_counter() - start)
    db.close()
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=100_000)
    args = ap.parse_args()
    n = args.rows
    work = Path(tempfile.mkdtemp(prefix="deon-catsize-"))
    try:
        base = work / "deon.sqlite"
        synth_catalog(base, n)
        out = [
            f"{n} RoboNet-like rows, SQLite {sqlite3.sqlite_version}.",
            "",
            "| layout | bytes/object | robot = 'sawyer' (1/4 match) s | --count s |",
            "| --- | ---: | ---: | ---: |",
        ]

        def row(label: str, path: Path) -> None:
            per = size(path, n)
            out.append(f"| {label} | {per:.0f} | {best(path, Q1):.3f} | {best(path, Q2):.4f} |")

        row("as deon makes it (revision 0003)", base)
        v0 = work / "v0.sqlite"
        shutil.copy(base, v0)
        db = sqlite3.connect(v0)
        db.execute("CREATE UNIQUE INDEX ix_objects_uri ON objects (uri)")
        db.execute("CREATE INDEX ix_objects_sha256 ON objects (sha256)")
        db.commit()
        db.close()
        row("with the uri and sha256 indexes (revision 0002)", v0)
        v2 = work / "v2.sqlite"
        shutil.copy(base, v2)
        db = sqlite3.connect(v2)
        for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'ix_objects_m_%'"
        ).fetchall():
            db.execute(f'DROP INDEX "{name}"')
        db.commit()
        db.close()
        row("no metadata-column indexes either", v2)
        v3 = work / "v3.sqlite"
        db = sqlite3.connect(base)
        cols = db.execute("SELECT name, path FROM meta_columns").fetchall()
        db.close()

        def json_path(path: str) -> str:
            return "$" + "".join("." + json.dumps(p) for p in json.loads(path))

        generated = ", ".join(
            f"\"{c}\" GENERATED ALWAYS AS (json_extract(metadata, '{json_path(p)}')) VIRTUAL"
            for c, p in cols
        )
        db = sqlite3.connect(v3)
        db.execute(
            "CREATE TABLE objects (bucket TEXT, key TEXT, uri TEXT, size INT, etag TEXT, "
            "last_modified TEXT, sha256 TEXT, version_id TEXT, metadata TEXT, "
            f"metadata_error TEXT, mirrored_at TEXT, {generated}, PRIMARY KEY (bucket, key))"
        )
        db.execute(f"ATTACH '{base}' AS s")
        db.execute(f"INSERT INTO objects ({FIXED}) SELECT {FIXED} FROM s.objects")
        db.commit()
        db.execute("DETACH s")
        db.close()
        row("flattened columns generated from the JSON, no index", v3)
        db = sqlite3.connect(v3)
        db.execute("CREATE INDEX ix_r ON objects (robot)")
        db.execute("CREATE INDEX ix_c ON objects (camera_configuration)")
        db.commit()
        db.close()
        row("... with indexes on robot and camera_configuration", v3)
        db = sqlite3.connect(base)
        avg = db.execute("SELECT avg(length(metadata)), avg(length(uri)) FROM objects").fetchone()
        db.close()
        out += ["", f"Average metadata JSON {avg[0]:.0f} B, uri {avg[1]:.0f} B."]
        print("\n".join(out))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
