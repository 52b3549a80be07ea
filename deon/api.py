"""deon's Python API: everything the command line does, usable without it.

    import deon
    result = deon.pull(["s3://lab-data/alice/traj_0001.h5"])
    for outcome in result.failed:
        print(outcome.uri, outcome.message)

Every function takes, besides its own arguments:
    settings: resolved `deon.Settings`; by default from the environment and the config
        file, exactly as for the `deon` command (see `deon.config`).
    **options: overrides of single settings (endpoint_url, profile, catalog, jobs,
        data_dir, ...), as the command line's global options give them.
Long operations also take `progress`, a `deon.Progress` that receives progress from
worker threads (one unit per byte moved, or per object mirrored).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deon import config
from deon.errors import DeonError, LocalPathError
from deon.metadata.hdf5 import Description, describe
from deon.mirror.sources import endpoint_id
from deon.results import Progress, SyncResult
from deon.s3.client import Storage
from deon.transfer import sync
from deon.transfer.engine import Engine
from deon.transfer.state import State
from deon.uri import S3Address, parse_address, parse_folder_address, parse_object_uri

if TYPE_CHECKING:
    from deon.catalog.db import Catalog
    from deon.manifest.format import Difference, Manifest
    from deon.metadata.readers import Reader
    from deon.mirror.refresh import MirrorResult
    from deon.transfer.watch import WatchReport, WatchResult


def _settings(settings: config.Settings | None, **options: Any) -> config.Settings:
    if settings is None:
        return config.load_settings(**options)
    return settings.with_overrides(**options)


def make_storage(settings: config.Settings, connections: int | None = None) -> Storage:
    """The S3 client for these settings, its pool sized for item and part workers (or
    for `connections` requests at once)."""
    storage = Storage(
        endpoint_url=settings.endpoint_url,
        profile=settings.profile,
        max_pool_connections=connections or 2 * settings.jobs + 2,
        no_sign_request=settings.no_sign_request,
        request_payer=settings.request_payer,
        sse=settings.sse,
        sse_kms_key_id=settings.sse_kms_key_id,
        client_cert=_client_cert(settings),
    )
    if settings.jobs_given:  # -j caps the listing's ranges in flight too
        storage.list_width = settings.jobs
    return storage


def _client_cert(settings: config.Settings) -> str | tuple[str, str] | None:
    if settings.client_cert and settings.client_key:
        return (
            str(Path(settings.client_cert).expanduser()),
            str(Path(settings.client_key).expanduser()),
        )
    if settings.client_key:
        from deon.errors import ConfigError

        raise ConfigError("client_key is set without client_cert in the config file")
    return str(Path(settings.client_cert).expanduser()) if settings.client_cert else None


#: HEADs in flight a metadata mirror may grow to when `-j` is not given; it starts at
#: START_HEADS and grows while throughput grows (transfer/budget.py). HEADs are tiny:
#: over 40 ms of round trip, 16 in flight capped a mirror at 400/s (issue 15). It
#: starts where loopback is best (more in flight only costs CPU there: the limit never
#: goes below its start unless throttled) and doubles each 0.25 s window that gains.
MAX_HEADS = 256
START_HEADS = 16


def _state(s: config.Settings) -> State:
    """The user's state file, its knowledge bound to the endpoint in use."""
    return State(endpoint=endpoint_id(s.endpoint_url))


@contextlib.contextmanager
def _engine(s: config.Settings, progress: Progress | None) -> Iterator[tuple[Engine, State]]:
    """The transfer engine of one command and the user's upload ledger, both closed
    when the command ends, however it ends."""
    state = _state(s)
    try:
        with Engine(make_storage(s), s.jobs, progress, state) as engine:
            yield engine, state
    finally:
        state.close()


def _address(address: str | S3Address) -> S3Address:
    return address if isinstance(address, S3Address) else parse_address(address)


def _folder(address: str | S3Address) -> S3Address:
    """An address `up` or `down` maps to a local folder (its prefix checked)."""
    return parse_folder_address(address if isinstance(address, str) else address.uri)


def buckets(*, settings: config.Settings | None = None, **options: Any) -> list[str]:
    """Names of the buckets the credentials can list."""
    return make_storage(_settings(settings, **options)).list_buckets()


