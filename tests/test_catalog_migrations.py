"""The catalog's Alembic migrations (deon/migrations): they build the schema the models
describe, the catalog applies them by itself, and they ship in the wheel."""

from __future__ import annotations
import __future__

import ast
import datetime as dt
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

import deon.migrations
from deon.catalog import flatten as fl
from deon.catalog.db import ObjectRow, open_catalog
from deon.catalog.models import SCHEMA_REVISION, metadata
from deon.errors import DeonError

REPO = Path(__file__).resolve().parent.parent
ENV_PY = Path(deon.migrations.__file__).resolve().parent / "env.py"
TABLES = {"object_rows", "sources", "meta_columns", "alembic_version"}


def _config(conn: Any = None) -> Config:
    """The same configuration deon.catalog.db.upgrade uses."""
    cfg = Config()
    cfg.set_main_option("script_location", "deon:migrations")
    if conn is not None:
        cfg.attributes["connection"] = conn
    return cfg


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    e = sa.create_engine(f"sqlite:///{tmp_path / 'empty.sqlite'}")
    yield e
    e.dispose()


def _upgrade(engine: sa.Engine, target: str = "head") -> None:
    with engine.begin() as conn:
        command.upgrade(_config(conn), target)


def _version(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return None
        rows = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    assert len(rows) <= 1
    return rows[0][0] if rows else None


def _load_include_object() -> Callable[..., bool]:
    """include_object exactly as written in env.py (which cannot be imported outside an
    Alembic run: it configures and runs migrations at import)."""
    tree = ast.parse(ENV_PY.read_text(encoding="utf-8"), filename=str(ENV_PY))
    (node,) = [
        n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "include_object"
    ]
    code = compile(
        ast.Module(body=[node], type_ignores=[]),
        str(ENV_PY),
        "exec",
        flags=__future__.annotations.compiler_flag,
        dont_inherit=True,
    )
    namespace: dict[str, Any] = {"Any": Any}
    exec(code, namespace)
    return namespace["include_object"]  # type: ignore[no-any-return]


def _drift(engine: sa.Engine, include_object: Callable[..., bool] | None = None) -> list[Any]:
    opts: dict[str, Any] = {"compare_type": True}
    if include_object is not None:
        opts["include_object"] = include_object
    with engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn, opts=opts), metadata))


def _row(key: str, doc: dict[str, Any]) -> ObjectRow:
    return ObjectRow(
        bucket="lab",
        key=key,
        size=10,
        etag='"e"',
        last_modified=dt.datetime(2024, 1, 1),
        flat=fl.flatten(doc),
    )


# -- the migrations themselves ----------------------------------------------------------


def test_upgrade_head_creates_the_schema(engine: sa.Engine) -> None:
    _upgrade(engine)
    insp = sa.inspect(engine)
    assert set(insp.get_table_names()) == TABLES
    assert _version(engine) == SCHEMA_REVISION
    for table in metadata.sorted_tables:
        assert {c["name"] for c in insp.get_columns(table.name)} == set(table.columns.keys())
    assert insp.get_pk_constraint("object_rows")["constrained_columns"] == ["bucket", "key"]


def test_upgrade_head_twice_is_harmless(engine: sa.Engine) -> None:
    _upgrade(engine)
    _upgrade(engine)
    assert _version(engine) == SCHEMA_REVISION


def test_head_revision_is_schema_revision() -> None:
    scripts = ScriptDirectory.from_config(_config())
    assert scripts.get_heads() == [SCHEMA_REVISION]  # one head, the one Catalog expects
    assert scripts.get_current_head() == SCHEMA_REVISION


def test_upgrade_one_revision_at_a_time(engine: sa.Engine) -> None:
    scripts = ScriptDirectory.from_config(_config())
    revisions = list(reversed(list(scripts.walk_revisions("base", "heads"))))
    assert revisions, "no migrations found"
    assert revisions[0].down_revision is None
    for rev in revisions:
        _upgrade(engine, rev.revision)
        assert _version(engine) == rev.revision
    assert _version(engine) == SCHEMA_REVISION
    assert _drift(engine) == []


def test_downgrade_to_base_and_up_again(engine: sa.Engine) -> None:
    _upgrade(engine)
    with engine.begin() as conn:
        command.downgrade(_config(conn), "base")
    assert set(sa.inspect(engine).get_table_names()) <= {"alembic_version"}
    assert _version(engine) is None
    _upgrade(engine)
    assert _version(engine) == SCHEMA_REVISION


