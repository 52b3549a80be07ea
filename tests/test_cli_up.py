"""`deon up` end to end: the real command against a moto server over HTTP."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from deon.metadata import wire as meta
from tests.conftest import Lab, assert_no_traceback, make_h5, run_deon


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decoded(lab: Lab, key: str) -> meta.Decoded:
    d = meta.decode(lab.head(key)["Metadata"])
    if d.sidecar is not None:
        d.document = meta.resolve_sidecar(d.sidecar, lab.get(d.sidecar.key))
    return d


def test_up_uploads_files_with_metadata_and_sha256(lab: Lab) -> None:
    src = lab.tmp / "src"
    doc = {"robot": "sawyer", "camera_configuration": {"n": 2}, "note": "grasp  ü 🤖"}
    a = make_h5(src / "a.h5", doc)
    b = make_h5(src / "sub" / "b.h5", {"robot": "franka"}, seed=1)
    (src / "notes.txt").write_text("calibration notes")

    r = run_deon("up", "s3://lab/alice", str(src))

    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.split()) == [
        "s3://lab/alice/a.h5",
        "s3://lab/alice/notes.txt",
        "s3://lab/alice/sub/b.h5",
    ]
    assert lab.list_keys() == ["alice/a.h5", "alice/notes.txt", "alice/sub/b.h5"]
    assert lab.get("alice/a.h5") == a.read_bytes()
    assert lab.get("alice/sub/b.h5") == b.read_bytes()
    da = decoded(lab, "alice/a.h5")
    assert da.document == doc
    assert da.sha256 == sha256(a.read_bytes())
    assert decoded(lab, "alice/sub/b.h5").document == {"robot": "franka"}
    # a non-HDF5 file goes up with its sha256 but no metadata document
    dn = decoded(lab, "alice/notes.txt")
    assert not dn.has_document and dn.sha256 == sha256(b"calibration notes")
    assert "3 uploaded" in r.stderr
    assert_no_traceback(r.stderr)


def test_headers_are_ascii_and_within_the_s3_limit(lab: Lab) -> None:
    src = lab.tmp / "src"
    make_h5(src / "small.h5", {"robot": "sawyer", "é": "ü"})
    make_h5(src / "zipped.h5", {f"key_{i}": "sawyer " * 8 for i in range(60)})
    big = {f"k{i}": hashlib.sha256(str(i).encode()).hexdigest() for i in range(400)}
    make_h5(src / "huge.h5", big)

    r = run_deon("up", "s3://lab/alice", str(src))

    assert r.returncode == 0, r.stderr
    forms = {}
    for name in ("small", "zipped", "huge"):
        h = lab.head(f"alice/{name}.h5")
        md = h["Metadata"]
        assert meta.header_bytes(md) <= 2048
        assert all(v.isascii() for v in md.values())
        forms[name] = md[meta.META_KEY].split(":", 1)[0]
    assert forms == {"small": "json", "zipped": "zlib", "huge": "ref"}
    assert decoded(lab, "alice/huge.h5").document == big
    # the sidecar sits under the reserved .deon/ prefix, which `down` does not copy
    assert any(k.startswith("alice/.deon/meta/") for k in lab.list_keys())
    r = run_deon("down", "s3://lab/alice", str(lab.tmp / "copy"))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (lab.tmp / "copy").rglob("*")) == [
        "huge.h5",
        "small.h5",
        "zipped.h5",
    ]


def test_files_without_or_with_bad_metadata_go_up_with_a_named_warning(lab: Lab) -> None:
    src = lab.tmp / "src"
    make_h5(src / "good.h5", {"robot": "sawyer"})
    make_h5(src / "none.h5")
    make_h5(src / "broken.h5", raw_metadata="{robot: sawyer")

    r = run_deon("up", "s3://lab/alice", str(src))

    assert r.returncode == 0, r.stderr
    assert lab.list_keys() == ["alice/broken.h5", "alice/good.h5", "alice/none.h5"]
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert any("none.h5" in w and "no 'metadata' attribute" in w for w in warnings)
    assert any("broken.h5" in w and "not valid JSON" in w for w in warnings)
    assert not any("good.h5" in w for w in warnings)
    assert not decoded(lab, "alice/none.h5").has_document


def test_second_up_of_an_unchanged_folder_sends_no_put(lab: Lab) -> None:
    src = lab.tmp / "src"
    for i in range(3):
        make_h5(src / f"t{i}.h5", {"i": i}, seed=i)
    (src / "big.bin").write_bytes(os.urandom(17 * 1024 * 1024))  # multipart
    assert run_deon("up", "s3://lab/alice", str(src)).returncode == 0
    assert lab.proxy.count("UPLOAD_PART") >= 3
    lab.proxy.reset()

    r = run_deon("up", "s3://lab/alice", str(src))

    assert r.returncode == 0, r.stderr
    assert lab.proxy.count("PUT", "UPLOAD_PART", "CREATE_MULTIPART", "HEAD") == 0
    assert "0 uploaded" in r.stderr and "4 unchanged" in r.stderr


def test_large_file_goes_up_multipart_with_its_sha256(lab: Lab) -> None:
    src = lab.tmp / "src"
    data = os.urandom(40 * 1024 * 1024 + 123)
    (src).mkdir()
    (src / "big.bin").write_bytes(data)

    r = run_deon("up", "s3://lab/x", str(src))

    assert r.returncode == 0, r.stderr
    assert lab.get("x/big.bin") == data
    head = lab.head("x/big.bin")
    assert head["ETag"].strip('"').endswith("-6")  # five 8 MiB parts and one of 123 bytes
    assert meta.decode(head["Metadata"]).sha256 == sha256(data)


def test_up_refuses_to_replace_someone_elses_different_object(lab: Lab) -> None:
    src = lab.tmp / "src"
    mine = make_h5(src / "clash.h5", {"by": "alice"})
    make_h5(src / "fine.h5", {"by": "alice"}, seed=2)
    theirs = b"bob's trajectory, not alice's"
    lab.put("shared/clash.h5", theirs, {"deon-sha256": sha256(theirs)})

    r = run_deon("up", "s3://lab/shared", str(src))

    assert r.returncode == 1
    assert "s3://lab/shared/clash.h5" in r.stderr and "--overwrite" in r.stderr
    assert lab.get("shared/clash.h5") == theirs  # nothing lost
    assert lab.get("shared/fine.h5") == (src / "fine.h5").read_bytes()  # the rest went up
    assert r.stdout.split() == ["s3://lab/shared/fine.h5"]
    assert_no_traceback(r.stderr)

    r = run_deon("up", "--overwrite", "s3://lab/shared", str(src))

    assert r.returncode == 0, r.stderr
    assert lab.get("shared/clash.h5") == mine.read_bytes()
    assert "1 replaced" in r.stderr


def test_up_updates_an_object_the_user_uploaded_without_overwrite(lab: Lab) -> None:
    src = lab.tmp / "src"
    f = make_h5(src / "t.h5", {"v": 1})
    assert run_deon("up", "s3://lab/alice", str(src)).returncode == 0
    make_h5(f, {"v": 2}, seed=5)

    r = run_deon("up", "s3://lab/alice", str(src))

    assert r.returncode == 0, r.stderr
    assert lab.get("alice/t.h5") == f.read_bytes()
    assert decoded(lab, "alice/t.h5").document == {"v": 2}
    assert "1 replaced" in r.stderr


def test_an_object_written_by_someone_else_during_the_upload_is_not_replaced(lab: Lab) -> None:
    """Between deon's LIST and its PUT, a colleague writes the same key: the
    conditional write (If-None-Match: *) makes deon refuse instead of clobbering."""
    src = lab.tmp / "src"
    make_h5(src / "race.h5", {"by": "alice"})
    theirs = b"bob got there first"

    def bob_writes_first(method: str, key: str, query: str) -> None:
        if method == "PUT" and key == "shared/race.h5" and not lab.list_keys("shared/"):
            lab.put("shared/race.h5", theirs)

    lab.proxy.rules.before = bob_writes_first

    r = run_deon("up", "s3://lab/shared", str(src))

    assert r.returncode == 1
    assert "s3://lab/shared/race.h5" in r.stderr and "refused" in r.stderr
    assert lab.get("shared/race.h5") == theirs


def test_an_object_another_tool_uploaded_is_given_metadata_only_on_request(lab: Lab) -> None:
    """Same bytes put earlier with `aws s3 cp` (no user metadata): `up` names it and
    leaves it; `up --overwrite` adds deon's headers in place, sending no body, so that
    `metadata down` sees the metadata."""
    src = lab.tmp / "src"
    f = make_h5(src / "t.h5", {"robot": "sawyer"})
    lab.put("plain/t.h5", f.read_bytes())  # no metadata

    r = run_deon("up", "s3://lab/plain", str(src))

    assert r.returncode == 0, r.stderr
    assert (
        f"warning: s3://lab/plain/t.h5 holds the bytes of {f} but no deon metadata; left as "
        "it is (--overwrite gives it this file's metadata)" in r.stderr
    )
    assert lab.head("plain/t.h5")["Metadata"] == {}
    lab.proxy.reset()

    r = run_deon("up", "--overwrite", "s3://lab/plain", str(src))

    assert r.returncode == 0, r.stderr
    assert "0 uploaded, 1 given metadata" in r.stderr
    assert lab.proxy.bytes_in < 4096 < f.stat().st_size  # headers only, not the file
    assert lab.get("plain/t.h5") == f.read_bytes()
    decoded_ = decoded(lab, "plain/t.h5")
    assert decoded_.document == {"robot": "sawyer"} and decoded_.sha256 == sha256(f.read_bytes())
    assert run_deon("metadata", "down", "s3://lab/plain").returncode == 0
    assert [row["robot"] for row in lab.rows()] == ["sawyer"]
    lab.proxy.reset()

    r = run_deon("up", "s3://lab/plain", str(src))

    assert "0 uploaded, 1 unchanged" in r.stderr
    assert lab.proxy.count("PUT", "HEAD") == 0


def test_same_bytes_with_someone_elses_metadata_are_left_alone(lab: Lab) -> None:
    src = lab.tmp / "src"
    f = make_h5(src / "t.h5", {"robot": "sawyer"})
    theirs = {"metajson": json.dumps({"robot": "baxter"}), "uid": "1000"}  # deoncli's headers
    lab.put("old/t.h5", f.read_bytes(), theirs)

    r = run_deon("up", "s3://lab/old", str(src))

    assert r.returncode == 0, r.stderr
    assert (
        f"warning: s3://lab/old/t.h5 holds the bytes of {f} but metadata deon did not write; "
        "left as it is (--overwrite gives it this file's metadata)" in r.stderr
    )
    assert lab.head("old/t.h5")["Metadata"] == theirs


def test_metadata_given_in_place_is_conditional_on_the_etag_compared(lab: Lab) -> None:
    """A colleague writes other bytes between deon's HEAD and its copy-onto-itself: the
    copy (CopySourceIfMatch) fails, and the object never ends up with bytes and headers
    that disagree."""
    src = lab.tmp / "src"
    f = make_h5(src / "t.h5", {"robot": "sawyer"})
    lab.put("plain/t.h5", f.read_bytes())
    theirs = b"bob's other bytes"

    def bob_writes(method: str, key: str, query: str) -> None:
        if method == "PUT" and key == "plain/t.h5" and lab.get("plain/t.h5") != theirs:
            lab.put("plain/t.h5", theirs)

    lab.proxy.rules.before = bob_writes

    run_deon("up", "--overwrite", "s3://lab/plain", str(src))

    body = lab.get("plain/t.h5")
    claimed = lab.head("plain/t.h5")["Metadata"].get("deon-sha256")
    assert claimed is None or claimed == sha256(body), "headers describe other bytes"


@pytest.mark.parametrize("case", ["overwrite", "own-update"])
def test_a_replacement_is_conditional_on_the_etag_it_compared(lab: Lab, case: str) -> None:
    """Between deon's HEAD and its PUT a colleague writes the key again: the PUT carries
    If-Match with the ETag deon compared, so it is refused instead of replacing the
    colleague's new object."""
    src = lab.tmp / "src"
    f = make_h5(src / "t.h5", {"v": 1})
    if case == "overwrite":
        lab.put("s/t.h5", b"bob's first version")
        args = ["up", "--overwrite", "s3://lab/s", str(src)]
    else:
        assert run_deon("up", "s3://lab/s", str(src)).returncode == 0
        make_h5(f, {"v": 2}, seed=9)
        args = ["up", "s3://lab/s", str(src)]
    newer = b"bob's newer version, written while alice uploads"

    def bob_writes_again(method: str, key: str, query: str) -> None:
        if method == "PUT" and key == "s/t.h5" and lab.get("s/t.h5") != newer:
            lab.put("s/t.h5", newer)

    lab.proxy.rules.before = bob_writes_again

    r = run_deon(*args)

    assert r.returncode == 1
    assert "error: s3://lab/s/t.h5: refused" in r.stderr
    assert lab.get("s/t.h5") == newer