def up(
    address: str | S3Address,
    local_dir: str | Path | None = None,
    *,
    overwrite: bool = False,
    dry_run: bool = False,
    sse: str | None = None,
    sse_kms_key_id: str | None = None,
    progress: Progress | None = None,
    settings: config.Settings | None = None,
    **options: Any,
) -> SyncResult:
    """Upload new and changed files under `local_dir` to `address`, keeping relative paths.

    Each HDF5 file's `attrs['metadata']` JSON goes into the object's user metadata
    with the file's sha256. Unchanged files send nothing. A different object already at
    a key is refused (a FAILED outcome) unless it is the one this user last uploaded
    there, or `overwrite` is set. Writes are conditional, so a concurrent upload by
    someone else is never silently replaced.

    Args:
        address: `s3://BUCKET/PREFIX`.
        local_dir: the folder (or a single file) to upload; default DATA_DIR/BUCKET/PREFIX.
        overwrite: replace different objects that someone else uploaded.
        dry_run: decide, but send nothing (outcomes are PLANNED).
        sse: server-side encryption of the objects written: "AES256" or "aws:kms".
        sse_kms_key_id: the KMS key for "aws:kms" (default: the account's S3 key).
    """
    s = _settings(settings, **options).with_overrides(sse=sse, sse_kms_key_id=sse_kms_key_id)
    target = _folder(address)
    local = Path(local_dir).expanduser() if local_dir is not None else _default_dir(s, target)
    readers = metadata_readers(s)  # a bad reader name stops `up` before any work
    with _engine(s, progress) as (engine, state):
        return sync.up(
            engine, state, target, local, overwrite=overwrite, dry_run=dry_run, readers=readers
        )


def up_watch(
    address: str | S3Address,
    local_dir: str | Path | None = None,
    *,
    settle: float = 5.0,
    poll: float | None = None,
    exclude: Iterable[str] = (),
    grace: float = 20.0,
    overwrite: bool = False,
    report: WatchReport | None = None,
    handle_signals: bool = True,
    settings: config.Settings | None = None,
    **options: Any,
) -> WatchResult:
    """Upload what is under `local_dir`, as `up` does, then keep running and upload each
    new or changed file as soon as it is complete, until stopped (`deon up --watch`).

    A file is complete when it has not changed for `settle` seconds, no process has it
    open for writing (Linux), and, for HDF5, it opens cleanly read-only. Failed uploads
    are retried with backoff until they succeed. With `handle_signals` (main thread
    only), SIGTERM or Ctrl-C stops: no new file is taken, uploads in flight get `grace`
    seconds to finish and are then abandoned (multipart uploads aborted); a second
    Ctrl-C abandons them at once (`WatchResult.interrupted`).

    Args:
        address: `s3://BUCKET/PREFIX`.
        local_dir: the folder to watch; default DATA_DIR/BUCKET/PREFIX.
        settle: seconds a file must stay unchanged.
        poll: scan every `poll` seconds instead of listening for events.
        exclude: more fnmatch patterns to leave out (`*.tmp`, `.*.swp`, `*.part` are).
        grace: seconds uploads in flight may take to finish once stop is asked.
        overwrite: replace different objects someone else uploaded.
        report: receives each upload, failures and the status.
        settings: resolved settings; by default from the environment and config file.
        **options: overrides: endpoint_url, profile, jobs, data_dir.
    """
    from deon.transfer.watch import Watcher, WatchOptions, stop_on_signals

    s = _settings(settings, **options)
    target = _folder(address)
    local = Path(local_dir).expanduser() if local_dir is not None else _default_dir(s, target)
    opts = WatchOptions(
        settle=settle,
        poll=poll,
        exclude=tuple(exclude),
        grace=grace,
        overwrite=overwrite,
        readers=tuple(metadata_readers(s)),
    )
    state = _state(s)
    try:
        watcher = Watcher(
            make_storage(s), state, target, local, jobs=s.jobs, options=opts, report=report
        )
        with stop_on_signals(watcher) if handle_signals else contextlib.nullcontext():
            return watcher.run()
    finally:
        state.close()


