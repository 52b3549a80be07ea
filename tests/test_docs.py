"""The README documents every command, and every command's help has an example."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from deon.cli import cli

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    out = []
    for name, command in group.commands.items():
        full = f"{prefix}{name}"
        if isinstance(command, click.Group):
            out.extend(commands(command, full + " "))
        else:
            out.append((full, command))
    return out


@pytest.mark.parametrize(("name", "command"), commands(cli), ids=lambda x: str(x))
def test_every_command_has_help_with_an_example_and_a_readme_section(
    name: str, command: click.Command
) -> None:
    assert command.help and "Example:" in command.help and "\b" in command.help
    assert f"### `deon {name}" in README
    assert re.search(rf"^deon (\S+ )*{re.escape(name)}\b", README, re.M), name


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert f"```sh\n{ci}\n```" in README


def test_readme_lists_every_exit_status() -> None:
    from deon.errors import ExitStatus

    for status in ExitStatus:
        assert f"| {int(status)} |" in README


def test_every_test_the_guarantees_name_exists() -> None:
    section = README.split("## Guarantees", 1)[1].split("\n## ", 1)[0]
    named = re.findall(r"`(test_\w+\.py)(?:::(test_\w+))?`", section)
    assert len(named) >= 30
    for file, test in named:
        source = (ROOT / "tests" / file).read_text()
        if test:
            assert re.search(rf"^def {test}\(", source, re.M), f"{file}::{test}"


def _section(name: str) -> str:
    """The README's section of `deon NAME`: from its heading to the next heading."""
    m = re.search(rf"^### `deon {re.escape(name)}\b.*?(?=^##)", README, re.M | re.S)
    assert m, name
    return m.group(0)


@pytest.mark.parametrize(("name", "command"), commands(cli), ids=lambda x: str(x))
def test_readme_sections_name_every_option_the_help_shows(
    name: str, command: click.Command
) -> None:
    """The README stays true to `--help`: each option a command's help lists is named in
    the command's section (global options: in the Configuration section)."""
    section = _section(name)
    longs = [
        next((o for o in p.opts if o.startswith("--")), None)
        for p in command.params
        if isinstance(p, click.Option) and not p.hidden
    ]
    missing = [opt for opt in longs if opt is not None and opt not in section]
    assert missing == [], f"deon {name}: README section does not name {missing}"


def test_readme_names_every_global_option() -> None:
    for param in cli.params:
        if isinstance(param, click.Option):
            long = [o for o in param.opts if o.startswith("--")]
            assert long and long[0] in README, long
