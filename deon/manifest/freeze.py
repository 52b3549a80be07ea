"""A manifest from the catalog: the rows a WHERE condition (or a whole SELECT) picks,
with the size, ETag, sha256, LastModified and VersionId the mirror recorded.

Read-only, through the same connection as `deon query` (deon.catalog.query.Reader).
"""

from __future__ import annotations

from typing import Any

from deon.catalog.query import Reader, run, statement
from deon.errors import QueryError
from deon.manifest.format import Entry, Manifest, Source, build, iso_time

_FIELDS = "bucket, key, size, etag, sha256, last_modified, version_id, mirrored_at"


def _entries(rows: Any) -> tuple[list[Entry], str | None]:
    """Entries from (bucket, key, size, etag, sha256, last_modified, version_id,
    mirrored_at) rows, and the newest mirrored_at among them."""
    out: list[Entry] = []
    newest: str | None = None
    for bucket, key, size, etag, sha, lm, vid, mirrored in rows:
        lm_text = iso_time(lm) or ""
        out.append(Entry(bucket, key, int(size), etag, sha or None, lm_text, vid or None))
        when = iso_time(mirrored)
        if when is not None and (newest is None or when > newest):
            newest = when
    return out, newest


def _by_uri(reader: Reader, uris: list[str]) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    for i in range(0, len(uris), 500):
        chunk = ", ".join("'" + u.replace("'", "''") + "'" for u in uris[i : i + 500])
        _, found = reader.execute(f"SELECT {_FIELDS} FROM objects WHERE uri IN ({chunk})")
        rows.extend(found)
    return rows


def select(reader: Reader, where: str | None = None, sql: str | None = None) -> Manifest:
    """Freeze the rows a condition on `objects` selects (every row with neither), or
    those a whole SELECT names through a `uri` column or `bucket` and `key` columns.

    `created` is the newest `mirrored_at` of the selected rows: when the catalog last
    wrote any of them. It changes only when one of them does, so freezing the same
    catalog again gives the same bytes.

    Raises:
        QueryError: bad SQL, or a SELECT that names no objects (exit 2).
    """
    if sql is not None:
        columns, rows = run(reader, sql=sql)
        names = [c.lower() for c in columns]
        if "uri" in names:
            i = names.index("uri")
            uris = [str(r[i]) for r in rows if r[i] is not None]
        elif "bucket" in names and "key" in names:
            b, k = names.index("bucket"), names.index("key")
            uris = [f"s3://{r[b]}/{r[k]}" for r in rows if r[b] is not None]
        else:
            raise QueryError(
                "--sql for a manifest must select a uri column (or bucket and key): "
                f"it gives {', '.join(columns) or 'no columns'}"
            )
        wanted = list(dict.fromkeys(uris))
        found = _by_uri(reader, wanted)
        if len(found) != len(wanted):
            have = {f"s3://{r[0]}/{r[1]}" for r in found}
            missing = [u for u in wanted if u not in have]
            raise QueryError(
                f"--sql names {len(missing)} object(s) the catalog does not hold "
                f"(first: {missing[0]}): a manifest holds catalog rows only"
            )
        entries, created = _entries(found)
        query: dict[str, str | None] = {"sql": statement(sql)}
    else:
        _, rows = run(reader, where=where, columns=_FIELDS)
        entries, created = _entries(rows)
        condition = statement(where) if where is not None else ""
        query = {"where": condition if condition.strip() else None}
    return build(entries, query=query, sources=_sources(reader, entries), created=created)


def _sources(reader: Reader, entries: list[Entry]) -> list[Source]:
    """The catalog's sources that cover at least one entry, in (bucket, prefix) order."""
    _, rows = reader.execute("SELECT bucket, prefix, endpoint_url FROM sources")
    found = sorted((str(b), str(p), e or None) for b, p, e in rows)
    buckets: dict[str, list[str]] = {}
    for e in entries:
        buckets.setdefault(e.bucket, []).append(e.key)
    out = []
    for bucket, prefix, endpoint in found:
        if any(k.startswith(prefix) for k in buckets.get(bucket, ())):
            out.append(Source(f"s3://{bucket}/{prefix}", endpoint))
    return out


def again(reader: Reader, manifest: Manifest) -> Manifest:
    """Freeze the manifest's own query against the catalog as it is now."""
    q = manifest.query
    if isinstance(q.get("sql"), str):
        return select(reader, sql=q["sql"])
    where = q.get("where")
    return select(reader, where=where if isinstance(where, str) else None)
