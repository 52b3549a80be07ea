"""Where a catalog is, and whether the SQLite file there is one deon may use.

Only the sqlite3 module is used here, so that `deon query` can check a SQLite catalog
before it reads it without importing SQLAlchemy (see query.py); db.py runs the same
checks before its engines touch a file (they switch it to WAL on connect).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import quote

from deon.errors import UsageError

#: The Alembic revision the models correspond to; opening a catalog at another
#: revision upgrades it (checked cheaply, without importing Alembic, on every open).
SCHEMA_REVISION = "0004"
#: The tables deon creates; a SQLite file holding tables but none of these is someone
#: else's database, which deon leaves alone.
DEON_TABLES = frozenset({"object_rows", "sources", "meta_columns"})
#: The fixed columns of `objects`, in table order, with their kinds as `deon query
#: -f json` and `--columns` report them; models.py defines their SQL types (and a
#: test holds the two to the same names in the same order).
FIXED_KINDS = {
    "bucket": "text",
    "key": "text",
    "uri": "text",
    "size": "integer",
    "etag": "text",
    "last_modified": "datetime",
    "sha256": "text",
    "version_id": "text",
    "metadata": "json",
    "metadata_error": "text",
    "mirrored_at": "datetime",
}
#: Seconds a connection waits for another deon process to finish its transaction.
BUSY_TIMEOUT = 60


def no_catalog(path: Path) -> UsageError:
    """The error for a catalog that does not exist yet."""
    return UsageError(
        f"no catalog at {path}: mirror some metadata first (deon metadata down s3://BUCKET/PREFIX)"
    )


def resolve_url(catalog: str) -> str:
    """A SQLAlchemy URL for a catalog given as a path or a URL. postgresql:// (and
    postgres://) use psycopg 3, which deon's `postgres` extra installs."""
    if "://" in catalog:
        for scheme in ("postgresql://", "postgres://"):
            if catalog.startswith(scheme):
                return "postgresql+psycopg://" + catalog[len(scheme) :]
        return catalog
    # Quoted: SQLAlchemy decodes %XX in the database part and cuts it at "?".
    return f"sqlite:///{quote(str(Path(catalog).expanduser()), safe='/')}"


def plain_path(catalog: str) -> Path | None:
    """The file of a catalog given as a path; None for a URL (SQLAlchemy parses those)."""
    return None if "://" in catalog else Path(catalog).expanduser()


def open_readonly(path: Path) -> sqlite3.Connection:
    """A connection that cannot change the file, nor create it."""
    uri = "file:" + str(path).replace("?", "%3f").replace("#", "%23") + "?mode=ro"
    # The timeout covers a moment when another deon process is creating the catalog.
    return sqlite3.connect(
        uri, uri=True, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT
    )


def unusable(path: Path, error: sqlite3.Error) -> UsageError:
    """The one-line error for a catalog file that SQLite cannot read."""
    text = " ".join(str(error).split())
    if isinstance(error, sqlite3.DatabaseError) and "not a database" in text:
        return UsageError(f"{path} is not a SQLite database; give another --catalog")
    return UsageError(f"cannot open catalog {path}: {text}")


def schema_revision(conn: sqlite3.Connection, path: Path) -> str | None:
    """The schema revision of a SQLite catalog (None for an empty database, which deon
    may initialise).

    Raises:
        UsageError: the file is not a SQLite database, or one deon did not create.
    """
    try:
        tables = {
            str(name)
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
            )
        }
        if not tables:
            return None
        if not tables & DEON_TABLES:
            raise UsageError(
                f"{path} is a SQLite database deon did not create; give another --catalog"
            )
        if "alembic_version" not in tables:
            return None
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error as e:
        raise unusable(path, e) from e
    return str(row[0]) if row else None


def check_file(path: Path) -> None:
    """Refuse an existing file that is not a catalog deon can use, without changing it.

    Raises:
        UsageError: not a SQLite database, or one deon did not create.
    """
    try:
        conn = open_readonly(path)
    except sqlite3.Error as e:
        raise unusable(path, e) from e
    try:
        schema_revision(conn, path)
    finally:
        conn.close()
