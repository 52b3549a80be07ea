"""Hostile buckets: the forms other people's buckets really contain, end to end.

Every object here is something deon does not control: documents of any shape, headers
written by other tools or servers, broken files, keys made to break paths or output.
Each must be named in a clear message, never crash the run, and never stop the other
objects from being handled.
"""

from __future__ import annotations

import base64
import email.header
import hashlib
import http.client
import json
import os
import random
import sqlite3
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from deon.catalog import flatten
from deon.metadata import wire as meta
from deon.metadata.hdf5 import SIGNATURE
from tests.conftest import DEON_CMD, Lab, assert_no_traceback, make_h5, run_deon

# -- helpers -----------------------------------------------------------------------------


def by_key(lab: Lab) -> dict[str, dict[str, Any]]:
    return {r["key"]: r for r in lab.rows()}


def registry(lab: Lab) -> dict[tuple[str, ...], str]:
    """The catalog's metadata-column registry: metadata path -> column name."""
    db = sqlite3.connect(lab.catalog)
    try:
        return {
            tuple(json.loads(p)): n for n, p in db.execute("SELECT name, path FROM meta_columns")
        }
    finally:
        db.close()


def warnings_of(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("warning:")]


def put_doc(lab: Lab, key: str, doc: Any, body: bytes | None = None) -> dict[str, str]:
    """An object carrying `doc` in deon's own header format, as `deon up` writes it."""
    body = body if body is not None else json.dumps({"key": key}).encode()
    encoded = meta.encode(doc, hashlib.sha256(body).hexdigest(), lambda d: f"x/.deon/meta/{d}.json")
    assert encoded.sidecar is None
    lab.put(key, body, encoded.metadata)
    return encoded.metadata


def nested(depth: int, leaf: Any = "bottom") -> Any:
    doc = leaf
    for _ in range(depth):
        doc = {"a": doc}
    return doc


