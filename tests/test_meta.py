"""The metadata codec: JSON documents <-> S3 user-metadata headers (deon.metadata.wire)."""

from __future__ import annotations

import base64
import email.header
import hashlib
import json
import math
import random
import re
import zlib
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deon.errors import MetadataError
from deon.metadata import wire as meta

SHA = "0123456789abcdef" * 4
PREFIX = "lab/alice/.deon/meta/"


def sidecar_key(digest: str) -> str:
    return f"{PREFIX}{digest}.json"


def no_sidecar(digest: str) -> str:
    raise AssertionError("a sidecar key was asked for a document that fits in the headers")


def roundtrip(
    document: Any, sha256: str | None = None, key=sidecar_key
) -> tuple[Any, meta.Encoded, meta.Decoded]:
    """Encode, decode, and (form `ref`) resolve the sidecar as a reader would."""
    encoded = meta.encode(document, sha256, key)
    decoded = meta.decode(encoded.metadata)
    assert decoded.has_document
    assert decoded.form == encoded.form
    if encoded.form == meta.FORM_REF:
        assert encoded.sidecar is not None and decoded.sidecar is not None
        assert decoded.sidecar.key == encoded.sidecar.key
        assert decoded.sidecar.sha256 == encoded.sidecar.sha256
        assert decoded.sidecar.size == len(encoded.sidecar.body)
        return meta.resolve_sidecar(decoded.sidecar, encoded.sidecar.body), encoded, decoded
    assert encoded.sidecar is None and decoded.sidecar is None
    return decoded.document, encoded, decoded


def has_nan(value: Any) -> bool:
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, list):
        return any(has_nan(v) for v in value)
    if isinstance(value, dict):
        return any(has_nan(v) for v in value.values())
    return False


def assert_printable_header(name: str, value: str) -> None:
    for text in (name, value):
        assert all(0x20 <= ord(c) <= 0x7E for c in text), repr(text)
        assert text == text.strip(), repr(text)
        assert "  " not in text, repr(text)
    assert name == name.lower()


# --- strategies -------------------------------------------------------------------------

_special = st.sampled_from(
    [
        "\x00",
        "\x1f",
        "\x7f",
        "\x80",
        "\x85",
        "\u2028",
        " ",
        "  ",
        "   ",
        "\t",
        "\n",
        "\r\n",
        '"',
        "\\",
        "/",
        ":",
        "é",
        "ファイル",
        "😀",
        "\ud800",
        "\udfff",
        "\udcff",
        "\ufeff",
        "%",
        "json:",
        "zlib:",
        "ref:",
    ]
)
_chars = st.characters(exclude_categories=())  # every code point, lone surrogates included
# A high surrogate followed by a low one is not text but a UTF-16 pair: JSON itself reads
# "\ud800\udc00" back as U+10000, so such strings cannot round-trip through any JSON.
_SURROGATE_PAIR = re.compile("[\ud800-\udbff][\udc00-\udfff]")
any_text = st.one_of(
    st.text(_chars, max_size=40),
    st.lists(st.one_of(_special, st.text(_chars, max_size=3)), max_size=12).map("".join),
).filter(lambda s: not _SURROGATE_PAIR.search(s))
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),  # far past 64 bits
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [-0.0, 0.0, float("inf"), float("-inf"), float("nan"), 5e-324, 1.7976931348623157e308]
    ),
    any_text,
)
json_docs = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.dictionaries(any_text, children, max_size=6),
    ),
    max_leaves=30,
)
sha256s = st.one_of(st.none(), st.from_regex(r"[0-9a-fA-F]{64}", fullmatch=True))


# --- properties -------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=json_docs, sha256=sha256s)
def test_any_json_document_round_trips(document: Any, sha256: str | None) -> None:
    back, encoded, decoded = roundtrip(document, sha256)
    assert meta.canonical_json(back) == meta.canonical_json(document)
    if not has_nan(document):
        assert back == document
    assert decoded.sha256 == (sha256.lower() if sha256 else None)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=json_docs, sha256=sha256s)
