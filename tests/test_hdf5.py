"""HDF5 files: the metadata attribute, `describe`, and contact sheets (deon.metadata.hdf5)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from deon.errors import LocalPathError, NotHDF5Error
from deon.metadata import hdf5
from tests.conftest import make_h5

DOC = {"robot": "sawyer", "n": 3, "notes": "é 😀", "nested": {"a": [1, 2.5, None]}}

# --- read_metadata ----------------------------------------------------------------------


def test_read_metadata_ok(tmp_path: Path) -> None:
    read = hdf5.read_metadata(make_h5(tmp_path / "a.h5", DOC))
    assert read.status == "ok"
    assert read.document == DOC


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(np.bytes_(b'{"robot": "sawyer"}'), id="np.bytes_"),
        pytest.param(np.array(b'{"robot": "sawyer"}', dtype="S40"), id="fixed-length"),
        pytest.param(
            np.array(['{"robot": "sawyer"}'], dtype=h5py.string_dtype()), id="1-elem-vlen"
        ),
        pytest.param(np.array([b'{"robot": "sawyer"}']), id="1-elem-bytes"),
        pytest.param(np.array([['{"robot": "sawyer"}']], dtype=h5py.string_dtype()), id="1x1"),
    ],
)
def test_read_metadata_accepts_every_string_storage(tmp_path: Path, raw: object) -> None:
    read = hdf5.read_metadata(make_h5(tmp_path / "a.h5", raw_metadata=raw))
    assert read.status == "ok", read.detail
    assert read.document == {"robot": "sawyer"}


def test_read_metadata_utf8_in_fixed_length_bytes(tmp_path: Path) -> None:
    raw = np.bytes_('{"lab": "Zürich"}'.encode())
    read = hdf5.read_metadata(make_h5(tmp_path / "a.h5", raw_metadata=raw))
    assert (read.status, read.document) == ("ok", {"lab": "Zürich"})


def test_read_metadata_missing(tmp_path: Path) -> None:
    read = hdf5.read_metadata(make_h5(tmp_path / "a.h5"))
    assert read.status == "missing"
    assert read.document is None
    assert "metadata" in read.detail


@pytest.mark.parametrize("raw", ["{not json", "", "{'robot': 'sawyer'}", '{"a": 1} trailing'])
def test_read_metadata_invalid_json(tmp_path: Path, raw: str) -> None:
    read = hdf5.read_metadata(make_h5(tmp_path / "a.h5", raw_metadata=raw))
    assert read.status == "invalid"
    assert "JSON" in read.detail
    assert read.document is None


def test_read_metadata_deeply_nested_json_is_invalid(tmp_path: Path) -> None:
    read = hdf5.read_metadata(make_h5(tmp_path / "a.h5", raw_metadata="[" * 100_000))
    assert read.status == "invalid"


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(5, id="int"),
        pytest.param(2.5, id="float"),
        pytest.param(np.arange(3), id="int-array"),
        pytest.param(np.array(["{}", "{}"], dtype=h5py.string_dtype()), id="2-strings"),
    ],
)
def test_read_metadata_non_string_is_invalid(tmp_path: Path, raw: object) -> None:
    read = hdf5.read_metadata(make_h5(tmp_path / "a.h5", raw_metadata=raw))
    assert read.status == "invalid"
    assert "not a string" in read.detail


def test_read_metadata_non_utf8_bytes_is_invalid(tmp_path: Path) -> None:
    raw = np.bytes_(b'{"robot": "\xff\xfe"}')
    read = hdf5.read_metadata(make_h5(tmp_path / "a.h5", raw_metadata=raw))
    assert read.status == "invalid"
    assert "UTF-8" in read.detail


def test_read_metadata_non_utf8_variable_length_string_is_invalid(tmp_path: Path) -> None:
    raw = np.array(b'{"robot": "\xff"}', dtype=h5py.string_dtype("utf-8"))
    read = hdf5.read_metadata(make_h5(tmp_path / "a.h5", raw_metadata=raw))
    assert read.status == "invalid", read


def test_read_metadata_truncated_file_is_unreadable(tmp_path: Path) -> None:
    path = make_h5(tmp_path / "a.h5", DOC)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    read = hdf5.read_metadata(path)
    assert read.status == "unreadable"
    assert read.detail


@pytest.mark.parametrize("content", [b"", b"hello, world\n", b"\x89HDF\r\n\x1a"])
def test_read_metadata_non_hdf5_is_unreadable(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.h5"
    path.write_bytes(content)
    assert hdf5.read_metadata(path).status == "unreadable"


def test_read_metadata_missing_file_is_unreadable(tmp_path: Path) -> None:
    assert hdf5.read_metadata(tmp_path / "nope.h5").status == "unreadable"


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(), c, max_size=4),
    max_leaves=10,
)


@settings(max_examples=25, deadline=None)
@given(document=_json)
def test_read_metadata_returns_what_was_written(
    tmp_path_factory: pytest.TempPathFactory, document: object
) -> None:
    path = make_h5(tmp_path_factory.mktemp("h") / "a.h5", document, frames=None)
    read = hdf5.read_metadata(path)
    if document is None:  # make_h5 writes no attribute for None
        assert read.status == "missing"
    else:
        assert (read.status, read.document) == ("ok", document)


# --- is_hdf5 ----------------------------------------------------------------------------


def test_is_hdf5(tmp_path: Path) -> None:
    assert hdf5.is_hdf5(make_h5(tmp_path / "a.h5"))
    text = tmp_path / "a.txt"
    text.write_text("not hdf5\n" * 100)
    assert not hdf5.is_hdf5(text)
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    assert not hdf5.is_hdf5(empty)
    assert not hdf5.is_hdf5(tmp_path / "missing.h5")
    assert not hdf5.is_hdf5(tmp_path)


@pytest.mark.parametrize("userblock", [512, 1024, 4096])
def test_is_hdf5_after_user_block(tmp_path: Path, userblock: int) -> None:
    path = tmp_path / "ub.h5"
    with h5py.File(path, "w", userblock_size=userblock) as f:
        f.attrs["metadata"] = '{"a": 1}'
    with open(path, "r+b") as f:
        f.write(b"user block text, not a signature")
    assert hdf5.is_hdf5(path)
    assert hdf5.read_metadata(path).document == {"a": 1}


def test_is_hdf5_ignores_signature_at_non_power_offset(tmp_path: Path) -> None:
    path = tmp_path / "x.bin"
    path.write_bytes(b"\0" * 100 + hdf5.SIGNATURE + b"\0" * 2000)
    assert not hdf5.is_hdf5(path)


# --- describe ---------------------------------------------------------------------------


def test_describe_lists_structure(tmp_path: Path) -> None:
    path = make_h5(tmp_path / "a.h5", DOC)
    with h5py.File(path, "a") as f:
        f["env/state"].attrs["units"] = "rad"
        f["policy"].attrs["name"] = "x" * 100
        f["env/cam0_video"].attrs["big"] = np.zeros(100)
    d = hdf5.describe(path)
    nodes = {n.path: n for n in d.nodes}
    assert d.nodes[0].path == "/" and d.nodes[0].kind == "group"
    assert set(nodes) == {
        "/",
        "/env",
        "/env/cam0_video",
        "/env/cam0_video/frames",
        "/env/state",
        "/policy",
        "/policy/actions",
    }
    assert nodes["/env"].kind == "group" and nodes["/env"].shape is None
    frames = nodes["/env/cam0_video/frames"]
    assert (frames.kind, frames.shape, frames.dtype) == ("dataset", (6, 48, 64, 3), "uint8")
    assert (nodes["/env/state"].shape, nodes["/env/state"].dtype) == ((6, 5), "float64")
    assert nodes["/policy/actions"].shape == (6, 4)
    assert nodes["/env/state"].attrs == {"units": "rad"}
    assert (
        nodes["/policy"].attrs["name"].endswith("…") and len(nodes["/policy"].attrs["name"]) == 60
    )
    assert nodes["/env/cam0_video"].attrs["big"].startswith("array (100,)")
    assert nodes["/"].attrs == {"metadata": "(JSON, shown below)"}
    assert d.images == ["/env/cam0_video/frames"]
    assert d.metadata.status == "ok" and d.metadata.document == DOC
    assert d.size == path.stat().st_size
    as_dict = d.to_dict()
    assert as_dict["metadata"] == DOC and as_dict["metadata_status"] == "ok"
    assert {
        "path": "/env/state",
        "kind": "dataset",
        "shape": [6, 5],
        "dtype": "float64",
        "attrs": {"units": "rad"},
    } in as_dict["nodes"]


def test_describe_finds_image_datasets_only(tmp_path: Path) -> None:
    path = tmp_path / "imgs.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("cams/single", data=np.zeros((4, 8, 10, 3), np.uint8))
        f.create_dataset("cams/multi", data=np.zeros((4, 2, 8, 10, 3), np.uint8))
        f.create_dataset("not/float", data=np.zeros((4, 8, 10, 3), np.float32))
        f.create_dataset("not/rgba", data=np.zeros((4, 8, 10, 4), np.uint8))
        f.create_dataset("not/one_frame", data=np.zeros((8, 10, 3), np.uint8))
        f.create_dataset("not/empty", data=np.zeros((0, 8, 10, 3), np.uint8))
        f.create_dataset("not/scalar", data=3)
    d = hdf5.describe(path)
    assert sorted(d.images) == ["/cams/multi", "/cams/single"]
    assert {n.path: n.shape for n in d.nodes}["/not/scalar"] == ()
    assert d.metadata.status == "missing"
    assert d.to_dict()["metadata"] is None


def test_describe_with_user_block(tmp_path: Path) -> None:
    path = tmp_path / "ub.h5"
    with h5py.File(path, "w", userblock_size=512) as f:
        f.create_dataset("x", data=np.arange(3))
    assert [n.path for n in hdf5.describe(path).nodes] == ["/", "/x"]


def test_describe_refuses_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.h5"
    path.write_text("just text\n")
    with pytest.raises(NotHDF5Error):
        hdf5.describe(path)


def test_describe_refuses_truncated_file(tmp_path: Path) -> None:
    path = make_h5(tmp_path / "a.h5", DOC)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(NotHDF5Error):
        hdf5.describe(path)


def test_describe_missing_file_or_folder(tmp_path: Path) -> None:
    with pytest.raises(LocalPathError):
        hdf5.describe(tmp_path / "missing.h5")
    with pytest.raises(LocalPathError):
        hdf5.describe(tmp_path)


# --- contact_sheet ----------------------------------------------------------------------

PAD = 2


def _colour(t: int, cam: int = 0) -> tuple[int, int, int]:
    return ((t * 16) % 256, 255 - (t * 16) % 256, (cam * 100 + 7) % 256)


def _solid_frames(path: Path, t: int, h: int = 48, w: int = 64, ncam: int | None = None) -> Path:
    """Frames of one solid colour per time step (and camera), so tiles can be identified."""
    shape = (t, h, w, 3) if ncam is None else (t, ncam, h, w, 3)
    data = np.zeros(shape, np.uint8)
    for i in range(t):
        if ncam is None:
            data[i] = _colour(i)
        else:
            for c in range(ncam):
                data[i, c] = _colour(i, c)
    with h5py.File(path, "w") as f:
        f.create_dataset("env/video", data=data)
        f.create_dataset("env/state", data=np.zeros((t, 5)))
    return path


def _tile_centre(img: Image.Image, row: int, col: int, cell_w: int, cell_h: int) -> tuple[int, ...]:
    x = PAD + col * (cell_w + PAD) + cell_w // 2
    y = PAD + row * (cell_h + PAD) + cell_h // 2
    return img.getpixel((x, y))


def test_contact_sheet_shows_evenly_spaced_frames(tmp_path: Path) -> None:
    path = _solid_frames(tmp_path / "a.h5", t=16)
    out = tmp_path / "sheets" / "a.png"
    assert hdf5.contact_sheet(path, out, frames=8) == 1
    img = Image.open(out)
    assert img.format == "PNG" and img.mode == "RGB"
    cell_w, cell_h = 128, 96  # 64 x 48 frames are enlarged 2x (max_width 160)
    assert img.size == (8 * (cell_w + PAD) + PAD, 1 * (cell_h + PAD) + PAD)
    expected_steps = [0, 2, 4, 6, 9, 11, 13, 15]
    for col, t in enumerate(expected_steps):
        assert _tile_centre(img, 0, col, cell_w, cell_h) == _colour(t)
    assert img.getpixel((0, 0)) == (0, 0, 0)  # padding


def test_contact_sheet_shrinks_wide_frames(tmp_path: Path) -> None:
    path = _solid_frames(tmp_path / "a.h5", t=3, h=100, w=400)
    out = tmp_path / "a.png"
    hdf5.contact_sheet(path, out, frames=3, max_width=160)
    img = Image.open(out)
    assert img.size == (3 * (160 + PAD) + PAD, 40 + 2 * PAD)
    assert [_tile_centre(img, 0, c, 160, 40) for c in range(3)] == [_colour(t) for t in range(3)]


def test_contact_sheet_one_row_per_camera(tmp_path: Path) -> None:
    path = _solid_frames(tmp_path / "a.h5", t=10, ncam=3)
    out = tmp_path / "a.png"
    assert hdf5.contact_sheet(path, out, frames=2) == 3
    img = Image.open(out)
    cell_w, cell_h = 128, 96
    assert img.size == (2 * (cell_w + PAD) + PAD, 3 * (cell_h + PAD) + PAD)
    for cam in range(3):
        assert _tile_centre(img, cam, 0, cell_w, cell_h) == _colour(0, cam)
        assert _tile_centre(img, cam, 1, cell_w, cell_h) == _colour(9, cam)


def test_contact_sheet_with_real_frames_matches_pixels(tmp_path: Path) -> None:
    path = make_h5(tmp_path / "a.h5", frames=(8, 48, 64, 3))
    out = tmp_path / "a.png"
    hdf5.contact_sheet(path, out, frames=8)
    with h5py.File(path) as f:
        first = f["env/cam0_video/frames"][0]
    img = np.asarray(Image.open(out))
    # tile 0 is frame 0 enlarged 2x with nearest neighbour: every other pixel is the frame
    assert np.array_equal(img[PAD : PAD + 96 : 2, PAD : PAD + 128 : 2], first)


@pytest.mark.parametrize("t", [2, 6])
def test_contact_sheet_with_fewer_frames_than_asked_shows_them_all(tmp_path: Path, t: int) -> None:
    path = _solid_frames(tmp_path / "a.h5", t=t)
    out = tmp_path / "a.png"
    hdf5.contact_sheet(path, out, frames=8)
    img = Image.open(out)
    assert img.size[0] == t * (128 + PAD) + PAD
    assert _tile_centre(img, 0, t - 1, 128, 96) == _colour(t - 1)


def test_contact_sheet_single_frame(tmp_path: Path) -> None:
    path = _solid_frames(tmp_path / "a.h5", t=1)
    out = tmp_path / "a.png"
    assert hdf5.contact_sheet(path, out, frames=8) == 1
    img = Image.open(out)
    assert img.size == (128 + 2 * PAD, 96 + 2 * PAD)
    assert _tile_centre(img, 0, 0, 128, 96) == _colour(0)


def test_contact_sheet_without_images_raises(tmp_path: Path) -> None:
    path = make_h5(tmp_path / "a.h5", DOC, frames=None)
    out = tmp_path / "a.png"
    with pytest.raises(NotHDF5Error, match="no image frames"):
        hdf5.contact_sheet(path, out)
    assert not out.exists()


def test_contact_sheet_of_text_file_raises(tmp_path: Path) -> None:
    path = tmp_path / "a.h5"
    path.write_text("hello")
    with pytest.raises(NotHDF5Error):
        hdf5.contact_sheet(path, tmp_path / "a.png")
