"""The catalog's tables.

`objects` has one row per object: the fixed columns below plus one column per flattened
metadata key, added at run time as new keys appear (their names and kinds are recorded
in `meta_columns`, which is what makes them "known" rather than stray). `sources` holds
every address ever mirrored, so `deon metadata down` with no address can refresh them.
Schema changes to these fixed tables go through Alembic revisions in deon/migrations.
"""

from __future__ import annotations

import sqlalchemy as sa

# The revision these models correspond to lives where `deon query` can read it
# without importing SQLAlchemy.
from deon.catalog.location import SCHEMA_REVISION as SCHEMA_REVISION

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)

#: The rows (revision 0004: the table `object_rows`, read through the view `objects`,
#: which rebuilds `metadata` from the flattened columns: deon/catalog/documents.py).
objects = sa.Table(
    "object_rows",
    metadata,
    sa.Column("bucket", sa.Text, primary_key=True),
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("uri", sa.Text, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("etag", sa.Text, nullable=False),
    sa.Column("last_modified", sa.DateTime, nullable=False),
    sa.Column("sha256", sa.Text),
    #: the object's VersionId where the bucket keeps versions (revision 0002)
    sa.Column("version_id", sa.Text),
    #: the metadata document as JSON text (NULL when the object has none); `{}` when
    #: the flattened columns hold all of it (revision 0004), which the view rebuilds
    sa.Column("metadata", sa.Text),
    #: why the metadata could not be read, when it could not
    sa.Column("metadata_error", sa.Text),
    sa.Column("mirrored_at", sa.DateTime, nullable=False),
    # No index on uri or sha256 (revision 0003): rows are found by (bucket, key).
)

sources = sa.Table(
    "sources",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("bucket", sa.Text, nullable=False),
    sa.Column("prefix", sa.Text, nullable=False),
    sa.Column("endpoint_url", sa.Text),
    sa.Column("added_at", sa.DateTime, nullable=False),
    sa.Column("mirrored_at", sa.DateTime),
    sa.UniqueConstraint("bucket", "prefix", name="uq_sources_bucket_prefix"),
)

meta_columns = sa.Table(
    "meta_columns",
    metadata,
    #: the column's name in `objects`
    sa.Column("name", sa.Text, primary_key=True),
    #: the metadata path it holds, as a JSON list: ["gripper", "type"]
    sa.Column("path", sa.Text, nullable=False, unique=True),
    #: boolean, integer, real, text or json (NULL until a non-null value is seen)
    sa.Column("kind", sa.Text),
    sa.Column("added_at", sa.DateTime, nullable=False),
    sa.Column("indexed", sa.Boolean, nullable=False, server_default=sa.false()),
    #: the key's place in the documents (the order the view rebuilds them in; 0004)
    sa.Column("position", sa.Integer),
)

#: Columns of `objects` that are not metadata, in table order; a metadata key with
#: one of these names is stored as `meta_<name>`.
FIXED_ORDER = tuple(c.name for c in objects.columns)
FIXED_COLUMNS = frozenset(FIXED_ORDER)
