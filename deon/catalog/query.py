"""Reading the catalog: `deon query`, the pandas view, the column listing.

Everything here runs on a read-only connection. For SQLite that is the file opened with
`mode=ro`, `PRAGMA query_only`, and an authorizer that allows reading and nothing else
(no writes, no ATTACH, no PRAGMA that sets anything), so nothing passed to `deon query`
can change the catalog or touch another file.
"""

from __future__ import annotations

import difflib
import json
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from deon.catalog import flatten as fl
from deon.errors import QueryError

if TYPE_CHECKING:
    from deon.catalog.db import Catalog

_READ_PRAGMAS = {
    "table_info",
    "table_xinfo",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "database_list",
    "collation_list",
    "function_list",
}
_ALLOWED = {
    sqlite3.SQLITE_SELECT,
    sqlite3.SQLITE_READ,
    sqlite3.SQLITE_FUNCTION,
    sqlite3.SQLITE_RECURSIVE,
    sqlite3.SQLITE_TRANSACTION,
    sqlite3.SQLITE_SAVEPOINT,
}


def _authorize(action: int, arg1: str | None, arg2: str | None, *_: Any) -> int:
    if action in _ALLOWED:
        if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() == "load_extension":
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_PRAGMA and (arg1 or "").lower() in _READ_PRAGMAS and arg2 is None:
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_UPDATE and arg1 == "sqlite_master":
        # SQLite itself asks this when it first builds an eponymous virtual table such
        # as json_each(); the connection is read-only (mode=ro, query_only) regardless.
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


def readonly_engine(catalog: Catalog) -> sa.Engine:
    if catalog.path is None:
        # Other databases: every transaction is declared READ ONLY.
        return catalog.engine.execution_options(postgresql_readonly=True)
    url = f"sqlite:///file:{catalog.path}?mode=ro&uri=true"

    def connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        dbapi_conn.execute("PRAGMA busy_timeout = 60000")
        dbapi_conn.execute("PRAGMA query_only = 1")
        dbapi_conn.set_authorizer(_authorize)

    ro = sa.create_engine(url, connect_args={"check_same_thread": False})
    sa.event.listen(ro, "connect", connect)
    return ro


def _column_names(catalog: Catalog) -> list[str]:
    from deon.catalog.models import objects

    return [c.name for c in objects.columns] + [c.name for c in catalog.columns()]