def test_encoded_headers_are_safe_ascii_within_2kb(document: Any, sha256: str | None) -> None:
    encoded = meta.encode(document, sha256, sidecar_key)
    assert encoded.metadata, "at least the document header is written"
    for name, value in encoded.metadata.items():
        assert_printable_header(name, value)
    assert meta.header_bytes(encoded.metadata) <= meta.MAX_HEADER_BYTES
    counted = sum(len("x-amz-meta-" + k) + len(v) for k, v in encoded.metadata.items())
    assert meta.header_bytes(encoded.metadata) == counted


@settings(max_examples=100, deadline=None)
@given(document=json_docs)
def test_canonical_json_is_plain_json_of_the_same_document(document: Any) -> None:
    text = meta.canonical_json(document)
    assert text.isascii()
    assert "  " not in text and "\x7f" not in text
    assert meta.canonical_json(json.loads(text)) == text


# --- forms ------------------------------------------------------------------------------


def test_small_document_uses_json_form() -> None:
    doc = {"robot": "sawyer", "n": 3}
    encoded = meta.encode(doc, SHA, no_sidecar)
    assert encoded.form == "json"
    assert encoded.sidecar is None
    assert encoded.metadata == {
        "deon-sha256": SHA,
        "deon-meta": 'json:{"robot":"sawyer","n":3}',
    }
    assert meta.decode(encoded.metadata).document == doc


def test_space_runs_and_del_are_escaped_in_json_form() -> None:
    doc = {"a  b": "x   y\x7f", "single space": " "}
    encoded = meta.encode(doc, None, no_sidecar)
    value = encoded.metadata["deon-meta"]
    assert "  " not in value and "\x7f" not in value
    assert "\\u0020\\u0020" in value and "\\u007f" in value
    assert meta.decode(encoded.metadata).document == doc


def test_large_compressible_document_uses_zlib_form() -> None:
    doc = {f"field_{i:02d}": "the quick brown fox jumps over the lazy dog" for i in range(60)}
    assert len(meta.canonical_json(doc)) > meta.MAX_HEADER_BYTES
    back, encoded, _ = roundtrip(doc, SHA, no_sidecar)
    assert encoded.form == "zlib"
    assert encoded.metadata["deon-meta"].startswith("zlib:")
    assert meta.header_bytes(encoded.metadata) <= meta.MAX_HEADER_BYTES
    assert back == doc


def _random_doc(n_keys: int, length: int, seed: int = 0) -> dict[str, str]:
    rng = random.Random(seed)
    return {f"k{i}": base64.b64encode(rng.randbytes(length)).decode("ascii") for i in range(n_keys)}


def test_large_incompressible_document_uses_ref_form_with_sidecar() -> None:
    doc = _random_doc(20, 150)
    asked: list[str] = []

    def key(digest: str) -> str:
        asked.append(digest)
        return sidecar_key(digest)

    encoded = meta.encode(doc, SHA, key)
    assert encoded.form == "ref"
    body = meta.canonical_json(doc).encode("ascii")
    digest = hashlib.sha256(body).hexdigest()
    assert asked == [digest]
    assert encoded.sidecar == meta.Sidecar(sidecar_key(digest), body, digest)
    assert hashlib.sha256(encoded.sidecar.body).hexdigest() == encoded.sidecar.sha256
    assert encoded.metadata["deon-meta"] == f"ref:{digest}:{len(body)}:{sidecar_key(digest)}"
    assert encoded.metadata["deon-sha256"] == SHA

    decoded = meta.decode(encoded.metadata)
    assert decoded.has_document and decoded.document is None
    assert decoded.sidecar == meta.SidecarRef(sidecar_key(digest), digest, len(body))
    assert meta.resolve_sidecar(decoded.sidecar, encoded.sidecar.body) == doc


def test_megabyte_document_round_trips_via_ref() -> None:
    doc = {"frames": _random_doc(1000, 750, seed=1), "robot": "sawyer", "note": "é😀\x00"}
    back, encoded, _ = roundtrip(doc, SHA)
    assert encoded.form == "ref"
    assert len(encoded.sidecar.body) > 1_000_000
    assert back == doc


def test_sidecar_key_with_special_characters_round_trips() -> None:
    def key(digest: str) -> str:
        return f"my lab/ünï cödé/100%/a:b?c#d/.deon/meta/{digest}.json"

    doc = _random_doc(20, 150)
    _, encoded, decoded = roundtrip(doc, None, key)
    assert encoded.form == "ref"
    assert decoded.sidecar.key == key(encoded.sidecar.sha256)
    value = encoded.metadata["deon-meta"]
    assert_printable_header("deon-meta", value)
    assert value.endswith(quote(key(encoded.sidecar.sha256), safe="/"))