def repeat(run_round: Callable[[], Any], every: str | float, **kwargs: Any) -> int:
    """Run `run_round` every `every` (seconds, or `30s`, `5m`, `1h`) until stopped, as
    `--every` does: rounds never overlap, an error in one round goes to `on_error` and
    the next round still runs. See deon.tools.schedule.repeat for the keyword arguments.
    """
    from deon.tools.schedule import parse_duration
    from deon.tools.schedule import repeat as _repeat

    seconds = parse_duration(every) if isinstance(every, str) else float(every)
    return _repeat(run_round, seconds, **kwargs)


def down(
    address: str | S3Address,
    local_dir: str | Path | None = None,
    *,
    force: bool = False,
    dry_run: bool = False,
    progress: Progress | None = None,
    settings: config.Settings | None = None,
    **options: Any,
) -> SyncResult:
    """Make `local_dir` hold every object under `address`; skip files already up to date.

    Args:
        address: `s3://BUCKET/PREFIX`.
        local_dir: destination folder; default DATA_DIR/BUCKET/PREFIX.
        force: download even files that are already up to date.
        dry_run: decide, but download nothing.
    """
    s = _settings(settings, **options)
    source = _folder(address)
    local = Path(local_dir).expanduser() if local_dir is not None else _default_dir(s, source)
    if local.exists() and not local.is_dir():
        raise LocalPathError(f"not a folder: {local}")
    with _engine(s, progress) as (engine, _), contextlib.closing(_CatalogHints(s)) as hints:
        return sync.down(engine, source, local, force=force, dry_run=dry_run, known=hints)


def pull(
    uris: Iterable[str | S3Address] | None = None,
    data_dir: str | Path | None = None,
    force: bool = False,
    *,
    manifest: str | Path | bytes | Manifest | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
    settings: config.Settings | None = None,
    **options: Any,
) -> SyncResult:
    """Download the given objects, each to DATA_DIR/BUCKET/KEY, as `deon pull` does.

    Args:
        uris: `s3://BUCKET/KEY` strings (or addresses); duplicates are fetched once.
        data_dir: the local root; default from settings (`--data-dir`, `DEON_DATA_DIR`).
        force: download even files that are already up to date.
        manifest: instead of `uris`, a manifest (a `Manifest`, a file, the s3:// URI
            of a published one, or its bytes): exactly its bytes (see deon.manifest.fetch). No
            catalog is used.
        dry_run: decide, but download nothing.

    Raises:
        AddressError: a URI is malformed (nothing is downloaded then).
        ManifestError: the manifest is not one, or was edited (nothing is downloaded).
    """
    s = _settings(settings, **options)
    root = Path(data_dir).expanduser() if data_dir is not None else s.data_dir
    if manifest is not None:
        if uris is not None:
            from deon.errors import UsageError

            raise UsageError("give URIs or a manifest, not both")
        return _pull_manifest(manifest, root, force, dry_run, progress, s)
    if uris is None:
        from deon.errors import UsageError

        raise UsageError("nothing to pull: give URIs or a manifest")
    addresses = [u if isinstance(u, S3Address) else parse_object_uri(u) for u in uris]
    with contextlib.closing(_CatalogHints(s)) as hints:
        known = hints([a.uri for a in addresses])
    with _engine(s, progress) as (engine, _):
        return sync.pull(engine, addresses, root, force=force, dry_run=dry_run, known=known)


def _pull_manifest(
    source: str | Path | bytes | Manifest,
    root: Path,
    force: bool,
    dry_run: bool,
    progress: Progress | None,
    s: config.Settings,
) -> SyncResult:
    from deon.manifest import fetch

    m = load_manifest(source, settings=s)
    # The manifest, like the catalog, never decides where signed requests go: the
    # endpoint in use does; every object is checked against the manifest anyway.
    from deon.mirror.sources import endpoint_id

    used = endpoint_id(s.endpoint_url)
    frozen = {endpoint_id(src.endpoint) for src in m.sources}
    warning = None
    if frozen and used not in frozen:
        from deon.s3.client import safe_url

        where = ", ".join(sorted(src.endpoint or "AWS" for src in m.sources))
        from deon.errors import DeonWarning, WarningCode

        warning = DeonWarning(
            WarningCode.MANIFEST_ENDPOINT,
            f"{m.name} was frozen from {where}; pulling from {safe_url(s.endpoint_url) or 'AWS'} "
            "(each object is checked against the manifest; VersionIds belong to the first)",
        )
        (progress or Progress()).warn(warning)
    with _engine(s, progress) as (engine, _):
        result = fetch.pull(engine, m.entries, root, force=force, dry_run=dry_run)
    if warning:
        result.warnings.insert(0, warning)
    return result


