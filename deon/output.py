"""Turning catalog rows into lines of output: URIs, keys, JSON lines, CSV, a table;
and making untrusted text (keys, filenames, HDF5 contents) safe to show on a terminal.

Formatting only; the CLI does the printing. Rows are streamed except for `table`,
which needs every row to size its columns.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from deon.catalog import flatten as fl
from deon.errors import QueryError

FORMATS = ("uri", "key", "json", "csv", "table")
#: Longest cell in --format table before it is cut with "…".
TABLE_CELL = 48


# C0 controls, DEL, C1 controls and UTF-16 surrogates (a str holds them when it was
# decoded with surrogateescape, as filenames and h5py strings are, or came from a JSON
# "\ud800" escape). A terminal acts on the first three (ESC starts a sequence that can
# clear the screen or set the window title) and a UTF-8 stream cannot encode the last.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# What json.dumps leaves unescaped of those (it escapes C0 inside strings; outside them
# there are only the newlines of indentation, which must stay).
_JSON_UNPRINTABLE = re.compile(r"[\x7f-\x9f\ud800-\udfff]")
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """Text that is safe to show a person on a terminal, on one line.

    Control characters (C0, DEL, C1) and lone surrogates are written as Python-style
    escapes (`\\x1b`, `\\n`, `\\ud800`); everything else is kept as it is. For
    human-facing lines only: data meant for pipes must stay exact.
    """
    if _UNPRINTABLE.search(text) is None:
        return text
    return _UNPRINTABLE.sub(_escape, text)


def json_printable(text: str) -> str:
    """JSON text (from `json.dumps(..., ensure_ascii=False)`) made safe for a terminal.

    `json.dumps` escapes C0 controls but passes DEL, C1 controls and lone surrogates
    through; they can only occur inside JSON strings, so writing them as `\\uXXXX`
    keeps the text valid JSON that decodes to the same value.
    """
    if _JSON_UNPRINTABLE.search(text) is None:
        return text
    return _JSON_UNPRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


#: The kinds JSON lines use when the caller gives none: the metadata document parsed.
DEFAULT_KINDS: Mapping[str, str] = {"metadata": fl.KIND_JSON}


def _jsonable(kind: str | None, value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    return fl.unscalar(kind, value)


def _strict_json(record: dict[str, Any]) -> str:
    try:
        return json.dumps(record, ensure_ascii=False, default=str, allow_nan=False)
    except ValueError:
        return json.dumps(fl.finite(record), ensure_ascii=False, default=str, allow_nan=False)


def format_rows(
    columns: list[str],
    rows: Iterable[tuple[Any, ...]],
    fmt: str,
    kinds: Mapping[str, str] | None = None,
) -> Iterator[str]:
    """Lines of output for rows in a format of FORMATS.

    `kinds` (column name to kind, see Reader.column_kinds) types the values of JSON
    lines as the metadata had them: booleans as true/false, lists and objects parsed.
    CSV and tables show values as the catalog stores them.

    Raises:
        QueryError: `uri`/`key` format for a result without that column.
    """
    if fmt in ("uri", "key"):
        if fmt not in columns:
            raise QueryError(
                f"the result has no {fmt!r} column: select it, or use --format json, csv or table"
            )
        i = columns.index(fmt)
        for row in rows:
            yield str(row[i])
    elif fmt == "json":
        column_kinds = [(kinds or DEFAULT_KINDS).get(c) for c in columns]
        for row in rows:
            record = {
                c: _jsonable(k, v) for c, k, v in zip(columns, column_kinds, row, strict=True)
            }
            yield _strict_json(record)
    elif fmt == "csv":
        buf = io.StringIO()
        # "\r\n" as terminator makes the writer quote fields holding \r or \n; each
        # record is yielded without it (the caller ends lines).
        writer = csv.writer(buf, lineterminator="\r\n")
        for part in ([tuple(columns)], rows):
            for values in part:
                writer.writerow(["" if v is None else v for v in values])
                yield buf.getvalue()[:-2]
                buf.seek(0)
                buf.truncate()
    elif fmt == "table":
        from tabulate import tabulate

        def cell(v: Any) -> Any:
            text = "" if v is None else str(v)
            return text if len(text) <= TABLE_CELL else text[: TABLE_CELL - 1] + "…"

        body = [[cell(v) for v in row] for row in rows]
        yield from tabulate(
            body, headers=columns, tablefmt="simple", disable_numparse=True
        ).splitlines()
    else:
        raise QueryError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
