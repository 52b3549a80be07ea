"""The metadata document of a row, kept once: in its flattened columns where they hold it.

Revision 0004 (bench/RESULTS.md, "Catalog size"): the table `object_rows` keeps in its
`metadata` column the text `{}` ("nothing the columns do not hold") for every document
its flattened columns reproduce exactly, and the whole document otherwise. `objects`
is a view over it whose `metadata` column rebuilds the document from the columns, in
SQL (`json_object`, `json_build_object`), so that every reader — `deon query`, pandas,
a plain sqlite3 shell, `json_extract(metadata, ...)` — sees the document as before.

"Exactly" is decided per row when it is written, by rendering the row as the view will
(`Tree.render`) and comparing it, as JSON text, with the document: key order included.
A document the view cannot reproduce keeps its text: a key holding null (or NaN), an
integer beyond 64 bits, a lone surrogate, a float that SQLite's 15 significant digits
(or PostgreSQL's float8) would not give back, -0.0, nesting cut at MAX_DEPTH, a
metadata key beyond the column cap, or keys in another order than the columns'.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from deon.catalog import flatten as fl

#: What `object_rows.metadata` holds when the flattened columns hold the whole document.
IN_COLUMNS = "{}"
#: The table and the view.
TABLE = "object_rows"
VIEW = "objects"
#: Keys per json_object()/json_build_object() call (SQLite and PostgreSQL allow 100
#: arguments by default: two per key).
CHUNK = 50
#: Keys nested deeper than this are not rebuilt (documents holding one keep their
#: text): SQLite's parser refuses an expression nested much deeper.
VIEW_DEPTH = 4

_ENC = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), allow_nan=True)


class _Absent:
    pass


ABSENT: Any = _Absent()


class NotRendered(Exception):
    """A value the view would not give back as it was."""


@dataclass
class Node:
    """A key of the rebuilt document: a column (leaf), nested keys, or both."""

    key: str
    column: str | None = None
    kind: str | None = None
    children: dict[str, Node] = field(default_factory=dict)
    first: float = math.inf  # the least position below it: the key's place


@dataclass(frozen=True)
class ViewColumn:
    name: str
    path: fl.Path
    kind: str | None
    position: int | None


def viewable(path: fl.Path) -> bool:
    """Whether the view rebuilds a key of this path: SQL can name it (no lone
    surrogate, no NUL) and it is at most VIEW_DEPTH deep."""
    if len(path) > VIEW_DEPTH:
        return False
    try:
        "".join(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in "".join(path)


class Tree:
    """The shape of the documents the columns can rebuild."""

    def __init__(self, columns: Iterable[ViewColumn]) -> None:
        self.root = Node("")
        self.by_name: dict[str, ViewColumn] = {}
        for c in columns:
            if not c.path or not viewable(c.path):
                continue
            self.by_name[c.name] = c
            pos = math.inf if c.position is None else c.position
            node = self.root
            node.first = min(node.first, pos)
            for part in c.path:
                node = node.children.setdefault(part, Node(part))
                node.first = min(node.first, pos)
            node.column, node.kind = c.name, c.kind
        self._sort(self.root)

    def _sort(self, node: Node) -> None:
        node.children = dict(sorted(node.children.items(), key=lambda kv: kv[1].first))
        for child in node.children.values():
            self._sort(child)

    # -- Python: what the view gives for a row ----------------------------------------

    def render(self, values: Mapping[str, Any], dialect: str) -> dict[str, Any]:
        """The document the view builds from a row's stored column values (by name).

        Raises:
            NotRendered: a value the view would not give back as stored.
        """
        out = self._object(self.root, values, dialect)
        return {} if out is ABSENT else out

    def _object(self, node: Node, values: Mapping[str, Any], dialect: str) -> Any:
        out: dict[str, Any] = {}
        for key, child in node.children.items():
            v = self._value(child, values, dialect)
            if v is not ABSENT:
                out[key] = v
        return out if out else ABSENT

    def _value(self, node: Node, values: Mapping[str, Any], dialect: str) -> Any:
        if node.column is not None:
            raw = values.get(node.column)
            if raw is not None:
                return rendered(dialect, node.kind, raw)
        if node.children:
            return self._object(node, values, dialect)
        return ABSENT

    # -- SQL: the view ------------------------------------------------------------------

    def document_sql(self, dialect: str, quote: Any) -> str:
        """An SQL expression (JSON text) for the document of a row of `object_rows`."""
        expr = self._object_sql(self.root, dialect, quote)
        if expr is None:
            return "'{}'"
        if dialect == "postgresql":
            return f"COALESCE(({expr})::text, '{{}}')"
        return f"COALESCE({expr}, '{{}}')"

    def _columns_below(self, node: Node) -> list[str]:
        out = [node.column] if node.column is not None else []
        for child in node.children.values():
            out += self._columns_below(child)
        return out

    def _object_sql(self, node: Node, dialect: str, quote: Any) -> str | None:
        if dialect != "postgresql":
            return self._object_text_sql(node, quote)
        pairs = []
        for key, child in node.children.items():
            value = self._value_sql(child, dialect, quote)
            pairs.append(f"{_literal(key)}, {value}")
        if not pairs:
            return None
        chunks = [pairs[i : i + CHUNK] for i in range(0, len(pairs), CHUNK)]
        if dialect == "postgresql":
            parts = [f"json_strip_nulls(json_build_object({', '.join(c)}))::text" for c in chunks]
            if len(parts) == 1:
                body = f"{parts[0]}::json"
            else:
                inner = ", ".join(f"NULLIF(substr({p}, 2, length({p}) - 2), '')" for p in parts)
                body = f"('{{' || concat_ws(',', {inner}) || '}}')::json"
        else:
            body = "'{}'"
            for c in chunks:
                body = f"json_patch({body}, json_object({', '.join(c)}))"
        if node is not self.root:  # no key for a nested object without values
            if dialect == "postgresql":
                body = f"NULLIF(({body})::text, '{{}}')::json"
            else:
                body = f"nullif({body}, '{{}}')"
        return body

    def _object_text_sql(self, node: Node, quote: Any) -> str | None:
        """SQLite: the object as text put together with `||`, each member `"key":value,`
        or nothing when NULL. Four times faster than json_object() under json_patch()
        (which drops the NULL members) at 1 M rows (bench/RESULTS.md, "Catalog size")."""
        terms = []
        for key, child in node.children.items():
            member = _literal(json.dumps(key) + ":")
            leaf = nested = None
            if child.column is not None:
                q = quote(child.column)
                if child.kind == fl.KIND_BOOLEAN:
                    leaf = f"CASE {q} WHEN 1 THEN 'true' WHEN 0 THEN 'false' END"
                elif child.kind == fl.KIND_JSON:
                    leaf = q  # compact JSON text already (flatten.scalar)
                else:
                    leaf = f"CASE WHEN {q} IS NOT NULL THEN json_quote({q}) END"
            if child.children:
                nested = self._object_text_sql(child, quote)
            value = f"COALESCE({leaf}, {nested})" if leaf and nested else leaf or nested
            if value is None:
                continue
            terms.append(f"COALESCE({member} || {value} || ',', '')")
        if not terms:
            return None
        # In groups: a chain of 1000 `||` is deeper than SQLite lets an expression be.
        groups = [
            "(" + " || ".join(terms[i : i + CHUNK]) + ")" for i in range(0, len(terms), CHUNK)
        ]
        body = "'{' || rtrim(" + " || ".join(groups) + ", ',') || '}'"
        return body if node is self.root else f"nullif({body}, '{{}}')"

    def _value_sql(self, node: Node, dialect: str, quote: Any) -> str:
        leaf = None
        if node.column is not None:
            q = quote(node.column)
            if dialect == "postgresql":
                leaf = f"({q})::json" if node.kind == fl.KIND_JSON else q
            elif node.kind == fl.KIND_BOOLEAN:
                leaf = f"CASE {q} WHEN 1 THEN json('true') WHEN 0 THEN json('false') END"
            elif node.kind == fl.KIND_JSON:
                leaf = f"json({q})"
            else:
                leaf = q
        nested = self._object_sql(node, dialect, quote) if node.children else None
        if leaf and nested:
            return f"COALESCE({leaf}, {nested})"
        return leaf or nested or "NULL"

    def view_sql(self, dialect: str, quote: Any, table_columns: list[str]) -> str:
        """CREATE VIEW objects: the table's columns in its order, `metadata` rebuilt."""
        doc = self.document_sql(dialect, quote)
        select = []
        for name in table_columns:
            if name == "metadata":
                select.append(
                    f"CASE WHEN metadata = '{IN_COLUMNS}' THEN {doc} ELSE metadata END AS metadata"
                )
            else:
                select.append(quote(name))
        return f"CREATE VIEW {VIEW} AS SELECT {', '.join(select)} FROM {TABLE}"

    # -- the writer's question ------------------------------------------------------------

    def reproduces_stored(self, text: str, values: Mapping[str, Any], dialect: str) -> bool:
        """Whether the view gives back the document `text` from a row's stored values
        (by column name): how revision 0004 judges the rows of an older catalog."""
        try:
            doc = json.loads(text)
            if not isinstance(doc, dict):
                return False
            for name, value in values.items():
                if value is not None and name not in self.by_name:
                    return False
                kind = self.by_name[name].kind if name in self.by_name else None
                cut = isinstance(value, str) and value.startswith("{") and value != "{}"
                if kind == fl.KIND_JSON and cut:
                    return False  # nesting cut at MAX_DEPTH
            return bool(_ENC.encode(self.render(values, dialect)) == _ENC.encode(doc))
        except (NotRendered, ValueError, TypeError):
            return False

    def reproduces(
        self,
        text: str | None,
        flat: Mapping[fl.Path, tuple[Any, str | None]],
        names: Mapping[str, str],
        dialect: str,
    ) -> bool:
        """Whether the view gives back the document `text` from the row's columns.

        Args:
            text: the document as the metadata column would hold it (standard JSON).
            flat: its flattened values, as the writer stores them.
            names: the column name of each path (by `path_key`).
            dialect: "sqlite" or "postgresql" (others: never).
        """
        if text is None or dialect not in ("sqlite", "postgresql"):
            return False
        try:
            doc = json.loads(text)
        except ValueError:
            return False
        if not isinstance(doc, dict):
            return False
        values: dict[str, Any] = {}
        try:
            for path, (value, kind) in flat.items():
                name = names.get(fl.path_key(path))
                if value is None or name is None or name not in self.by_name:
                    return False
                if kind == fl.KIND_JSON and not (value.startswith("[") or value == "{}"):
                    return False  # nesting cut at MAX_DEPTH: kept as the text it was
                values[name] = stored(dialect, self.by_name[name].kind, value)
            return bool(_ENC.encode(self.render(values, dialect)) == _ENC.encode(doc))
        except (NotRendered, ValueError, TypeError):
            return False


