"""What the global options set, handed to every command, and the terminal it runs on."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import click

from deon import config
from deon.output import printable


@dataclass
class Env:
    """What the global options set, handed to every command."""

    overrides: dict[str, Any] = field(default_factory=dict)
    quiet: bool = False
    prefix: str = ""  # before each line of chatter: "round 3 (12:00:05): " with --every
    #: settings a command's own options set (`up --sse`), applied over the global ones
    command_overrides: dict[str, Any] = field(default_factory=dict)

    def settings(self) -> Any:
        s = config.load_settings(**self.overrides)
        return s.with_overrides(**self.command_overrides) if self.command_overrides else s

    def log(self, message: str) -> None:
        """One line of chatter on stderr (none with -q)."""
        if not self.quiet:
            click.echo(printable(self.prefix + message), err=True)


pass_env = click.make_pass_decorator(Env)


def stdin_is_tty() -> bool:
    """Whether standard input is a terminal (then nothing is piped in to read)."""
    return sys.stdin.isatty()