#: A published manifest larger than this is refused (about 4 million objects).
MAX_MANIFEST_BYTES = 1024**3


def load_manifest(
    source: str | Path | bytes | Manifest,
    *,
    settings: config.Settings | None = None,
    **options: Any,
) -> Manifest:
    """Read and verify a manifest (`deon freeze`): a file, `s3://BUCKET/KEY` of a
    published one, or its bytes. `.to_pandas(catalog)` gives a DataFrame of it (see
    manifest_frame).

    Raises:
        ManifestError: not a deon manifest, or edited or damaged since it was frozen.
    """
    from deon.manifest.format import Manifest, ManifestError, parse

    if isinstance(source, Manifest):
        return source
    if isinstance(source, bytes):
        return parse(source, "the manifest given")
    text = str(source)
    if text.startswith("s3://"):
        address = parse_object_uri(text)
        storage = make_storage(_settings(settings, **options))
        return parse(storage.get_bytes(address.bucket, address.key, MAX_MANIFEST_BYTES), text)
    path = Path(text).expanduser()
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ManifestError(f"cannot read manifest {path}: {e.strerror or e}") from e
    return parse(data, str(path))


@dataclass(frozen=True)
class Frozen:
    """What `freeze` made: the manifest, the file written, the URI published."""

    manifest: Manifest
    path: Path | None = None
    uri: str | None = None
    #: False when the published URI already held exactly these bytes
    published: bool = False


def freeze(
    where: str | None = None,
    *,
    sql: str | None = None,
    out: str | Path | None = None,
    publish: str | None = None,
    settings: config.Settings | None = None,
    **options: Any,
) -> Frozen:
    """Freeze the selected catalog rows into a manifest, as `deon freeze` does.

    Args:
        where: an SQL condition on `objects` (None: every row).
        sql: a whole SELECT with a `uri` column (or `bucket` and `key`) instead.
        out: write the manifest to this file (atomically).
        publish: write it to this s3:// URI, only if nothing is there yet (If-None-Match):
            a published manifest is never replaced by another.
        **options: overrides: catalog, endpoint_url, profile.

    Raises:
        QueryError: bad SQL (exit 2).
        PreconditionFailed: `publish` names a key holding other bytes (exit 1).
    """
    from deon.catalog.access import open_reader
    from deon.catalog.query import one_of
    from deon.manifest.freeze import select as freeze_rows

    one_of(where, sql)
    s = _settings(settings, **options)
    with open_reader(s.catalog) as reader:
        manifest = freeze_rows(reader, where, sql)
    data = manifest.to_bytes()
    path = None
    if out is not None:
        path = Path(out).expanduser()
        _write_atomically(path, data)
    uri, published = None, False
    if publish is not None:
        uri = publish
        published = _publish_manifest(s, publish, data)
    return Frozen(manifest, path, uri, published)


def _write_atomically(path: Path, data: bytes) -> None:
    import os
    import tempfile

    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as e:
        raise LocalPathError(f"cannot write {path}: {e.strerror}") from e
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publish_manifest(s: config.Settings, uri: str, data: bytes) -> bool:
    """Put a manifest at `uri` unless something is there; True when it was put, False
    when the same bytes were there already."""
    import hashlib

    from deon.errors import KeyNotFound, PreconditionFailed
    from deon.metadata.wire import SHA256_KEY

    address = parse_object_uri(uri)
    storage = make_storage(s)
    sha = hashlib.sha256(data).hexdigest()
    try:
        storage.put(
            address.bucket,
            address.key,
            data,
            sha256=sha,
            metadata={SHA256_KEY: sha},
            if_none_match=True,
            content_type="application/x-ndjson",
        )
        return True
    except PreconditionFailed:
        pass
    try:
        there = storage.get_bytes(address.bucket, address.key, len(data))
    except KeyNotFound:
        there = None
    except DeonError:
        there = None  # larger than ours, or unreadable: not ours either way
    if there == data:
        return False
    raise PreconditionFailed(
        f"{uri} already holds another manifest (or another object): refused; a published "
        "manifest is never replaced (choose another name)"
    )


