"""A leaner catalog: drop the indexes on objects.uri and objects.sha256.

Measured on 100,000 RoboNet-like rows (bench/RESULTS.md, "Catalog size"): the uri index
took 46 bytes per object and the sha256 index 84, 7 % of the file, and nothing deon
does reads through them — `pull` looks rows up by (bucket, key), the primary key. The
columns stay, so `WHERE uri = ...` still works (by a scan); `CREATE INDEX` brings an
index back for whoever needs one.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    names = {ix["name"] for ix in sa.inspect(op.get_bind()).get_indexes("objects")}
    for name in ("ix_objects_uri", "ix_objects_sha256"):
        if name in names:
            op.drop_index(name, table_name="objects")


def downgrade() -> None:
    op.create_index("ix_objects_uri", "objects", ["uri"], unique=True)
    op.create_index("ix_objects_sha256", "objects", ["sha256"])