def test_models_and_migrations_do_not_drift(engine: sa.Engine) -> None:
    _upgrade(engine)
    assert _drift(engine) == []


def test_dynamic_columns_are_not_drift(tmp_path: Path) -> None:
    db = tmp_path / "c.sqlite"
    with open_catalog(str(db)) as catalog:
        catalog.write(
            [
                _row("a.h5", {"robot": "sawyer", "grip": {"width": 0.5}, "ok": True}),
                _row("b.h5", {"robot": "baxter", "tags": ["x"], "n": 3, "size": 1}),
                _row("c.h5", {"x" * 80: 1}),  # a long name: its index is named by hash
            ]
        )
        assert catalog.index_columns() >= 5
    engine = sa.create_engine(f"sqlite:///{db}")
    try:
        indexes = {ix["name"] for ix in sa.inspect(engine).get_indexes("object_rows")}
        assert any((n or "").startswith("ix_objects_m_") for n in indexes)
        # the dynamic columns are there: without the filter they would be reported ...
        assert _drift(engine) != []
        # ... and env.py's include_object leaves them out
        assert _drift(engine, _load_include_object()) == []
        # the same check Alembic runs with env.py itself (`alembic check`)
        with engine.begin() as conn:
            command.check(_config(conn))
    finally:
        engine.dispose()


def test_include_object_keeps_fixed_schema_objects() -> None:
    include = _load_include_object()
    objects = metadata.tables["object_rows"]
    fake_col = sa.Column("robot", sa.Text)
    sa.Table("object_rows", sa.MetaData(), fake_col)
    assert include(fake_col, "robot", "column", True, None) is False
    other = sa.Column("robot", sa.Text)
    sa.Table("sources", sa.MetaData(), other)
    assert include(other, "robot", "column", True, None) is True  # drift elsewhere counts
    assert include(objects.c.size, "size", "column", True, objects.c.size) is True
    assert include(None, "ix_objects_m_robot", "index", True, None) is False
    assert include(None, "ix_objects_mirrored", "index", True, None) is True
    assert include(None, "ix_objects_m_robot", "index", False, None) is True
    assert include(objects, "object_rows", "table", True, objects) is True


def test_what_query_knows_of_the_schema_without_sqlalchemy_matches_the_models() -> None:
    """query.py and location.py name the fixed columns and deon's tables without
    importing the models (SQLAlchemy); they must say what the models say."""
    from deon.catalog.location import DEON_TABLES
    from deon.catalog.location import FIXED_KINDS as _FIXED_KINDS
    from deon.catalog.models import FIXED_ORDER

    assert list(_FIXED_KINDS) == list(FIXED_ORDER)
    assert set(metadata.tables) == DEON_TABLES


# -- the catalog applies them -----------------------------------------------------------


def test_open_catalog_upgrades_an_empty_file(tmp_path: Path) -> None:
    db = tmp_path / "touched.sqlite"
    db.touch()
    assert db.stat().st_size == 0
    with open_catalog(str(db)) as catalog:
        assert catalog.revision() == SCHEMA_REVISION
        assert catalog.count() == 0
    con = sqlite3.connect(db)
    try:
        assert con.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (SCHEMA_REVISION,)
        ]
        names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        con.close()
    assert names >= TABLES