def diff(
    a: str | Path | Manifest,
    b: str | Path | Manifest | None = None,
    *,
    settings: config.Settings | None = None,
    **options: Any,
) -> Difference:
    """What changed from manifest `a` to `b`: added, removed, changed (same key, other
    bytes). With no `b`, `a`'s query frozen again against the catalog now.

    Raises:
        ManifestError: either is not a deon manifest, or was edited (exit 2).
    """
    from deon.manifest.format import diff as _diff

    s = _settings(settings, **options)
    before = load_manifest(a, settings=s)
    if b is not None:
        after = load_manifest(b, settings=s)
    else:
        from deon.catalog.access import open_reader
        from deon.manifest.freeze import again

        with open_reader(s.catalog) as reader:
            after = again(reader, before)
    return _diff(before.entries, after.entries)


def manifest_frame(
    manifest: str | Path | Manifest,
    *,
    catalog: bool = True,
    settings: config.Settings | None = None,
    **options: Any,
) -> Any:
    """A manifest as a pandas DataFrame for training code: one row per entry, indexed by
    URI, with its local `path` (DATA_DIR/BUCKET/KEY) and, from the catalog, the metadata
    columns of the rows that still describe the frozen bytes (`in_catalog`).

    Args:
        manifest: a Manifest, a file, or the s3:// URI of a published one.
        catalog: join the catalog's metadata (when there is a catalog).
    """
    s = _settings(settings, **options)
    m = load_manifest(manifest, settings=s)
    if not catalog or ("://" not in s.catalog and not Path(s.catalog).expanduser().exists()):
        return m.to_pandas(None, s.data_dir)
    from deon.catalog.db import open_catalog as _open

    with _open(s.catalog, create=False) as cat:
        return m.to_pandas(cat, s.data_dir)


def open_catalog(url: str | None = None) -> Catalog:
    """Open the catalog (creating or upgrading it as needed).

    Args:
        url: a SQLite file path or any SQLAlchemy URL; default: the catalog the `deon`
            command uses (`--catalog`, `DEON_CATALOG`, config file, per-user default).
    """
    from deon.catalog.db import open_catalog as _open

    return _open(url if url is not None else _settings(None).catalog)


def mirror(
    addresses: Iterable[str | S3Address] | None = None,
    *,
    snapshots: bool = True,
    progress: Progress | None = None,
    settings: config.Settings | None = None,
    **options: Any,
) -> MirrorResult:
    """Mirror the metadata of every object under each address into the catalog, as
    `deon metadata down` does: incrementally, HEADing only new or changed objects.

    Args:
        addresses: `s3://BUCKET/PREFIX` addresses; None or empty: every source the
            catalog already has.
        snapshots: take objects from published snapshots (`publish`) when they match.

    Raises:
        UsageError: no address given and the catalog has no sources yet.
        DiskFull: the catalog's disk is full (its last transaction is rolled back).
    """
    s = _settings(settings, **options)
    try:
        return _mirror_into(s, addresses, snapshots, progress)
    except Exception as e:
        from deon.catalog.location import plain_path
        from deon.transfer import disk

        if not disk.is_disk_full(e):
            raise
        path = plain_path(s.catalog)
        raise disk.catalog_full(path, str(path or s.catalog)) from e


def _mirror_into(
    s: config.Settings,
    addresses: Iterable[str | S3Address] | None,
    snapshots: bool,
    progress: Progress | None,
) -> MirrorResult:
    from deon.catalog.db import open_catalog as _open
    from deon.errors import UsageError
    from deon.mirror.refresh import mirror as _mirror
    from deon.mirror.sources import plan as plan_sources
    from deon.s3.client import safe_url

    targets = [_address(a) for a in addresses or ()]
    with _open(s.catalog) as catalog:
        sources = catalog.sources()
        if not targets and not sources:
            raise UsageError(
                "the catalog has no sources yet: give an address "
                "(deon metadata down s3://BUCKET/PREFIX)"
            )
        cap = s.jobs if s.jobs_given else MAX_HEADS
        storage = make_storage(s, cap + 2)
        # The endpoint in use, also when botocore's configuration names it
        # (AWS_ENDPOINT_URL_S3, a [services] section of ~/.aws/config).
        plan = plan_sources(targets, sources, safe_url(storage.endpoint_url) or None)
        for w in plan.warnings:
            (progress or Progress()).warn(w)
        # HEADs have their own budget, adaptive; `-j`, when given, caps it.
        result = _mirror(
            catalog,
            storage,
            plan.addresses,
            jobs=cap,
            start_jobs=min(cap, START_HEADS),
            progress=progress,
            snapshots=snapshots,
        )
    result.failed[:0] = plan.refused
    result.warnings[:0] = plan.warnings
    return result


