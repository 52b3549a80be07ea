"""The catalog: one row per object with its metadata flattened into columns.

Database only: it imports nothing from deon's S3, transfer or mirror layers.

The names below are loaded on first use, so that `deon query`, which reads a SQLite
catalog with the sqlite3 module alone (query.py), does not import SQLAlchemy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Catalog", "ObjectRow", "open_catalog", "resolve_url"]

if TYPE_CHECKING:
    from deon.catalog.db import Catalog, ObjectRow, open_catalog, resolve_url


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'deon.catalog' has no attribute {name!r}")
    from deon.catalog import db

    return getattr(db, name)
