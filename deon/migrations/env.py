"""Alembic environment for the deon catalog.

deon runs these migrations itself when it opens a catalog (deon.catalog.db.upgrade), passing
its connection in `config.attributes["connection"]`. For development, `alembic` works from
the repository root with alembic.ini and `-x url=sqlite:///path.sqlite`.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import context

from deon.catalog.models import metadata as target_metadata

config = context.config


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    # Metadata columns of `objects` (and their indexes) are created at run time from
    # what the bucket holds; they are not part of the fixed schema.
    if type_ == "column" and reflected and compare_to is None:
        return bool(obj.table.name != "object_rows")
    if type_ == "index" and reflected and compare_to is None:
        return not (name or "").startswith("ix_objects_m_")
    return True


def run(connection: Any) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things
        include_object=include_object,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise SystemExit("give the catalog: alembic -x url=sqlite:///path/to/catalog.sqlite ...")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        run(conn)
