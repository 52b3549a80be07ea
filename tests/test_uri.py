"""S3 addresses and the safety of object keys as local paths (deon.uri)."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deon import uri
from deon.errors import AddressError, ExitStatus, UnsafeKey, UsageError

# --- parse_address ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "bucket", "key"),
    [
        ("s3://bucket/prefix", "bucket", "prefix"),
        ("S3://bucket", "bucket", ""),
        ("bucket/prefix/deeper", "bucket", "prefix/deeper"),
        ("s3://bucket/", "bucket", ""),
        ("s3://bucket/a/b/", "bucket", "a/b/"),
        ("bucket", "bucket", ""),
        ("  s3://lab-data.v2/alice/run 1  ", "lab-data.v2", "alice/run 1"),
        ("s3://Legacy_Bucket/x", "Legacy_Bucket", "x"),
        ("s3://abc/ünï/ファイル.h5", "abc", "ünï/ファイル.h5"),
    ],
)
def test_parse_address_accepts(text: str, bucket: str, key: str) -> None:
    address = uri.parse_address(text)
    assert (address.bucket, address.key) == (bucket, key)
    assert address.uri == f"s3://{bucket}/{key}"
    assert str(address) == address.uri
    assert address.prefix == "" or address.prefix.endswith("/")
    assert address.prefix.rstrip("/") == key.rstrip("/")


def test_prefix_and_child() -> None:
    assert uri.parse_address("s3://bucket").prefix == ""
    assert uri.parse_address("s3://bucket/a").prefix == "a/"
    assert uri.parse_address("s3://bucket/a/").prefix == "a/"
    assert uri.parse_address("s3://bucket/a").child("b/c.h5").uri == "s3://bucket/a/b/c.h5"
    assert uri.parse_address("s3://bucket").child("c.h5").uri == "s3://bucket/c.h5"


def test_address_round_trips_through_uri() -> None:
    address = uri.parse_address("lab/alice/runs")
    assert uri.parse_address(address.uri) == address


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "./data",
        "/abs/path",
        "http://x/y",
        "https://bucket/key",
        "s3://",
        "s3://a/b",
        "s3://ab",
        "bad..bucket",
        "Bucket With Space",
        "s3:/bucket",
        "s3:bucket",
        "-bucket/x",
        "bucket-/x",
        "s3://" + "b" * 256,
        "s3://bucket/" + "k" * 1025,
    ],
)
def test_parse_address_rejects(text: str) -> None:
    with pytest.raises(AddressError) as info:
        uri.parse_address(text)
    assert isinstance(info.value, UsageError)
    assert info.value.exit_status == ExitStatus.USAGE == 2
    assert str(info.value)


def test_key_of_exactly_1024_bytes_is_accepted() -> None:
    key = "é" * 512  # 1024 bytes of UTF-8
    assert uri.parse_address("s3://bucket/" + key).key == key
    with pytest.raises(AddressError, match="too long"):
        uri.parse_address("s3://bucket/" + key + "x")


@pytest.mark.parametrize("text", ["s3://bucket", "s3://bucket/", "s3://bucket/folder/", "bucket"])
def test_parse_object_uri_rejects_folders(text: str) -> None:
    with pytest.raises(AddressError) as info:
        uri.parse_object_uri(text)
    assert info.value.exit_status == 2


def test_parse_object_uri_accepts_a_key() -> None:
    address = uri.parse_object_uri("s3://bucket/alice/traj_0001.h5")
    assert (address.bucket, address.key) == ("bucket", "alice/traj_0001.h5")


# --- key safety -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/etc/passwd",
        "../x",
        "..",
        ".",
        "a/..",
        "a/../../x",
        "a//b",
        "a/./b",
        "a/",
        "a\\b",
        "..\\x",
        "C:/x",
        "c:x",
        "a:b/c",
        "a/\x00b",
        "a\nb",
        "a\rb",
        "a\x7fb",
        "a\x85b",
        "x" * 300,
        "ok/" + "é" * 128,  # 256 bytes of UTF-8 in one segment
        ".deon-tmp-abc",
        "a/.deon-tmp-x.h5",
        "a/\udcff.h5",  # not UTF-8 (a lone surrogate, e.g. from os.fsdecode)
    ],
)
def test_check_relative_key_refuses(key: str) -> None:
    with pytest.raises(UnsafeKey):
        uri.check_relative_key(key)


@pytest.mark.parametrize(
    "key",
    [
        "a/b/c.h5",
        "ünïcödé/ファイル.h5",
        "a b/c",
        "traj.h5",
        "...",
        "..a/b..",
        ".hidden/x",
        "x" * 255,
        "é" * 127,
        "ab:c/d",
        ".deon-tmp",
    ],
)
def test_check_relative_key_accepts(key: str) -> None:
    assert uri.check_relative_key(key) == PurePosixPath(key)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    r = tmp_path_factory.mktemp("dest")
    (r / "existing" / "deeper").mkdir(parents=True)
    return r


_segments = st.one_of(
    st.sampled_from(
        [
            "",
            ".",
            "..",
            "...",
            "a",
            "b.h5",
            "existing",
            "deeper",
            "C:",
            "\\",
            "..\\..",
            "\x00",
            "\n",
            " ",
            "~",
            "é",
            ".deon-tmp-",
            "\udc80",
            "x" * 256,
        ]
    ),
    st.text(max_size=8),
)
_keys = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=60),
    st.lists(_segments, min_size=1, max_size=8).map("/".join),
    st.lists(_segments, min_size=1, max_size=8).map(lambda parts: "/" + "/".join(parts)),
)


@settings(max_examples=400, deadline=None)
@given(key=_keys)
def test_any_key_is_refused_or_lands_strictly_inside_root(root: Path, key: str) -> None:
    try:
        path = uri.local_path_for(root, key)
    except UnsafeKey:
        return
    assert root.resolve() in path.resolve().parents
    assert path.relative_to(root).as_posix() == key


def test_local_path_for_maps_key_below_root(tmp_path: Path) -> None:
    assert uri.local_path_for(tmp_path, "a/b/c.h5") == tmp_path / "a" / "b" / "c.h5"
    (tmp_path / "a").mkdir()
    assert uri.local_path_for(tmp_path, "a/c.h5") == tmp_path / "a" / "c.h5"


def test_local_path_for_refuses_unsafe_key(tmp_path: Path) -> None:
    with pytest.raises(UnsafeKey):
        uri.local_path_for(tmp_path, "../escape.h5")


@pytest.mark.parametrize("key", ["link/x.h5", "link/new/deeper/x.h5"])
def test_local_path_for_refuses_symlinked_folder_pointing_outside(tmp_path: Path, key: str) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafeKey, match="symlink"):
        uri.local_path_for(root, key)
    assert list(outside.iterdir()) == []


def test_local_path_for_allows_symlinked_folder_inside_root(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real", target_is_directory=True)
    assert uri.local_path_for(tmp_path, "alias/x.h5") == tmp_path / "alias" / "x.h5"


def test_local_path_for_works_when_root_itself_is_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "big-disk" / "deon-data"
    (real / "alice").mkdir(parents=True)
    root = tmp_path / "data"
    root.symlink_to(real, target_is_directory=True)
    assert uri.local_path_for(root, "alice/x.h5") == root / "alice" / "x.h5"
    assert uri.local_path_for(root, "bob/x.h5") == root / "bob" / "x.h5"


@pytest.mark.parametrize("points_to", ["outside-file", "inside-file"])
def test_local_path_for_refuses_when_target_is_a_symlink(tmp_path: Path, points_to: str) -> None:
    root = tmp_path / "root"
    root.mkdir()
    target = tmp_path / points_to if points_to == "outside-file" else root / points_to
    target.write_bytes(b"precious")
    (root / "x.h5").symlink_to(target)
    with pytest.raises(UnsafeKey, match="symlink"):
        uri.local_path_for(root, "x.h5")
    assert target.read_bytes() == b"precious"


def test_local_path_for_refuses_dangling_symlink_as_target(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "x.h5").symlink_to(tmp_path / "does-not-exist.h5")
    with pytest.raises(UnsafeKey):
        uri.local_path_for(root, "x.h5")


def test_local_path_for_refuses_dangling_symlinked_folder(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside / "not-yet", target_is_directory=True)
    try:
        path = uri.local_path_for(root, "link/x.h5")
    except UnsafeKey:
        return
    assert root.resolve() in path.resolve().parents, f"{path} resolves to {path.resolve()}"


def test_local_path_for_with_missing_root(tmp_path: Path) -> None:
    root = tmp_path / "not-created-yet"
    assert uri.local_path_for(root, "a/b.h5") == root / "a" / "b.h5"


# --- reserved keys and folder markers ---------------------------------------------------


@pytest.mark.parametrize(
    ("key", "reserved"),
    [
        ("p/.deon/meta/x.json", True),
        (".deon/snapshot.json", True),
        ("p/.deon", True),
        ("p/deon/x", False),
        ("p/.deon-meta/x", False),
        ("p/x.deon", False),
        ("p/a.h5", False),
    ],
)
def test_is_reserved(key: str, reserved: bool) -> None:
    assert uri.is_reserved(key) is reserved


@pytest.mark.parametrize(
    ("key", "size", "marker"),
    [("a/", 0, True), ("a/", 5, False), ("a", 0, False), ("a/b/", 0, True)],
)
def test_is_directory_marker(key: str, size: int, marker: bool) -> None:
    assert uri.is_directory_marker(key, size) is marker


def test_key_for_local() -> None:
    assert uri.key_for_local(PurePosixPath("a/b.h5"), "alice/") == "alice/a/b.h5"
    assert uri.key_for_local("b.h5", "") == "b.h5"
    with pytest.raises(UnsafeKey):
        uri.key_for_local(os.fsdecode(b"bad\xff.h5"), "alice/")
