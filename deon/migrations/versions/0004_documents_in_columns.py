"""A leaner catalog: each metadata document kept once, in its flattened columns.

The rows move to the table `object_rows`, whose `metadata` column holds `{}` for a
document its flattened columns reproduce exactly (the whole text otherwise), and
`objects` becomes a view over it that rebuilds `metadata` from the columns
(deon/catalog/documents.py): every reader sees the documents as before. Keys get their
place in the documents (`meta_columns.position`), taken from the first rows. Indexes of
metadata columns that one value dominates are dropped (db.choose_indexes). Measured on
1,000,000 RoboNet-like rows in bench/RESULTS.md, "Catalog size".

SQLite keeps the freed pages for the rows to come; `VACUUM` gives them back.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

#: Rows whose key order gives the keys their places.
PLACES_FROM = 10_000
#: Rows judged (and updated) per page.
PAGE = 5_000


def _columns(conn: Any) -> list[Any]:
    from deon.catalog.db import Catalog

    return Catalog._columns(conn)


def _view_columns(cols: list[Any]) -> list[Any]:
    from deon.catalog.documents import ViewColumn

    return [ViewColumn(c.name, c.path, c.kind, c.position) for c in cols]


def upgrade() -> None:
    from deon.catalog import documents as docs
    from deon.catalog import flatten as fl
    from deon.catalog.db import choose_indexes

    conn = op.get_bind()
    dialect = conn.dialect.name
    quote = conn.dialect.identifier_preparer.quote_identifier
    op.add_column("meta_columns", sa.Column("position", sa.Integer))
    # Places: the order keys first appear in, in the first rows' documents.
    places: dict[str, int] = {}
    texts = conn.exec_driver_sql(
        f"SELECT metadata FROM objects WHERE metadata IS NOT NULL LIMIT {PLACES_FROM}"
    ).scalars()
    for text in texts:
        try:
            flat = fl.flatten(json.loads(text))
        except ValueError:
            continue
        for path in flat:
            places.setdefault(fl.path_key(path), len(places) + 1)
    cols = _columns(conn)
    rest = len(places)
    for c in cols:  # keys not in those rows: after them, in the registry's order
        pk = fl.path_key(c.path)
        if pk not in places:
            rest += 1
            places[pk] = rest
        conn.execute(
            sa.text("UPDATE meta_columns SET position = :p WHERE name = :n"),
            {"p": places[pk], "n": c.name},
        )
    op.rename_table("objects", docs.TABLE)
    cols = _columns(conn)
    tree = docs.Tree(_view_columns(cols))
    names = [c.name for c in cols]
    select = ", ".join(["bucket", quote("key"), "metadata", *(quote(n) for n in names)])
    key_order = f'{quote("key")} COLLATE "C"' if dialect == "postgresql" else quote("key")
    after: tuple[str, str] | None = None
    while True:
        where = "metadata IS NOT NULL"
        params: dict[str, Any] = {}
        if after is not None:
            where += f" AND (bucket > :b OR (bucket = :b AND {key_order} > :k))"
            params = {"b": after[0], "k": after[1]}
        page = conn.execute(
            sa.text(
                f"SELECT {select} FROM {docs.TABLE} WHERE {where} "
                f"ORDER BY bucket, {key_order} LIMIT {PAGE}"
            ),
            params,
        ).all()
        if not page:
            break
        same = [
            {"b": r[0], "k": r[1]}
            for r in page
            if r[2] != docs.IN_COLUMNS
            and tree.reproduces_stored(r[2], dict(zip(names, r[3:], strict=True)), dialect)
        ]
        if same:
            conn.execute(
                sa.text(
                    f"UPDATE {docs.TABLE} SET metadata = '{docs.IN_COLUMNS}' "
                    f"WHERE bucket = :b AND {quote('key')} = :k"
                ),
                same,
            )
        after = (page[-1][0], page[-1][1])
    choose_indexes(conn, quote)
    docs.create_view(conn, dialect, quote, _view_columns(cols))


def downgrade() -> None:
    from deon.catalog import documents as docs

    conn = op.get_bind()
    quote = conn.dialect.identifier_preparer.quote_identifier
    cols = _columns(conn)
    doc = docs.Tree(_view_columns(cols)).document_sql(conn.dialect.name, quote)
    conn.exec_driver_sql(f"DROP VIEW IF EXISTS {docs.VIEW}")
    conn.exec_driver_sql(
        f"UPDATE {docs.TABLE} SET metadata = {doc} WHERE metadata = '{docs.IN_COLUMNS}'"
    )
    op.rename_table(docs.TABLE, "objects")
    with op.batch_alter_table("meta_columns") as batch:
        batch.drop_column("position")