def test_open_catalog_creates_and_reopens(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "dir" / "new.sqlite"
    with open_catalog(str(db)) as catalog:
        catalog.write([_row("a.h5", {"robot": "sawyer"})])
    with open_catalog(str(db), create=False) as catalog:
        assert catalog.revision() == SCHEMA_REVISION
        assert catalog.count() == 1
        assert [c.name for c in catalog.columns()] == ["robot"]


def test_unknown_revision_is_a_deon_error(tmp_path: Path) -> None:
    db = tmp_path / "future.sqlite"
    with open_catalog(str(db)):
        pass
    con = sqlite3.connect(db)
    with con:
        con.execute("UPDATE alembic_version SET version_num = 'zzzz'")
    con.close()
    try:
        open_catalog(str(db)).close()
    except DeonError as e:
        assert str(db) in str(e) or "zzzz" in str(e)
    else:
        pytest.fail("open_catalog accepted a catalog at an unknown revision")


def test_unknown_revision_is_refused(tmp_path: Path) -> None:
    """Whatever it raises, a catalog at an unknown revision is not opened or changed."""
    db = tmp_path / "future.sqlite"
    with open_catalog(str(db)):
        pass
    con = sqlite3.connect(db)
    with con:
        con.execute("UPDATE alembic_version SET version_num = 'zzzz'")
    con.close()
    with pytest.raises(Exception, match="zzzz"):
        open_catalog(str(db))
    con = sqlite3.connect(db)
    try:
        assert con.execute("SELECT version_num FROM alembic_version").fetchall() == [("zzzz",)]
    finally:
        con.close()


def test_catalog_file_is_private(tmp_path: Path) -> None:
    db = tmp_path / "private.sqlite"
    old = os.umask(0)  # even with a permissive umask
    try:
        with open_catalog(str(db)) as catalog:
            catalog.write([_row("a.h5", {"robot": "sawyer"})])
            modes = {
                p.name: stat.S_IMODE(p.stat().st_mode)
                for p in tmp_path.iterdir()
                if p.name.startswith("private.sqlite")
            }
    finally:
        os.umask(old)
    assert modes["private.sqlite"] == 0o600
    assert all(m == 0o600 for m in modes.values()), modes  # -wal and -shm too


# -- packaging ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """The file list of a wheel built from a copy of the source tree (building in the
    checkout itself would leave a build/ folder there)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(
        REPO,
        src,
        ignore=shutil.ignore_patterns(
            ".venv",
            ".git",
            "build",
            "dist",
            "*.egg-info",
            "__pycache__",
            ".*_cache",
            ".hypothesis",
            "bench",
            "tests",
        ),
    )
    out = tmp / "dist"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (whl,) = out.glob("deon-*.whl")
    with zipfile.ZipFile(whl) as z:
        return set(z.namelist())


@pytest.mark.slow
def test_wheel_ships_the_migrations(wheel_names: set[str]) -> None:
    for name in (
        "deon/migrations/__init__.py",
        "deon/migrations/env.py",
        "deon/migrations/versions/0001_initial.py",
        "deon/catalog/models.py",
    ):
        assert name in wheel_names, name
    shipped = {n for n in wheel_names if n.startswith("deon/migrations/versions/")}
    in_tree = {
        f"deon/migrations/versions/{p.name}" for p in (ENV_PY.parent / "versions").glob("*.py")
    }
    assert in_tree <= shipped


@pytest.mark.slow
def test_wheel_ships_the_revision_template(wheel_names: set[str]) -> None:
    assert "deon/migrations/script.py.mako" in wheel_names


def test_processes_creating_one_new_catalog_at_once_all_succeed(tmp_path: Path) -> None:
    """A new catalog is created under the write lock: concurrent first opens cannot
    both create it (the loser would fail with "table already exists")."""
    import subprocess
    import sys

    code = (
        "import sys; from deon.catalog import open_catalog; "
        "c = open_catalog(sys.argv[1]); c.write([]); print(c.revision())"
    )
    for attempt in range(5):
        path = tmp_path / f"new-{attempt}.sqlite"
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", code, str(path)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        outs = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0, 0], outs
        assert {o.strip() for o, _ in outs} == {SCHEMA_REVISION}


def test_revision_0003_drops_the_uri_and_sha256_indexes_and_pull_still_finds_rows(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.sqlite"
    engine = sa.create_engine(f"sqlite:///{path}")
    _upgrade(engine, "0002")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO objects (bucket, key, uri, size, etag, last_modified, sha256, "
            "mirrored_at) VALUES ('b', 'k/a.h5', 's3://b/k/a.h5', 3, 'e', "
            "'2026-11-01 00:00:00.000000', 's', '2026-11-01 00:00:00.000000')"
        )
    names = {ix["name"] for ix in sa.inspect(engine).get_indexes("objects")}
    assert {"ix_objects_uri", "ix_objects_sha256"} <= names
    engine.dispose()

    with open_catalog(str(path)) as catalog:
        assert catalog.revision() == SCHEMA_REVISION
        names = {ix["name"] for ix in sa.inspect(catalog.engine).get_indexes("object_rows")}
        assert not {"ix_objects_uri", "ix_objects_sha256"} & names
        assert catalog.known(["s3://b/k/a.h5", "s3://b/k/none.h5"]) == {
            "s3://b/k/a.h5": (3, "e", "s")
        }