def test_up_dry_run_sends_nothing(lab: Lab) -> None:
    src = lab.tmp / "src"
    make_h5(src / "a.h5", {"x": 1})

    r = run_deon("up", "--dry-run", "s3://lab/alice", str(src))

    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["s3://lab/alice/a.h5"]
    assert lab.list_keys() == []
    assert "1 would be uploaded" in r.stderr


def test_up_defaults_to_the_data_dir_and_accepts_a_single_file(lab: Lab) -> None:
    f = make_h5(lab.data_dir / "lab" / "alice" / "day1" / "t.h5", {"x": 1})

    r = run_deon("up", "lab/alice")

    assert r.returncode == 0, r.stderr
    assert lab.list_keys() == ["alice/day1/t.h5"]

    r = run_deon("up", "s3://lab/single", str(f))
    assert r.returncode == 0, r.stderr
    assert lab.list_keys("single/") == ["single/t.h5"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["up", "./local", "/tmp"], "not an S3 address"),
        (["up", "s3://lab/x", "/nonexistent/folder"], "no such folder"),
        (["up", "s3://no-such-bucket/x", "."], "no such bucket: no-such-bucket"),
        # keys no colleague's `down` could write
        (["up", "s3://lab/../x", "."], "unsafe prefix in 's3://lab/../x': '..' segment"),
        (["up", "s3://lab/p//q", "."], "unsafe prefix in 's3://lab/p//q': empty path segment"),
        (["up", "s3://lab/q/.deon/meta", "."], ".deon/ holds deon's own bookkeeping"),
    ],
)
def test_up_bad_input_exits_2_with_one_line(lab: Lab, args: list[str], message: str) -> None:
    r = run_deon(*args)

    assert r.returncode == 2
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert_no_traceback(r.stderr)


