"""The streaming refresh merges the listing with the catalog's rows, so both must come
in the order S3 lists keys: by their UTF-8 bytes. Keys whose byte order differs from a
linguistic one (case, accents, full-width letters, characters beyond U+FFFF, and
punctuation below '/') must refresh as unchanged, on SQLite and on a PostgreSQL
database whose default collation is linguistic."""

from __future__ import annotations

from typing import Any

import pytest

from deon.metadata import wire as meta
from tests.conftest import Lab, run_deon

KEYS = [
    "o/a.h5",
    "o/B.h5",
    "o/A.h5",
    "o/_x.h5",
    "o/a b.h5",
    "o/a-b.h5",
    "o/a/b.h5",
    "o/a0.h5",
    "o/é.h5",
    "o/e.h5",
    "o/z.h5",
    "o/ｚ.h5",  # full-width z, U+FF5A
    "o/\U0001f600.h5",  # beyond U+FFFF: after U+FF5A in UTF-8 as in code points
    "o/\ue000.h5",  # private use: after the surrogate range, before U+FF5A
    "o/Z.h5",
]


def fill(lab: Lab) -> None:
    for i, key in enumerate(KEYS):
        lab.put(key, f"{i}".encode(), meta.encode({"i": i}, None, lambda d: "").metadata)


def refresh_twice(lab: Lab, *catalog: str) -> Any:
    first = run_deon(*catalog, "metadata", "down", "s3://lab/o")
    assert first.returncode == 0, first.stderr
    assert f"{len(KEYS)} new" in first.stderr
    lab.proxy.reset()
    second = run_deon(*catalog, "metadata", "down", "s3://lab/o")
    assert second.returncode == 0, second.stderr
    return second


def test_keys_whose_byte_order_is_not_alphabetical_refresh_as_unchanged(lab: Lab) -> None:
    fill(lab)
    lab.put("o/gone.h5", b"x")

    assert run_deon("metadata", "down", "s3://lab/o").returncode == 0
    lab.client.delete_object(Bucket="lab", Key="o/gone.h5")
    lab.proxy.reset()
    r = run_deon("metadata", "down", "s3://lab/o")

    assert r.returncode == 0, r.stderr
    assert f"0 new, 0 changed, 1 deleted, {len(KEYS)} unchanged" in r.stderr
    assert lab.proxy.count("HEAD") == 0
    assert sorted(row["key"] for row in lab.rows()) == sorted(KEYS)


def test_on_postgres_with_a_linguistic_collation_the_order_is_still_bytes(
    lab: Lab, pg_catalog: str
) -> None:
    import psycopg

    url = pg_catalog.replace("postgresql+psycopg://", "postgresql://")
    # A database whose default collation sorts as people do (ICU, where available;
    # else the first UTF-8 locale the server knows).
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        name = url.rsplit("/", 1)[1]
        conn.execute(f'DROP DATABASE "{name}"')
        try:
            conn.execute(
                f'CREATE DATABASE "{name}" TEMPLATE template0 LOCALE_PROVIDER icu '
                "ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
            )
        except psycopg.Error:
            locales = [
                r[0]
                for r in conn.execute(
                    "SELECT collcollate FROM pg_collation WHERE collcollate ILIKE '%utf%8%' "
                    "AND collcollate NOT ILIKE 'C.%'"
                )
            ]
            if not locales:
                conn.execute(f'CREATE DATABASE "{name}"')
                pytest.skip("this PostgreSQL has no linguistic collation")
            conn.execute(
                f"CREATE DATABASE \"{name}\" TEMPLATE template0 LC_COLLATE '{locales[0]}' "
                f"LC_CTYPE '{locales[0]}'"
            )
    with psycopg.connect(url) as conn:
        ordered = [
            r[0] for r in conn.execute("SELECT k FROM unnest(%s::text[]) AS k ORDER BY k", (KEYS,))
        ]
    assert ordered != sorted(KEYS), "the collation sorts as bytes: nothing would be tested"
    fill(lab)

    r = refresh_twice(lab, "--catalog", pg_catalog)

    assert f"0 new, 0 changed, 0 deleted, {len(KEYS)} unchanged" in r.stderr
    assert lab.proxy.count("HEAD") == 0
