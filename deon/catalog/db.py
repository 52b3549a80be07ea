"""Opening, upgrading and writing the catalog.

SQLite by default (a file any sqlite client can open), any SQLAlchemy URL otherwise.
SQLite catalogs use WAL and a busy timeout, and every write transaction starts with
BEGIN IMMEDIATE, so two deon processes on one catalog take turns instead of failing.
Queries run on a separate read-only connection (see query.py).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from deon.catalog import documents as docs
from deon.catalog import flatten as fl
from deon.catalog.location import BUSY_TIMEOUT, SCHEMA_REVISION, check_file, no_catalog
from deon.catalog.location import resolve_url as resolve_url
from deon.catalog.models import (
    FIXED_COLUMNS,
    meta_columns,
    metadata,
    objects,
    sources,
)
from deon.catalog.models import (
    FIXED_ORDER as _FIXED_ORDER,
)
from deon.errors import CatalogError, DeonWarning, UsageError, WarningCode

#: Metadata columns beyond this many are kept only in the `metadata` JSON column
#: (SQLite allows 2000 columns per table, PostgreSQL 1600).
MAX_META_COLUMNS = 1000
#: Metadata columns indexed automatically (see `index_columns`).
MAX_INDEXES = 64
#: `index_columns` judges a column by this many rows...
SAMPLE_ROWS = 10_000
#: ... and indexes it when no value holds more than this share of them,
INDEX_SHARE = 0.5
#: and drops its index when one value holds more than this (apart, so that a column
#: near the line is not indexed and dropped in turn).
DROP_SHARE = 0.7
#: The PostgreSQL advisory lock every catalog writer holds for its transaction.
WRITE_LOCK = 0x0DE0CA7A


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for other databases or in-memory SQLite)."""
    u = sa.engine.make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database)


def _is_sqlite(url: str) -> bool:
    return bool(sa.engine.make_url(url).get_backend_name() == "sqlite")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def naive_utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is dt.timezone.utc:  # what listings give: the quick way
        return value.replace(tzinfo=None)
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value


@dataclass
class ObjectRow:
    """One object as the catalog stores it."""

    bucket: str
    key: str
    size: int
    etag: str
    last_modified: dt.datetime
    sha256: str | None = None
    metadata: str | None = None  # the document as JSON text
    metadata_error: str | None = None
    flat: dict[fl.Path, tuple[Any, str | None]] = field(default_factory=dict)
    version_id: str | None = None


@dataclass(frozen=True)
class Column:
    """A metadata column of `objects`."""

    name: str
    path: fl.Path
    kind: str | None
    indexed: bool
    position: int | None = None


@dataclass(frozen=True)
class Source:
    bucket: str
    prefix: str
    endpoint_url: str | None
    mirrored_at: dt.datetime | None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Let deon, not the sqlite3 module, decide when transactions begin (BEGIN IMMEDIATE).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT * 1000}")
    cur.execute("PRAGMA journal_mode = WAL")
    cur.execute("PRAGMA synchronous = NORMAL")
    cur.close()


def _sqlite_engine(url: str, begin: str) -> sa.Engine:
    """A SQLite engine whose transactions start with `begin`: plain BEGIN for readers,
    BEGIN IMMEDIATE for writers, which take the write lock up front (waiting up to the
    busy timeout) rather than failing when a read lock cannot be upgraded."""
    engine = sa.create_engine(
        url, connect_args={"timeout": BUSY_TIMEOUT, "check_same_thread": False}
    )
    sa.event.listen(engine, "connect", _sqlite_pragmas)
    sa.event.listen(engine, "begin", lambda conn: conn.exec_driver_sql(begin))
    return engine