def files_under(root: Path) -> dict[str, bytes]:
    if not root.exists():
        return {}
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def raw_put(lab: Lab, key: str, headers: dict[str, bytes], body: bytes = b"x") -> None:
    """PUT straight to moto with header values as raw bytes (boto3 refuses non-ASCII),
    the way another S3 client or server may have stored them."""
    u = urlsplit(lab.client.meta.endpoint_url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.putrequest("PUT", f"/{lab.bucket}/{quote(key)}")
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200, resp.status
    finally:
        conn.close()


# -- documents of every shape --------------------------------------------------------------


def test_documents_that_are_not_json_objects_are_kept_whole_without_columns(lab: Lab) -> None:
    docs = {
        "s/list.h5": [1, "two", {"three": 3}],
        "s/string.h5": "just a string",
        "s/number.h5": 42,
        "s/real.h5": -0.5,
        "s/null.h5": None,
        "s/true.h5": True,
    }
    for key, doc in docs.items():
        put_doc(lab, key, doc)
    lab.put("s/none.h5", b"no metadata at all")

    r = run_deon("metadata", "down", "s3://lab/s")

    assert r.returncode == 0, r.stderr
    assert "7 new" in r.stderr
    assert warnings_of(r.stderr) == []
    got = by_key(lab)
    assert set(got) == {*docs, "s/none.h5"}
    for key, doc in docs.items():
        assert got[key]["metadata"] is not None, key  # a null document is still a document
        assert json.loads(got[key]["metadata"]) == doc, key
        assert got[key]["metadata_error"] is None
    assert got["s/null.h5"]["metadata"] == "null"
    assert got["s/none.h5"]["metadata"] is None  # ... unlike an object without one
    assert registry(lab) == {}  # no flattened columns for any of them
    # and the documents can be searched with SQL's JSON functions
    r = run_deon("query", "json_type(metadata) = 'array'")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["s3://lab/s/list.h5"]


def test_a_deeply_nested_document_is_kept_whole_and_flattened_to_max_depth(lab: Lab) -> None:
    doc = nested(60)
    headers = put_doc(lab, "d/deep.h5", doc)
    assert headers["deon-meta"].startswith("json:")  # fits in the header as it is

    r = run_deon("metadata", "down", "s3://lab/d")

    assert r.returncode == 0, r.stderr
    assert_no_traceback(r.stderr)
    row = by_key(lab)["d/deep.h5"]
    assert json.loads(row["metadata"]) == doc
    cols = registry(lab)
    deepest = ("a",) * flatten.MAX_DEPTH
    assert list(cols) == [deepest]  # one column, at the depth limit
    assert json.loads(row[cols[deepest]]) == nested(60 - flatten.MAX_DEPTH)
    r = run_deon("query", "json_extract(metadata, '$" + ".a" * 60 + "') = 'bottom'")
    assert r.stdout.splitlines() == ["s3://lab/d/deep.h5"], r.stderr


@pytest.mark.parametrize("depth", [950, 100_000])
def test_a_document_nested_past_what_a_parser_takes_is_named_not_a_crash(
    lab: Lab, depth: int
) -> None:
    text = "[" * depth + "]" * depth
    packed = base64.b64encode(zlib.compress(text.encode(), 9)).decode()
    lab.put("n/deep.h5", b"x", {"deon-meta": "zlib:" + packed})
    put_doc(lab, "n/fine.h5", {"robot": "sawyer"})

    r = run_deon("metadata", "down", "s3://lab/n")

    assert r.returncode == 0, r.stderr
    assert_no_traceback(r.stderr)
    got = by_key(lab)
    assert got["n/fine.h5"]["robot"] == "sawyer"
    deep = got["n/deep.h5"]
    if deep["metadata"] is not None:  # within what JSON parsers take: kept exactly
        assert deep["metadata"].replace(" ", "") == text
    else:
        assert "nests too deeply" in deep["metadata_error"]
        assert any("s3://lab/n/deep.h5" in w for w in warnings_of(r.stderr))


def test_other_bytes_planted_under_a_sidecar_name_are_replaced(lab: Lab) -> None:
    """A sidecar is named by the sha256 of its bytes: anything else under that name
    would make the object's metadata unreadable for everyone, so `up` replaces it."""
    rng = random.Random(8)
    doc = {"robot": "franka", "ids": [f"{rng.getrandbits(128):032x}" for _ in range(3000)]}
    src = lab.tmp / "src"
    f = make_h5(src / "big.h5", doc)
    encoded = meta.encode(doc, "0" * 64, lambda d: f"sq/.deon/meta/{d}.json")
    assert encoded.sidecar is not None
    lab.put(encoded.sidecar.key, b"garbage planted first")

    r = run_deon("up", "s3://lab/sq", str(src))

    assert r.returncode == 0, r.stderr
    assert f"s3://lab/{encoded.sidecar.key} held other bytes" in r.stderr
    assert lab.get(encoded.sidecar.key) == encoded.sidecar.body
    assert run_deon("metadata", "down", "s3://lab/sq").returncode == 0
    assert json.loads(lab.rows()[0]["metadata"]) == doc
    assert lab.get("sq/big.h5") == f.read_bytes()


def test_a_megabyte_document_goes_up_to_a_sidecar_and_is_mirrored_whole(lab: Lab) -> None:
    rng = random.Random(7)
    doc = {
        "robot": "franka",
        "frames": [{"t": i, "id": f"{rng.getrandbits(128):032x}"} for i in range(20_000)],
    }
    assert len(json.dumps(doc)) > 1_000_000
    src = lab.tmp / "src"
    make_h5(src / "big.h5", doc)

    r = run_deon("up", "s3://lab/m", str(src))

    assert r.returncode == 0, r.stderr
    value = lab.head("m/big.h5")["Metadata"]["deon-meta"]
    assert value.startswith("ref:") and len(value) < 2048
    sidecars = [k for k in lab.list_keys("m/") if "/.deon/" in k]
    assert len(sidecars) == 1 and len(lab.get(sidecars[0])) > 1_000_000

    r = run_deon("metadata", "down", "s3://lab/m")

    assert r.returncode == 0, r.stderr
    got = lab.rows()
    assert [row["key"] for row in got] == ["m/big.h5"]  # the sidecar is not data
    assert json.loads(got[0]["metadata"]) == doc
    assert got[0]["robot"] == "franka"
    assert len(json.loads(got[0]["frames"])) == 20_000
    # nor does `down` bring deon's bookkeeping home
    r = run_deon("down", "s3://lab/m", str(lab.tmp / "dest"))
    assert r.returncode == 0, r.stderr
    assert files_under(lab.tmp / "dest") == {"big.h5": (src / "big.h5").read_bytes()}


# -- headers from other tools and servers --------------------------------------------------


def test_rfc2047_encoded_headers_are_decoded(lab: Lab) -> None:
    doc = {"robot": "café", "operator": "Zoë", "site": "東京", "n": 1}
    text = json.dumps(doc, ensure_ascii=False)
    legacy = email.header.Header(text, "utf-8").encode()
    assert legacy.startswith("=?utf-8?") and legacy.isascii()
    lab.put("r/legacy.hdf5", b"legacy", {"metajson": legacy.replace("\n", "")})
    # several encoded words, as a long value is split
    words = " ".join(email.header.Header(part, "utf-8").encode() for part in (text[:20], text[20:]))
    lab.put("r/words.hdf5", b"words", {"metajson": words})
    # deon's own header, RFC 2047-encoded by the server on the way back
    deon_value = email.header.Header("json:" + text, "utf-8").encode().replace("\n", "")
    lab.put("r/deon.h5", b"deon", {"deon-meta": deon_value})

    r = run_deon("metadata", "down", "s3://lab/r")

    assert r.returncode == 0, r.stderr
    assert warnings_of(r.stderr) == []
    got = by_key(lab)
    for key in ("r/legacy.hdf5", "r/words.hdf5", "r/deon.h5"):
        assert got[key]["metadata_error"] is None, got[key]["metadata_error"]
        assert json.loads(got[key]["metadata"]) == doc, key
        assert got[key]["robot"] == "café" and got[key]["site"] == "東京"
    r = run_deon("query", "operator = 'Zoë'", "--format", "key")
    assert r.stdout.splitlines() == ["r/deon.h5", "r/legacy.hdf5", "r/words.hdf5"]


def test_raw_utf8_header_values_are_read_as_utf8(lab: Lab) -> None:
    doc = {"robot": "café", "site": "東京"}
    raw_put(
        lab,
        "u/utf8.h5",
        {"x-amz-meta-deon-meta": ("json:" + json.dumps(doc, ensure_ascii=False)).encode("utf-8")},
    )

    r = run_deon("metadata", "down", "s3://lab/u")

    assert r.returncode == 0, r.stderr
    row = by_key(lab)["u/utf8.h5"]
    assert json.loads(row["metadata"]) == doc
    assert row["robot"] == "café"


def test_header_values_that_are_not_utf8_get_a_row_and_no_crash(lab: Lab) -> None:
    raw_put(lab, "u/latin.h5", {"x-amz-meta-deon-meta": b'json:{"robot":"\xff\xfe\xe9"}'})
    raw_put(lab, "u/legacy.h5", {"x-amz-meta-metajson": b'{"robot": "caf\xe9 \x80"}'})
    raw_put(lab, "u/sha.h5", {"x-amz-meta-deon-sha256": b"\xff" * 64})
    # RFC 2047 words that cannot be decoded: an unknown charset, bytes that are not UTF-8
    lab.put("u/charset.h5", b"x", {"metajson": "=?x-klingon?q?abc?="})
    bad_word = base64.b64encode(b'json:{"robot":"\xff"}').decode()
    lab.put("u/word.h5", b"x", {"deon-meta": f"=?utf-8?b?{bad_word}?="})
    put_doc(lab, "u/fine.h5", {"robot": "sawyer"})

    r = run_deon("metadata", "down", "s3://lab/u")

    assert r.returncode == 0, r.stderr
    assert_no_traceback(r.stderr)
    got = by_key(lab)
    assert set(got) == {
        "u/latin.h5",
        "u/legacy.h5",
        "u/sha.h5",
        "u/charset.h5",
        "u/word.h5",
        "u/fine.h5",
    }
    assert got["u/fine.h5"]["robot"] == "sawyer"
    assert got["u/sha.h5"]["sha256"] is None
    for key, problem in (("u/charset.h5", "x-klingon"), ("u/word.h5", "undecodable")):
        assert got[key]["metadata"] is None
        assert problem in got[key]["metadata_error"], got[key]["metadata_error"]
        assert any(f"s3://lab/{key}" in w for w in warnings_of(r.stderr)), r.stderr
    for key in ("u/latin.h5", "u/legacy.h5"):
        row = got[key]
        # Either read (as some text) or refused with a reason; never half of each.
        assert (row["metadata"] is None) != (row["metadata_error"] is None), row
        if row["metadata"] is not None:
            assert isinstance(json.loads(row["metadata"])["robot"], str)
        else:
            assert any(f"s3://lab/{key}" in w for w in warnings_of(r.stderr))


# -- colliding keys --------------------------------------------------------------------------


def test_upper_case_and_colliding_keys_keep_every_value_with_a_named_warning(lab: Lab) -> None:
    put_doc(lab, "k/case.h5", {"Robot": 1, "robot": 2, "ROBOT": 3})
    put_doc(lab, "k/nest.h5", {"a_b": 10, "a": {"b": 20}, "A": {"B": 30}, "a-b": 40})

    r = run_deon("metadata", "down", "s3://lab/k")

    assert r.returncode == 0, r.stderr
    cols = registry(lab)
    expected = {
        ("k/case.h5", ("Robot",)): 1,
        ("k/case.h5", ("robot",)): 2,
        ("k/case.h5", ("ROBOT",)): 3,
        ("k/nest.h5", ("a_b",)): 10,
        ("k/nest.h5", ("a", "b")): 20,
        ("k/nest.h5", ("A", "B")): 30,
        ("k/nest.h5", ("a-b",)): 40,
    }
    assert set(cols) == {path for _, path in expected}
    assert len(set(cols.values())) == len(cols)  # one column each
    got = by_key(lab)
    for (key, path), value in expected.items():
        assert got[key][cols[path]] == value, (key, path)
    # each renamed key is named in a warning, with the column that holds it
    renamed = {path: name for path, name in cols.items() if name != flatten.base_name(path)}
    assert len(renamed) == 5  # two of the three robots, three of the four a_b
    for path, name in renamed.items():
        assert any(repr(".".join(path)) in w and repr(name) in w for w in warnings_of(r.stderr)), (
            path,
            name,
            r.stderr,
        )
    # the Python API reports the same mapping
    from deon.catalog.db import open_catalog

    with open_catalog(str(lab.catalog), create=False) as catalog:
        assert {c.path: c.name for c in catalog.columns()} == cols

    # A later object with one of the keys lands in that key's column, whatever its order.
    put_doc(lab, "k/later.h5", {"ROBOT": 33, "a": {"b": 22}})
    r = run_deon("metadata", "down", "s3://lab/k")
    assert r.returncode == 0, r.stderr
    assert registry(lab) == cols
    later = by_key(lab)["k/later.h5"]
    assert later[cols[("ROBOT",)]] == 33 and later[cols[("a", "b")]] == 22
    assert later[cols[("Robot",)]] is None and later[cols[("robot",)]] is None


def test_keys_differing_only_in_case_download_to_their_own_files(lab: Lab) -> None:
    lab.put(
        "c/Traj.h5", b"upper case T", {"deon-sha256": hashlib.sha256(b"upper case T").hexdigest()}
    )
    lab.put("c/traj.h5", b"lower case t")
    lab.put("c/TRAJ.H5", b"all upper")
    dest = lab.tmp / "dest"

    r = run_deon("down", "s3://lab/c", str(dest))

    assert r.returncode == 0, r.stderr
    assert files_under(dest) == {
        "Traj.h5": b"upper case T",
        "traj.h5": b"lower case t",
        "TRAJ.H5": b"all upper",
    }
    assert "3 downloaded" in r.stderr
    r = run_deon("down", "s3://lab/c", str(dest))  # and each is then known as current
    assert "0 downloaded" in r.stderr and "3 unchanged" in r.stderr


# -- broken files ------------------------------------------------------------------------------


def test_truncated_and_corrupt_hdf5_files_go_up_with_a_warning_and_show_exits_2(
    lab: Lab,
) -> None:
    src = lab.tmp / "src"
    good = make_h5(src / "good.h5", {"robot": "sawyer"})
    data = good.read_bytes()
    truncated = src / "truncated.h5"
    truncated.write_bytes(data[: len(data) // 2])
    corrupt = src / "corrupt.h5"
    corrupt.write_bytes(SIGNATURE + os.urandom(20_000))

    r = run_deon("up", "s3://lab/b", str(src))

    assert r.returncode == 0, r.stderr
    assert_no_traceback(r.stderr)
    assert sorted(r.stdout.split()) == [
        f"s3://lab/b/{n}" for n in ("corrupt.h5", "good.h5", "truncated.h5")
    ]
    warned = warnings_of(r.stderr)
    for path in (truncated, corrupt):
        assert any(str(path) in w and "carries no metadata" in w for w in warned), r.stderr
    assert not any(str(good) in w for w in warned)
    for path in (good, truncated, corrupt):
        key = f"b/{path.name}"
        assert lab.get(key) == path.read_bytes()
        head = lab.head(key)["Metadata"]
        assert head["deon-sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert ("deon-meta" in head) == (path == good)

    for path in (truncated, corrupt):
        r = run_deon("show", str(path))
        assert r.returncode == 2, (path, r.stdout, r.stderr)
        assert_no_traceback(r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error:") and str(path) in lines[0]
        r = run_deon("show", "--json", str(path))
        assert r.returncode == 2 and r.stdout == ""


def test_an_hdf5_file_damaged_inside_never_crashes_show(lab: Lab) -> None:
    data = make_h5(lab.tmp / "good.h5", {"robot": "sawyer"}).read_bytes()
    results = []
    for seed in (17, 18, 19, 28):  # 18 and 28 hit the file's structure, not its data
        rng = random.Random(seed)
        damaged = bytearray(data)
        start = rng.randrange(8, 12000)
        damaged[start : start + 64] = rng.randbytes(64)
        path = lab.tmp / f"damaged{seed}.h5"
        path.write_bytes(bytes(damaged))
        for args in ([str(path)], ["--json", str(path)]):
            r = run_deon("show", *args)
            assert_no_traceback(r.stderr)
            assert r.returncode in (0, 2), (seed, r.returncode, r.stderr)
            if r.returncode == 2:
                lines = r.stderr.strip().splitlines()
                assert len(lines) == 1 and str(path) in lines[0], r.stderr
            results.append(r.returncode)
    assert 2 in results and 0 in results


# -- malformed deon headers ----------------------------------------------------------------------


def _zeros_zlib(n: int) -> bytes:
    """A zlib stream of n zero bytes, built in pieces so the test stays light."""
    z = zlib.compressobj(9)
    chunk = bytes(1 << 20)
    out = []
    left = n
    while left:
        piece = min(left, len(chunk))
        out.append(z.compress(chunk[:piece]))
        left -= piece
    out.append(z.flush())
    return b"".join(out)


def test_each_malformed_deon_header_gets_a_row_an_error_and_a_named_warning(lab: Lab) -> None:
    sha = hashlib.sha256(b"x").hexdigest()
    good_doc = {"robot": "sawyer"}
    good_text = meta.canonical_json(good_doc).encode()
    good_sha = hashlib.sha256(good_text).hexdigest()
    lab.put("m/.deon/meta/tampered.json", b'{"robot":"franka"}')  # not what the ref claims
    zeros = base64.b64encode(_zeros_zlib(2 << 20)).decode()  # inflates fine, but not JSON
    assert len(zeros) < 4096
    cases = {
        "m/unknown-form.h5": ("yaml:robot: sawyer", "unknown form 'yaml'"),
        "m/no-prefix.h5": ("robot", "no form prefix"),
        "m/bad-base64.h5": ("zlib:not*base64!", "not valid base64"),
        "m/not-zlib.h5": ("zlib:" + base64.b64encode(b"plain text").decode(), "does not inflate"),
        "m/cut-zlib.h5": (
            "zlib:" + base64.b64encode(zlib.compress(good_text)[:-6]).decode(),
            "truncated",
        ),
        "m/zeros.h5": ("zlib:" + zeros, "not valid JSON"),
        "m/bad-ref.h5": ("ref:abc:1:k", "ref form is malformed"),
        "m/huge-ref.h5": (
            f"ref:{good_sha}:{meta.MAX_DOCUMENT_BYTES + 1}:m/.deon/meta/x.json",
            "over the limit",
        ),
        "m/missing-sidecar.h5": (
            f"ref:{good_sha}:{len(good_text)}:m/.deon/meta/gone.json",
            "gone.json",
        ),
        "m/tampered-sidecar.h5": (
            f"ref:{good_sha}:{len(good_text)}:m/.deon/meta/tampered.json",
            "does not match its reference",
        ),
    }
    for key, (value, _) in cases.items():
        lab.put(key, b"x", {"deon-meta": value, "deon-sha256": sha})
    put_doc(lab, "m/good.h5", good_doc)

    r = run_deon("metadata", "down", "s3://lab/m")

    assert r.returncode == 0, r.stderr
    assert_no_traceback(r.stderr)
    got = by_key(lab)
    assert set(got) == {*cases, "m/good.h5"}
    assert got["m/good.h5"]["robot"] == "sawyer" and got["m/good.h5"]["metadata_error"] is None
    warned = warnings_of(r.stderr)
    for key, (_, problem) in cases.items():
        row = got[key]
        assert row["metadata"] is None, key
        assert row["metadata_error"] and problem in row["metadata_error"], (
            key,
            row["metadata_error"],
        )
        assert any(f"s3://lab/{key}:" in w for w in warned), (key, r.stderr)
        assert row["size"] == 1


def test_a_broken_sidecar_does_not_lose_the_objects_sha256(lab: Lab) -> None:
    body = b"the object's bytes"
    sha = hashlib.sha256(body).hexdigest()
    text = meta.canonical_json({"robot": "sawyer"}).encode()
    ref = f"ref:{hashlib.sha256(text).hexdigest()}:{len(text)}:m/.deon/meta/gone.json"
    lab.put("m/t.h5", body, {"deon-meta": ref, "deon-sha256": sha})
    lab.put("m/u.h5", body, {"deon-meta": "zlib:@@", "deon-sha256": sha})  # for comparison

    r = run_deon("metadata", "down", "s3://lab/m")

    assert r.returncode == 0, r.stderr
    got = by_key(lab)
    assert got["m/u.h5"]["sha256"] == sha  # other malformed headers keep it
    assert got["m/t.h5"]["metadata_error"] is not None
    assert got["m/t.h5"]["sha256"] == sha


def test_a_zlib_bomb_is_refused_past_the_size_limit(lab: Lab) -> None:
    # S3 headers hold 2 KB, and deflate shrinks zeros ~1000-fold: no bomb bigger than a
    # few MB fits in a header. So the command runs with the limit lowered to 1 MiB,
    # and the codec is checked against the real 64 MiB limit below.
    bomb = base64.b64encode(_zeros_zlib(4 << 20)).decode()
    lab.put("z/bomb.h5", b"x", {"deon-meta": "zlib:" + bomb})
    put_doc(lab, "z/fine.h5", {"robot": "sawyer"})
    code = (
        "import sys, deon.metadata.wire as m; m.MAX_DOCUMENT_BYTES = 1 << 20; "
        "from deon.cli import main; sys.argv[0] = 'deon'; main()"
    )

    r = subprocess.run(
        [sys.executable, "-c", code, "metadata", "down", "s3://lab/z"],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert r.returncode == 0, r.stderr
    assert_no_traceback(r.stderr)
    got = by_key(lab)
    assert got["z/fine.h5"]["robot"] == "sawyer"
    assert got["z/bomb.h5"]["metadata"] is None
    assert "size limit" in got["z/bomb.h5"]["metadata_error"]
    assert any("s3://lab/z/bomb.h5" in w for w in warnings_of(r.stderr))

    real = _zeros_zlib(meta.MAX_DOCUMENT_BYTES + 1)
    with pytest.raises(meta.MetadataError, match="size limit"):
        meta.decode({"deon-meta": "zlib:" + base64.b64encode(real).decode()})


def test_a_garbage_sha256_header_is_ignored_and_md5_checks_the_download(lab: Lab) -> None:
    garbage = {
        "g/words.h5": "not a sha256 at all",
        "g/short.h5": "ab" * 31,
        "g/long.h5": "ab" * 33,
        "g/nonhex.h5": "zz" * 32,
    }
    bodies = {key: f"bytes of {key}".encode() * 50 for key in garbage}
    for key, value in garbage.items():
        lab.put(key, bodies[key], {"deon-sha256": value, "deon-meta": 'json:{"robot":"sawyer"}'})

    r = run_deon("metadata", "down", "s3://lab/g")

    assert r.returncode == 0, r.stderr
    got = by_key(lab)
    for key in garbage:
        assert got[key]["sha256"] is None and got[key]["robot"] == "sawyer", key
        assert any(f"s3://lab/{key}" in w for w in warnings_of(r.stderr)), r.stderr

    dest = lab.tmp / "dest"
    r = run_deon("down", "s3://lab/g", str(dest))

    assert r.returncode == 0, r.stderr
    assert files_under(dest) == {k.removeprefix("g/"): b for k, b in bodies.items()}

    # the MD5 ETag is what checks them: bytes damaged in transit are caught
    lab.put("g2/bad.h5", b"q" * 4000, {"deon-sha256": "garbage"})
    lab.proxy.rules.corrupt["g2/bad.h5"] = b"Q"
    r = run_deon("down", "s3://lab/g2", str(lab.tmp / "dest2"))
    assert r.returncode == 1
    assert "s3://lab/g2/bad.h5" in r.stderr and "MD5" in r.stderr
    assert files_under(lab.tmp / "dest2") == {}


# -- hostile keys ------------------------------------------------------------------------------


def test_hostile_keys_given_to_pull_on_stdin_are_refused_and_named(lab: Lab) -> None:
    hostile = ["../x", "a//b", "/abs", "a/./b", ".deon-tmp-1", "ok/../../../x", "a/b/.."]
    for key in hostile:
        lab.put(key, b"evil")
    lab.put("ok/fine.h5", b"fine")
    stdin = "".join(f"s3://lab/{k}\n" for k in [*hostile, "ok/fine.h5"])

    r = run_deon("pull", input=stdin)

    assert r.returncode == 1, r.stderr
    assert_no_traceback(r.stderr)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    for key in hostile:
        assert any(f"s3://lab/{key}: refused unsafe key" in e for e in errors), (key, r.stderr)
    assert r.stdout.splitlines() == [str(lab.data_dir / "lab" / "ok" / "fine.h5")]
    assert files_under(lab.data_dir) == {"lab/ok/fine.h5": b"fine"}
    outside = [p for p in lab.tmp.rglob("*") if p.is_file() and p.read_bytes() == b"evil"]
    assert outside == []


def test_keys_with_a_tab_or_bidi_controls_are_handled_and_stay_one_record(lab: Lab) -> None:
    tab = "w/a\tb.h5"
    bidi = "w/\u202eevil\u202c.txt.h5"
    for key in (tab, bidi, "w/plain.h5"):
        put_doc(lab, key, {"robot": "sawyer"}, body=key.encode())
    dest = lab.tmp / "dest"

    r = run_deon("down", "s3://lab/w", str(dest))

    assert r.returncode == 1, r.stderr  # the tab is refused
    assert_no_traceback(r.stderr)
    assert any(
        line.startswith("error: s3://lab/w/a\\tb.h5: refused unsafe key")  # shown escaped
        for line in r.stderr.splitlines()
    ), r.stderr
    assert files_under(dest) == {"plain.h5": b"w/plain.h5", bidi[2:]: bidi.encode()}

    assert run_deon("metadata", "down", "s3://lab/w").returncode == 0
    r = run_deon("query", "robot = 'sawyer'")
    assert r.returncode == 0, r.stderr
    uris = sorted(f"s3://lab/{k}" for k in (tab, bidi, "w/plain.h5"))
    assert r.stdout.split("\n") == [*uris, ""]
    r = run_deon("query", "--format", "json")
    assert [json.loads(line)["key"] for line in r.stdout.splitlines()] == [u[9:] for u in uris]


def test_a_key_with_a_carriage_return_survives_query_into_pull(lab: Lab) -> None:
    hostile = "w/x\rs3://lab/w/victim.h5"
    put_doc(lab, hostile, {"robot": "sawyer"})
    put_doc(lab, "w/victim.h5", {"robot": "franka"})
    assert run_deon("metadata", "down", "s3://lab/w").returncode == 0

    q = subprocess.run([*DEON_CMD, "query", "robot = 'sawyer'"], capture_output=True, timeout=60)
    assert q.returncode == 0
    assert q.stdout == f"s3://lab/{hostile}\n".encode()  # one record, as it is
    p = subprocess.run([*DEON_CMD, "pull"], input=q.stdout, capture_output=True, timeout=60)

    # The one matching object is refused (a control character) or pulled; nothing else is.
    err = p.stderr.decode()
    assert not (lab.data_dir / "lab" / "w" / "victim.h5").exists(), err
    assert p.returncode == 1, err
    assert "refused unsafe key" in err


def test_lines_naming_keys_with_control_characters_are_one_escaped_line_each(lab: Lab) -> None:
    keys = {
        "w/osc\x1b]0;pwned\x07.h5": "w/osc\\x1b]0;pwned\\x07.h5",
        "w/cr\rover.h5": "w/cr\\rover.h5",  # moto cannot store a newline in a key
        "w/csi\x9b2J.h5": "w/csi\\x9b2J.h5",
    }
    for key in keys:
        lab.put(key, b"x", {"deon-meta": "yaml:robot: sawyer"})  # metadata deon cannot read
    put_doc(lab, "w/plain.h5", {"robot": "sawyer"})

    down = run_deon("down", "s3://lab/w", str(lab.tmp / "dest"))
    pull = run_deon("pull", *(f"s3://lab/{k}" for k in keys))
    mirror = run_deon("metadata", "down", "s3://lab/w")

    assert (down.returncode, pull.returncode, mirror.returncode) == (1, 1, 0)
    for r in (down, pull, mirror):
        assert_no_traceback(r.stderr)
        assert not {"\x1b", "\x07", "\x9b", "\r"} & set(r.stderr), r.stderr
    for r in (down, pull):
        errors = sorted(line for line in r.stderr.splitlines() if line.startswith("error:"))
        assert errors == sorted(
            f"error: s3://lab/{shown}: refused unsafe key: control character in key"
            for shown in keys.values()
        ), r.stderr
    warned = warnings_of(mirror.stderr)
    for shown in keys.values():
        assert [w for w in warned if f"s3://lab/{shown}:" in w], mirror.stderr
    assert len(mirror.stderr.splitlines()) == len(warned) + 1  # and the summary
    assert {r["key"] for r in lab.rows()} == {*keys, "w/plain.h5"}
