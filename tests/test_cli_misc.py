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
    import deon.cli

    monkeypatch.setattr(deon.cli, "_stdin_is_tty", lambda: True)

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
