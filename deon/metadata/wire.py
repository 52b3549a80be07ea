"""The metadata codec: a JSON document <-> S3 user-metadata headers.

S3 user metadata is at most 2 KB per object (keys and values together), US-ASCII only,
and its keys come back lower-cased. deon stores each object's metadata document in one
header, in the first of three forms that fits (the wire format is in the README):

    x-amz-meta-deon-sha256: <64 lower-case hex digits>     sha256 of the object's bytes
    x-amz-meta-deon-meta:   json:<canonical JSON, ASCII-escaped>
                          | zlib:<base64 of zlib(canonical JSON)>
                          | ref:<sha256 hex>:<size>:<percent-encoded key of a sidecar object>

Canonical JSON is `json.dumps(doc, ensure_ascii=True, separators=(",", ":"))` with DEL
written `\\u007f` and every space of a run of two or more written `\\u0020`, so that
no proxy that folds whitespace can alter it. The sidecar object (form `ref`) holds the
canonical JSON as its body and lives under a reserved `.deon/` prefix.

Headers written by the original deoncli (the whole JSON in `metajson`) are read too.
"""

from __future__ import annotations

import base64
import binascii
import email.errors
import email.header
import hashlib
import json
import re
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

from deon.errors import DeonWarning, MetadataError, WarningCode

HEADER_PREFIX = "x-amz-meta-"
META_KEY = "deon-meta"
SHA256_KEY = "deon-sha256"
#: the key the original deoncli wrote the whole JSON document under
LEGACY_KEY = "metajson"
#: S3's limit on user metadata: keys and values together, in bytes. We count each key
#: with its `x-amz-meta-` prefix, which is stricter than S3 itself.
MAX_HEADER_BYTES = 2048
#: Never inflate or accept a document larger than this (untrusted input).
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024

FORM_JSON = "json"
FORM_ZLIB = "zlib"
FORM_REF = "ref"

_SHA256_RE = re.compile(r"[0-9a-fA-F]{64}")


def is_sha256(text: object) -> bool:
    """Whether `text` is a sha256 hex digest (64 hex digits, either case)."""
    return isinstance(text, str) and _SHA256_RE.fullmatch(text) is not None


_SIZE_RE = re.compile(r"[0-9]{1,20}")
_SPACE_RUN_RE = re.compile(r" {2,}")


def canonical_json(document: Any) -> str:
    """The document as compact, ASCII-only JSON, safe in an HTTP header value.

    Raises:
        ValueError: the document cannot be written as JSON (or nests too deeply).
    """
    try:
        text = json.dumps(document, ensure_ascii=True, separators=(",", ":"), allow_nan=True)
    except RecursionError as e:
        raise ValueError("metadata nests too deeply") from e
    # Compact JSON has no whitespace or DEL outside strings, so both escapes stay inside
    # string literals and decode to the same characters.
    text = text.replace("\x7f", "\\u007f")
    return _SPACE_RUN_RE.sub(lambda m: "\\u0020" * len(m.group()), text)


def parse_json(text: str | bytes) -> Any:
    """Parse a JSON document, turning every failure into MetadataError."""
    try:
        return json.loads(text)
    except RecursionError as e:
        raise MetadataError("metadata JSON nests too deeply") from e
    except (ValueError, UnicodeDecodeError) as e:
        raise MetadataError(f"metadata is not valid JSON: {e}") from e


def header_bytes(metadata: Mapping[str, str]) -> int:
    """Bytes the user metadata takes against S3's 2 KB limit (counted strictly)."""
    return sum(
        len((HEADER_PREFIX + k).encode("utf-8")) + len(v.encode("utf-8"))
        for k, v in metadata.items()
    )


@dataclass(frozen=True)
class Sidecar:
    """A document too large for the headers, to be stored as its own object."""

    key: str
    body: bytes
    sha256: str


@dataclass(frozen=True)
class Encoded:
    """The user metadata to send with an object, and the sidecar to write first, if any."""

    metadata: dict[str, str]
    form: str | None
    sidecar: Sidecar | None = None


