"""Errors as a person meets them: one line, the right exit status, no traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from deon.cli import cli
from tests.conftest import run_deon


def test_unreachable_endpoint_is_one_line_exit_1(isolated_env: Path) -> None:
    env = {**os.environ, "AWS_MAX_ATTEMPTS": "1"}

    r = run_deon("--endpoint-url", "http://127.0.0.1:9", "buckets", env=env)

    assert r.returncode == 1
    assert "cannot reach S3 at http://127.0.0.1:9" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_deon_debug_shows_the_traceback(isolated_env: Path) -> None:
    r = run_deon("show", "/nonexistent.h5", env={**os.environ, "DEON_DEBUG": "1"})

    assert r.returncode != 0
    assert "Traceback" in r.stderr


def test_usage_errors_exit_2(isolated_env: Path) -> None:
    assert run_deon("up").returncode == 2
    assert run_deon("no-such-command").returncode == 2
    assert run_deon("pull", "s3://lab/a.h5", "-").returncode == 2


def test_pull_with_a_terminal_on_stdin_and_no_uris_is_a_usage_error(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import deon.cli._env

    monkeypatch.setattr(deon.cli._env, "stdin_is_tty", lambda: True)

    r = CliRunner().invoke(cli, ["pull"])

    assert r.exit_code == 2
    assert "no URIs given" in r.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["up"], "Error: Missing argument 'ADDRESS'. (see 'deon up --help')"),
        (["nosuch"], "Error: No such command 'nosuch'. (see 'deon --help')"),
        (
            ["-j", "0", "buckets"],
            "Error: Invalid value for '-j' / '--jobs': 0 is not in the range 1<=x<=512. "
            "(see 'deon --help')",
        ),
    ],
)
def test_a_usage_mistake_is_one_line_with_the_help_to_read(
    isolated_env: Path, args: list[str], message: str
) -> None:
    r = run_deon(*args)

    assert r.returncode == 2
    assert r.stderr.strip() == message
    assert r.stdout == ""
