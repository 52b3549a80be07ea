"""`deon export`: selected catalog rows to Parquet, CSV or JSON lines, typed.

Each column gets the type of what it holds: the fixed columns their own (size int64,
times UTC timestamps), metadata columns the kind recorded in `meta_columns` (boolean,
int64, double, string; lists and objects as JSON text in Parquet and CSV, as JSON in
JSON lines). The files read as they are in DuckDB, pandas, Spark and Athena. Rows are
streamed in batches; the file appears under its name only when complete.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from deon.catalog import flatten as fl
from deon.catalog.query import Reader, run
from deon.errors import UsageError

FORMATS = ("parquet", "csv", "jsonl")
BATCH = 10_000


def kinds_of(reader: Reader, columns: list[str]) -> dict[str, str | None]:
    """The kind of each result column (None: unknown, e.g. a computed --sql column)."""
    kinds = reader.column_kinds()
    return {c: kinds.get(c) for c in columns}


def _time(value: Any) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        return value if value is None or value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    return dt.datetime.fromisoformat(str(value)).replace(tzinfo=dt.timezone.utc)


def _typed(kind: str | None, value: Any, *, parse_json: bool) -> Any:
    """A value as its column's kind: 0/1 to bool, JSON text parsed (if asked), ..."""
    if value is None or kind in fl.NUMBER_KINDS:
        return fl.as_number(kind, value)
    if kind == "datetime":
        return _time(value)
    if kind == fl.KIND_JSON:
        if parse_json and isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value if isinstance(value, str) else json.dumps(value)
    if kind == fl.KIND_TEXT:
        return value if isinstance(value, str) else json.dumps(value)
    return value


def export(
    reader: Reader, out: str, fmt: str, *, where: str | None = None, sql: str | None = None
) -> int:
    """Write the selected rows to `out` ("-" for stdout, CSV and JSON lines only).
    Returns the number of rows.

    Raises:
        UsageError: unknown format, Parquet to stdout, or pyarrow missing.
        QueryError: a bad WHERE or SQL.
    """
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt == "parquet" and out == "-":
        raise UsageError("Parquet cannot go to standard output: give -o FILE")
    columns, rows = run(reader, where=where, sql=sql)
    kinds = kinds_of(reader, columns)
    if out == "-":
        import sys

        return _write(fmt, columns, kinds, rows, sys.stdout)
    target = Path(out).expanduser()
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        if fmt == "parquet":
            count = _parquet(columns, kinds, rows, Path(tmp))
        else:
            with open(tmp, "w", encoding="utf-8", newline="") as f:
                count = _write(fmt, columns, kinds, rows, f)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count


def _write(
    fmt: str,
    columns: list[str],
    kinds: dict[str, str | None],
    rows: Iterator[tuple[Any, ...]],
    f: Any,
) -> int:
    count = 0
    if fmt == "csv":
        writer = csv.writer(f)
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if v is None else v for v in row])
            count += 1
        return count
    for row in rows:
        record = {
            c: _typed(kinds[c], v, parse_json=True) for c, v in zip(columns, row, strict=True)
        }
        try:
            line = json.dumps(record, ensure_ascii=False, default=str, allow_nan=False)
        except ValueError:  # NaN or ±Infinity: null, as JSON has no such numbers
            line = json.dumps(fl.finite(record), ensure_ascii=False, default=str, allow_nan=False)
        f.write(line + "\n")
        count += 1
    return count


def _parquet(
    columns: list[str], kinds: dict[str, str | None], rows: Iterator[tuple[Any, ...]], path: Path
) -> int:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as e:
        raise UsageError("Parquet needs pyarrow: pip install 'deon[parquet]'") from e

    arrow = {
        fl.KIND_BOOLEAN: pa.bool_(),
        fl.KIND_INTEGER: pa.int64(),
        fl.KIND_REAL: pa.float64(),
        fl.KIND_TEXT: pa.string(),
        fl.KIND_JSON: pa.string(),
        "datetime": pa.timestamp("us", tz="UTC"),
    }
    fields = [
        pa.field(c, arrow[k]) if (k := kinds[c]) is not None and k in arrow else None
        for c in columns
    ]
    count = 0
    writer = None
    batch: list[tuple[Any, ...]] = []

    def flush() -> None:
        nonlocal writer
        arrays = []
        for i, (c, field) in enumerate(zip(columns, fields, strict=True)):
            values = [_typed(kinds[c], row[i], parse_json=False) for row in batch]
            arrays.append(pa.array(values, type=field.type if field is not None else None))
        table = pa.Table.from_arrays(arrays, names=columns)
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table.cast(writer.schema) if table.schema != writer.schema else table)

    for row in rows:
        batch.append(row)
        count += 1
        if len(batch) >= BATCH:
            flush()
            batch = []
    if batch or writer is None:
        flush()
    assert writer is not None
    writer.close()
    return count
