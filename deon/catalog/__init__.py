"""The catalog: one row per object with its metadata flattened into columns."""

from deon.catalog.db import Catalog, ObjectRow, open_catalog, resolve_url

__all__ = ["Catalog", "ObjectRow", "open_catalog", "resolve_url"]
