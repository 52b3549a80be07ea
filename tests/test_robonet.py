"""RoboNet's own files: their metadata as RoboNet's `load_metadata_dict` derives it,
the metadata readers' order and hooks, and contact sheets of their mp4 and JPEG frames.

The files are written as RoboNet's writer writes them (tests/robonet_files.py); the
expected metadata is written out from `load_metadata_dict`'s rules (read from RoboNet's
robonet/datasets/util/metadata_helper.py), not from deon's code.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from deon import api
from deon.cli import cli
from deon.config import Settings
from deon.metadata import hdf5
from deon.metadata.readers import ENTRY_POINT_GROUP, resolve
from tests import robonet_files as rf
from tests.conftest import Lab, assert_no_traceback, make_h5, run_deon

ENCODINGS = ["mp4", "jpeg"]


# --- the derived metadata ---------------------------------------------------------------


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_every_key_and_type_is_what_load_metadata_dict_derives(
    tmp_path: Path, encoding: str
) -> None:
    path = rf.write(tmp_path / "traj0.hdf5", encoding=encoding)

    read = hdf5.read_metadata(path)

    assert (read.status, read.reader) == ("ok", "robonet"), read.detail
    doc = read.document
    want = rf.expected_metadata(path, encoding)
    assert doc == want
    assert list(doc) == list(want)  # load_metadata_dict's order
    assert "sha256" not in doc  # deon's own sha256 column holds it
    # the types RoboNet's loader relies on (`old_height, old_width = frame_dim`, ...)
    for key in ("sdim", "state_T", "adim", "action_T", "ncam", "img_T", "term_t"):
        assert type(doc[key]) is int, key
    assert (doc["sdim"], doc["state_T"], doc["adim"], doc["action_T"]) == (5, 6, 4, 5)
    assert doc["ncam"] == 2 and doc["img_T"] == 6 and doc["frame_dim"] == [48, 64]
    assert doc["img_encoding"] == ("mp4" if encoding == "mp4" else "jpg")
    assert doc["image_format"] == "RGB" and doc["file_version"] == "0.1.0"
    assert doc["traj_ok"] is True and doc["contains_annotation"] is False
    assert doc["object_classes"] == ["cup", "toy"]
    assert doc["environment_size"] == [0.5, 0.25, 0.1]
    assert doc["low_bound"] == [-0.3, -0.2, 0.0, -3.14, -1.0]  # the first row of env/
    assert doc["high_bound"] == [0.3, 0.2, 0.3, 3.14, 1.0]


def test_bounds_in_the_metadata_group_win_over_env(tmp_path: Path) -> None:
    meta = rf.default_metadata(low_bound=np.array([-1.0, -1.0]))
    path = rf.write(tmp_path / "t.hdf5", metadata=meta)

    doc = hdf5.read_metadata(path).document

    assert doc["low_bound"] == [-1.0, -1.0]  # "if 'low_bound' not in meta_data_dict"
    assert doc["high_bound"] == [0.3, 0.2, 0.3, 3.14, 1.0]


def test_no_cameras_means_no_camera_keys(tmp_path: Path) -> None:
    path = rf.write(tmp_path / "t.hdf5")
    with h5py.File(path, "a") as f:
        f["env"].attrs["n_cams"] = 0

    doc = hdf5.read_metadata(path).document

    assert not {"ncam", "frame_dim", "img_T", "img_encoding", "image_format"} & set(doc)


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (lambda f: f["misc"].create_dataset("sdim", data=3), "'sdim'"),  # its assert
        (lambda f: f["metadata"].attrs.create("traj_ok", True), "'traj_ok'"),
        (lambda f: f.__delitem__("policy/actions"), "policy/actions"),
        (lambda f: f.__delitem__("file_version"), "file_version"),
    ],
)
def test_where_load_metadata_dict_fails_the_reason_is_named(
    tmp_path: Path, damage: object, named: str
) -> None:
    path = rf.write(tmp_path / "t.hdf5")
    with h5py.File(path, "a") as f:
        damage(f)  # type: ignore[operator]

    read = hdf5.read_metadata(path)

    assert (read.status, read.reader) == ("invalid", "robonet")
    assert named in read.detail and "reader robonet" in read.detail


def test_the_metadata_attribute_is_read_first(tmp_path: Path) -> None:
    path = rf.write(tmp_path / "t.hdf5")
    with h5py.File(path, "a") as f:
        f.attrs["metadata"] = json.dumps({"robot": "widowx"})

    read = hdf5.read_metadata(path)

    assert (read.reader, read.document) == ("attrs", {"robot": "widowx"})
    only_robonet = resolve(["robonet"])
    assert hdf5.read_metadata(path, only_robonet).document["robot"] == "sawyer"


# --- a lab's own reader --------------------------------------------------------------------


LAB_READER = """
def read(f):
    if "lab_info" not in f:
        return None
    import numpy as np
    return {"robot": f["lab_info"].attrs["robot"], "n": np.int32(3), "ok": np.bool_(True)}