def forget(
    address: str | S3Address, *, settings: config.Settings | None = None, **options: Any
) -> int:
    """Stop mirroring a source: remove it from the catalog with the rows under it that
    no other source covers. Returns how many rows were removed.

    Raises:
        UsageError: the address is not a source of the catalog.
    """
    from deon.catalog.db import open_catalog as _open
    from deon.errors import UsageError

    s = _settings(settings, **options)
    target = _address(address)
    with _open(s.catalog, create=False) as catalog:
        removed = catalog.forget_source(target.bucket, target.prefix)
        if removed is None:
            known = " ".join(src.uri for src in catalog.sources()) or "none"
            raise UsageError(
                f"s3://{target.bucket}/{target.prefix} is not a source of the catalog "
                f"(sources: {known})"
            )
    return removed


@dataclass(frozen=True)
class Published:
    """A snapshot written by `publish`."""

    uri: str
    objects: int
    nbytes: int


def publish(
    address: str | S3Address,
    *,
    progress: Progress | None = None,
    settings: config.Settings | None = None,
    **options: Any,
) -> Published:
    """Refresh the catalog for `address`, then write a snapshot of its rows into the
    bucket (PREFIX/.deon/snapshot.jsonl.gz), so that others' first `metadata down`
    of the prefix needs (almost) no HEAD. Replaces an earlier snapshot.
    """
    from deon.catalog.db import open_catalog as _open
    from deon.mirror.snapshot import build, snapshot_key

    s = _settings(settings, **options)
    target = _address(address)
    mirror([target], progress=progress, settings=s)
    with _open(s.catalog) as catalog:
        count, rows = catalog.rows_under(target.bucket, target.prefix)
        data = build(target.bucket, target.prefix, rows, count)
    key = snapshot_key(target.prefix)
    import hashlib

    make_storage(s).put(
        target.bucket,
        key,
        data,
        sha256=hashlib.sha256(data).hexdigest(),
        metadata={},
        content_type="application/gzip",
    )
    return Published(f"s3://{target.bucket}/{key}", count, len(data))


def query(
    where: str | None = None,
    *,
    sql: str | None = None,
    limit: int | None = None,
    settings: config.Settings | None = None,
    **options: Any,
) -> tuple[list[str], Iterator[tuple[Any, ...]]]:
    """Select catalog rows, read-only, as `deon query` does.

    Args:
        where: an SQL condition on the `objects` columns, e.g. "robot = 'sawyer'".
        sql: a whole SELECT instead of a condition.
        limit: at most this many rows.

    Returns:
        The column names and an iterator over the rows.

    Raises:
        QueryError: unknown column or bad SQL (the message names close matches).
    """
    from deon.catalog.access import open_reader
    from deon.catalog.query import run

    s = _settings(settings, **options)
    return run(open_reader(s.catalog), where=where, sql=sql, limit=limit, close=True)


class _CatalogHints:
    """Size, ETag and sha256 the catalog holds, so that deciding whether a local file is
    current costs no HEAD; looked up page by page during a `down`. The catalog is opened
    once, and only if it exists (no catalog yet: SQLAlchemy is not even imported). A
    --catalog that is not a catalog (UsageError) is refused, as by every command; one
    that cannot be reached now only costs HEADs."""

    def __init__(self, s: config.Settings) -> None:
        self.s = s
        self.catalog: Any = None
        self.tried = False

    def __call__(self, uris: list[str]) -> dict[str, sync.Known]:
        if not uris:
            return {}
        if not self.tried:
            self.tried = True
            if "://" in self.s.catalog or Path(self.s.catalog).expanduser().exists():
                from deon.catalog.db import open_catalog as _open
                from deon.errors import CatalogError

                try:
                    self.catalog = _open(self.s.catalog, create=False)
                except CatalogError:  # unreachable now: HEADs decide instead
                    self.catalog = None
        if self.catalog is None:
            return {}
        rows = self.catalog.known(uris)
        return {uri: sync.Known(size, etag, sha) for uri, (size, etag, sha) in rows.items()}

    def close(self) -> None:
        if self.catalog is not None:
            self.catalog.close()


