"""S3 addresses (`s3://BUCKET/PREFIX` or `BUCKET/PREFIX`) and the safety of object keys.

Keys come from a bucket other people write to, so a key is untrusted input: before it
becomes a local path it must prove it cannot leave the local folder.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from deon.errors import AddressError, UnsafeKey

SCHEME = "s3://"

#: A key with this path segment is deon's own bookkeeping (metadata sidecars, snapshots),
#: never data: `down`, `up` and `metadata down` skip it.
RESERVED_SEGMENT = ".deon"

#: Prefix of the temporary files downloads are written to before they are renamed.
TEMP_PREFIX = ".deon-tmp-"

# Current S3 rules (3-63 of a-z 0-9 . -) plus legacy us-east-1 names (upper case,
# underscores, up to 255) which still exist in old labs' accounts.
_BUCKET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]$")
_MAX_KEY_BYTES = 1024
_MAX_NAME_BYTES = 255  # a path component on ext4, xfs, apfs, ntfs


@dataclass(frozen=True)
class S3Address:
    """A bucket and a key (an object) or prefix (a folder) in it."""

    bucket: str
    key: str = ""

    @property
    def uri(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.key}"

    @property
    def prefix(self) -> str:
        """The key as a folder prefix: empty, or ending in `/`."""
        if not self.key or self.key.endswith("/"):
            return self.key
        return self.key + "/"

    def child(self, relative: str) -> S3Address:
        return S3Address(self.bucket, self.prefix + relative)

    def __str__(self) -> str:
        return self.uri


def parse_address(text: str) -> S3Address:
    """Parse `s3://BUCKET/PREFIX`, `s3://BUCKET`, `BUCKET/PREFIX` or `BUCKET`.

    Raises:
        AddressError: not an S3 address.
    """
    raw = text.strip()
    if raw[:5].lower() == SCHEME:
        rest = raw[5:]
    elif "://" in raw:
        raise AddressError(f"not an S3 address: {text!r} (expected s3://BUCKET/PREFIX)")
    else:
        rest = raw
    bucket, _, key = rest.partition("/")
    if not _BUCKET_RE.match(bucket) or ".." in bucket:
        raise AddressError(
            f"not an S3 address: {text!r} (expected s3://BUCKET/PREFIX; "
            f"{bucket!r} is not a valid bucket name)"
        )
    if len(key.encode("utf-8", "surrogatepass")) > _MAX_KEY_BYTES:
        raise AddressError(f"key too long (over {_MAX_KEY_BYTES} bytes) in {text!r}")
    return S3Address(bucket, key)


def parse_object_uri(text: str) -> S3Address:
    """Parse the address of one object: a key is required and must not end in `/`."""
    address = parse_address(text)
    if not address.key or address.key.endswith("/"):
        raise AddressError(f"not an object URI: {text!r} (expected s3://BUCKET/KEY)")
    return address


def parse_folder_address(text: str) -> S3Address:
    """Parse the address of a folder that `up` or `down` maps to a local folder: its
    prefix must itself be a safe relative path (no `..`, `.` or empty segments, no
    backslash or control character), or DATA_DIR/BUCKET/PREFIX would lead outside the
    data folder, and `up` would make keys everyone else's `down` refuses.

    Raises:
        AddressError: not an S3 address, or an unsafe prefix.
    """
    address = parse_address(text)
    prefix = address.key[:-1] if address.key.endswith("/") else address.key
    if prefix:
        try:
            check_relative_key(prefix)
        except UnsafeKey as e:
            raise AddressError(f"unsafe prefix in {text!r}: {e}") from e
        if is_reserved(prefix):
            raise AddressError(
                f"unsafe prefix in {text!r}: {RESERVED_SEGMENT}/ holds deon's own bookkeeping"
            )
    return address


def is_reserved(key: str) -> bool:
    """Whether the key is deon's own bookkeeping rather than data."""
    return RESERVED_SEGMENT in key.split("/")


def is_directory_marker(key: str, size: int) -> bool:
    """An empty object whose key ends in `/`: what consoles create as a "folder"."""
    return key.endswith("/") and size == 0


def check_relative_key(relative: str) -> PurePosixPath:
    """Check a key (relative to the address prefix) and return it as a relative path.

    Refuses anything that could write outside the destination folder or could not
    be represented as a file there: absolute keys, `..` or `.` segments, empty segments,
    backslashes, control characters, Windows drive letters, over-long names, and names
    that collide with deon's own temporary files.

    Raises:
        UnsafeKey: with the reason.
    """
    if not relative:
        raise UnsafeKey("empty key")
    if relative.startswith("/"):
        raise UnsafeKey("absolute key")
    if "\\" in relative:
        raise UnsafeKey("backslash in key")
    if any(unicodedata.category(c) == "Cc" for c in relative):
        raise UnsafeKey("control character in key")
    parts = relative.split("/")
    for part in parts:
        if part == "":
            raise UnsafeKey("empty path segment in key")
        if part in (".", ".."):
            raise UnsafeKey(f"{part!r} segment in key")
        if len(part.encode("utf-8", "surrogatepass")) > _MAX_NAME_BYTES:
            raise UnsafeKey(f"path segment longer than {_MAX_NAME_BYTES} bytes")
        if part.startswith(TEMP_PREFIX):
            raise UnsafeKey("name reserved for deon's temporary files")
    if re.match(r"^[A-Za-z]:", parts[0]):
        raise UnsafeKey("drive letter in key")
    try:
        relative.encode("utf-8")
    except UnicodeEncodeError as e:
        raise UnsafeKey("key is not valid UTF-8") from e
    return PurePosixPath(*parts)


def local_path_for(root: Path, relative: str) -> Path:
    """The local path of a key under `root`, after `check_relative_key`.

    Raises:
        UnsafeKey: the key is unsafe, or an existing symlink under `root` would carry
            the file outside it.
    """
    rel = check_relative_key(relative)
    target = root.joinpath(*rel.parts)
    # Resolve the nearest existing folder between the target and the root: a symlinked
    # folder inside the destination must not redirect a write elsewhere. (Folders that
    # do not exist yet will be created as real folders.)
    probe = target.parent
    while probe != root and not probe.exists() and not probe.is_symlink():
        probe = probe.parent
    if probe.exists() or probe.is_symlink():  # a dangling symlink resolves to its target
        real_root, real_probe = root.resolve(), probe.resolve()
        if real_probe != real_root and real_root not in real_probe.parents:
            raise UnsafeKey("key leads through a symlink outside the destination")
    if target.is_symlink():
        raise UnsafeKey("local path is a symlink")
    return target


def key_for_local(relative: PurePosixPath | str, prefix: str) -> str:
    """The object key of a local file at `relative` (POSIX form) under an address prefix."""
    rel = str(relative)
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError as e:
        raise UnsafeKey("file name is not valid UTF-8") from e
    return prefix + rel


class LocalTree:
    """`local_path_for` for many keys under one root, checking each folder once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._safe: set[Path] = set()

    def path_for(self, relative: str) -> Path:
        """The local path of a key; raises UnsafeKey like `local_path_for`."""
        rel = check_relative_key(relative)
        target = self.root.joinpath(*rel.parts)
        if target.parent in self._safe:
            if target.is_symlink():
                raise UnsafeKey("local path is a symlink")
            return target
        path = local_path_for(self.root, relative)
        if target.parent.is_dir():  # only folders that exist can be remembered as safe
            self._safe.add(target.parent)
        return path