def encode(
    document: Any,
    sha256: str | None,
    sidecar_key: Callable[[str], str],
    *,
    has_document: bool = True,
) -> Encoded:
    """Encode a metadata document (and the object's sha256) as S3 user metadata.

    Args:
        document: any JSON-serialisable value.
        sha256: hex sha256 of the object's bytes, or None.
        sidecar_key: maps the sha256 of the canonical JSON to the key of the sidecar
            object, used only when the document does not fit in the headers compressed.
        has_document: False to write no metadata document at all (only the sha256).

    Raises:
        ValueError: the document cannot be written as JSON.
    """
    base: dict[str, str] = {}
    if sha256 is not None:
        if not _SHA256_RE.fullmatch(sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        base[SHA256_KEY] = sha256.lower()
    if not has_document:
        return Encoded(base, None)
    text = canonical_json(document)

    def fits(value: str) -> bool:
        return header_bytes({**base, META_KEY: value}) <= MAX_HEADER_BYTES

    value = f"{FORM_JSON}:{text}"
    if fits(value):
        return Encoded({**base, META_KEY: value}, FORM_JSON)
    raw = text.encode("ascii")
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise ValueError(f"metadata document of {len(raw)} bytes is over the 64 MiB limit")
    value = f"{FORM_ZLIB}:" + base64.b64encode(zlib.compress(raw, 9)).decode("ascii")
    if fits(value):
        return Encoded({**base, META_KEY: value}, FORM_ZLIB)
    digest = hashlib.sha256(raw).hexdigest()
    key = sidecar_key(digest)
    value = f"{FORM_REF}:{digest}:{len(raw)}:{quote(key, safe='/')}"
    if not fits(value):
        raise ValueError("sidecar key too long to reference from the object's metadata")
    return Encoded({**base, META_KEY: value}, FORM_REF, Sidecar(key, raw, digest))


@dataclass(frozen=True)
class SidecarRef:
    """Where a `ref`-form document lives, and what it must hash to."""

    key: str
    sha256: str
    size: int


@dataclass
class Decoded:
    """What deon found in an object's user metadata.

    `document` is meaningful only when `has_document`; when `sidecar` is set, the
    document must first be fetched and passed to `resolve_sidecar`.
    """

    has_document: bool = False
    document: Any = None
    #: the document's compact JSON text, when the header carried it verbatim (plain
    #: ASCII, no escapes): lets a reader store it without serialising it again
    text: str | None = None
    sha256: str | None = None
    form: str | None = None
    sidecar: SidecarRef | None = None
    warnings: list[str] = field(default_factory=list)


def _unfold(value: str) -> str:
    """Undo RFC 2047 encoding, which S3 applies to non-ASCII values written by other tools."""
    stripped = value.strip()
    # Only a value that is entirely encoded words was encoded by S3; deon's own values
    # start with their form prefix, and a document may legitimately contain "=?".
    if not (stripped.startswith("=?") and stripped.endswith("?=")):
        return value
    try:
        parts = email.header.decode_header(stripped)
    except (ValueError, email.errors.HeaderParseError):
        return value
    out = []
    for chunk, charset in parts:
        if isinstance(chunk, bytes):
            try:
                out.append(chunk.decode(charset or "ascii", errors="strict"))
            except LookupError as e:
                raise MetadataError(f"metadata header uses unknown charset {charset!r}") from e
        else:
            out.append(chunk)
    return "".join(out)


def decode(metadata: Mapping[str, str]) -> Decoded:
    """Decode S3 user metadata (keys as boto3 returns them, without `x-amz-meta-`).

    Raises:
        MetadataError: the deon (or legacy) metadata header is present but malformed.
            The sha256, if valid, is not lost: it is on the exception as `.partial`.
    """
    lowered = {k.lower(): v for k, v in metadata.items()}
    result = Decoded()
    sha = lowered.get(SHA256_KEY)
    if sha is not None:
        if _SHA256_RE.fullmatch(sha.strip()):
            result.sha256 = sha.strip().lower()
        else:
            result.warnings.append(
                DeonWarning(WarningCode.MALFORMED_SHA256, f"ignored malformed {SHA256_KEY} header")
            )
    try:
        if META_KEY in lowered:
            _decode_deon(_unfold(lowered[META_KEY]), result)
        elif LEGACY_KEY in lowered:
            result.form = LEGACY_KEY
            result.document = parse_json(_unfold(lowered[LEGACY_KEY]))
            result.has_document = True
    except MetadataError as e:
        e.partial = result  # type: ignore[attr-defined]
        raise
    except UnicodeDecodeError as e:
        err = MetadataError(f"metadata header has undecodable characters: {e}")
        err.partial = result  # type: ignore[attr-defined]
        raise err from e
    return result


def _decode_deon(value: str, result: Decoded) -> None:
    form, sep, payload = value.partition(":")
    if not sep:
        raise MetadataError(f"{META_KEY} header has no form prefix")
    result.form = form
    if form == FORM_JSON:
        result.document = parse_json(payload)
        result.has_document = True
        if "\\" not in payload:
            result.text = payload
    elif form == FORM_ZLIB:
        try:
            packed = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as e:
            raise MetadataError(f"{META_KEY} zlib form is not valid base64") from e
        result.document = parse_json(inflate(packed))
        result.has_document = True
    elif form == FORM_REF:
        digest, _, rest = payload.partition(":")
        size_text, _, key = rest.partition(":")
        if not _SHA256_RE.fullmatch(digest) or not _SIZE_RE.fullmatch(size_text) or not key:
            raise MetadataError(f"{META_KEY} ref form is malformed")
        size = int(size_text)
        if size > MAX_DOCUMENT_BYTES:
            raise MetadataError(f"metadata document of {size} bytes is over the limit")
        result.sidecar = SidecarRef(unquote(key), digest.lower(), size)
        result.has_document = True
    else:
        raise MetadataError(f"{META_KEY} header has unknown form {form!r}")


def inflate(packed: bytes) -> bytes:
    """zlib-decompress at most MAX_DOCUMENT_BYTES (a bucket may hold a zip bomb)."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(packed, MAX_DOCUMENT_BYTES)
    except zlib.error as e:
        raise MetadataError(f"{META_KEY} zlib form does not inflate: {e}") from e
    if inflater.unconsumed_tail:
        raise MetadataError("metadata document inflates past the size limit")
    if not inflater.eof:
        raise MetadataError(f"{META_KEY} zlib form is truncated")
    return out


def resolve_sidecar(ref: SidecarRef, body: bytes) -> Any:
    """Check a fetched sidecar body against its reference and parse it.

    Raises:
        MetadataError: wrong size or hash (stale or tampered), or not JSON.
    """
    if len(body) != ref.size or hashlib.sha256(body).hexdigest() != ref.sha256:
        raise MetadataError(f"metadata sidecar {ref.key} does not match its reference")
    return parse_json(body)