def test_sidecar_key_too_long_for_headers_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="sidecar key too long"):
        meta.encode(_random_doc(20, 150), SHA, lambda d: "k/" * 1100 + d)


def test_no_document_writes_only_the_sha256() -> None:
    encoded = meta.encode({"ignored": True}, SHA, no_sidecar, has_document=False)
    assert encoded.metadata == {"deon-sha256": SHA}
    assert encoded.form is None
    decoded = meta.decode(encoded.metadata)
    assert not decoded.has_document
    assert decoded.sha256 == SHA


def test_document_that_is_json_null_is_still_a_document() -> None:
    encoded = meta.encode(None, None, no_sidecar)
    decoded = meta.decode(encoded.metadata)
    assert decoded.has_document and decoded.document is None and decoded.form == "json"


def test_unserialisable_documents_raise_value_error() -> None:
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(ValueError, match="nests too deeply"):
        meta.encode(deep, None, sidecar_key)
    with pytest.raises(ValueError):
        meta.encode(10**5000, None, sidecar_key)  # past Python's int<->str digit limit


@pytest.mark.parametrize(
    "text", ["=?utf-8?q?hi?=", "see =?utf-8?b?aGk=?= and =?iso-8859-1?q?caf=E9?="]
)
def test_document_containing_rfc2047_lookalike_round_trips(text: str) -> None:
    doc = {"note": text}
    back, _, _ = roundtrip(doc)
    assert back == doc


def test_encode_never_writes_a_document_decode_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    # Same as a real document over 64 MB, scaled down so the test stays light.
    monkeypatch.setattr(meta, "MAX_DOCUMENT_BYTES", 2_000)
    doc = _random_doc(20, 150)
    try:
        encoded = meta.encode(doc, SHA, sidecar_key)
    except ValueError:
        return  # refusing to encode is fine: sync then uploads without metadata, warning
    decoded = meta.decode(encoded.metadata)
    assert meta.resolve_sidecar(decoded.sidecar, encoded.sidecar.body) == doc


# --- sha256 header ----------------------------------------------------------------------


def test_sha256_is_written_lower_case_and_decoded() -> None:
    encoded = meta.encode({}, SHA.upper(), no_sidecar)
    assert encoded.metadata["deon-sha256"] == SHA
    decoded = meta.decode(encoded.metadata)
    assert decoded.sha256 == SHA
    assert decoded.warnings == []


def test_sha256_header_alone_decodes_without_document() -> None:
    decoded = meta.decode({"deon-sha256": SHA.upper()})
    assert decoded.sha256 == SHA
    assert not decoded.has_document and decoded.form is None


@pytest.mark.parametrize("bad", ["", "xyz", SHA[:-1], SHA + "0", "g" * 64, SHA[:-1] + " "])
def test_malformed_sha256_header_is_ignored_with_warning(bad: str) -> None:
    decoded = meta.decode({"deon-sha256": bad, "deon-meta": 'json:{"a":1}'})
    assert decoded.sha256 is None
    assert decoded.warnings and "deon-sha256" in decoded.warnings[0]
    assert decoded.document == {"a": 1}


@pytest.mark.parametrize("bad", ["xyz", SHA[:-1], "g" * 64, ""])
def test_encode_refuses_a_malformed_sha256(bad: str) -> None:
    with pytest.raises(ValueError):
        meta.encode({}, bad, no_sidecar)


def test_encode_refuses_sha256_with_trailing_newline() -> None:
    try:
        encoded = meta.encode({}, SHA + "\n", no_sidecar)
    except ValueError:
        return
    assert_printable_header("deon-sha256", encoded.metadata["deon-sha256"])


def test_decode_error_keeps_valid_sha256_as_partial() -> None:
    with pytest.raises(MetadataError) as info:
        meta.decode({"deon-sha256": SHA, "deon-meta": "json:{not json"})
    assert info.value.partial.sha256 == SHA  # type: ignore[attr-defined]


# --- malformed input --------------------------------------------------------------------


def _zlib_b64(data: bytes) -> str:
    return base64.b64encode(zlib.compress(data)).decode("ascii")


