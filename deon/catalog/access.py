"""Opening a catalog for reading, by path or URL, as `--catalog` takes it.

A SQLite catalog is read with the sqlite3 module alone, so that `deon query` starts
without SQLAlchemy; db.py (SQLAlchemy, Alembic) is loaded only for other databases and
when the schema must be created or upgraded.
"""

from __future__ import annotations

import sqlite3

from deon.catalog.location import (
    SCHEMA_REVISION,
    no_catalog,
    plain_path,
    resolve_url,
    schema_revision,
    unusable,
)
from deon.catalog.query import Reader, readonly_sqlite


def open_reader(catalog: str) -> Reader:
    """The reader of a catalog given as a path or URL (as `--catalog` takes it).

    Raises:
        UsageError: there is no catalog there yet, or the file there is not one.
    """
    path = plain_path(catalog)
    if path is None:  # a URL: SQLAlchemy parses it
        from deon.catalog.db import open_catalog, sqlite_path

        url = resolve_url(catalog)
        path = sqlite_path(url)
        if path is None:
            return Reader.from_catalog(open_catalog(url, create=False))
    if not path.exists():
        raise no_catalog(path)
    try:
        conn = readonly_sqlite(path)
    except sqlite3.Error as e:
        raise unusable(path, e) from e
    try:
        current = schema_revision(conn, path) == SCHEMA_REVISION
    except BaseException:
        conn.close()
        raise
    if not current:
        conn.close()
        from deon.catalog.db import open_catalog

        open_catalog(str(path), create=False).close()  # creates or upgrades the schema
        conn = readonly_sqlite(path)
    return Reader(conn, (sqlite3.Error,))
