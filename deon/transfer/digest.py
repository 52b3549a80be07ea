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


# -- multipart ETags of other tools ----------------------------------------------------------

_MiB = 1024 * 1024
#: Part sizes other tools use, tried when an ETag's part size must be inferred: 8 MiB
#: (s3transfer, so the AWS CLI, boto3 and the original deoncli), 5 MiB (rclone), 15 MiB
#: (s3cmd), 16 MiB (MinIO's client), and larger powers of two.
COMMON_PART_SIZES = tuple(n * _MiB for n in (8, 5, 15, 16, 32, 64, 128, 256, 512))
#: At most this many candidate part sizes are hashed at once (each costs an MD5 pass).
MAX_CANDIDATES = 4


def etag_part_count(etag: str) -> int | None:
    """The part count of a multipart ETag (`<32 hex>-N`), or None for any other ETag."""
    digest, sep, count = etag.strip('"').lower().partition("-")
    if not sep or not etag_is_md5(digest) or not count.isdigit():
        return None
    n = int(count)
    return n if 1 <= n <= MAX_PARTS else None


def candidate_part_sizes(size: int, parts: int) -> list[int]:
    """Part sizes that split `size` bytes into exactly `parts` parts, most likely first:
    deon's own rule (`part_size_for`, s3transfer's), the sizes of COMMON_PART_SIZES, then
    the size divided by the count rounded up to whole MiB (tools that choose it so)."""
    if size <= 0:
        return []
    even = -(-size // parts)  # ceil(size / parts)
    rounded = -(-even // _MiB) * _MiB
    out: list[int] = []
    for p in (part_size_for(size), *COMMON_PART_SIZES, rounded):
        # S3 refuses parts under 5 MiB but the last: no smaller part size is plausible
        plausible = p >= MIN_PART_SIZE or parts == 1
        if plausible and -(-size // p) == parts and p not in out:
            out.append(p)
    return out[:MAX_CANDIDATES]


class EtagHasher:
    """Checks bytes, fed in order, against a multipart ETag whose part size is not
    known: the MD5 of the part MD5s is computed for every candidate part size at once.

    `matches()` is True when one candidate gives the ETag, False when none does, and
    None when no part size is plausible (nothing can be checked then).
    """

    def __init__(self, size: int, etag: str) -> None:
        parts = etag_part_count(etag)
        self.etag = etag.strip('"').lower()
        self.sizes = candidate_part_sizes(size, parts) if parts else []
        self.reset()

    def reset(self) -> None:
        self._parts: list[list[bytes]] = [[] for _ in self.sizes]
        self._current = [hashlib.md5(usedforsecurity=False) for _ in self.sizes]
        self._filled = [0 for _ in self.sizes]

    def update(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        for i, size in enumerate(self.sizes):
            offset = 0
            while offset < len(view):
                take = min(size - self._filled[i], len(view) - offset)
                self._current[i].update(view[offset : offset + take])
                self._filled[i] += take
                offset += take
                if self._filled[i] == size:
                    self._parts[i].append(self._current[i].digest())
                    self._current[i] = hashlib.md5(usedforsecurity=False)
                    self._filled[i] = 0

    def matches(self) -> bool | None:
        if not self.sizes:
            return None
        for i in range(len(self.sizes)):
            parts = self._parts[i] + ([self._current[i].digest()] if self._filled[i] else [])
            joined = hashlib.md5(b"".join(parts), usedforsecurity=False).hexdigest()
            if f"{joined}-{len(parts)}" == self.etag:
                return True
        return False


def file_matches_etag(path: Path, etag: str, cancel: threading.Event | None = None) -> bool | None:
    """Whether a file's bytes give a multipart ETag (see EtagHasher; None: no part size
    is plausible for it, so the ETag proves nothing either way).

    Raises:
        OSError: the file cannot be read.
        Cancelled: `cancel` was set.
    """
    hasher = EtagHasher(path.stat().st_size, etag)
    if not hasher.sizes:
        return None
    view = read_buffer()
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(view):
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            hasher.update(view[:n])
    return hasher.matches()