"""


def _lab_file(path: Path) -> Path:
    with h5py.File(path, "w") as f:
        f.create_group("lab_info").attrs["robot"] = "ur5"
    return path


def test_a_lab_reader_named_in_the_config_file(
    tmp_path: Path, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mylab_reader.py").write_text(LAB_READER)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    config = isolated_env / "config"
    config.mkdir()
    (config / "config.toml").write_text('metadata_readers = ["attrs", "mylab_reader:read"]\n')
    path = _lab_file(tmp_path / "lab.h5")

    shown = api.show(path)
    r = run_deon("show", str(path), "--json")

    assert (shown.metadata.reader, shown.metadata.document) == (
        "mylab_reader:read",
        {"robot": "ur5", "n": 3, "ok": True},
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["metadata_reader"] == "mylab_reader:read"
    # without the lab's reader, the file is nobody's
    plain = api.show(path, settings=Settings(metadata_readers=("attrs", "robonet")))
    assert plain.metadata.status == "missing"
    assert "tried attrs, robonet" in plain.metadata.detail


def test_a_lab_reader_installed_as_an_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    (site / "mylab_ep").mkdir(parents=True)
    (site / "mylab_ep" / "__init__.py").write_text(LAB_READER)
    info = site / "mylab_ep-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mylab-ep\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nmylab = mylab_ep:read\n")
    monkeypatch.syspath_prepend(str(site))

    readers = resolve()
    read = hdf5.read_metadata(_lab_file(tmp_path / "lab.h5"), readers)

    assert [r.name for r in readers] == ["attrs", "robonet", "mylab"]  # built-ins first
    assert (read.reader, read.document["robot"]) == ("mylab", "ur5")


def test_an_unknown_reader_stops_the_command_with_one_line(lab: Lab) -> None:
    make_h5(lab.tmp / "src" / "a.h5", {"robot": "x"})

    env = {**os.environ, "DEON_METADATA_READERS": "attrs,no_such_module:read"}
    r = run_deon("up", "s3://lab/a", str(lab.tmp / "src"), env=env)

    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "no_such_module:read" in r.stderr
    assert lab.list_keys() == []  # nothing went up
    assert_no_traceback(r.stderr)


# --- contact sheets ------------------------------------------------------------------------


def _cells(png: Path, rows: int, cols: int) -> list[list[tuple[int, int, int]]]:
    """The colour at the centre of each cell of a contact sheet."""
    img = Image.open(png).convert("RGB")
    w, h = img.size
    return [
        [img.getpixel((int((c + 0.5) * w / cols), int((r + 0.5) * h / rows))) for c in range(cols)]
        for r in range(rows)
    ]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_show_png_draws_the_frames_of_every_camera(tmp_path: Path, encoding: str) -> None:
    path = rf.write(tmp_path / "t.hdf5", encoding=encoding)
    png = tmp_path / "sheet.png"

    r = CliRunner().invoke(cli, ["show", str(path), "--png", str(png), "--frames", "6"])

    assert r.exit_code == 0, r.output
    assert "metadata (read by robonet):" in r.stdout
    assert "(2 camera stream(s)" in r.stderr
    cells = _cells(png, rf.NCAM, rf.T)
    for cam in range(rf.NCAM):
        for t in range(rf.T):
            want = rf.colour(cam, t)
            got = cells[cam][t]
            assert all(abs(a - b) <= 12 for a, b in zip(got, want, strict=True)), (cam, t, got)
        assert len(set(cells[cam])) == rf.T  # every frame its own


def test_frames_stored_bgr_are_shown_in_rgb(tmp_path: Path) -> None:
    path = rf.write(tmp_path / "t.hdf5", encoding="jpeg", ncam=1)
    with h5py.File(path, "a") as f:
        for t in range(rf.T):
            ds = f[f"env/cam0_video/frame{t}"]
            bgr = rf.jpeg_bytes(rf.images(rf.T, 1)[t, 0][..., ::-1].copy())
            attrs = dict(ds.attrs)
            del f[f"env/cam0_video/frame{t}"]
            new = f.create_dataset(f"env/cam0_video/frame{t}", data=bgr)
            new.attrs.update(attrs)
            new.attrs["image_format"] = "BGR"
    png = tmp_path / "sheet.png"

    hdf5.contact_sheet(path, png, frames=6)

    got = _cells(png, 1, rf.T)[0][0]
    assert all(abs(a - b) <= 12 for a, b in zip(got, rf.colour(0, 0), strict=True)), got


def test_an_undecodable_stream_is_one_line_naming_the_dataset(tmp_path: Path) -> None:
    path = rf.write(tmp_path / "t.hdf5", encoding="mp4")
    with h5py.File(path, "a") as f:
        good = f["env/cam1_video/frames"][()]
        del f["env/cam1_video/frames"]
        broken = np.concatenate([good[:32], np.full(4000, 7, np.uint8)])  # header, then junk
        f.create_dataset("env/cam1_video/frames", data=broken)
    png = tmp_path / "sheet.png"

    r = CliRunner().invoke(cli, ["show", str(path), "--png", str(png)])

    assert r.exit_code == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "/env/cam1_video/frames" in lines[0], r.stderr
    assert "cannot decode mp4" in lines[0], lines[0]
    assert_no_traceback(r.output)
    assert Image.open(png).size[1] == 100  # one row: the other camera (96 px + 2 x 2 pad)


# --- end to end ------------------------------------------------------------------------------


def test_a_folder_of_robonet_files_goes_up_mirrors_and_answers_queries(lab: Lab) -> None:
    src = lab.tmp / "robonet"
    files = {
        "sawyer_ok.hdf5": dict(encoding="mp4", traj_ok=True),
        "sawyer_bad.hdf5": dict(encoding="jpeg", traj_ok=False),
        "franka_ok.hdf5": dict(
            encoding="mp4", traj_ok=True, metadata=rf.default_metadata(robot="franka")
        ),
        "more/sawyer_ok_jpg.hdf5": dict(encoding="jpeg", traj_ok=True),
    }
    for i, (name, kw) in enumerate(files.items()):
        rf.write(src / name, seed=i, **kw)  # type: ignore[arg-type]
    with h5py.File(src / "plain.hdf5", "w") as f:  # matches no reader
        f.create_dataset("x", data=np.arange(3))

    up = run_deon("up", "s3://lab/robonet", str(src))
    down = run_deon("metadata", "down", "s3://lab/robonet")
    q = run_deon("query", "robot='sawyer' AND traj_ok")

    assert up.returncode == 0, up.stderr
    assert "plain.hdf5: no 'metadata' attribute, and no metadata reader" in up.stderr
    assert len(up.stdout.split()) == 5  # the file no reader knows goes up all the same
    assert down.returncode == 0, down.stderr
    assert q.returncode == 0, q.stderr
    assert q.stdout.split() == [
        "s3://lab/robonet/more/sawyer_ok_jpg.hdf5",
        "s3://lab/robonet/sawyer_ok.hdf5",
    ]
    db = sqlite3.connect(lab.catalog)
    db.row_factory = sqlite3.Row
    row = dict(db.execute("SELECT * FROM objects WHERE key = 'robonet/sawyer_ok.hdf5'").fetchone())
    assert row["sha256"] == hashlib.sha256((src / "sawyer_ok.hdf5").read_bytes()).hexdigest()
    assert "meta_sha256" not in row
    assert (row["img_t"], row["ncam"], row["img_encoding"], row["frame_dim"]) == (
        6,
        2,
        "mp4",
        "[48,64]",
    )
    assert json.loads(row["metadata"]) == rf.expected_metadata(src / "sawyer_ok.hdf5")

    # RoboNet-style code on the DataFrame, unchanged
    df = api.open_catalog(str(lab.catalog)).to_pandas()
    sawyer = df[(df["robot"] == "sawyer") & df["traj_ok"].fillna(False)]
    assert sorted(sawyer.index) == q.stdout.split()
    first = df.loc["s3://lab/robonet/sawyer_ok.hdf5"]
    assert (first["img_T"], first["state_T"], list(first["frame_dim"])) == (6, 6, [48, 64])
    old_height, old_width = first["frame_dim"]
    assert (old_height, old_width) == (48, 48 + 16)


def test_metadata_readers_of_the_wrong_type_in_the_config_file_is_one_line(
    tmp_path: Path, isolated_env: Path
) -> None:
    config = isolated_env / "config"
    config.mkdir()
    (config / "config.toml").write_text("metadata_readers = 5\n")
    path = rf.write(tmp_path / "t.hdf5")

    r = run_deon("show", str(path))

    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "metadata_readers must be a list" in r.stderr
    assert_no_traceback(r.stderr)
