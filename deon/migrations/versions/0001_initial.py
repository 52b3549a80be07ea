"""The first catalog schema: objects, sources, meta_columns.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "objects",
        sa.Column("bucket", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("uri", sa.Text, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("etag", sa.Text, nullable=False),
        sa.Column("last_modified", sa.DateTime, nullable=False),
        sa.Column("sha256", sa.Text),
        sa.Column("metadata", sa.Text),
        sa.Column("metadata_error", sa.Text),
        sa.Column("mirrored_at", sa.DateTime, nullable=False),
        sa.PrimaryKeyConstraint("bucket", "key", name="pk_objects"),
    )
    op.create_index("ix_objects_uri", "objects", ["uri"], unique=True)
    op.create_index("ix_objects_sha256", "objects", ["sha256"])
    op.create_table(
        "sources",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("bucket", sa.Text, nullable=False),
        sa.Column("prefix", sa.Text, nullable=False),
        sa.Column("endpoint_url", sa.Text),
        sa.Column("added_at", sa.DateTime, nullable=False),
        sa.Column("mirrored_at", sa.DateTime),
        sa.UniqueConstraint("bucket", "prefix", name="uq_sources_bucket_prefix"),
    )
    op.create_table(
        "meta_columns",
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("kind", sa.Text),
        sa.Column("added_at", sa.DateTime, nullable=False),
        sa.Column("indexed", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.PrimaryKeyConstraint("name", name="pk_meta_columns"),
        sa.UniqueConstraint("path", name="uq_meta_columns_path"),
    )


def downgrade() -> None:
    op.drop_table("meta_columns")
    op.drop_table("sources")
    op.drop_index("ix_objects_sha256", table_name="objects")
    op.drop_index("ix_objects_uri", table_name="objects")
    op.drop_table("objects")
