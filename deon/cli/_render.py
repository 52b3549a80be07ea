"""Human-facing text: sizes, summaries, the tree of an HDF5 file."""

from __future__ import annotations

import json
from typing import Any

import click

from deon.catalog import flatten as fl
from deon.errors import ExitStatus, WarningCode
from deon.output import json_printable, printable


def human(n: float) -> str:
    """A byte count as people read it: 512 B, 1.5 MiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def summarize(log: Any, result: Any, verb: str) -> None:
    """One summary line on stderr (through `log`); exit 1 when any item failed."""
    from deon.results import Status

    parts = []
    for status, word in (
        (Status.TRANSFERRED, verb),
        (Status.REPLACED, "replaced"),
        (Status.TAGGED, "given metadata"),
        (Status.UNCHANGED, "unchanged"),
        (Status.PLANNED, f"would be {verb}"),
        (Status.FAILED, "failed"),
    ):
        n = result.count(status)
        if n or status in (Status.TRANSFERRED, Status.FAILED):
            parts.append(f"{n} {word}")
    for w in result.warnings:
        # per-file warnings were printed as they came; this one sums them up
        if getattr(w, "code", None) is WarningCode.NOT_HDF5_SUMMARY:
            click.echo(f"warning: {printable(w)}", err=True)
    log(
        f"{result.action}: {', '.join(parts)}; "
        f"{human(result.bytes_transferred)} in {result.seconds:.1f} s"
    )
    if result.failed:
        raise click.exceptions.Exit(ExitStatus.ERROR)


def show_description(d: Any, as_json: bool) -> None:
    """Print what `deon show` found in a file. Names, attribute values and the metadata
    come from the file: any control character is shown escaped, so none reaches the
    terminal."""
    if as_json:
        # Standard JSON (jq, JSON.parse): NaN and ±Infinity, which metadata may hold,
        # as null, as in the catalog's `metadata` column.
        text = json.dumps(fl.finite(d.to_dict()), indent=2, ensure_ascii=False, allow_nan=False)
        click.echo(json_printable(text))
        return
    click.echo(printable(f"{d.path}  ({human(d.size)})"))
    for node in d.nodes:
        depth = 0 if node.path == "/" else node.path.count("/")
        indent = "  " * depth
        name = node.path if node.path == "/" else node.path.rsplit("/", 1)[1]
        if node.kind == "dataset":
            click.echo(f"{indent}{printable(name)}  {node.shape} {node.dtype}")
        else:
            click.echo(f"{indent}{printable(name)}{'' if name.endswith('/') else '/'}")
        for attr, value in node.attrs.items():
            click.echo(f"{indent}  @{printable(attr)} = {printable(value)}")
    click.echo("")
    if d.metadata.status == "ok":
        click.echo(printable(f"metadata (read by {d.metadata.reader}):"))
        click.echo(json_printable(json.dumps(d.metadata.document, indent=2, ensure_ascii=False)))
    else:
        click.echo(printable(f"metadata: none ({d.metadata.detail})"))
