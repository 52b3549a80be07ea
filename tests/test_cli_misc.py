"""`deon buckets`, `deon show`, configuration precedence and error handling."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from deon.cli import cli
from tests.conftest import Lab, assert_no_traceback, make_h5, run_deon


def test_buckets_prints_one_name_per_line(lab: Lab) -> None:
    lab.client.create_bucket(Bucket="other-lab")

    r = run_deon("buckets")

    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["lab", "other-lab"]
    assert r.stderr == ""


def test_show_prints_structure_and_metadata(tmp_path: Path) -> None:
    f = make_h5(tmp_path / "t.h5", {"robot": "sawyer", "object_classes": ["cup", "bowl"]})

    r = CliRunner().invoke(cli, ["show", str(f)])

    assert r.exit_code == 0, r.output
    assert "frames  (6, 48, 64, 3) uint8" in r.stdout
    assert "actions  (6, 4) float64" in r.stdout
    text = r.stdout.split("metadata:\n", 1)[1]
    assert json.loads(text) == {"robot": "sawyer", "object_classes": ["cup", "bowl"]}


def test_show_json_and_png(tmp_path: Path) -> None:
    import h5py

    f = tmp_path / "cams.h5"
    frames = np.zeros((4, 2, 8, 10, 3), dtype=np.uint8)
    frames[:, 0] = (255, 0, 0)  # camera 0 red
    frames[:, 1] = (0, 0, 255)  # camera 1 blue
    with h5py.File(f, "w") as h:
        h.create_dataset("env/frames", data=frames)
        h.attrs["metadata"] = json.dumps({"robot": "widowx"})
    png = tmp_path / "sheet.png"

    r = CliRunner().invoke(cli, ["show", str(f), "--json", "--png", str(png)])

    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["metadata"] == {"robot": "widowx"}
    assert d["images"] == ["/env/frames"]
    assert f"wrote {png}" in r.stderr
    img = Image.open(png).convert("RGB")
    w, h = img.size
    assert img.getpixel((w // 8, h // 4)) == (255, 0, 0)  # first row: camera 0
    assert img.getpixel((w // 8, 3 * h // 4)) == (0, 0, 255)  # second row: camera 1


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing.h5", "no such file"),
        (lambda p: (p / "x.txt").write_text("hello") and p / "x.txt", "not an HDF5 file"),
        (lambda p: p, "is a folder"),
    ],
)
def test_show_bad_input_exits_2(tmp_path: Path, make, message: str) -> None:
    r = run_deon("show", str(make(tmp_path)))

    assert r.returncode == 2
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert_no_traceback(r.stderr)


def test_show_a_truncated_file_exits_2(tmp_path: Path) -> None:
    f = make_h5(tmp_path / "t.h5", {"a": 1})
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 3])

    r = run_deon("show", str(f))

    assert r.returncode == 2
    assert_no_traceback(r.stderr)


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


def test_help_is_quick_to_import() -> None:
    """`deon --help` must not import boto3, h5py, pandas or SQLAlchemy."""
    code = (
        "import sys; from deon.cli import cli; "
        "heavy = [m for m in ('boto3', 'botocore', 'h5py', 'pandas', 'sqlalchemy', 'numpy') "
        "if m in sys.modules]; print(heavy)"
    )
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- the config file ---------------------------------------------------------------------------


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
            'query.format must be one of "uri", "key", "json", "csv", "table", not \'xml\'',
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


# -- untrusted text in `deon show` ---------------------------------------------------------------

UNPRINTABLE = {chr(c) for c in [*range(0x20), *range(0x7F, 0xA0), *range(0xD800, 0xE000)]}


def test_show_prints_a_lone_surrogate_in_the_metadata_escaped(tmp_path: Path) -> None:
    f = make_h5(tmp_path / "t.h5", raw_metadata='{"a":"\\ud800","b":"ok"}')

    r = run_deon("show", str(f))

    assert (r.returncode, r.stderr) == (0, "")
    assert '  "a": "\\ud800",\n' in r.stdout
    assert json.loads(r.stdout.split("metadata:\n", 1)[1]) == {"a": "\ud800", "b": "ok"}

    r = run_deon("show", "--json", str(f))

    assert (r.returncode, r.stderr) == (0, "")
    assert '"a": "\\ud800"' in r.stdout
    assert json.loads(r.stdout)["metadata"] == {"a": "\ud800", "b": "ok"}


def test_show_never_prints_control_characters_from_the_file(tmp_path: Path) -> None:
    import h5py

    f = make_h5(tmp_path / "t.h5", {"note": "\x1b[2J\x9b\x7f"})
    with h5py.File(f, "a") as h:
        group = h.create_group("g\x1b[2J")
        group.attrs["title\x9b"] = "v\x1b]0;pwned\x07\nnext"
        group.create_dataset("d\rx", data=np.zeros(3))

    r = run_deon("show", str(f))

    assert (r.returncode, r.stderr) == (0, "")
    assert not (UNPRINTABLE - {"\n"}) & set(r.stdout)
    lines = r.stdout.splitlines()
    assert "  g\\x1b[2J/" in lines
    assert "    @title\\x9b = v\\x1b]0;pwned\\x07\\nnext" in lines
    assert "    d\\rx  (3,) float64" in lines
    assert '  "note": "\\u001b[2J\\u009b\\u007f"' in lines

    r = run_deon("show", "--json", str(f))

    assert (r.returncode, r.stderr) == (0, "")
    assert not (UNPRINTABLE - {"\n"}) & set(r.stdout)
    d = json.loads(r.stdout)
    nodes = {n["path"]: n for n in d["nodes"]}
    assert nodes["/g\x1b[2J"]["attrs"] == {"title\x9b": "v\x1b]0;pwned\x07\nnext"}
    assert "/g\x1b[2J/d\rx" in nodes
    assert d["metadata"] == {"note": "\x1b[2J\x9b\x7f"}


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


@pytest.mark.parametrize("command", ["up", "down", "metadata down"])
def test_requests_run_concurrently(lab: Lab, command: str) -> None:
    """With -j 4, several object requests are in flight at once: the proxy holds each
    for a moment and counts how many it holds together."""
    import threading
    import time

    src = lab.tmp / "src"
    for i in range(8):
        make_h5(src / f"t{i}.h5", {"i": i}, seed=i)
    if command != "up":
        assert run_deon("up", "s3://lab/c", str(src)).returncode == 0
    kind = {"up": "PUT", "down": "GET", "metadata down": "HEAD"}[command]
    lock = threading.Lock()
    now, most = [0], [0]

    def hold(method: str, key: str, query: str) -> None:
        if method != kind or not key.startswith("c/t"):
            return
        with lock:
            now[0] += 1
            most[0] = max(most[0], now[0])
        time.sleep(0.3)
        with lock:
            now[0] -= 1

    lab.proxy.rules.before = hold
    args = {
        "up": ["up", "s3://lab/c", str(src)],
        "down": ["down", "s3://lab/c", str(lab.tmp / "dest")],
        "metadata down": ["metadata", "down", "s3://lab/c"],
    }[command]

    r = run_deon("-j", "4", *args)

    assert r.returncode == 0, r.stderr
    assert most[0] >= 3, most[0]