def export(
    out: str | Path,
    where: str | None = None,
    *,
    fmt: str = "parquet",
    sql: str | None = None,
    settings: config.Settings | None = None,
    **options: Any,
) -> int:
    """Write selected catalog rows to a Parquet, CSV or JSON-lines file, typed by what
    each column holds (see deon.catalog.export). Returns the number of rows."""
    from deon.catalog.access import open_reader
    from deon.catalog.export import export as _export
    from deon.catalog.query import one_of

    one_of(where, sql)
    s = _settings(settings, **options)
    with open_reader(s.catalog) as reader:
        return _export(reader, str(out), fmt, where=where, sql=sql)


def verify(
    target: str,
    *,
    on_finding: Any = None,
    settings: config.Settings | None = None,
    **options: Any,
) -> Any:
    """Re-hash local files against the sha256 the catalog holds (see deon.tools.verify).

    Args:
        target: an `s3://BUCKET/PREFIX` address, or a folder or file inside DATA_DIR.
        on_finding: called with each deon.tools.verify.Finding as it is made.

    Returns:
        A deon.tools.verify.VerifyResult; `.ok` is False when files are missing, changed or
        corrupt.
    """
    from deon.catalog.db import open_catalog as _open
    from deon.tools.verify import Row, scope
    from deon.tools.verify import verify as _verify

    s = _settings(settings, **options)
    address, local = scope(target, s.data_dir)
    with _open(s.catalog, create=False) as catalog:
        # An object (or file) by its key when the catalog has that key, else a folder.
        key = address.key
        _, rows = catalog.rows_under(address.bucket, key)
        found = [Row(f"s3://{address.bucket}/{r[0]}", r[0], r[3], r[1], r[4]) for r in rows]
        if key and not key.endswith("/"):
            exact = [r for r in found if r.key == key]
            found = exact or [r for r in found if r.key.startswith(key + "/")]
    state = _state(s)
    try:
        return _verify(found, address, s.data_dir, local, state, jobs=s.jobs, on_finding=on_finding)
    finally:
        state.close()


@dataclass(frozen=True)
class PolicyPlan:
    """What `policy` would put on a bucket: the merged document and its diff."""

    bucket: str
    before: dict[str, Any] | None
    after: dict[str, Any]
    diff: str


def policy(
    bucket: str,
    *,
    org: str | None = None,
    accounts: list[str] | tuple[str, ...] = (),
    read_only: bool = False,
    existing: bool = True,
    settings: config.Settings | None = None,
    **options: Any,
) -> PolicyPlan:
    """The bucket policy sharing `bucket` with an organization and/or accounts.

    With `existing`, deon's statements are merged into the bucket's current policy
    (other statements kept) and the plan carries the diff; apply it with
    `apply_policy`. Without, the plan is deon's statements alone.
    """
    from deon.tools import policy as pol
    from deon.uri import parse_address

    name = parse_address(bucket).bucket
    ours = pol.statements(name, org=org, accounts=accounts, read_only=read_only)
    before = (
        make_storage(_settings(settings, **options)).get_bucket_policy(name) if existing else None
    )
    after = pol.merge(before, ours)
    return PolicyPlan(name, before, after, pol.diff(before, after, name))


def apply_policy(
    plan: PolicyPlan, *, settings: config.Settings | None = None, **options: Any
) -> None:
    """Put a planned policy on its bucket."""
    make_storage(_settings(settings, **options)).put_bucket_policy(plan.bucket, plan.after)


def metadata_readers(settings: config.Settings | None = None) -> list[Reader]:
    """The metadata readers `up` and `show` try, in order (see deon.metadata.readers):
    `metadata_readers` from the settings, else the built-ins and installed entry points.

    Raises:
        ConfigError: a reader name that is not built in, installed or importable.
    """
    from deon.metadata.readers import resolve

    s = settings if settings is not None else config.load_settings()
    return resolve(s.metadata_readers)


