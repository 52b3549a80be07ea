"""Reading the catalog: `deon query`, the pandas view, the column listing.

Everything here runs on a read-only connection, at the DB-API level. For SQLite that
is the file opened with `mode=ro`, `PRAGMA query_only`, and an authorizer that allows
reading and nothing else (no writes, no ATTACH, no PRAGMA that sets anything), so
nothing passed to `deon query` can change the catalog or touch another file. Other
databases get a session whose transactions are READ ONLY.

A SQLite catalog is read with the sqlite3 module alone: `deon query` then starts
without SQLAlchemy (~0.1 s), which is loaded only when the schema must be upgraded.
"""

from __future__ import annotations

import contextlib
import difflib
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from deon.catalog import flatten as fl
from deon.catalog.location import (
    FIXED_KINDS,
    open_readonly,
)
from deon.errors import QueryError

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
FETCH_ROWS = 5000


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


def readonly_sqlite(path: Path) -> sqlite3.Connection:
    conn = open_readonly(path)
    conn.execute("PRAGMA query_only = 1")
    conn.set_authorizer(_authorize)
    return conn


class Reader:
    """A read-only DB-API connection to a catalog, and what queries need to know."""

    def __init__(self, conn: Any, errors: tuple[type[BaseException], ...], owner: Any = None):
        self.conn = conn
        self.errors = errors
        self._owner = owner  # keeps a Catalog (and its engine) alive

    @classmethod
    def from_catalog(cls, catalog: Any) -> Reader:
        """The reader of an open deon.catalog.db.Catalog."""
        if catalog.path is not None:
            return cls(readonly_sqlite(catalog.path), (sqlite3.Error,), catalog)
        # A connection of its own (never returned to a pool) whose session is READ ONLY.
        import sqlalchemy as sa

        from deon.errors import CatalogError

        engine = sa.create_engine(catalog.url, poolclass=sa.pool.NullPool)
        try:
            raw = engine.raw_connection()
        except sa.exc.DBAPIError as e:  # the server went away since the catalog opened
            raise CatalogError(
                f"cannot open catalog {catalog.display}: {' '.join(str(e.orig).split())}"
            ) from e
        cur = raw.cursor()
        cur.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        cur.close()
        raw.commit()
        dbapi = engine.dialect.dbapi
        return cls(raw, (dbapi.Error,) if dbapi else (Exception,), (catalog, engine))

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def execute(
        self, sql: str, where: str | None = None
    ) -> tuple[list[str], Iterator[tuple[Any, ...]]]:
        cur = self.conn.cursor()
        try:
            cur.execute(sql)
        except self.errors as e:
            self._rollback()
            raise self.explain(e, where) from e
        columns = [d[0] for d in cur.description or ()]

        def rows() -> Iterator[tuple[Any, ...]]:
            while True:
                try:
                    batch = cur.fetchmany(FETCH_ROWS)
                except self.errors as e:
                    self._rollback()
                    raise self.explain(e, where) from e
                if not batch:
                    return
                yield from batch

        return columns, rows()

    def scalar(self, sql: str, where: str | None = None) -> Any:
        _, rows = self.execute(sql, where)
        for row in rows:
            return row[0]
        return None

    def _rollback(self) -> None:
        with contextlib.suppress(Exception):  # nothing to roll back
            self.conn.rollback()

    def column_names(self) -> list[str]:
        cur = self.conn.cursor()
        cur.execute("SELECT * FROM objects LIMIT 0")
        names = [d[0] for d in cur.description or ()]
        cur.close()
        return names

    def meta_columns(self) -> list[tuple[str, str, str | None]]:
        """(name, path as JSON, kind) of each metadata column, in the order added."""
        _, rows = self.execute("SELECT name, path, kind FROM meta_columns ORDER BY added_at, name")
        return [(str(r[0]), str(r[1]), r[2]) for r in rows]

    def column_kinds(self) -> dict[str, str]:
        """The kind of each column of `objects` by name, fixed columns included (a
        metadata column that has held only NULLs so far has none)."""
        kinds = dict(FIXED_KINDS)
        kinds.update((name, kind) for name, _, kind in self.meta_columns() if kind)
        return kinds

    def explain(self, error: BaseException, where: str | None) -> QueryError:
        """A one-line message naming the problem, with close matches for unknown columns."""
        text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        m = re.search(r"no such column: (\S+)", text) or re.search(
            r'column "?([^"\s]+)"? does not exist', text
        )
        if m:
            name = m.group(1).split(".")[-1]
            try:
                names = self.column_names()
            except self.errors:
                names = []
            close = difflib.get_close_matches(name.lower(), names, n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            return QueryError(f"unknown column {name!r}{hint} (deon query --columns lists them)")
        if "not authorized" in text or "readonly" in text or "read-only" in text:
            return QueryError("queries cannot change the catalog")
        if "incomplete input" in text or "unterminated" in text:
            text += " (an unclosed quote, parenthesis or /* comment?)"
        shown = " ".join(where.split()) if where else ""
        return QueryError(f"bad query: {text}" + (f" in: {shown}" if shown else ""))


def statement(text: str) -> str:
    """A statement or condition without the whitespace and `;` that end it (one
    statement is all deon runs; `a; DROP ...` stays two and is refused)."""
    return re.sub(r"[\s;]+\Z", "", text)


def _where(where: str | None) -> str:
    """The WHERE clause of a condition, on lines of its own and in parentheses: a
    `-- comment` ending the condition then ends at its line, and an unterminated
    `/* comment` or string swallows the closing parenthesis, a syntax error, instead
    of the ORDER BY and LIMIT deon appends."""
    condition = statement(where or "")
    return f"\nWHERE (\n{condition}\n)\n" if condition.strip() else " "


def _subquery(sql: str) -> str:
    """A whole SELECT given with --sql, in parentheses on lines of its own (see _where)."""
    return f"(\n{statement(sql)}\n) AS q"


def build_sql(where: str | None, limit: int | None, columns: str = "*") -> str:
    sql = f"SELECT {columns} FROM objects{_where(where)}ORDER BY bucket, key"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return sql


def one_of(where: str | None, sql: str | None) -> None:
    """A query is a WHERE condition or a whole SELECT, never both.

    Raises:
        QueryError: both were given (exit 2).
    """
    if sql is not None and where is not None:
        raise QueryError("give a WHERE condition or --sql, not both")


def run(
    reader: Reader,
    *,
    where: str | None = None,
    sql: str | None = None,
    limit: int | None = None,
    columns: str = "*",
    close: bool = False,
) -> tuple[list[str], Iterator[tuple[Any, ...]]]:
    """Run a WHERE condition on `objects` (selecting `columns`), or a whole SELECT.

    Returns the column names and an iterator of rows (streamed, not held in memory).
    With `close`, for callers that hand the rows on, the reader is closed once the rows
    are read or dropped, or at once when the query fails.

    Raises:
        QueryError: unknown column, syntax error, or an attempt to write (exit 2).
    """
    try:
        one_of(where, sql)
        if sql is not None:
            text = statement(sql)
            if limit is not None:
                text = f"SELECT * FROM {_subquery(sql)} LIMIT {int(limit)}"
        else:
            text = build_sql(where, limit, columns)
        names, rows = reader.execute(text, where)
    except BaseException:
        if close:
            reader.close()
        raise
    if not close:
        return names, rows

    def stream() -> Iterator[tuple[Any, ...]]:
        try:
            yield from rows
        finally:
            reader.close()

    return names, stream()


def count(
    reader: Reader, where: str | None = None, sql: str | None = None, limit: int | None = None
) -> int:
    """How many rows `run` with the same arguments returns (at most `limit`)."""
    one_of(where, sql)
    if sql is not None:
        text = f"SELECT count(*) FROM {_subquery(sql)}"
    else:
        text = f"SELECT count(*) FROM objects{_where(where)}"
    n = int(reader.scalar(text, where) or 0)
    return n if limit is None else min(n, limit)


@dataclass(frozen=True)
class ColumnInfo:
    """A column of `objects` with what it holds, for `deon query --columns`."""

    name: str
    kind: str
    path: str  # the metadata path, e.g. "gripper.type"; empty for fixed columns
    non_null: int
    examples: list[Any]


#: `--columns` takes its example values from this many rows (the first ones stored).
SAMPLE_ROWS = 10_000


def describe_columns(reader: Reader, examples: int = 3) -> list[ColumnInfo]:
    """Every column of `objects` with its kind, how many rows have a value (one scan
    for all columns), and its most common values among a sample of SAMPLE_ROWS rows."""
    meta = {
        name: (fl.shown(fl.path_from_key(path)), kind) for name, path, kind in reader.meta_columns()
    }
    names = reader.column_names()

    def q(name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    # Counted on the table: the view's `metadata` is NULL exactly where the table's is,
    # and would rebuild every document to say so (revision 0004, documents.py).
    _, counts = reader.execute(
        "SELECT " + ", ".join(f"count({q(n)})" for n in names) + " FROM object_rows"
    )
    non_null = next(iter(counts))
    out: list[ColumnInfo] = []
    for name, filled in zip(names, non_null, strict=True):
        if name in FIXED_KINDS:
            kind, path = FIXED_KINDS.get(name, "text"), ""
        else:
            path, meta_kind = meta.get(name, ("", None))
            kind = meta_kind or "null"
        values: list[Any] = []
        if filled and name not in ("metadata", "mirrored_at", "last_modified", "etag", "sha256"):
            _, rows = reader.execute(
                f"SELECT v FROM (SELECT {q(name)} AS v FROM objects LIMIT {SAMPLE_ROWS}) AS s "
                f"WHERE v IS NOT NULL GROUP BY v ORDER BY count(*) DESC, v LIMIT {int(examples)}"
            )
            values = [r[0] for r in rows]
        out.append(ColumnInfo(name, kind, path, int(filled or 0), values))
    return out


def frame_names(meta_columns: list[tuple[str, str, str | None]], fixed: set[str]) -> dict[str, str]:
    """The DataFrame name of each metadata column: its metadata key as written (`img_T`;
    a nested key `gripper.type`, as `deon query --columns` shows it), so that code
    written for RoboNet's own DataFrame (`row['img_T']`) runs unchanged. A key named
    like a fixed column keeps its catalog name (`meta_size`): the fixed columns keep
    theirs. SQL names stay lower-case: SQL is case-insensitive, pandas is not."""
    names: dict[str, str] = {}
    for name, path, _ in meta_columns:
        shown = fl.shown(fl.path_from_key(path))
        names[name] = name if shown in fixed else shown
    return names


def to_pandas(catalog: Any, where: str | None = None) -> Any:
    """The selected rows as a DataFrame indexed by `uri`, each column typed by its kind:
    booleans as pandas' nullable boolean, integers as Int64, reals as float64, text as
    strings, JSON (lists) parsed, times as UTC timestamps. Metadata columns are named
    by their keys as written (see `frame_names`)."""
    import pandas as pd

    with Reader.from_catalog(catalog) as reader:
        columns, rows = run(reader, where=where)
        df = pd.DataFrame.from_records(list(rows), columns=columns)
        kinds = reader.column_kinds()
        meta = reader.meta_columns()
    for name in df.columns:
        kind = kinds.get(name)
        try:
            if kind == fl.KIND_BOOLEAN:
                # A NULL arrives as NaN in a numeric column (bool(NaN) is True): unscalar
                # makes it None, which "boolean" keeps as <NA>.
                df[name] = df[name].map(partial(fl.unscalar, kind)).astype("boolean")
            elif kind == fl.KIND_INTEGER:
                df[name] = df[name].astype("Int64")
            elif kind == fl.KIND_REAL:
                df[name] = pd.to_numeric(df[name], errors="coerce").astype("float64")
            elif kind == fl.KIND_JSON and name != "metadata":
                df[name] = df[name].map(partial(fl.unscalar, kind))
            elif kind == "datetime":
                df[name] = pd.to_datetime(df[name], utc=True)
            elif kind == fl.KIND_TEXT:
                df[name] = df[name].astype("string")
        except (ValueError, TypeError):
            pass  # mixed values the kind does not cover: leave the column as it came
    registered = {name for name, _, _ in meta}
    renames = frame_names(meta, {c for c in df.columns if c not in registered})
    return df.rename(columns=renames).set_index("uri")
