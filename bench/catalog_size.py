#!/usr/bin/env python3
"""Catalog bytes per object, and query times, for the layouts considered in issue 15.

    python bench/catalog_size.py [--rows 1000000]

Writes a RoboNet-like catalog through deon's own writer (bench/run.py synth_catalog),
which is revision 0004's layout (documents kept in their flattened columns, `objects` a
view; indexes chosen by selectivity), then measures copies of it changed into the other
layouts: revision 0003 (the document's text again in `metadata`, every scalar column
indexed); 0003 with the text zlib-compressed; 0004 with every scalar column indexed;
0004 with leaner fixed columns (integer times, sha256 as 32 bytes, no uri); and what an
index made on first use costs that first query. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import sys
import tempfile
import time
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from run import synth_catalog  # noqa: E402

from deon.catalog.models import FIXED_COLUMNS as FIXED  # noqa: E402

Q1 = "SELECT uri FROM objects WHERE robot = 'sawyer' ORDER BY bucket, key"
Q2 = "SELECT count(*) FROM objects WHERE camera_configuration = 'sudri0'"
Q3 = "SELECT metadata FROM objects WHERE robot = 'sawyer' ORDER BY bucket, key"
TABLE = "object_rows"


def size(path: Path, rows: int) -> float:
    db = sqlite3.connect(path)
    db.execute("VACUUM")
    db.close()
    return os.path.getsize(path) / rows


def best(path: Path, sql: str, runs: int = 3) -> float:
    db = sqlite3.connect(path)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        db.execute(sql).fetchall()
        times.append(time.perf_counter() - start)
    db.close()
    return min(times)


def scalar_columns(db: sqlite3.Connection) -> list[str]:
    return [n for (n,) in db.execute("SELECT name FROM meta_columns WHERE kind NOT IN ('json')")]


def index_all(db: sqlite3.Connection) -> None:
    for name in scalar_columns(db):
        db.execute(f'CREATE INDEX IF NOT EXISTS "ix_objects_m_{name}" ON {TABLE} ("{name}")')


def materialize(db: sqlite3.Connection) -> None:
    """The document's text back in every row (revision 0003's `metadata`)."""
    db.execute(
        f"UPDATE {TABLE} SET metadata = (SELECT v.metadata FROM objects AS v "
        f"WHERE v.bucket = {TABLE}.bucket AND v.key = {TABLE}.key) WHERE metadata = '{{}}'"
    )


def copy(base: Path, work: Path, name: str) -> Path:
    target = work / name
    shutil.copy(base, target)
    return target


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    args = ap.parse_args()
    n = args.rows
    work = Path(tempfile.mkdtemp(prefix="deon-catsize-"))
    try:
        base = work / "deon.sqlite"
        took = synth_catalog(base, n)
        out = [
            f"{n} RoboNet-like rows, SQLite {sqlite3.sqlite_version}; written in {took:.0f} s.",
            "",
            "| layout | bytes/object | robot = 'sawyer' (1/4 match) s | --count s | "
            "metadata of the 1/4 s |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]

        def row(label: str, path: Path, view: bool = True, q1: str = Q1) -> None:
            per = size(path, n)
            q3 = f"{best(path, Q3, 1):.3f}" if view else ""
            out.append(
                f"| {label} | {per:,.0f} | {best(path, q1):.3f} | {best(path, Q2):.4f} | {q3} |"
            )

        db = sqlite3.connect(base)
        stored = db.execute(
            f"SELECT avg(length(metadata)), sum(metadata = '{{}}') FROM {TABLE}"
        ).fetchone()
        chosen = [
            r[0] for r in db.execute("SELECT name FROM meta_columns WHERE indexed ORDER BY name")
        ]
        db.close()
        row("revision 0004 as deon makes it", base)

        v3 = copy(base, work, "v3.sqlite")
        db = sqlite3.connect(v3)
        materialize(db)
        index_all(db)
        db.commit()
        db.close()
        row("revision 0003 (the text in `metadata`, every scalar column indexed)", v3)

        z = copy(v3, work, "z.sqlite")
        db = sqlite3.connect(z)
        db.create_function("deflate", 1, lambda t: zlib.compress(t.encode(), 9), deterministic=True)
        db.execute(f"UPDATE {TABLE} SET metadata = deflate(metadata)")
        db.commit()
        db.close()
        row("0003 with the text zlib-compressed (level 9, per row)", z, view=False)

        v4all = copy(base, work, "v4all.sqlite")
        db = sqlite3.connect(v4all)
        index_all(db)
        db.commit()
        db.close()
        row("0004 with every scalar column indexed", v4all)

        lean = copy(base, work, "lean.sqlite")
        db = sqlite3.connect(lean)
        db.create_function("unhex32", 1, lambda t: bytes.fromhex(t) if t else None)
        cols = [r[1] for r in db.execute(f"PRAGMA table_info({TABLE})")]
        meta = [c for c in cols if c not in FIXED]
        q = ", ".join(f'"{c}"' for c in meta)
        db.execute(
            "CREATE TABLE lean (bucket TEXT, key TEXT, size INT, etag TEXT, last_modified INT, "
            "sha256 BLOB, version_id TEXT, metadata TEXT, metadata_error TEXT, "
            f"mirrored_at INT, {q}, PRIMARY KEY (bucket, key))"
        )
        micros = "CAST((julianday({0}) - 2440587.5) * 86400000000 AS INTEGER)"
        db.execute(
            f"INSERT INTO lean SELECT bucket, key, size, etag, {micros.format('last_modified')}, "
            "unhex32(sha256), version_id, metadata, metadata_error, "
            f"{micros.format('mirrored_at')}, {q} FROM {TABLE}"
        )
        for (sql,) in db.execute(
            f"SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = '{TABLE}' "
            "AND sql IS NOT NULL"
        ).fetchall():
            db.execute(sql.replace(f" ON {TABLE} ", " ON lean ").replace("ix_objects", "lean_ix"))
        db.execute("DROP VIEW objects")
        db.execute(f"DROP TABLE {TABLE}")
        db.execute("ALTER TABLE lean RENAME TO objects")
        db.commit()
        db.close()
        computed = Q1.replace("SELECT uri", "SELECT 's3://' || bucket || '/' || key")
        row("0004 with integer times, sha256 as 32 bytes, no uri column", lean, False, computed)

        first = copy(base, work, "first.sqlite")
        db = sqlite3.connect(first)
        db.execute('DROP INDEX IF EXISTS "ix_objects_m_robot"')
        db.commit()
        start = time.perf_counter()
        db.execute(f'CREATE INDEX "ix_objects_m_robot" ON {TABLE} (robot)')
        db.commit()
        build = time.perf_counter() - start
        db.close()
        unindexed = copy(first, work, "unindexed.sqlite")
        db = sqlite3.connect(unindexed)
        db.execute('DROP INDEX "ix_objects_m_robot"')
        db.commit()
        db.close()
        scan = best(unindexed, Q1, 1)
        out += [
            "",
            f"Average `object_rows.metadata` {stored[0]:.1f} B; {stored[1]} of {n} rows hold "
            "`{}` (their document is in the columns).",
            f"Indexed by selectivity: {', '.join(chosen)}.",
            f"Index made on first use: building the robot index took {build:.2f} s; the "
            f"query without it {scan:.3f} s.",
        ]
        print("\n".join(out))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