def show(path: str | Path, *, settings: config.Settings | None = None) -> Description:
    """The structure of an HDF5 file: groups, datasets (shape, dtype), attributes, and
    its metadata with the name of the reader that found it (`.metadata.reader`)."""
    return describe(Path(path).expanduser(), metadata_readers(settings))


def _default_dir(s: config.Settings, address: S3Address) -> Path:
    """DATA_DIR/BUCKET/PREFIX: where `down` puts, and `up` takes, an address's files."""
    return s.data_dir.joinpath(address.bucket, *[p for p in address.key.split("/") if p])


@dataclass
class Selection:
    """Rows selected from the catalog, streamed: read `rows` once, or close it."""

    columns: list[str]
    rows: Iterator[tuple[Any, ...]]
    #: the catalog's kind of each column (boolean, integer, json, ...), when asked for
    kinds: dict[str, str] | None = None


def select(
    where: str | None = None,
    *,
    sql: str | None = None,
    limit: int | None = None,
    only: str | None = None,
    kinds: bool = False,
    settings: config.Settings | None = None,
    **options: Any,
) -> Selection:
    """Select catalog rows, read-only, as `deon query` prints them.

    Args:
        where: an SQL condition on the `objects` columns.
        sql: a whole SELECT instead of a condition.
        limit: at most this many rows.
        only: select just this one column (`uri`, `key`): narrow rows for long outputs.
        kinds: also return the kind of each catalog column (not for `sql`, whose result
            may reuse a column's name for other values: `size AS ok`).

    Raises:
        QueryError: both `where` and `sql`, unknown column or bad SQL (exit 2).
    """
    from deon.catalog.access import open_reader
    from deon.catalog.query import one_of, run

    one_of(where, sql)
    s = _settings(settings, **options)
    reader = open_reader(s.catalog)
    try:
        column_kinds = reader.column_kinds() if kinds and sql is None else None
    except BaseException:
        reader.close()
        raise
    columns, rows = run(reader, where=where, sql=sql, limit=limit, columns=only or "*", close=True)
    return Selection(columns, rows, column_kinds)


def count(
    where: str | None = None,
    *,
    sql: str | None = None,
    limit: int | None = None,
    settings: config.Settings | None = None,
    **options: Any,
) -> int:
    """How many rows `select` with the same arguments gives (at most `limit`)."""
    from deon.catalog.access import open_reader
    from deon.catalog.query import count as count_rows
    from deon.catalog.query import one_of

    one_of(where, sql)
    s = _settings(settings, **options)
    with open_reader(s.catalog) as reader:
        return count_rows(reader, where, sql, limit)


def columns(*, settings: config.Settings | None = None, **options: Any) -> list[Any]:
    """Every column of the catalog with its kind, metadata key, how many rows have a
    value and its most common values (deon.catalog.query.ColumnInfo)."""
    from deon.catalog.access import open_reader
    from deon.catalog.query import describe_columns

    s = _settings(settings, **options)
    with open_reader(s.catalog) as reader:
        return describe_columns(reader)


def session(
    address: str | None = None, *, settings: config.Settings | None = None, **options: Any
) -> tuple[dict[str, Any], str]:
    """The namespace of `deon metadata load` (`df`, `pull`, `catalog`, `deon`, `pd`) and
    its banner, for the catalog's rows under `address` (all rows with None)."""
    from deon.tools.session import make_namespace

    return make_namespace(_settings(settings, **options), address, pull)


def browse(
    port: int = 8001,
    *,
    on_ready: Any = None,
    settings: config.Settings | None = None,
    **options: Any,
) -> None:
    """Serve the catalog with datasette on 127.0.0.1 until interrupted.

    Args:
        port: the port (0: any free one).
        on_ready: called with the page's URL once the server answers.

    Raises:
        UsageError: not a SQLite catalog, no catalog yet, or datasette missing.
        DeonError: datasette did not start.
    """
    from deon.tools.browse import serve

    serve(_settings(settings, **options).catalog, port, on_ready=on_ready)


def contact_sheet(path: str | Path, png: str | Path, *, frames: int = 8) -> int:
    """Write a PNG contact sheet of the image frames in an HDF5 file: up to `frames`
    frames of each camera stream, one row per stream. Returns the number of rows."""
    from deon.metadata.hdf5 import contact_sheet as _sheet

    return _sheet(Path(path), Path(png), frames=frames)
