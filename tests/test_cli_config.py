"""Configuration: the config file, environment variables and flags, profiles and credentials."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from deon.cli import cli
from tests.conftest import Lab, assert_no_traceback, make_h5, run_deon


def test_config_file_then_env_then_flag(lab: Lab) -> None:
    lab.put("a/t.h5", b"t")
    cfg_dir = lab.tmp / "config"
    cfg_dir.mkdir()
    (cfg_dir / "config.toml").write_text(f'data_dir = "{lab.tmp / "from-file"}"\n')
    env = {k: v for k, v in os.environ.items() if k != "DEON_DATA_DIR"}

    assert run_deon("pull", "s3://lab/a/t.h5", env=env).returncode == 0
    assert (lab.tmp / "from-file" / "lab" / "a" / "t.h5").exists()

    env["DEON_DATA_DIR"] = str(lab.tmp / "from-env")
    assert run_deon("pull", "s3://lab/a/t.h5", env=env).returncode == 0
    assert (lab.tmp / "from-env" / "lab" / "a" / "t.h5").exists()

    r = run_deon("--data-dir", str(lab.tmp / "from-flag"), "pull", "s3://lab/a/t.h5", env=env)
    assert r.returncode == 0
    assert (lab.tmp / "from-flag" / "lab" / "a" / "t.h5").exists()


def test_a_broken_config_file_exits_2(isolated_env: Path) -> None:
    (isolated_env / "config").mkdir()
    (isolated_env / "config" / "config.toml").write_text("data_dir = [unclosed")

    r = run_deon("buckets")

    assert r.returncode == 2
    assert "not valid TOML" in r.stderr
    assert_no_traceback(r.stderr)


def test_unknown_profile_exits_2(lab: Lab) -> None:
    r = run_deon("--profile", "nobody", "buckets")

    assert r.returncode == 2
    assert "profile 'nobody' not found" in r.stderr
    assert_no_traceback(r.stderr)


def test_missing_credentials_exit_2_with_advice(lab: Lab) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AWS_ACCESS") and not k.startswith("AWS_SECRET")
    }
    env["AWS_EC2_METADATA_DISABLED"] = "true"

    r = run_deon("buckets", env=env)

    assert r.returncode == 2
    assert "no AWS credentials found" in r.stderr
    assert_no_traceback(r.stderr)


def write_config(home: Path, text: str) -> Path:
    """`config.toml` in the test's DEON_CONFIG_DIR; returns its path."""
    path = home / "config" / "config.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "args", "message"),
    [
        ("data_dir = 5", ["pull", "s3://lab/a/t.h5"], "data_dir must be a string, not 5"),
        ('data_dir = ["a"]', ["up", "s3://lab/a"], "data_dir must be a string, not ['a']"),
        (
            "up = 3",
            ["up", "s3://lab/a"],
            "up must be a table ([up]) of options for `deon up`, not 3",
        ),
        ("endpoint_url = true", ["buckets"], "endpoint_url must be a string, not true"),
        ("[profile]\nname = 'x'", ["buckets"], "profile must be a string, not a table"),
        ("jobs = 0", ["buckets"], "jobs must be a whole number of at least 1, not 0"),
        ('jobs = "8"', ["buckets"], "jobs must be a whole number of at least 1, not '8'"),
        ("jobs = 1000", ["buckets"], "jobs must be a whole number from 1 to 512, not 1000"),
        ('quiet = "yes"', ["buckets"], "quiet must be true or false, not 'yes'"),
        ("[up]\noverwrite = 1", ["up", "s3://lab/a"], "up.overwrite must be true or false, not 1"),
        (
            "[query]\nformat = 'xml'",
            ["query"],
            'query.format must be one of "uri", "key", "json", "csv", "table", "manifest", '
            "not 'xml'",
        ),
        (
            "[query]\nlimit = -1",
            ["query"],
            "query.limit must be a whole number of at least 0, not -1",
        ),
        (
            "[metadata]\ndown = []",
            ["metadata", "down"],
            "metadata.down must be a table ([metadata.down]) of options for "
            "`deon metadata down`, not []",
        ),
        (
            "[metadata.down]\nno_snapshot = 'no'",
            ["metadata", "down"],
            "metadata.down.no_snapshot must be true or false, not 'no'",
        ),
        (
            "[policy]\naccount = '123456789012'",
            ["policy", "lab", "--org", "o-a1b2c3d4e5"],
            "policy.account must be a list, each item a string, not '123456789012'",
        ),
    ],
)
def test_a_config_value_of_the_wrong_type_exits_2_naming_the_file_and_key(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, text: str, args: list[str], message: str
) -> None:
    monkeypatch.delenv("DEON_DATA_DIR")  # as on a user's machine: the file's data_dir is used
    path = write_config(isolated_env, text + "\n")

    r = run_deon(*args)

    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == f"Error: config file {path}: {message}\n"


