"""What `deon metadata load` puts in an interactive session: `df`, `pull`, a banner.

The CLI starts the interpreter; this module only prepares its namespace.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from deon.config import Settings
from deon.output import printable
from deon.uri import parse_address


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def address_condition(address: str) -> str:
    """An SQL condition selecting the rows under an address."""
    a = parse_address(address)
    cond = f"bucket = {_literal(a.bucket)}"
    if a.prefix:
        cond += f" AND substr(key, 1, {len(a.prefix)}) = {_literal(a.prefix)}"
    return cond


def _uris(selection: Any) -> list[str]:
    """URIs from a DataFrame (its index), a Series of URIs, a list, or one URI."""
    if isinstance(selection, str):
        return [selection]
    index = getattr(selection, "index", None)
    if index is not None and getattr(index, "name", None) == "uri":
        return [str(u) for u in index]
    if isinstance(selection, Iterable):
        return [str(u) for u in selection]
    raise TypeError("pull() takes a DataFrame from df, a list of s3:// URIs, or one URI")


def make_namespace(
    settings: Settings, address: str | None, download: Callable[..., Any]
) -> tuple[dict[str, Any], str]:
    """The session's variables and its banner; `download` is deon.api.pull.

    Raises:
        UsageError: no catalog yet.
    """
    import pandas as pd

    from deon.catalog.db import open_catalog

    catalog = open_catalog(settings.catalog, create=False)
    df = catalog.to_pandas(address_condition(address) if address else None)

    def pull(selection: Any, force: bool = False) -> list[str]:
        """Download the selected objects (rows of df, or URIs); returns local paths."""
        result = download(_uris(selection), force=force, settings=settings)
        for outcome in result.failed:
            print(printable(f"failed: {outcome.uri}: {outcome.message}"))
        return [str(o.local) for o in result.outcomes if o.ok and o.local is not None]

    example = _example_filter(df, catalog)
    banner = (
        f"deon catalog {catalog.display}: {len(df)} objects x {len(df.columns)} columns"
        + (f" under {address}" if address else "")
        + "\n  df        DataFrame indexed by uri, one column per metadata key"
        + "\n  pull(sel) download the rows of a DataFrame (or URIs); returns local paths"
        + f"\n  example:  pull({example})"
    )
    ns = {"df": df, "pull": pull, "catalog": catalog, "pd": pd}
    return ns, banner


def _example_filter(df: Any, catalog: Any) -> str:
    """A filter that selects something real in this catalog, for the banner: on
    `robot` if there is one, else on the first text column that tells rows apart."""
    from deon.catalog import flatten as fl

    # df names a column by its metadata key as written (`Robot`), the catalog by its SQL name
    names = [fl.shown(c.path) for c in catalog.columns() if c.kind == "text"]
    candidates = [n for n in names if n in df.columns]
    candidates.sort(key=lambda name: (name != "robot", df[name].nunique() < 2))
    for name in candidates:
        values = df[name].dropna()
        if len(values):
            column = f"df.{name}" if name.isidentifier() else f"df[{name!r}]"
            return f"df[{column} == {values.mode().iloc[0]!r}]"
    return "df.head(3)"
