"""Warnings are values with a code: callers (the CLI among them) recognise a warning by
its code, never by matching its text."""

from __future__ import annotations

from pathlib import Path

from deon.catalog import flatten as fl
from deon.catalog.db import ObjectRow, open_catalog
from deon.config import read_config_file
from deon.errors import DeonWarning, WarningCode
from deon.metadata import wire as meta
from deon.mirror.sources import plan
from deon.uri import S3Address


def test_a_warning_is_its_text_and_carries_a_code() -> None:
    w = DeonWarning(WarningCode.OTHER, "look out")
    assert w == "look out" and f"{w}" == "look out" and w.code is WarningCode.OTHER


def test_catalog_column_warnings_carry_their_codes(tmp_path: Path) -> None:
    import datetime as dt

    when = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)

    def row(key: str, doc: dict[str, object]) -> ObjectRow:
        return ObjectRow("b", key, 1, "e", when, metadata="{}", flat=fl.flatten(doc))

    # the shorter path ("a_b",) outranks ("a", "b") for the column name a_b
    with open_catalog(str(tmp_path / "one.sqlite")) as catalog:
        assert catalog.write([row("1", {"a_b": 1})]) == []
        later_lower = catalog.write([row("2", {"a": {"b": 2}})])
    with open_catalog(str(tmp_path / "two.sqlite")) as catalog:
        assert catalog.write([row("1", {"a": {"b": 2}})]) == []
        later_higher = catalog.write([row("2", {"a_b": 1})])
    assert [w.code for w in later_lower] == [WarningCode.COLUMN_SUFFIXED]
    assert [w.code for w in later_higher] == [WarningCode.COLUMN_RENAMED]


def test_an_unknown_config_key_warns_with_its_code(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("jobz = 4\n")
    loaded = read_config_file(path)
    assert [w.code for w in loaded.warnings] == [WarningCode.CONFIG_UNKNOWN_KEY]
    assert "jobz" in loaded.warnings[0]


def test_a_malformed_sha256_header_warns_with_its_code() -> None:
    decoded = meta.decode({"deon-sha256": "not-a-digest"})
    assert [w.code for w in decoded.warnings] == [WarningCode.MALFORMED_SHA256]


def test_a_moved_endpoint_warns_with_its_code() -> None:
    class Source:
        bucket, prefix, endpoint_url, uri = "b", "p/", "http://old:9000", "s3://b/p/"

    out = plan([S3Address("b", "p/")], [Source()], "http://new:9000")
    assert [w.code for w in out.warnings] == [WarningCode.ENDPOINT_MOVED]
    assert out.addresses == [S3Address("b", "p/")]
