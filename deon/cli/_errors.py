"""How errors reach the terminal: one line, the library's exit status."""

from __future__ import annotations

import os
import sys

import click

from deon import config
from deon.errors import ExitStatus
from deon.output import printable


class DeonClickError(click.ClickException):
    """A library error shown as one line, with the library's exit status."""

    def __init__(self, message: str, exit_code: int) -> None:
        # One line (drivers' messages span lines: SQLAlchemy appends the SQL, psycopg a
        # hint), with the control characters of keys and file names escaped.
        # (split at newlines only: splitlines() would also split at \x1c, \x85 or \u2028,
        # which printable() must show escaped)
        one = " ".join(line.strip() for line in message.strip().split("\n"))
        super().__init__(printable(one))
        self.exit_code = exit_code  # type: ignore[misc]


def usage_error(message: str) -> DeonClickError:
    """Bad usage or input (exit 2), as one line."""
    return DeonClickError(message, ExitStatus.USAGE)


def one_line(e: click.UsageError) -> DeonClickError:
    """Click's usage error (usage, a hint and the error on three lines) as one line."""
    where = e.ctx.command_path if e.ctx is not None else "deon"
    return DeonClickError(f"{e.format_message()} (see '{where} --help')", ExitStatus.USAGE)


def debug() -> bool:
    """Whether DEON_DEBUG asks for tracebacks instead of one-line errors."""
    return os.environ.get(config.ENV_DEBUG, "") not in ("", "0")


def quiet_stdout() -> None:
    """After EPIPE (`deon query | head`), send further output nowhere (dvc/cli/__init__.py)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def exit_with(status: int) -> click.exceptions.Exit:
    """The exception that ends a command with this exit status, after its own message."""
    return click.exceptions.Exit(status)