def _create_private(path: Path) -> None:
    """Create the catalog file readable by its owner only (it may name private data)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)


class Catalog:
    """A deon catalog. Use `open_catalog()`.

    Args:
        url: a SQLAlchemy URL (see `resolve_url` for paths).
        create: create the catalog if it does not exist; otherwise raise CatalogError.
    """

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.url = url
        try:
            self.path = sqlite_path(url)
            in_memory = self.path is None and _is_sqlite(url)
        except sa.exc.ArgumentError as e:
            raise UsageError(f"cannot open catalog {self.display_url(url)!r}: {e}") from e
        if in_memory:
            # Every connection would get a database of its own, gone when it closes.
            raise UsageError(
                f"{url} is an in-memory database, which no command could find again: "
                "give the catalog a file path (--catalog catalog.sqlite)"
            )
        if self.path is not None:
            if not self.path.exists():
                if not create:
                    raise no_catalog(self.path)
                _create_private(self.path)
            else:
                check_file(self.path)  # before the engines switch someone's file to WAL
            self.engine = _sqlite_engine(url, "BEGIN")
            self.writer = _sqlite_engine(url, "BEGIN IMMEDIATE")
        else:
            try:
                self.engine = sa.create_engine(url, pool_pre_ping=True)
                self.writer = sa.create_engine(url, pool_pre_ping=True)
            except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as e:
                raise UsageError(f"cannot open catalog {self.display_url(url)!r}: {e}") from e
            if self.writer.dialect.name == "postgresql":
                # Writers from every machine take turns, as BEGIN IMMEDIATE makes them
                # on SQLite: column registry, ALTER TABLE and rows change together.
                sa.event.listen(
                    self.writer,
                    "begin",
                    lambda conn: conn.exec_driver_sql(
                        f"SELECT pg_advisory_xact_lock({WRITE_LOCK})"
                    ),
                )
        self._lock = threading.Lock()
        self._upsert_cache: dict[tuple[tuple[str, ...], str], str] = {}
        try:
            self._ensure_schema()
        except sa.exc.DatabaseError as e:
            message = " ".join(str(e.orig).split())  # psycopg's have a second line
            raise CatalogError(f"cannot open catalog {self.display}: {message}") from e
        except ImportError as e:  # a driver that is not installed (psycopg, ...)
            raise UsageError(f"cannot open catalog {self.display}: {e}") from e

    @property
    def display(self) -> str:
        """The catalog as a person would name it: its file, or its URL without password."""
        if self.path is not None:
            return str(self.path)
        return self.display_url(self.url)

    @staticmethod
    def display_url(url: str) -> str:
        try:
            return sa.engine.make_url(url).render_as_string(hide_password=True)
        except sa.exc.ArgumentError:
            return "<unreadable catalog URL>"

    def close(self) -> None:
        self.engine.dispose()
        self.writer.dispose()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema ---------------------------------------------------------------------

    def revision(self) -> str | None:
        """The Alembic revision the catalog is at (None for an empty database)."""
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table("alembic_version"):
                return None
            return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()

    def _ensure_schema(self) -> None:
        from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random

        # SQLite can answer "database is locked" without waiting out the busy timeout
        # while another process recovers or checkpoints the WAL; such moments are short.
        for attempt in Retrying(
            stop=stop_after_delay(BUSY_TIMEOUT),
            wait=wait_random(0.05, 0.5),
            retry=retry_if_exception(_locked),
            reraise=True,
        ):
            with attempt:
                revision = self.revision()
                if revision != SCHEMA_REVISION:
                    self._upgrade(revision)

    def _upgrade(self, revision: str | None) -> None:
        if revision is None and self._create_if_empty():
            return
        revision = self.revision()
        if revision == SCHEMA_REVISION:
            return  # another process brought it up to date meanwhile
        from alembic.util.exc import CommandError  # Alembic loads only when needed

        try:
            upgrade(self.writer)
        except CommandError as e:
            raise CatalogError(
                f"catalog {self.display} has schema revision {revision!r}, which this deon "
                f"does not know (made by a newer deon?): upgrade deon ({e})"
            ) from e

    def _create_if_empty(self) -> bool:
        """Create the current schema in an empty database and stamp its revision, as
        Alembic recommends for new databases, instead of loading Alembic (~0.3 s) to
        replay history. The check runs under the write lock, so two processes opening
        a new catalog at once cannot both create it. Returns whether it did."""
        with self.writer.begin() as conn:
            if sa.inspect(conn).get_table_names():
                return False
            metadata.create_all(conn)
            self._create_view(conn, [])
            conn.exec_driver_sql(
                "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
                "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
            )
            conn.execute(sa.text("INSERT INTO alembic_version VALUES (:v)"), {"v": SCHEMA_REVISION})
        return True

    # -- sources --------------------------------------------------------------------

    def sources(self) -> list[Source]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    sources.c.bucket,
                    sources.c.prefix,
                    sources.c.endpoint_url,
                    sources.c.mirrored_at,
                ).order_by(sources.c.bucket, sources.c.prefix)
            ).all()
        return [Source(*r) for r in rows]

    def add_source(self, bucket: str, prefix: str, endpoint_url: str | None) -> None:
        """Record a source, or the endpoint it is mirrored from now."""
        with self.writer.begin() as conn:
            exists = conn.execute(
                sa.select(sources.c.id, sources.c.endpoint_url).where(
                    sources.c.bucket == bucket, sources.c.prefix == prefix
                )
            ).first()
            if exists is None:
                conn.execute(
                    sources.insert().values(
                        bucket=bucket, prefix=prefix, endpoint_url=endpoint_url, added_at=utcnow()
                    )
                )
            elif (exists.endpoint_url or "") != (endpoint_url or ""):
                conn.execute(
                    sources.update()
                    .where(sources.c.id == exists.id)
                    .values(endpoint_url=endpoint_url)
                )

    def forget_source(self, bucket: str, prefix: str) -> int | None:
        """Remove a source and the rows under it that no other source covers. Returns
        how many rows went, or None when it is not a source."""
        with self._lock, self.writer.begin() as conn:
            found = conn.execute(
                sources.delete().where(sources.c.bucket == bucket, sources.c.prefix == prefix)
            ).rowcount
            if not found:
                return None
            others = conn.execute(
                sa.select(sources.c.prefix).where(sources.c.bucket == bucket)
            ).scalars()
            keep = [self._under(p) for p in others]
            q = objects.delete().where(objects.c.bucket == bucket, self._under(prefix))
            if keep:
                q = q.where(sa.not_(sa.or_(*keep)))
            return int(conn.execute(q).rowcount)

    def mark_mirrored(self, bucket: str, prefix: str) -> None:
        with self.writer.begin() as conn:
            conn.execute(
                sources.update()
                .where(sources.c.bucket == bucket, sources.c.prefix == prefix)
                .values(mirrored_at=utcnow())
            )

    # -- reading state for the mirror -------------------------------------------------

    def _under(self, prefix: str) -> Any:
        """A WHERE clause for keys starting with prefix (index-friendly on SQLite)."""
        if not prefix:
            return sa.true()
        if self.engine.dialect.name == "sqlite":
            # SQLite compares keys as UTF-8 bytes: [prefix, prefix with last char + 1)
            upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
            return sa.and_(objects.c.key >= prefix, objects.c.key < upper)
        return sa.func.substr(objects.c.key, 1, len(prefix)) == prefix

    def iter_listed_state(
        self, bucket: str, prefix: str, chunk: int = 2000
    ) -> Iterator[tuple[str, str, dt.datetime]]:
        """(key, etag, last_modified as naive UTC) of the rows under a prefix, in the order
        S3 lists keys: by their UTF-8 bytes. What a streaming refresh merges with the
        listing, so that memory is bounded by `chunk` rows, not by the prefix.

        SQLite: pages of `chunk` rows by key (keyset pagination on the primary key,
        each page its own short read, so the WAL can still be checkpointed while the
        mirror writes). SQLite's default BINARY collation compares the stored UTF-8
        (deon creates catalogs UTF-8) with memcmp, which is UTF-8 byte order, which is
        also code point order, Python's order for str. A page is read only once the
        caller has consumed every row before it; the caller (refresh.py) relies on that
        to never read back a row it wrote itself (it writes only keys it has passed).

        PostgreSQL: one streamed query ordered `COLLATE "C"` (byte order; the database's
        own collation may be linguistic): one statement sees one snapshot, so the
        mirror's own writes are never read back. Other databases: one streamed query by
        key; the caller checks the order and refuses a catalog that breaks it.
        """
        dialect = self.engine.dialect.name
        if dialect == "sqlite":
            # Plain driver rows: SQLAlchemy's per-row type processing would cost more
            # than the rest of a no-op refresh (bench/).
            # One lower bound only: given two (key >= prefix AND key > after), SQLite
            # seeks by the first and scans from the start of the prefix on every page.
            upper = _upper_bound(prefix)
            tail = ("" if upper is None else "AND key < ? ") + "ORDER BY key LIMIT ?"
            bounds = () if upper is None else (upper,)
            sql = "SELECT key, etag, last_modified FROM object_rows WHERE bucket = ? AND key {} ? "
            op, after = ">=", prefix
            while True:
                with self.engine.connect() as conn:
                    page = conn.exec_driver_sql(
                        sql.format(op) + tail, (bucket, after, *bounds, chunk)
                    ).all()
                for k, e, lm in page:
                    yield k, e, _sqlite_time(lm)
                if len(page) < chunk:
                    return
                op, after = ">", page[-1][0]
        order: Any = objects.c.key
        if dialect == "postgresql":
            order = objects.c.key.collate("C")
        q = (
            sa.select(objects.c.key, objects.c.etag, objects.c.last_modified)
            .where(objects.c.bucket == bucket, self._under(prefix))
            .order_by(order)
        )
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=chunk).execute(q)
            for k, e, lm in result:
                yield k, e, naive_utc(lm)

    def rows_under(self, bucket: str, prefix: str) -> tuple[int, Iterator[tuple[Any, ...]]]:
        """The rows under a prefix as (key, etag, last_modified, size, sha256, metadata,
        metadata_error, version_id), in key order, with their count (what a snapshot
        holds)."""
        where = sa.and_(objects.c.bucket == bucket, self._under(prefix))
        with self.engine.connect() as conn:
            count = int(conn.execute(sa.select(sa.func.count()).where(where)).scalar() or 0)
        # From the view: its `metadata` is the whole document (documents.py).
        view = sa.table(docs.VIEW, *(sa.column(c.name, c.type) for c in objects.columns))
        q = sa.select(
            objects.c.key,
            objects.c.etag,
            objects.c.last_modified,
            objects.c.size,
            objects.c.sha256,
            view.c.metadata,
            objects.c.metadata_error,
            objects.c.version_id,
        ).where(where)
        # the same row of the table and of the view (the view is a plain SELECT of it)
        q = q.select_from(
            objects.join(
                view, sa.and_(view.c.bucket == objects.c.bucket, view.c.key == objects.c.key)
            )
        )

        def rows() -> Iterator[tuple[Any, ...]]:
            with self.engine.connect() as conn:
                yield from (tuple(r) for r in conn.execute(q.order_by(objects.c.key)))

        return count, rows()

    def known(self, uris: Iterable[str]) -> dict[str, tuple[int, str, str | None]]:
        """{uri: (size, etag, sha256)} for the given URIs that the catalog holds."""
        by_bucket: dict[str, list[str]] = {}
        for uri in dict.fromkeys(uris):
            bucket, sep, key = uri.removeprefix("s3://").partition("/")
            if uri.startswith("s3://") and sep:
                by_bucket.setdefault(bucket, []).append(key)
        out: dict[str, tuple[int, str, str | None]] = {}
        with self.engine.connect() as conn:
            for bucket, keys in by_bucket.items():
                for i in range(0, len(keys), 500):
                    # By the primary key, bucket = ? AND key IN (...): there is no index
                    # on uri (revision 0003), and SQLite scans for a (bucket, key) IN.
                    q = sa.select(
                        objects.c.uri, objects.c.size, objects.c.etag, objects.c.sha256
                    ).where(objects.c.bucket == bucket, objects.c.key.in_(keys[i : i + 500]))
                    for uri, size, etag, sha in conn.execute(q):
                        out[uri] = (size, etag, sha)
        return out

    # -- columns --------------------------------------------------------------------

    def columns(self) -> list[Column]:
        """The metadata columns, in the order they were added."""
        with self.engine.connect() as conn:
            return self._columns(conn)

    @staticmethod
    def _columns(conn: Any) -> list[Column]:
        rows = conn.execute(
            sa.select(
                meta_columns.c.name,
                meta_columns.c.path,
                meta_columns.c.kind,
                meta_columns.c.indexed,
                meta_columns.c.position,
            ).order_by(meta_columns.c.added_at, meta_columns.c.name)
        ).all()
        return [Column(n, fl.path_from_key(p), k, bool(i), pos) for n, p, k, i, pos in rows]

    def _tree(self, cols: list[Column]) -> docs.Tree:
        return docs.Tree(docs.ViewColumn(c.name, c.path, c.kind, c.position) for c in cols)

    def _create_view(self, conn: Any, cols: list[Column]) -> None:
        """(Re)create the view `objects` over `object_rows` for these columns."""
        docs.create_view(
            conn,
            self.engine.dialect.name,
            self.engine.dialect.identifier_preparer.quote_identifier,
            (docs.ViewColumn(c.name, c.path, c.kind, c.position) for c in cols),
        )

    def _materialize(self, conn: Any, cols: list[Column], column: str) -> None:
        """Write out the documents the view rebuilds from `column`, before its kind (and
        so what the view makes of its values) changes."""
        prep = self.engine.dialect.identifier_preparer
        doc = self._tree(cols).document_sql(self.engine.dialect.name, prep.quote_identifier)
        conn.exec_driver_sql(
            f"UPDATE {docs.TABLE} SET metadata = {doc} "
            f"WHERE metadata = '{docs.IN_COLUMNS}' AND {prep.quote_identifier(column)} IS NOT NULL"
        )

    def _add_columns(self, conn: Any, rows: list[ObjectRow], warnings: list[str]) -> list[Column]:
        """Register and create the columns these rows need; widen kinds. Runs inside the
        write transaction, after re-reading the registry (another process may have
        added columns since)."""
        current = self._columns(conn)
        by_path = {fl.path_key(c.path): c for c in current}
        # A new key's place in the documents: where it first appears in them.
        position = max((c.position or 0 for c in current), default=0)
        places: dict[str, int] = {}
        changed = False
        by_tuple: dict[fl.Path, str | None] = {}
        for row in rows:
            for path, (_, kind) in row.flat.items():
                if path not in by_tuple:
                    by_tuple[path] = kind
                elif kind is not None and kind != by_tuple[path]:
                    by_tuple[path] = fl.widen(by_tuple[path], kind)
        wanted_kind: dict[str, tuple[fl.Path, str | None]] = {}
        for path, kind in by_tuple.items():  # identity by JSON key (surrogate pairs)
            pk = fl.path_key(path)
            seen = wanted_kind.get(pk)
            wanted_kind[pk] = (path, fl.widen(seen[1] if seen else None, kind))
            if pk not in by_path and pk not in places:
                position += 1
                places[pk] = position
        now = utcnow()
        dialect = self.engine.dialect
        prep = dialect.identifier_preparer
        fixed = set(FIXED_COLUMNS)
        holder = {c.name: c for c in current}
        # New paths in rank order, so that within a batch the winner comes first.
        for pk, (path, kind) in sorted(wanted_kind.items(), key=lambda w: fl.rank(w[1][0], fixed)):
            col = by_path.get(pk)
            if col is None:
                if len(by_path) >= MAX_META_COLUMNS:
                    warnings.append(
                        DeonWarning(
                            WarningCode.COLUMN_CAP,
                            f"more than {MAX_META_COLUMNS} metadata keys: {fl.shown(path)} is "
                            "kept only in the metadata column",
                        )
                    )
                    continue
                name = fl.wished_name(path, fixed)
                other = holder.get(name)
                if (
                    other is not None
                    and fl.wished_name(other.path, fixed) == name
                    and fl.rank(path, fixed) < fl.rank(other.path, fixed)
                ):
                    # The holder came first but ranks lower: it moves, so that the name
                    # means the same path in every catalog.
                    moved = fl.suffixed_name(other.path, holder, fixed)
                    if not changed:
                        conn.exec_driver_sql(f"DROP VIEW IF EXISTS {docs.VIEW}")
                        changed = True
                    if other.indexed:
                        conn.exec_driver_sql(
                            f"DROP INDEX IF EXISTS {prep.quote_identifier(index_name(name))}"
                        )
                    conn.exec_driver_sql(
                        f"ALTER TABLE object_rows RENAME COLUMN {prep.quote_identifier(name)} "
                        f"TO {prep.quote_identifier(moved)}"
                    )
                    conn.execute(
                        meta_columns.update()
                        .where(meta_columns.c.name == name)
                        .values(name=moved, indexed=False)
                    )
                    holder[moved] = by_path[fl.path_key(other.path)] = Column(
                        moved, other.path, other.kind, False, other.position
                    )
                    del holder[name]
                    warnings.append(
                        DeonWarning(
                            WarningCode.COLUMN_RENAMED,
                            f"column {name!r} now holds metadata key {fl.shown(path)!r}; "
                            f"{fl.shown(other.path)!r} moved to column {moved!r}",
                        )
                    )
                if name in holder:
                    name = fl.suffixed_name(path, holder, fixed)
                    warnings.append(
                        DeonWarning(
                            WarningCode.COLUMN_SUFFIXED,
                            f"metadata key {fl.shown(path)!r} is stored in column {name!r} "
                            "(its plain name is taken)",
                        )
                    )
                if not changed:
                    conn.exec_driver_sql(f"DROP VIEW IF EXISTS {docs.VIEW}")
                    changed = True
                conn.execute(
                    meta_columns.insert().values(
                        name=name, path=pk, kind=kind, added_at=now, position=places[pk]
                    )
                )
                conn.exec_driver_sql(
                    f"ALTER TABLE object_rows ADD COLUMN {prep.quote_identifier(name)} "
                    f"{sql_type(dialect.name, kind)}"
                )
                col = Column(name, path, kind, False, places[pk])
                holder[name] = by_path[pk] = col
            elif kind is not None and fl.widen(col.kind, kind) != col.kind:
                widened = fl.widen(col.kind, kind)
                # The view renders a column by its kind: the documents it rebuilds from
                # this one are written out first (a rare event: a key changing type).
                self._materialize(conn, list(by_path.values()), col.name)
                if not changed:
                    conn.exec_driver_sql(f"DROP VIEW IF EXISTS {docs.VIEW}")
                    changed = True
                conn.execute(
                    meta_columns.update()
                    .where(meta_columns.c.name == col.name)
                    .values(kind=widened)
                )
                retype = alter_type(dialect.name, col.name, col.kind, widened)
                if retype:
                    conn.exec_driver_sql(retype)
                by_path[pk] = Column(col.name, col.path, widened, col.indexed, col.position)
        cols = list(by_path.values())
        if changed:
            self._create_view(conn, cols)
        return cols

    # -- writing --------------------------------------------------------------------

    def write(self, rows: list[ObjectRow], deletes: Iterable[tuple[str, str]] = ()) -> list[str]:
        """Upsert rows and delete (bucket, key) pairs in one transaction.

        Every row replaces the whole previous row of its object: metadata keys it no
        longer has become NULL. Returns warnings (renamed or dropped columns).

        The rows go to the driver's executemany as positional tuples: SQLAlchemy Core's
        per-row processing would cost more than the rest of a mirror (bench/).
        """
        warnings: list[str] = []
        deletes = list(deletes)
        dialect = self.engine.dialect
        mark = "?" if dialect.paramstyle == "qmark" else "%s"
        with self._lock, self.writer.begin() as conn:
            if rows:
                cols = self._add_columns(conn, rows, warnings)
                names = [c.name for c in cols]
                index_of = {fl.path_key(c.path): i for i, c in enumerate(cols)}
                tree = self._tree(cols)
                name_of = {fl.path_key(c.path): c.name for c in cols}
                typed = dialect.name != "sqlite"
                kinds = [c.kind for c in cols]
                by_tuple: dict[fl.Path, int | None] = {}
                now = self._timestamp(utcnow())
                params = []
                for r in rows:
                    values: list[Any] = [None] * len(cols)
                    for path, (value, _) in r.flat.items():
                        i = by_tuple.get(path, -1)
                        if i == -1:
                            i = by_tuple[path] = index_of.get(fl.path_key(path))
                        if i is not None:
                            values[i] = coerce(kinds[i], value) if typed else value
                    params.append(
                        (
                            r.bucket,
                            r.key,
                            f"s3://{r.bucket}/{r.key}",
                            r.size,
                            r.etag,
                            self._timestamp(naive_utc(r.last_modified)),
                            r.sha256,
                            r.version_id,
                            docs.IN_COLUMNS
                            if tree.reproduces(r.metadata, r.flat, name_of, dialect.name)
                            else r.metadata,
                            r.metadata_error,
                            now,
                            *values,
                        )
                    )
                conn.exec_driver_sql(self._upsert_sql(names, mark), params)
            if deletes:
                conn.exec_driver_sql(
                    f"DELETE FROM object_rows WHERE bucket = {mark} AND key = {mark}", deletes
                )
        return warnings

    def _timestamp(self, value: dt.datetime) -> Any:
        """A time as the driver takes it: SQLAlchemy's text format on SQLite (so that
        it reads back through the DateTime type), the datetime itself elsewhere."""
        if self.path is not None or self.engine.dialect.name == "sqlite":
            return value.strftime("%Y-%m-%d %H:%M:%S.%f")
        return value

    def _upsert_sql(self, names: list[str], mark: str) -> str:
        key = (tuple(names), mark)
        cached = self._upsert_cache.get(key)
        if cached is not None:
            return cached
        q = self.engine.dialect.identifier_preparer.quote_identifier
        columns = [*_FIXED_ORDER, *names]
        updates = ", ".join(
            f"{q(c)} = excluded.{q(c)}" for c in columns if c not in ("bucket", "key")
        )
        sql = (
            f"INSERT INTO object_rows ({', '.join(q(c) for c in columns)}) "
            f"VALUES ({', '.join([mark] * len(columns))}) "
            f"ON CONFLICT (bucket, {q('key')}) DO UPDATE SET {updates}"
        )
        self._upsert_cache = {key: sql}
        return sql

    def index_columns(self) -> int:
        """Index the scalar metadata columns whose values are selective (up to
        MAX_INDEXES), so that filters on them stay fast at millions of rows; drop the
        index of a column that proved not to be. Returns how many indexes were created.

        Selective (revision 0004, bench/RESULTS.md "Catalog size"): among the first
        SAMPLE_ROWS rows, no value is held by more than INDEX_SHARE of them. An index
        on a column most rows share (traj_ok, a constant file_version) costs its bytes
        on every row and narrows few queries. Below SAMPLE_ROWS rows every scalar
        column is indexed, as before: there the bytes do not matter.
        """
        with self._lock, self.writer.begin() as conn:
            return choose_indexes(conn, self.engine.dialect.identifier_preparer.quote_identifier)

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(objects)).scalar() or 0)

    # -- reading --------------------------------------------------------------------

    def to_pandas(self, where: str | None = None) -> Any:
        """The catalog as a pandas DataFrame indexed by `uri`, with typed columns.

        Args:
            where: an SQL condition on the `objects` columns, e.g. "robot = 'sawyer'".
        """
        from deon.catalog.query import to_pandas

        return to_pandas(self, where)

    def query(
        self, where: str | None = None, *, sql: str | None = None, limit: int | None = None
    ) -> tuple[list[str], Iterator[tuple[Any, ...]]]:
        """Run a read-only query: (column names, rows). See deon.catalog.query.run."""
        from deon.catalog.query import Reader, run

        return run(Reader.from_catalog(self), where=where, sql=sql, limit=limit, close=True)


def choose_indexes(conn: Any, quote: Any) -> int:
    """Catalog.index_columns on a connection (also revision 0004's): returns how many
    indexes it created."""
    created = 0
    cols = Catalog._columns(conn)
    table = docs.TABLE
    sampled = int(
        conn.exec_driver_sql(
            f"SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT {SAMPLE_ROWS}) AS s"
        ).scalar()
        or 0
    )
    indexed = sum(c.indexed for c in cols)
    for c in cols:
        if c.kind in (None, fl.KIND_JSON):
            continue
        share = None
        if sampled >= SAMPLE_ROWS:
            top = conn.exec_driver_sql(
                f"SELECT max(n) FROM (SELECT count(*) AS n FROM (SELECT {quote(c.name)} AS v "
                f"FROM {table} LIMIT {SAMPLE_ROWS}) AS s WHERE v IS NOT NULL GROUP BY v) AS g"
            ).scalar()
            share = (top or 0) / sampled
        if c.indexed:
            if share is not None and share > DROP_SHARE:
                conn.exec_driver_sql(f"DROP INDEX IF EXISTS {quote(index_name(c.name))}")
                conn.execute(
                    meta_columns.update().where(meta_columns.c.name == c.name).values(indexed=False)
                )
                indexed -= 1
            continue
        if indexed >= MAX_INDEXES or (share is not None and share > INDEX_SHARE):
            continue
        conn.exec_driver_sql(
            f"CREATE INDEX IF NOT EXISTS {quote(index_name(c.name))} ON {table} ({quote(c.name)})"
        )
        conn.execute(
            meta_columns.update().where(meta_columns.c.name == c.name).values(indexed=True)
        )
        indexed += 1
        created += 1
    return created


def _upper_bound(prefix: str) -> str | None:
    """The least string above every string that starts with prefix (None: none is)."""
    while prefix:
        last = ord(prefix[-1])
        if last < 0x10FFFF and not 0xD7FF <= last < 0xE000:
            return prefix[:-1] + chr(last + 1)
        if last == 0xD7FF:
            return prefix[:-1] + "\ue000"
        prefix = prefix[:-1]
    return None


def _sqlite_time(value: Any) -> dt.datetime:
    """A time as SQLAlchemy's DateTime stores it on SQLite ("2026-11-01 00:00:00.000000")."""
    if isinstance(value, str):
        return dt.datetime.fromisoformat(value)
    return naive_utc(value)


def _locked(error: BaseException) -> bool:
    return isinstance(error, sa.exc.OperationalError) and "locked" in str(error.orig)


def index_name(column: str) -> str:
    name = f"ix_objects_m_{column}"
    return name if len(name) <= 63 else f"ix_objects_m_{fl.path_hash((column,))}"


_PG_TYPES = {
    fl.KIND_BOOLEAN: "BOOLEAN",
    fl.KIND_INTEGER: "BIGINT",
    fl.KIND_REAL: "DOUBLE PRECISION",
    fl.KIND_TEXT: "TEXT",
    fl.KIND_JSON: "TEXT",
}


def sql_type(dialect: str, kind: str | None) -> str:
    """The declared type of a metadata column of a kind.

    SQLite: none at all, so every value keeps its own type exactly (a declared type
    would coerce, and a column's kind may widen later). PostgreSQL: the kind's type
    (BOOLEAN, BIGINT, DOUBLE PRECISION, TEXT; JSON as text, as on SQLite), so that
    `WHERE traj_ok` and `WHERE img_t > 20` mean the same on both; a column whose values
    were all null so far is TEXT until its first value.
    """
    if dialect == "sqlite":
        return ""
    return _PG_TYPES.get(kind or fl.KIND_TEXT, "TEXT")


def alter_type(dialect: str, column: str, before: str | None, after: str | None) -> str | None:
    """The ALTER that widens a column's type when its kind widens (PostgreSQL only)."""
    if dialect == "sqlite" or sql_type(dialect, before) == sql_type(dialect, after):
        return None
    q = '"' + column.replace('"', '""') + '"'
    target = sql_type(dialect, after)
    value = f"{q}::integer" if before == fl.KIND_BOOLEAN and target != "TEXT" else q
    return f"ALTER TABLE object_rows ALTER COLUMN {q} TYPE {target} USING {value}::{target}"


def coerce(kind: str | None, value: Any) -> Any:
    """A value as its column's kind, for databases that type columns (PostgreSQL)."""
    if value is None or kind in fl.NUMBER_KINDS or isinstance(value, str):
        return fl.as_number(kind, value)
    return json.dumps(value)


def upgrade(engine: sa.Engine) -> None:
    """Bring the catalog's fixed schema to the newest Alembic revision."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", "deon:migrations")
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def open_catalog(url: str, *, create: bool = True) -> Catalog:
    """Open (and if needed create or upgrade) a catalog.

    Args:
        url: a SQLite file path or any SQLAlchemy URL (`deon.open_catalog()` finds the
            one the `deon` command uses).
        create: create the catalog when it does not exist yet.
    """
    return Catalog(resolve_url(url), create=create)