def test_the_library_checks_the_config_file_too(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import deon
    from deon.config import load_settings

    monkeypatch.delenv("DEON_DATA_DIR")
    path = write_config(isolated_env, "data_dir = 5\n[up]\noverwrite = 3\n")

    with pytest.raises(deon.DeonError) as info:
        load_settings()
    assert str(info.value) == f"config file {path}: data_dir must be a string, not 5"


def test_unknown_config_keys_are_named_in_a_warning_and_ignored(lab: Lab) -> None:
    src = lab.tmp / "src"
    make_h5(src / "t.h5", {"robot": "sawyer"})
    path = write_config(
        lab.tmp,
        "unknown_key = 1\njobs = 2\n[up]\noverwrit = true\naddress = 's3://lab/x'\n"
        "[nosuch]\nx = 1\n[metadata.down]\nno_snapshots = true\n",
    )

    r = run_deon("up", "s3://lab/a", str(src))

    assert r.returncode == 0, r.stderr
    assert r.stdout == "s3://lab/a/t.h5\n"
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: config file {path}: unknown key unknown_key ignored",
        f"warning: config file {path}: unknown key up.overwrit ignored "
        "(did you mean up.overwrite?)",
        f"warning: config file {path}: unknown key up.address ignored",
        f"warning: config file {path}: unknown key nosuch ignored",
        f"warning: config file {path}: unknown key metadata.down.no_snapshots ignored "
        "(did you mean metadata.down.no_snapshot?)",
    ]
    assert lab.list_keys() == ["a/t.h5"]


def test_a_command_table_sets_that_commands_options(lab: Lab) -> None:
    src = lab.tmp / "src"
    make_h5(src / "t.h5", {"robot": "sawyer"})
    lab.put("q/one.h5", b"1")
    lab.put("q/two.h5", b"2")
    write_config(lab.tmp, "[up]\ndry_run = true\n\n[query]\nlimit = 1\n")

    r = run_deon("up", "s3://lab/a", str(src))

    assert r.returncode == 0, r.stderr
    assert "1 would be uploaded" in r.stderr
    assert lab.list_keys() == ["q/one.h5", "q/two.h5"]  # nothing was sent

    assert run_deon("metadata", "down", "s3://lab/q").returncode == 0
    r = run_deon("query")
    assert (r.returncode, r.stdout, r.stderr) == (0, "s3://lab/q/one.h5\n", "")
    r = run_deon("query", "--limit", "2")  # a flag still wins
    assert r.stdout == "s3://lab/q/one.h5\ns3://lab/q/two.h5\n"


def test_a_command_table_may_name_an_option_as_its_flag_is_spelled(lab: Lab) -> None:
    """`format` for --format, which click's default_map knows as `fmt`."""
    lab.put("q/one.h5", b"1")
    write_config(lab.tmp, "[query]\nformat = 'key'\n")
    assert run_deon("metadata", "down", "s3://lab/q").returncode == 0

    r = run_deon("query")

    assert (r.returncode, r.stdout, r.stderr) == (0, "q/one.h5\n", "")
    assert run_deon("query", "--format", "uri").stdout == "s3://lab/q/one.h5\n"


def test_the_endpoint_url_flag_beats_aws_endpoint_url(lab: Lab) -> None:
    env = {**os.environ, "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_MAX_ATTEMPTS": "1"}

    r = run_deon("--endpoint-url", lab.endpoint, "buckets", env=env)

    assert (r.returncode, r.stdout, r.stderr) == (0, "lab\n", "")
    r = run_deon("buckets", env=env)
    assert r.returncode == 1
    assert "cannot reach S3 at http://127.0.0.1:9" in r.stderr


@pytest.mark.parametrize(
    ("flag", "envvar", "key", "layers"),
    [
        (
            "--endpoint-url",
            "AWS_ENDPOINT_URL",
            "endpoint_url",
            ("http://file.invalid", "http://env.invalid", "http://flag.invalid"),
        ),
        ("--profile", "AWS_PROFILE", "profile", ("file", "env", "flag")),
        ("--catalog", "DEON_CATALOG", "catalog", ("file.sqlite", "env.sqlite", "flag.sqlite")),
        ("--jobs", "DEON_JOBS", "jobs", (3, 5, 7)),
    ],
)
def test_each_global_option_takes_the_flag_then_the_env_then_the_file(
    isolated_env: Path, flag: str, envvar: str, key: str, layers: tuple[object, ...]
) -> None:
    """data_dir: test_config_file_then_env_then_flag, end to end."""
    from unittest import mock

    from deon.results import SyncResult

    in_file, in_env, in_flag = layers
    write_config(isolated_env, f"{key} = {json.dumps(in_file)}\n")
    cases = [
        ([], {envvar: None}, in_file),
        ([], {envvar: str(in_env)}, in_env),
        ([flag, str(in_flag)], {envvar: str(in_env)}, in_flag),
    ]
    for args, env, expected in cases:
        with mock.patch("deon.api.pull", autospec=True, return_value=SyncResult("pull")) as pull:
            r = CliRunner().invoke(cli, [*args, "pull", "s3://lab/a.h5"], env=env)

        assert r.exit_code == 0, r.output
        assert getattr(pull.call_args.kwargs["settings"], key) == expected, (args, env)
