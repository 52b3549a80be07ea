"""objects.version_id: the VersionId of the mirrored object, where the bucket keeps versions.

Manifests (`deon freeze`) record it so that `pull --manifest` can fetch the frozen bytes of
an object replaced since. A metadata key already stored in a column named `version_id`
moves to `meta_version_id`, the name a metadata key that collides with a fixed column
gets (README: "Column names").

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    conn = op.get_bind()
    columns = {c["name"] for c in sa.inspect(conn).get_columns("objects")}
    if "version_id" in columns:
        target = "meta_version_id"
        n = 2
        while target in columns:
            target, n = f"meta_version_id_{n}", n + 1
        # RENAME COLUMN in place (SQLite >= 3.25, PostgreSQL): a batch rename would copy
        # the table, and SQLite metadata columns have no declared type, which Alembic
        # cannot write out again (NullType).
        conn.exec_driver_sql(f'ALTER TABLE objects RENAME COLUMN version_id TO "{target}"')
        conn.execute(
            sa.text("UPDATE meta_columns SET name = :new WHERE name = 'version_id'"),
            {"new": target},
        )
    with op.batch_alter_table("objects") as batch:
        batch.add_column(sa.Column("version_id", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("objects") as batch:
        batch.drop_column("version_id")
