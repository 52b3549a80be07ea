"""`deon verify`: re-hash local files against the sha256 the catalog holds.

Like `rclone check`, it compares two sides and names every difference:

- ok       the local file's sha256 is the catalog's;
- missing  the catalog has the object, there is no local file;
- changed  the local file differs, and it is not the file deon last verified there
           (someone wrote to it, or replaced it);
- corrupt  the local file differs although it is the very file deon verified
           (same device, inode, size, mtime and ctime): its bytes decayed;
- unknown  a local file the catalog has no row for;
- unverifiable  the catalog has no sha256 for the object, nor an ETag to check (a plain
           MD5, or a multipart ETag of a plausible part size).

Local files are those under DATA_DIR/BUCKET/KEY, the layout `down` and `pull` use.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from deon.errors import UnsafeKey, UsageError
from deon.results import (  # noqa: F401 - the statuses of a finding, as verify names them
    CHANGED,
    CORRUPT,
    MISSING,
    OK,
    PROBLEMS,
    UNKNOWN,
    UNVERIFIABLE,
)
from deon.transfer.digest import (
    candidate_part_sizes,
    digest_file,
    etag_is_md5,
    etag_part_count,
    file_matches_etag,
)
from deon.transfer.state import State, identity
from deon.uri import (
    RESERVED_SEGMENT,
    TEMP_PREFIX,
    S3Address,
    check_relative_key,
    local_path_for,
)


@dataclass(frozen=True)
class Finding:
    status: str
    uri: str
    path: Path | None


@dataclass
class VerifyResult:
    findings: list[Finding] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for f in self.findings if f.status == status)

    @property
    def ok(self) -> bool:
        return not any(f.status in PROBLEMS for f in self.findings)


@dataclass(frozen=True)
class Row:
    uri: str
    key: str
    size: int
    etag: str
    sha256: str | None


def scope(target: str, data_dir: Path) -> tuple[S3Address, Path | None]:
    """What to verify: an address, or a local folder or file inside DATA_DIR (existing
    or not: a deleted file is still verifiable, as missing), mapped back to the
    address it mirrors. Returns the address and the local path (under DATA_DIR as
    given, so that paths match those `down` recorded), if any."""
    from deon.uri import parse_address

    if target.startswith("s3://"):
        return parse_address(target), None
    local = Path(os.path.abspath(Path(target).expanduser()))
    root_given = Path(os.path.abspath(data_dir.expanduser()))
    root_real = root_given.resolve()
    rel: Path | None = None
    for root in (root_given, root_real):
        try:
            rel = local.relative_to(root)
            break
        except ValueError:
            pass
    if rel is None:
        try:
            rel = local.resolve().relative_to(root_real)
        except ValueError:
            if not Path(target).exists():
                return parse_address(target), None  # BUCKET/PREFIX, not a local path
            raise UsageError(
                f"{target} is not inside the data folder {root_given}: deon keeps "
                "s3://BUCKET/KEY at DATA_DIR/BUCKET/KEY (set --data-dir)"
            ) from None
    if not rel.parts:
        raise UsageError("give a bucket's folder (DATA_DIR/BUCKET/...) or an s3:// address")
    key = "/".join(rel.parts[1:])
    folder = local.is_dir() or (not local.exists() and target.endswith("/"))
    if folder and key:
        key += "/"
    return S3Address(rel.parts[0], key), root_given.joinpath(*rel.parts)


def verify(
    rows: list[Row],
    address: S3Address,
    data_dir: Path,
    local: Path | None,
    state: State | None,
    *,
    jobs: int = 8,
    on_finding: Callable[[Finding], None] | None = None,
) -> VerifyResult:
    """Compare the catalog's rows under `address` with the files under DATA_DIR."""
    result = VerifyResult()
    bucket_root = Path(os.path.abspath(data_dir.expanduser())) / address.bucket
    known: dict[Path, Row] = {}
    odd: list[Finding] = []
    for row in rows:
        try:
            known[local_path_for(bucket_root, row.key)] = row
        except UnsafeKey as e:
            try:
                check_relative_key(row.key)
            except UnsafeKey:
                continue  # never downloaded: down refuses such keys
            # A safe key whose local path is a symlink (or goes through one leading
            # out): not a file deon put there.
            path = bucket_root.joinpath(*row.key.split("/"))
            odd.append(Finding(CHANGED, row.uri, path))
            del e
    cached = state.under(bucket_root) if state is not None else {}

    def check(item: tuple[Path, Row]) -> Finding:
        path, row = item
        try:
            st = path.lstat()
        except FileNotFoundError:
            return Finding(MISSING, row.uri, path)
        multipart = not row.sha256 and not etag_is_md5(row.etag)
        if multipart and (
            etag_part_count(row.etag) is None
            or not candidate_part_sizes(row.size, etag_part_count(row.etag) or 0)
        ):
            return Finding(UNVERIFIABLE, row.uri, path)
        digest = digest_file(path, md5=not row.sha256 and not multipart)
        if row.sha256:
            same = digest.sha256 == row.sha256
        elif multipart:  # another tool's multipart ETag, its part size inferred
            same = file_matches_etag(path, row.etag) is True
        else:
            same = digest.md5 == row.etag.lower()
        if same and st.st_size == row.size:
            if state is not None:
                state.remember(path, st, digest.sha256, md5=digest.md5, etag=row.etag)
            return Finding(OK, row.uri, path)
        entry = cached.get(os.fsdecode(path))
        untouched = entry is not None and entry[:5] == identity(st)
        return Finding(CORRUPT if untouched else CHANGED, row.uri, path)

    for finding in odd:
        result.findings.append(finding)
        if on_finding is not None:
            on_finding(finding)
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        for finding in pool.map(check, sorted(known.items())):
            result.findings.append(finding)
            if on_finding is not None:
                on_finding(finding)
    if local is not None and local.exists():
        reported = {f.path for f in odd}
        for path in _files(local):
            if path not in known and path not in reported:
                rel = path.relative_to(bucket_root).as_posix()
                finding = Finding(UNKNOWN, f"s3://{address.bucket}/{rel}", path)
                result.findings.append(finding)
                if on_finding is not None:
                    on_finding(finding)
    return result


def _files(local: Path) -> Iterator[Path]:
    if local.is_file():
        yield local
        return
    for dirpath, dirnames, filenames in os.walk(local):
        dirnames[:] = sorted(d for d in dirnames if d != RESERVED_SEGMENT)
        for name in sorted(filenames):
            if not name.startswith(TEMP_PREFIX):
                yield Path(dirpath) / name
