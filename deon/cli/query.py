"""Commands that read the catalog: query, export."""

from __future__ import annotations

import sys

import click

from deon.cli._env import Env, pass_env
from deon.cli._errors import usage_error
from deon.cli._options import file_format, selection


@click.command()
@selection
@file_format(
    ["uri", "key", "json", "csv", "table", "manifest"],
    "uri",
    "Output: one URI per line, keys, JSON lines (typed), CSV, a table, or a manifest "
    "(as deon freeze -o -).",
)
@click.option("-n", "--limit", type=click.IntRange(0), help="At most this many rows.")
@click.option(
    "-c",
    "--count",
    is_flag=True,
    help="Print only the number of rows the query would print (at most --limit).",
)
@click.option(
    "--columns",
    "list_columns",
    is_flag=True,
    help="List the columns with their kinds and common values, to learn what to filter on.",
)
@pass_env
def query(
    env: Env,
    where: str | None,
    sql: str | None,
    fmt: str,
    limit: int | None,
    count: bool,
    list_columns: bool,
) -> None:
    """Select objects from the catalog; print one s3:// URI per line.

    WHERE is an SQL condition on the `objects` table, whose columns are the fixed
    ones (bucket, key, uri, size, etag, last_modified, sha256, metadata, ...) and one
    per metadata key (nested keys joined with _). Queries are read-only. Pipe the
    output into `deon pull` to download what matched.

    \b
    Example:
        deon query "robot = 'sawyer' AND traj_ok"
        deon query "robot = 'sawyer' AND traj_ok" | deon pull
        deon query --count "object_classes LIKE '%cup%'"
        deon query --columns
        deon query --sql "SELECT robot, count(*) AS n FROM objects GROUP BY robot" -f table
    """
    from deon import api
    from deon.output import format_rows

    if list_columns and (where or sql or count):
        raise usage_error("--columns lists the columns; use it alone")
    s = env.settings()
    if fmt == "manifest":
        if limit is not None or count or list_columns:
            raise usage_error(
                "a manifest holds the whole selection: no --limit, --count, --columns"
            )
        sys.stdout.buffer.write(api.freeze(where, sql=sql, settings=s).manifest.to_bytes())
        return
    if list_columns:
        rows = [
            (c.name, c.kind, c.path, c.non_null, ", ".join(repr(v) for v in c.examples))
            for c in api.columns(settings=s)
        ]
        names = ["column", "kind", "metadata key", "rows", "common values"]
        for line in format_rows(names, rows, "table" if fmt == "uri" else fmt):
            click.echo(line)
        return
    if count:
        click.echo(api.count(where, sql=sql, limit=limit, settings=s))
        return
    # URIs and keys need one narrow column, not the whole (wide) rows.
    selection = api.select(
        where,
        sql=sql,
        limit=limit,
        only=fmt if fmt in ("uri", "key") else None,
        kinds=fmt == "json",
        settings=s,
    )
    out = sys.stdout
    buffer: list[str] = []
    for line in format_rows(selection.columns, selection.rows, fmt, selection.kinds):
        buffer.append(line)
        if len(buffer) >= 4096:
            out.write("\n".join(buffer) + "\n")
            buffer.clear()
    if buffer:
        out.write("\n".join(buffer) + "\n")
    out.flush()


@click.command()
@selection
@file_format(["parquet", "csv", "jsonl"], "parquet", "File format.")
@click.option(
    "-o",
    "--output",
    required=True,
    metavar="FILE",
    help="Where to write (- for standard output, CSV and JSON lines only).",
)
@pass_env
def export(env: Env, where: str | None, sql: str | None, fmt: str, output: str) -> None:
    """Write selected catalog rows to a Parquet, CSV or JSON-lines file.

    Columns are typed by what they hold: booleans, 64-bit integers, doubles, strings,
    UTC timestamps; lists and objects as JSON text (parsed, in JSON lines). The file
    reads as it is in DuckDB, pandas, Spark and Athena. Parquet needs pyarrow
    (pip install 'deon[parquet]').

    \b
    Example:
        deon export "robot = 'sawyer'" -o sawyer.parquet
        deon export --format csv -o catalog.csv
        deon export "traj_ok" --format jsonl -o - | head
    """
    from deon import api

    count = api.export(output, where, fmt=fmt, sql=sql, settings=env.settings())
    env.log(f"export: {count} rows to {output if output != '-' else 'standard output'}")