def create_view(conn: Any, dialect: str, quote: Any, columns: Iterable[ViewColumn]) -> None:
    """(Re)create the view `objects` over `object_rows` (a SQLAlchemy connection)."""
    conn.exec_driver_sql(f"DROP VIEW IF EXISTS {VIEW}")
    table_columns = list(conn.exec_driver_sql(f"SELECT * FROM {TABLE} WHERE 1 = 0").keys())
    conn.exec_driver_sql(Tree(columns).view_sql(dialect, quote, table_columns))


def stored(dialect: str, kind: str | None, value: Any) -> Any:
    """A flattened value as the database stores it (and a driver returns it)."""
    if dialect == "sqlite":
        return int(value) if isinstance(value, bool) else value
    if kind == fl.KIND_BOOLEAN:
        return bool(value) if isinstance(value, bool) else value
    if kind == fl.KIND_INTEGER:
        return value if isinstance(value, int) and not isinstance(value, bool) else _never()
    if kind == fl.KIND_REAL:
        return value if isinstance(value, float) else _never()
    if kind in (fl.KIND_TEXT, fl.KIND_JSON):
        return value if isinstance(value, str) else _never()
    return _never()


def _never() -> Any:
    raise NotRendered


def rendered(dialect: str, kind: str | None, value: Any) -> Any:
    """What the view's JSON gives back (parsed) for a stored value of a column of `kind`."""
    if kind == fl.KIND_BOOLEAN:
        if dialect == "sqlite":
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            raise NotRendered
        if isinstance(value, bool):
            return value
        raise NotRendered
    if kind == fl.KIND_JSON:
        if not isinstance(value, str):
            raise NotRendered
        return json.loads(value)  # ValueError ("NaN" inside): not rendered
    if isinstance(value, float):
        # SQLite writes 15 significant digits; PostgreSQL writes 5.0 as 5, an integer.
        if not math.isfinite(value) or math.copysign(1.0, value) < 0 and value == 0:
            raise NotRendered
        if float(f"{value:.15g}") != value:
            raise NotRendered
        if dialect == "postgresql" and value.is_integer():
            raise NotRendered
        return value
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise NotRendered
    return value


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