def test_metadata_document_is_exactly_the_attribute(lab: Lab) -> None:
    """What comes back equals what was in attrs['metadata'], for awkward documents."""
    src = lab.tmp / "src"
    docs = {
        "list.h5": [1, 2.5, None, True, "x"],
        "string.h5": "just a string",
        "nested.h5": {"a": {"b": {"c": [{"d": "\u0000\u007f\n\t"}]}}},
        "floats.h5": {"neg_zero": -0.0, "big": 10**30, "tiny": 5e-324},
    }
    for name, doc in docs.items():
        make_h5(src / name, raw_metadata=json.dumps(doc))

    assert run_deon("up", "s3://lab/odd", str(src)).returncode == 0

    for name, doc in docs.items():
        got = decoded(lab, f"odd/{name}").document
        assert json.dumps(got) == json.dumps(doc)


def test_lines_naming_files_with_control_characters_are_one_escaped_line_each(lab: Lab) -> None:
    src = lab.tmp / "in\x1b]0;pwned\x07\nbox"
    make_h5(src / "none.h5")  # no metadata attribute: uploaded, with a warning naming it
    make_h5(src / "new\nline.h5", {"robot": "sawyer"})  # refused: no key may hold these
    make_h5(src / "esc\x1b[2J.h5", {"robot": "sawyer"})

    r = run_deon("up", "s3://lab/alice", str(src))

    assert r.returncode == 1, r.stderr
    assert r.stdout == "s3://lab/alice/none.h5\n"
    lines = r.stderr.splitlines()
    shown = str(lab.tmp / "in\\x1b]0;pwned\\x07\\nbox")
    assert sorted(lines[:-1]) == [
        "error: s3://lab/alice/esc\\x1b[2J.h5: unshareable name: control character in key",
        "error: s3://lab/alice/new\\nline.h5: unshareable name: control character in key",
        f"warning: {shown}/none.h5: no 'metadata' attribute, and no metadata reader recognised "
        "the file (tried attrs, robonet); its object carries no metadata",
    ]
    assert lines[-1].startswith("up: 1 uploaded, 2 failed")
