"""Output formats of `deon query` (deon/output.py format_rows), and text made printable."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deon.errors import QueryError, UsageError
from deon.output import FORMATS, TABLE_CELL, format_rows, json_printable, printable

COLUMNS = ["bucket", "key", "uri", "size", "metadata"]
ROWS = [
    ("lab", "a/one.h5", "s3://lab/a/one.h5", 10, '{"robot": "sawyer"}'),
    ("lab", "b/two.h5", "s3://lab/b/two.h5", 20, None),
]


def _lines(columns: list[str], rows: list[tuple[Any, ...]], fmt: str) -> list[str]:
    return list(format_rows(columns, rows, fmt))


def _printed(lines: list[str]) -> str:
    """What `deon query` writes: each line followed by a newline."""
    return "".join(line + "\n" for line in lines)


# -- uri and key ------------------------------------------------------------------------


def test_uri_format_prints_one_uri_per_line() -> None:
    assert _lines(COLUMNS, ROWS, "uri") == ["s3://lab/a/one.h5", "s3://lab/b/two.h5"]


def test_key_format_prints_one_key_per_line() -> None:
    assert _lines(COLUMNS, ROWS, "key") == ["a/one.h5", "b/two.h5"]


def test_uri_format_works_for_any_column_position() -> None:
    assert _lines(["n", "uri"], [(1, "s3://b/x"), (2, "s3://b/y")], "uri") == [
        "s3://b/x",
        "s3://b/y",
    ]


def test_no_rows_no_lines() -> None:
    for fmt in ("uri", "key", "json"):
        assert _lines(COLUMNS, [], fmt) == []
    assert _lines(COLUMNS, [], "csv") == [",".join(COLUMNS)]


@pytest.mark.parametrize("fmt", ["uri", "key"])
def test_missing_column_is_a_query_error_suggesting_other_formats(fmt: str) -> None:
    def rows() -> Iterator[tuple[Any, ...]]:
        raise AssertionError("rows read before the format was checked")
        yield ()  # pragma: no cover

    with pytest.raises(QueryError) as info:
        list(format_rows(["robot", "n"], rows(), fmt))
    message = str(info.value)
    assert repr(fmt) in message
    for other in ("json", "csv", "table"):
        assert other in message
    assert isinstance(info.value, UsageError)  # exit status 2


# -- json -------------------------------------------------------------------------------


def test_json_one_object_per_line() -> None:
    lines = _lines(COLUMNS, ROWS, "json")
    assert len(lines) == 2
    records = [json.loads(line) for line in lines]
    assert records[0] == {
        "bucket": "lab",
        "key": "a/one.h5",
        "uri": "s3://lab/a/one.h5",
        "size": 10,
        "metadata": {"robot": "sawyer"},  # parsed, not a string
    }
    assert records[1]["metadata"] is None
    assert '"metadata": null' in lines[1]


def test_json_keeps_bad_metadata_as_string_and_other_columns_as_they_are() -> None:
    columns = ["uri", "metadata", "note", "tags", "when", "raw"]
    row = (
        "s3://lab/x.h5",
        "not json {",
        "two\nlines",
        '["a", "b"]',
        dt.datetime(2024, 5, 1, 12, 30),
        b"\x01\xff",
    )
    (line,) = _lines(columns, [row], "json")
    assert "\n" not in line  # a newline in a value does not break the line
    record = json.loads(line)
    assert record["metadata"] == "not json {"
    assert record["note"] == "two\nlines"
    assert record["when"] == "2024-05-01 12:30:00"
    assert record["raw"] == "01ff"


def test_json_keeps_non_ascii() -> None:
    (line,) = _lines(
        ["uri", "robot", "metadata"], [("s3://l/ü.h5", "ロボット", '{"städt": "Zürich"}')], "json"
    )
    assert "ロボット" in line and "Zürich" in line and "ü.h5" in line
    assert "\\u" not in line
    assert json.loads(line) == {
        "uri": "s3://l/ü.h5",
        "robot": "ロボット",
        "metadata": {"städt": "Zürich"},
    }


def _strict_json(line: str) -> Any:
    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(line, parse_constant=refuse)


@pytest.mark.parametrize(
    ("column", "value"),
    [("speed", float("inf")), ("metadata", '{"x": NaN}')],
    ids=["inf-column", "nan-metadata"],
)
def test_json_lines_are_standard_json(column: str, value: Any) -> None:
    (line,) = _lines(["uri", column], [("s3://lab/x.h5", value)], "json")
    _strict_json(line)


# -- csv --------------------------------------------------------------------------------


def _read_csv(lines: list[str]) -> list[list[str]]:
    return list(csv.reader(io.StringIO(_printed(lines), newline="")))


def test_csv_header_then_rows() -> None:
    lines = _lines(COLUMNS, ROWS, "csv")
    assert lines[0] == "bucket,key,uri,size,metadata"
    assert _read_csv(lines) == [
        COLUMNS,
        ["lab", "a/one.h5", "s3://lab/a/one.h5", "10", '{"robot": "sawyer"}'],
        ["lab", "b/two.h5", "s3://lab/b/two.h5", "20", ""],  # None is empty
    ]
    assert len(lines) == 3


def test_csv_quotes_commas_and_quotes() -> None:
    rows = [("a,b", 'say "hi"', '"', ",", " x ")]
    lines = _lines(["c1", "c,2", 'c"3', "c4", "c5"], rows, "csv")
    assert len(lines) == 2
    assert _read_csv(lines) == [["c1", "c,2", 'c"3', "c4", "c5"], list(rows[0])]


@pytest.mark.parametrize("value", ["p\nq", "p\rq", "p\r\nq"], ids=["lf", "cr", "crlf"])
def test_csv_quotes_newlines(value: str) -> None:
    lines = _lines(["uri", "note"], [("s3://lab/x.h5", value)], "csv")
    assert _read_csv(lines) == [["uri", "note"], ["s3://lab/x.h5", value]]


_no_line_breaks = st.text(
    alphabet=st.characters(exclude_characters="\x00\n\r"),  # and no surrogates
)
_cell = st.one_of(st.none(), _no_line_breaks)


@settings(max_examples=200)
@given(
    st.integers(min_value=1, max_value=5).flatmap(
        lambda n: st.tuples(
            st.lists(_no_line_breaks, min_size=n, max_size=n),
            st.lists(st.lists(_cell, min_size=n, max_size=n).map(tuple), max_size=5),
        )
    )
)
def test_csv_round_trips(data: tuple[list[str], list[tuple[str | None, ...]]]) -> None:
    columns, rows = data
    lines = _lines(columns, rows, "csv")
    assert len(lines) == 1 + len(rows)  # one line per row
    expected = [columns] + [["" if v is None else v for v in row] for row in rows]
    assert _read_csv(lines) == expected


# -- table ------------------------------------------------------------------------------


def test_table_has_header_and_separator() -> None:
    lines = _lines(["key", "robot"], [("a.h5", "sawyer"), ("b.h5", None)], "table")
    assert len(lines) == 4
    assert lines[0].split() == ["key", "robot"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert lines[2].split() == ["a.h5", "sawyer"]
    assert lines[3].split() == ["b.h5"]  # None is an empty cell
    # columns line up under their headers
    assert lines[2].index("sawyer") == lines[0].index("robot")


def test_table_cuts_long_cells() -> None:
    long = "x" * (TABLE_CELL + 30)
    exact = "y" * TABLE_CELL
    lines = _lines(["uri", "note", "other"], [("s3://l/a", long, exact)], "table")
    body = lines[2]
    cut = "x" * (TABLE_CELL - 1) + "…"
    assert cut in body
    assert "x" * TABLE_CELL not in body
    assert exact in body and "y…" not in body  # a cell of exactly TABLE_CELL is kept
    assert lines[0].split() == ["uri", "note", "other"]


def test_table_shows_text_as_it_is() -> None:
    lines = _lines(["key", "etag", "code"], [("007", "00123", "1e5")], "table")
    assert lines[2].split() == ["007", "00123", "1e5"]


# -- unknown ----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["xml", "", "URI", "tsv"])
def test_unknown_format_is_a_query_error(fmt: str) -> None:
    with pytest.raises(QueryError) as info:
        list(format_rows(COLUMNS, ROWS, fmt))
    for known in FORMATS:
        assert known in str(info.value)


# -- printable text -------------------------------------------------------------------------

UNPRINTABLE = {chr(c) for c in [*range(0x20), *range(0x7F, 0xA0), *range(0xD800, 0xE000)]}


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),
        ("a\x1b[2Jb", "a\\x1b[2Jb"),
        ("line\nnext\r\tx", "line\\nnext\\r\\tx"),
        ("\x00\x7f\x85\x9b", "\\x00\\x7f\\x85\\x9b"),
        ("\ud800 and \udcff", "\\ud800 and \\udcff"),
        ("plain s3://lab/a b/ü €/😀\\x1b", "plain s3://lab/a b/ü €/😀\\x1b"),
    ],
)
def test_printable_escapes_control_characters_and_lone_surrogates(text: str, shown: str) -> None:
    assert printable(text) == shown


@given(st.text(alphabet=st.characters(exclude_categories=())))  # surrogates too
def test_printable_text_is_one_safe_line_and_keeps_everything_else(text: str) -> None:
    shown = printable(text)

    assert not UNPRINTABLE & set(shown)
    shown.encode("utf-8")  # never raises
    if not UNPRINTABLE & set(text):
        assert shown == text


@given(
    st.recursive(
        st.none() | st.text() | st.integers(), lambda c: st.lists(c) | st.dictionaries(st.text(), c)
    )
)
def test_json_printable_is_safe_and_decodes_to_the_same_value(value: Any) -> None:
    text = json_printable(json.dumps(value, indent=2, ensure_ascii=False))

    assert not (UNPRINTABLE - {"\n"}) & set(text)
    text.encode("utf-8")
    assert json.loads(text) == value