def _explain(catalog: Catalog, error: Exception, where: str | None) -> QueryError:
    """A one-line message naming the problem, with close matches for unknown columns."""
    text = str(getattr(error, "orig", None) or error).strip()
    m = re.search(r"no such column: (\S+)", text) or re.search(
        r'column "?([^"\s]+)"? does not exist', text
    )
    if m:
        name = m.group(1).split(".")[-1]
        close = difflib.get_close_matches(name.lower(), _column_names(catalog), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        return QueryError(f"unknown column {name!r}{hint} (deon query --columns lists them)")
    if "not authorized" in text or "readonly" in text or "read-only" in text:
        return QueryError("queries cannot change the catalog")
    return QueryError(f"bad query: {text}" + (f" in: {where}" if where else ""))


def build_sql(where: str | None, limit: int | None) -> str:
    sql = "SELECT * FROM objects"
    if where and where.strip():
        sql += f" WHERE {where}"
    sql += " ORDER BY bucket, key"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return sql


def run(
    catalog: Catalog,
    *,
    where: str | None = None,
    sql: str | None = None,
    limit: int | None = None,
) -> tuple[list[str], Iterator[tuple[Any, ...]]]:
    """Run a WHERE condition on `objects`, or a whole SELECT, read-only.

    Returns the column names and an iterator of rows (streamed, not held in memory).

    Raises:
        QueryError: unknown column, syntax error, or an attempt to write (exit 2).
    """
    if sql is not None and where is not None:
        raise QueryError("give a WHERE condition or --sql, not both")
    if sql is not None:
        text = sql.strip().rstrip(";")
        if limit is not None:
            text = f"SELECT * FROM ({text}) LIMIT {int(limit)}"
    else:
        text = build_sql(where, limit)
    conn = catalog.ro_engine.connect()
    try:
        result = conn.exec_driver_sql(text)
        columns = list(result.keys())
    except sa.exc.DBAPIError as e:
        conn.close()
        raise _explain(catalog, e, where) from e
    except Exception:
        conn.close()
        raise

    def rows() -> Iterator[tuple[Any, ...]]:
        try:
            while True:
                try:
                    batch = result.fetchmany(1000)
                except sa.exc.DBAPIError as e:
                    raise _explain(catalog, e, where) from e
                if not batch:
                    return
                for row in batch:
                    yield tuple(row)
        finally:
            conn.close()

    return columns, rows()


def count(catalog: Catalog, where: str | None = None) -> int:
    text = "SELECT count(*) FROM objects"
    if where and where.strip():
        text += f" WHERE {where}"
    with catalog.ro_engine.connect() as conn:
        try:
            return int(conn.exec_driver_sql(text).scalar() or 0)
        except sa.exc.DBAPIError as e:
            raise _explain(catalog, e, where) from e


@dataclass(frozen=True)
class ColumnInfo:
    """A column of `objects` with what it holds, for `deon query --columns`."""

    name: str
    kind: str
    path: str  # the metadata path, e.g. "gripper.type"; empty for fixed columns
    non_null: int
    examples: list[Any]


_FIXED_KINDS = {
    "bucket": "text",
    "key": "text",
    "uri": "text",
    "size": "integer",
    "etag": "text",
    "last_modified": "datetime",
    "sha256": "text",
    "metadata": "json",
    "metadata_error": "text",
    "mirrored_at": "datetime",
}


def describe_columns(catalog: Catalog, examples: int = 3) -> list[ColumnInfo]:
    """Every column of `objects` with its kind, how many rows have a value, and a few
    of its most common values."""
    from deon.catalog.models import objects

    out: list[ColumnInfo] = []
    prep = catalog.engine.dialect.identifier_preparer
    cols = [(c.name, _FIXED_KINDS.get(c.name, "text"), "") for c in objects.columns]
    cols += [(c.name, c.kind or "null", ".".join(c.path)) for c in catalog.columns()]
    with catalog.ro_engine.connect() as conn:
        for name, kind, path in cols:
            q = prep.quote(name)
            non_null = conn.exec_driver_sql(f"SELECT count({q}) FROM objects").scalar() or 0
            values: list[Any] = []
            if name not in ("metadata", "mirrored_at", "last_modified", "etag", "sha256"):
                values = [
                    r[0]
                    for r in conn.exec_driver_sql(
                        f"SELECT {q} FROM objects WHERE {q} IS NOT NULL GROUP BY {q} "
                        f"ORDER BY count(*) DESC, {q} LIMIT {int(examples)}"
                    )
                ]
            out.append(ColumnInfo(name, kind, path, int(non_null), values))
    return out


def to_pandas(catalog: Catalog, where: str | None = None) -> Any:
    """The selected rows as a DataFrame indexed by `uri`, each column typed by its kind:
    booleans as pandas' nullable boolean, integers as Int64, reals as float64, text as
    strings, JSON (lists) parsed, times as UTC timestamps."""
    import pandas as pd

    columns, rows = run(catalog, where=where)
    df = pd.DataFrame.from_records(list(rows), columns=columns)
    kinds = {c.name: c.kind for c in catalog.columns()}
    for name in df.columns:
        kind = kinds.get(name) or _FIXED_KINDS.get(name)
        try:
            if kind == fl.KIND_BOOLEAN:
                df[name] = df[name].map(lambda v: None if v is None else bool(v)).astype("boolean")
            elif kind == fl.KIND_INTEGER:
                df[name] = df[name].astype("Int64")
            elif kind == fl.KIND_REAL:
                df[name] = pd.to_numeric(df[name], errors="coerce").astype("float64")
            elif kind == fl.KIND_JSON and name != "metadata":
                df[name] = df[name].map(lambda v: json.loads(v) if isinstance(v, str) else v)
            elif kind == "datetime":
                df[name] = pd.to_datetime(df[name], utc=True)
            elif kind == fl.KIND_TEXT:
                df[name] = df[name].astype("string")
        except (ValueError, TypeError):
            pass  # mixed values the kind does not cover: leave the column as it came
    return df.set_index("uri")
