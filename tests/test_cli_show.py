"""`deon show`: the structure of an HDF5 file, its metadata and a contact sheet."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from deon.cli import cli
from tests.conftest import assert_no_traceback, make_h5, run_deon

UNPRINTABLE = {chr(c) for c in [*range(0x20), *range(0x7F, 0xA0), *range(0xD800, 0xE000)]}


def test_show_prints_structure_and_metadata(tmp_path: Path) -> None:
    f = make_h5(tmp_path / "t.h5", {"robot": "sawyer", "object_classes": ["cup", "bowl"]})

    r = CliRunner().invoke(cli, ["show", str(f)])

    assert r.exit_code == 0, r.output
    assert "frames  (6, 48, 64, 3) uint8" in r.stdout
    assert "actions  (6, 4) float64" in r.stdout
    text = r.stdout.split("metadata (read by attrs):\n", 1)[1]
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


def test_show_json_is_standard_json_when_the_metadata_holds_nan(tmp_path: Path) -> None:
    import h5py

    f = tmp_path / "nan.h5"
    with h5py.File(f, "w") as h:
        h.create_dataset("actions", data=np.zeros((2, 2)))
        h.attrs["metadata"] = json.dumps({"robot": "sawyer", "gain": float("nan"), "top": 1e999})

    r = CliRunner().invoke(cli, ["show", str(f), "--json"])

    assert r.exit_code == 0, r.output

    def refuse(name: str) -> None:
        raise AssertionError(f"{name} is not JSON")

    d = json.loads(r.stdout, parse_constant=refuse)
    assert d["metadata"] == {"robot": "sawyer", "gain": None, "top": None}


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


def test_show_prints_a_lone_surrogate_in_the_metadata_escaped(tmp_path: Path) -> None:
    f = make_h5(tmp_path / "t.h5", raw_metadata='{"a":"\\ud800","b":"ok"}')

    r = run_deon("show", str(f))

    assert (r.returncode, r.stderr) == (0, "")
    assert '  "a": "\\ud800",\n' in r.stdout
    shown = r.stdout.split("metadata (read by attrs):\n", 1)[1]
    assert json.loads(shown) == {"a": "\ud800", "b": "ok"}

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
