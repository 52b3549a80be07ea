"""Option bundles that several commands share (sqlite-utils' `output_options`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def selection(f: F) -> F:
    """WHERE (an SQL condition on `objects`) or --sql (a whole SELECT): which rows."""
    f = click.option("--sql", help="A whole SELECT statement instead of a WHERE condition.")(f)
    return click.argument("where", required=False)(f)


def file_format(choices: Sequence[str], default: str, help: str) -> Callable[[F], F]:
    """-f/--format, one of `choices` (the value arrives as `fmt`)."""
    return click.option(
        "-f",
        "--format",
        "fmt",
        type=click.Choice(list(choices)),
        default=default,
        show_default=True,
        help=help,
    )


def folder(f: F) -> F:
    """ADDRESS (s3://BUCKET/PREFIX) and the LOCAL_DIR it maps to (default
    DATA_DIR/BUCKET/PREFIX): the arguments of `up` and `down`."""
    from pathlib import Path

    f = click.argument("local_dir", required=False, type=click.Path(path_type=Path))(f)
    return click.argument("address")(f)