def _bomb(total: int = 100 * 1024 * 1024) -> str:
    """A zlib stream of `total` zero bytes, built without holding them in memory."""
    packer = zlib.compressobj(9)
    chunk = bytes(1024 * 1024)
    parts = [packer.compress(chunk) for _ in range(total // len(chunk))]
    parts.append(packer.flush())
    return base64.b64encode(b"".join(parts)).decode("ascii")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('yaml:{"a":1}', "unknown form"),
        ('{"a":1}', "unknown form"),  # '{"a"' is taken as the form
        ("no form at all", "no form prefix"),
        ("", "no form prefix"),
        ('json:{"a":', "not valid JSON"),
        ("json:", "not valid JSON"),
        ("json:NaNa", "not valid JSON"),
        ("json:" + "1" * 5000, "not valid JSON"),  # past the int digit limit
        ("zlib:not base64!!", "not valid base64"),
        ("zlib:é", "not valid base64"),
        ("zlib:" + base64.b64encode(b"plain bytes, not zlib").decode(), "does not inflate"),
        ("zlib:" + _zlib_b64(b"{not json}"), "not valid JSON"),
        ("zlib:" + _zlib_b64(b'"\xff\xfe"'), "not valid JSON"),
        (
            "zlib:"
            + base64.b64encode(zlib.compress(b'{"a": "' + b"x" * 5000 + b'"}')[:-20]).decode(),
            "truncated",
        ),
        ("ref:", "ref form is malformed"),
        ("ref:" + "a" * 63 + ":10:key", "ref form is malformed"),
        ("ref:" + "a" * 64 + ":ten:key", "ref form is malformed"),
        ("ref:" + "a" * 64 + ":-1:key", "ref form is malformed"),
        ("ref:" + "a" * 64 + ":10:", "ref form is malformed"),
        ("ref:" + "a" * 64 + ":10", "ref form is malformed"),
        ("ref:" + "a" * 64 + f":{meta.MAX_DOCUMENT_BYTES + 1}:key", "over the limit"),
        ("json:" + "[" * 100_000, "nests too deeply"),
        ("json:" + "[" * 100_000 + "]" * 100_000, "nests too deeply"),
        ("json:" + '{"a":' * 50_000 + "1" + "}" * 50_000, "nests too deeply"),
    ],
    ids=lambda v: v[:24] if isinstance(v, str) else None,
)
def test_malformed_deon_meta_raises_metadata_error(value: str, message: str) -> None:
    with pytest.raises(MetadataError, match=message):
        meta.decode({"deon-meta": value})


def test_zlib_bomb_is_refused_at_the_size_limit() -> None:
    with pytest.raises(MetadataError, match="size limit"):
        meta.decode({"deon-meta": "zlib:" + _bomb()})


def test_inflate_accepts_exactly_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(meta, "MAX_DOCUMENT_BYTES", 1000)
    assert meta.inflate(zlib.compress(b"x" * 1000)) == b"x" * 1000
    with pytest.raises(MetadataError, match="size limit"):
        meta.inflate(zlib.compress(b"x" * 1001))


def test_deeply_nested_legacy_json_is_metadata_error() -> None:
    with pytest.raises(MetadataError):
        meta.decode({"metajson": "[" * 100_000})


def test_resolve_sidecar_refuses_tampered_or_stale_body() -> None:
    encoded = meta.encode(_random_doc(20, 150), SHA, sidecar_key)
    ref = meta.decode(encoded.metadata).sidecar
    body = encoded.sidecar.body
    tampered = body.replace(b'"k0":"', b'"k0":"X', 1)[: len(body)]  # same size, other bytes
    assert len(tampered) == len(body) and tampered != body
    for bad in (tampered, body[:-1], body + b" ", b""):
        with pytest.raises(MetadataError, match="does not match"):
            meta.resolve_sidecar(ref, bad)


def test_resolve_sidecar_refuses_body_that_matches_but_is_not_json() -> None:
    body = b"\xff not json"
    ref = meta.SidecarRef("k", hashlib.sha256(body).hexdigest(), len(body))
    with pytest.raises(MetadataError):
        meta.resolve_sidecar(ref, body)


