"""A shared catalog on PostgreSQL: the same relation, the same queries, typed columns,
concurrent mirrors from several processes. Runs against a real server started on
127.0.0.1 (see conftest.pg_server); skipped, with the reason shown, where none can start."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from deon.catalog import flatten as fl
from tests.conftest import DEON_CMD, Lab, assert_no_traceback, run_deon

ROBOTS = ["sawyer", "franka", "widowx"]


def plain(url: str) -> str:
    """The URL as a user writes it: postgresql://, no driver."""
    return url.replace("postgresql+psycopg://", "postgresql://")


def put_docs(lab: Lab, prefix: str, n: int, extra: dict[str, Any] | None = None) -> None:
    for i in range(n):
        doc = {
            "robot": ROBOTS[i % 3],
            "traj_ok": i % 4 != 0,
            "img_T": 30 + i,
            "gripper": {"max_width": 0.05 + i / 1000},
            "object_classes": ["cup"] * (i % 3),
            "note": None if i % 5 else "five",
            **(extra or {}),
        }
        lab.put_doc(f"{prefix}/{i:03d}.h5", f"{prefix}{i}".encode(), doc, f"{i:064x}")


def pg(url: str, sql: str) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(plain(url)) as conn:
        return list(conn.execute(sql).fetchall())


def column_types(url: str) -> dict[str, str]:
    """Each column of `objects` and its PostgreSQL type."""
    return dict(
        pg(
            url,
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'objects'",
        )
    )


def test_mirror_into_postgres_makes_typed_columns(lab: Lab, pg_catalog: str) -> None:
    put_docs(lab, "p", 30)

    r = run_deon("--catalog", plain(pg_catalog), "metadata", "down", "s3://lab/p")

    assert r.returncode == 0, r.stderr
    assert "30 new" in r.stderr
    types = column_types(pg_catalog)
    assert types["traj_ok"] == "boolean" and types["img_t"] == "bigint"
    assert types["gripper_max_width"] == "double precision" and types["robot"] == "text"
    assert types["object_classes"] == "text"
    rows = pg(pg_catalog, "SELECT key, robot, traj_ok, img_t, metadata FROM objects ORDER BY key")
    assert len(rows) == 30
    assert rows[0][1:4] == ("sawyer", False, 30)
    assert json.loads(rows[1][4])["robot"] == "franka"

    lab.proxy.reset()
    r = run_deon("--catalog", plain(pg_catalog), "metadata", "down", "s3://lab/p")
    assert r.returncode == 0 and "30 unchanged" in r.stderr
    assert lab.proxy.count("HEAD") == 0


WHERES = [
    "robot = 'sawyer'",
    "robot IN ('sawyer', 'widowx')",
    "img_t > 45",
    "traj_ok",
    "NOT traj_ok",
    "traj_ok = true",
    "gripper_max_width BETWEEN 0.06 AND 0.07",
    "robot <> 'widowx' AND img_t >= 50",
    "object_classes LIKE '%cup%'",
    "note IS NULL",
    "note = 'five' OR img_t < 32",
    "size > 0 AND key LIKE 'p/00%'",
]


def test_where_clauses_mean_the_same_on_sqlite_and_postgres(lab: Lab, pg_catalog: str) -> None:
    put_docs(lab, "p", 30)
    assert run_deon("metadata", "down", "s3://lab/p").returncode == 0
    assert (
        run_deon("--catalog", plain(pg_catalog), "metadata", "down", "s3://lab/p").returncode == 0
    )

    for where in WHERES:
        on_sqlite = run_deon("query", where)
        on_postgres = run_deon("--catalog", plain(pg_catalog), "query", where)

        assert on_sqlite.returncode == 0 and on_postgres.returncode == 0, (
            where,
            on_postgres.stderr,
        )
        assert on_postgres.stdout == on_sqlite.stdout, where
        assert on_postgres.stdout.strip(), where


def test_queries_on_postgres_are_read_only(lab: Lab, pg_catalog: str) -> None:
    put_docs(lab, "p", 6)
    assert (
        run_deon("--catalog", plain(pg_catalog), "metadata", "down", "s3://lab/p").returncode == 0
    )

    for attack in (
        ["--sql", "DELETE FROM objects"],
        ["--sql", "DROP TABLE objects"],
        ["1=1; DELETE FROM objects"],
        ["--sql", "CREATE TABLE t (x int)"],
    ):
        r = run_deon("--catalog", plain(pg_catalog), "query", *attack)
        assert r.returncode == 2, attack
        assert_no_traceback(r.stderr)
    assert pg(pg_catalog, "SELECT count(*) FROM objects") == [(6,)]
    r = run_deon("--catalog", plain(pg_catalog), "query", "robt = 'x'")
    assert r.returncode == 2 and "did you mean robot" in r.stderr


