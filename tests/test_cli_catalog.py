"""What every command does with a --catalog it cannot use: one line, the right status,
and someone else's file left as it was."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.conftest import Lab, run_deon

#: Every command that opens the catalog, with arguments that reach that point.
COMMANDS = [
    ["query"],
    ["query", "--columns"],
    ["query", "--count", "robot = 'sawyer'"],
    ["metadata", "down", "s3://lab/p"],
    ["metadata", "down"],
    ["metadata", "load"],
    ["metadata", "publish", "s3://lab/p"],
    ["export", "-f", "csv", "-o", "-"],
    ["verify", "s3://lab/p"],
    ["browse", "--port", "0"],
    ["pull", "s3://lab/p/a.h5"],
    ["down", "s3://lab/p"],
]


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


@pytest.fixture
def someone_elses(lab: Lab) -> Path:
    """A SQLite database of another program where the catalog should be."""
    lab.put("p/a.h5", b"bytes")
    folder = lab.tmp / "elsewhere"
    folder.mkdir()
    path = folder / "notes.db"
    db = sqlite3.connect(path)
    with db:
        db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
        db.execute("INSERT INTO notes (text) VALUES ('mine')")
    db.close()
    return path


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_a_sqlite_database_deon_did_not_create_is_refused_and_left_alone(
    someone_elses: Path, args: list[str]
) -> None:
    before = files(someone_elses.parent)

    r = run_deon("--catalog", str(someone_elses), *args, input="print(len(df))\n")

    assert r.returncode == 2, r.stderr
    assert r.stdout == ""
    assert r.stderr == (
        f"Error: {someone_elses} is a SQLite database deon did not create; give another --catalog\n"
    )
    assert files(someone_elses.parent) == before


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_a_file_that_is_not_a_database_is_named_with_exit_2(lab: Lab, args: list[str]) -> None:
    lab.put("p/a.h5", b"bytes")
    path = lab.tmp / "catalog.txt"
    path.write_text("shopping list\n" * 100)

    r = run_deon("--catalog", str(path), *args, input="print(len(df))\n")

    assert r.returncode == 2, r.stderr
    assert r.stdout == ""
    assert r.stderr == f"Error: {path} is not a SQLite database; give another --catalog\n"
    assert path.read_text() == "shopping list\n" * 100


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
@pytest.mark.parametrize(
    "args", [["query"], ["metadata", "down", "s3://lab/p"], ["metadata", "load"]], ids=" ".join
)
def test_an_in_memory_catalog_is_refused_with_exit_2(
    isolated_env: Path, url: str, args: list[str]
) -> None:
    r = run_deon("--catalog", url, *args, input="print(len(df))\n")

    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr == (
        f"Error: {url} is an in-memory database, which no command could find again: "
        "give the catalog a file path (--catalog catalog.sqlite)\n"
    )


def test_an_unreachable_postgres_catalog_is_one_line(isolated_env: Path) -> None:
    pytest.importorskip("psycopg")

    r = run_deon("--catalog", "postgresql://u@127.0.0.1:1/x", "query")

    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr.startswith(
        "Error: cannot open catalog postgresql+psycopg://u@127.0.0.1:1/x: connection failed"
    )
    assert len(r.stderr.splitlines()) == 1, r.stderr


@pytest.mark.parametrize("empty", ["empty file", "empty database"])
def test_an_empty_file_or_database_becomes_a_catalog(lab: Lab, empty: str) -> None:
    lab.put("p/a.h5", b"bytes")
    path = lab.tmp / "new.sqlite"
    if empty == "empty file":
        path.touch()
    else:
        db = sqlite3.connect(path)
        db.execute("PRAGMA user_version = 1")  # writes the header: a database, no tables
        db.close()

    assert run_deon("--catalog", str(path), "query").stdout == ""
    r = run_deon("--catalog", str(path), "metadata", "down", "s3://lab/p")

    assert r.returncode == 0, r.stderr
    assert run_deon("--catalog", str(path), "query").stdout == "s3://lab/p/a.h5\n"


def test_a_catalog_path_with_url_characters_is_that_file(lab: Lab) -> None:
    lab.put("p/a.h5", b"bytes")
    path = lab.tmp / "50% of q?a#1.sqlite"

    assert run_deon("--catalog", str(path), "metadata", "down", "s3://lab/p").returncode == 0
    r = run_deon("--catalog", str(path), "query")

    assert r.returncode == 0, r.stderr
    assert r.stdout == "s3://lab/p/a.h5\n"
    made = {p.name for p in lab.tmp.iterdir() if p.name.startswith("50")}
    assert path.name in made and made <= {path.name, f"{path.name}-wal", f"{path.name}-shm"}