@pytest.mark.parametrize("size", ["\u00b2", "1\u00b9", "9" * 5000])
def test_ref_with_odd_size_digits_is_metadata_error(size: str) -> None:
    with pytest.raises(MetadataError):
        meta.decode({"deon-meta": f"ref:{SHA}:{size}:key"})


@pytest.mark.parametrize("key", ["deon-meta", "metajson"])
def test_rfc2047_with_unknown_charset_is_metadata_error(key: str) -> None:
    with pytest.raises(MetadataError):
        meta.decode({key: "=?x-no-such-charset?q?abc?="})


def test_rfc2047_with_undecodable_bytes_is_metadata_error() -> None:
    with pytest.raises(MetadataError, match="undecodable"):
        meta.decode({"metajson": "=?utf-8?q?=FF=FE?="})


_form_values = st.one_of(
    any_text,
    st.tuples(st.sampled_from(["json:", "zlib:", "ref:", "JSON:", "metajson:", ":"]), any_text).map(
        "".join
    ),
    st.binary(max_size=200).map(lambda b: "zlib:" + _zlib_b64(b)),
    st.binary(max_size=200).map(lambda b: "zlib:" + base64.b64encode(b).decode()),
    st.tuples(
        st.from_regex(r"[0-9a-fA-F]{64}", fullmatch=True),
        st.from_regex(r"[0-9]{1,30}", fullmatch=True),
        any_text,
    ).map(lambda t: f"ref:{t[0]}:{t[1]}:{t[2]}"),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.one_of(
            st.sampled_from(["deon-meta", "Deon-Meta", "deon-sha256", "DEON-SHA256", "metajson"]),
            any_text,
        ),
        st.one_of(_form_values, any_text),
        max_size=4,
    )
)
def test_decode_of_arbitrary_headers_raises_only_metadata_error(headers: dict[str, str]) -> None:
    try:
        decoded = meta.decode(headers)
    except MetadataError:
        return
    assert isinstance(decoded, meta.Decoded)
    if decoded.sha256 is not None:
        assert len(decoded.sha256) == 64 and decoded.sha256 == decoded.sha256.lower()


# --- legacy and S3 quirks ---------------------------------------------------------------


def test_legacy_metajson_header_decodes() -> None:
    decoded = meta.decode({"metajson": '{"robot": "sawyer"}'})
    assert decoded.form == "metajson"
    assert decoded.has_document
    assert decoded.document == {"robot": "sawyer"}


def test_deon_header_wins_over_legacy() -> None:
    decoded = meta.decode({"metajson": '{"old": 1}', "deon-meta": 'json:{"new":2}'})
    assert decoded.form == "json" and decoded.document == {"new": 2}


@pytest.mark.parametrize("charset", ["utf-8", "iso-8859-1"])
def test_rfc2047_encoded_legacy_value_decodes(charset: str) -> None:
    doc = {"n": "é", "robot": "sawyer"}
    value = email.header.Header(json.dumps(doc, ensure_ascii=False), charset).encode()
    assert value.startswith("=?") and "é" not in value
    decoded = meta.decode({"metajson": value})
    assert decoded.document == doc


def test_long_rfc2047_folded_value_decodes() -> None:
    doc = {"notes": "café " * 60, "robot": "sawyer"}
    value = email.header.Header(json.dumps(doc, ensure_ascii=False), "utf-8").encode()
    assert "\n" in value  # folded over several encoded words
    assert meta.decode({"metajson": value}).document == doc


def test_rfc2047_encoded_deon_meta_decodes() -> None:
    value = email.header.Header('json:{"n": "é"}', "utf-8").encode()
    assert meta.decode({"deon-meta": value}).document == {"n": "é"}


def test_header_names_are_case_insensitive() -> None:
    encoded = meta.encode({"robot": "sawyer"}, SHA, no_sidecar)
    decoded = meta.decode(
        {"Deon-Meta": encoded.metadata["deon-meta"], "DEON-SHA256": encoded.metadata["deon-sha256"]}
    )
    assert decoded.document == {"robot": "sawyer"}
    assert decoded.sha256 == SHA
    assert meta.decode({"MetaJSON": "[1]"}).document == [1]


def test_unrelated_headers_mean_no_document() -> None:
    decoded = meta.decode({"content-owner": "alice"})
    assert not decoded.has_document and decoded.sha256 is None and decoded.warnings == []