def test_a_widening_kind_retypes_the_column(lab: Lab, pg_catalog: str) -> None:
    cat = ["--catalog", plain(pg_catalog)]
    lab.put_doc("w/a.h5", b"a", {"score": 1, "flag": True}, None)
    assert run_deon(*cat, "metadata", "down", "s3://lab/w").returncode == 0
    lab.put_doc("w/b.h5", b"b", {"score": 2.5, "flag": 3}, None)
    assert run_deon(*cat, "metadata", "down", "s3://lab/w").returncode == 0

    types = column_types(pg_catalog)
    assert types["score"] == "double precision" and types["flag"] == "bigint"
    assert run_deon(*cat, "query", "score > 2").stdout.split() == ["s3://lab/w/b.h5"]
    assert run_deon(*cat, "query", "flag = 1").stdout.split() == ["s3://lab/w/a.h5"]

    lab.put_doc("w/c.h5", b"c", {"score": "high"})
    assert run_deon(*cat, "metadata", "down", "s3://lab/w").returncode == 0
    assert run_deon(*cat, "query", "score = 'high'").stdout.split() == ["s3://lab/w/c.h5"]


def test_a_key_of_higher_rank_arriving_later_renames_the_column(lab: Lab, pg_catalog: str) -> None:
    cat = ["--catalog", plain(pg_catalog)]
    lab.put_doc("r/1.h5", b"1", {"a": {"b": 2}})
    assert run_deon(*cat, "metadata", "down", "s3://lab/r").returncode == 0
    lab.put_doc("r/2.h5", b"2", {"a_b": "one"})

    r = run_deon(*cat, "metadata", "down", "s3://lab/r")

    assert r.returncode == 0, r.stderr
    moved = "a_b__" + fl.path_hash(("a", "b"))
    types = column_types(pg_catalog)
    assert types["a_b"] == "text" and types[moved] == "bigint"
    assert run_deon(*cat, "query", f"{moved} = 2").stdout.split() == ["s3://lab/r/1.h5"]
    assert run_deon(*cat, "query", "a_b = 'one'").stdout.split() == ["s3://lab/r/2.h5"]


def test_concurrent_mirrors_from_several_machines(lab: Lab, pg_catalog: str) -> None:
    for p, key in (("a", "only_a"), ("b", "only_b"), ("c", "only_c")):
        put_docs(lab, p, 40, {key: p})
    procs = [
        subprocess.Popen(
            [
                *DEON_CMD,
                "-j",
                "4",
                "--catalog",
                plain(pg_catalog),
                "metadata",
                "down",
                f"s3://lab/{p}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in "abc"
    ]
    outs = [p.communicate(timeout=180) for p in procs]

    assert [p.returncode for p in procs] == [0, 0, 0], outs
    assert pg(pg_catalog, "SELECT count(*) FROM objects") == [(120,)]
    assert pg(pg_catalog, "SELECT count(*) FROM objects WHERE only_b = 'b'") == [(40,)]
    names = [n for (n,) in pg(pg_catalog, "SELECT name FROM meta_columns")]
    assert len(names) == len(set(names))


def test_migrations_on_postgres_leave_no_drift(pg_catalog: str) -> None:
    import sqlalchemy as sa
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.config import Config
    from alembic.migration import MigrationContext

    from deon.catalog.models import SCHEMA_REVISION, metadata

    engine = sa.create_engine(pg_catalog)
    cfg = Config()
    cfg.set_main_option("script_location", "deon:migrations")
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    with engine.connect() as conn:
        assert (
            conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
            == SCHEMA_REVISION
        )
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), metadata
        )
    engine.dispose()
    assert diff == []


def test_pandas_export_and_snapshots_on_postgres(lab: Lab, pg_catalog: str) -> None:
    import pyarrow.parquet as pq

    cat = ["--catalog", plain(pg_catalog)]
    put_docs(lab, "p", 12)
    assert run_deon(*cat, "metadata", "publish", "s3://lab/p").returncode == 0

    r = run_deon(
        *cat, "metadata", "load", input="print(len(df), df.traj_ok.dtype, df.img_T.dtype)\n"
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["12", "boolean", "Int64"]
    out = lab.tmp / "p.parquet"
    assert run_deon(*cat, "export", "traj_ok", "-o", str(out)).returncode == 0
    assert pq.read_table(out).num_rows == 9
    lab.proxy.reset()
    r = run_deon("metadata", "down", "s3://lab/p")  # a SQLite user, from the snapshot
    assert r.returncode == 0 and "12 from a snapshot" in r.stderr
