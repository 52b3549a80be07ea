"""File digests: the sha256 deon records and, when a comparison needs it, the MD5-based
ETag S3 reports.

The sha256 is always computed (it goes into the object's headers, and it is the
signed payload hash of an upload, so S3 itself checks the bytes). MD5 is computed
only to compare a file with an object by its ETag; the local hash cache (state.py)
usually makes even that unnecessary.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

#: deon's multipart part size and threshold (8 MiB parts, as the AWS CLI and s3transfer
#: use by default, so their multipart ETags match ours too).
PART_SIZE = 8 * 1024 * 1024
MULTIPART_THRESHOLD = 16 * 1024 * 1024
READ_SIZE = 1024 * 1024
_buffers = threading.local()


def read_buffer() -> memoryview:
    """This thread's READ_SIZE buffer for streaming reads. One per thread, reused: a fresh
    zeroed megabyte for every small file cost more CPU than the file itself."""
    view: memoryview | None = getattr(_buffers, "view", None)
    if view is None:
        view = _buffers.view = memoryview(bytearray(READ_SIZE))
    return view


class Cancelled(Exception):
    """The run was interrupted (Ctrl-C); work in progress stops at the next chunk."""


#: S3's multipart limits (https://docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html)
MAX_PARTS = 10_000
MIN_PART_SIZE = 5 * 1024 * 1024
MAX_PART_SIZE = 5 * 1024 * 1024 * 1024


def part_size_for(size: int) -> int:
    """deon's part size for an object of `size` bytes: 8 MiB, doubled until the object
    fits in S3's 10,000 parts (s3transfer's ChunksizeAdjuster rule, without importing
    s3transfer, which costs 60 ms at every start)."""
    part = PART_SIZE
    while part < MAX_PART_SIZE and -(-size // part) > MAX_PARTS:
        part *= 2
    return max(MIN_PART_SIZE, min(part, MAX_PART_SIZE))


def uses_multipart(size: int) -> bool:
    return size > MULTIPART_THRESHOLD


def part_ranges(size: int, part_size: int) -> list[tuple[int, int]]:
    """(offset, length) of each part; an empty object is one empty part."""
    if size == 0:
        return [(0, 0)]
    return [(off, min(part_size, size - off)) for off in range(0, size, part_size)]


@dataclass(frozen=True)
class Digest:
    """sha256 of a file's bytes and, if asked for, its MD5s in deon's part layout."""

    size: int
    sha256: str
    part_size: int
    md5: str | None = None
    part_md5s: tuple[bytes, ...] | None = None

    @property
    def multipart(self) -> bool:
        return uses_multipart(self.size)

    @property
    def etag(self) -> str | None:
        """The ETag S3 reports for this file when deon uploads it (None without MD5s)."""
        if self.md5 is None or self.part_md5s is None:
            return None
        if not self.multipart:
            return self.md5
        joined = hashlib.md5(b"".join(self.part_md5s), usedforsecurity=False).hexdigest()
        return f"{joined}-{len(self.part_md5s)}"


def digest_bytes(data: bytes | memoryview, *, md5: bool = False) -> Digest:
    """The digest of bytes in memory (a small file read whole)."""
    size = len(data)
    whole = hashlib.md5(data, usedforsecurity=False).hexdigest() if md5 else None
    return Digest(
        size,
        hashlib.sha256(data).hexdigest(),
        part_size_for(size),
        whole,
        (bytes.fromhex(whole),) if whole is not None else None,
    )


def digest_file(
    path: Path,
    cancel: threading.Event | None = None,
    on_bytes: Callable[[int], None] | None = None,
    *,
    md5: bool = False,
) -> Digest:
    """Read a file once for its sha256 and, with `md5`, its MD5 and part MD5s.

    Raises:
        OSError: the file cannot be read.
        Cancelled: `cancel` was set.
    """
    sha = hashlib.sha256()
    whole = hashlib.md5(usedforsecurity=False) if md5 else None
    size = path.stat().st_size
    part_size = part_size_for(size)
    multipart = uses_multipart(size)
    parts: list[bytes] = []
    part = hashlib.md5(usedforsecurity=False)
    in_part = 0
    total = 0
    view = read_buffer()
    with open(path, "rb", buffering=0) as f:
        while True:
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            want = min(READ_SIZE, part_size - in_part) if (md5 and multipart) else READ_SIZE
            n = f.readinto(view[:want])
            if not n:
                break
            chunk = view[:n]
            sha.update(chunk)
            total += n
            if whole is not None:
                whole.update(chunk)
                if multipart:
                    part.update(chunk)
                    in_part += n
                    if in_part == part_size:
                        parts.append(part.digest())
                        part = hashlib.md5(usedforsecurity=False)
                        in_part = 0
            if on_bytes is not None:
                on_bytes(n)
    if whole is None:
        return Digest(total, sha.hexdigest(), part_size)
    if multipart and in_part:
        parts.append(part.digest())
    md5_hex = whole.hexdigest()
    return Digest(
        total,
        sha.hexdigest(),
        part_size,
        md5_hex,
        tuple(parts) if multipart else (bytes.fromhex(md5_hex),),
    )


def etag_is_md5(etag: str, encryption: str | None = None) -> bool:
    """A plain-MD5 ETag: 32 hex digits, no part count, and no KMS or SSE-C encryption
    (with those, S3's ETag is not the MD5 of the bytes)."""
    if encryption and encryption not in ("AES256",):
        return False
    return len(etag) == 32 and all(c in "0123456789abcdef" for c in etag.lower())


def matches_etag(digest: Digest, etag: str, encryption: str | None = None) -> bool:
    """Whether the ETag proves the object holds the digested bytes.

    True only for a plain MD5 equal to the file's, or a multipart ETag equal to the
    one deon's part layout gives. Anything else (or a digest without MD5) is
    "unknown", reported as False.
    """
    if encryption and encryption not in ("AES256",):
        return False
    etag = etag.lower()
    if digest.md5 is None:
        return False
    if etag_is_md5(etag):
        return etag == digest.md5
    return "-" in etag and etag == digest.etag
