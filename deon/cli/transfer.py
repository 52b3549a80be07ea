"""Commands that move bytes: buckets, up, down, pull."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from deon.cli import _env, _watch
from deon.cli._env import Env, pass_env
from deon.cli._errors import DeonClickError
from deon.cli._options import folder
from deon.cli._progress import Bar
from deon.cli._render import summarize
from deon.errors import ExitStatus


def transfer(env: Env, verb: str, call: Any, *args: Any, **kwargs: Any) -> None:
    """Run one api transfer (`up`, `down`, `pull`) with a progress bar, print what is now
    in place on stdout (URIs for uploads, local paths for downloads) and one summary."""
    record = (lambda o: o.uri) if verb == "uploaded" else (lambda o: str(o.local))
    progress = Bar(env.quiet, record)
    result = call(*args, progress=progress, settings=env.settings(), **kwargs)
    summarize(env.log, result, verb)


@click.command()
@pass_env
def buckets(env: Env) -> None:
    """List the buckets your credentials can see, one name per line.

    \b
    Example:
        deon buckets
        deon --profile lab buckets
    """
    from deon import api

    for name in api.buckets(settings=env.settings()):
        click.echo(name)


@click.command()
@folder
@click.option("--overwrite", is_flag=True, help="Replace different objects someone else uploaded.")
@click.option("-n", "--dry-run", is_flag=True, help="Show what would be uploaded; send nothing.")
@_watch.watch_options
@_watch.every_options
@click.option(
    "--sse",
    type=click.Choice(["AES256", "aws:kms"]),
    help="Server-side encryption of the objects written (as aws-cli's --sse).",
)
@click.option("--sse-kms-key-id", metavar="KEY_ID", help="The KMS key for --sse aws:kms.")
@pass_env
def up(
    env: Env,
    address: str,
    local_dir: Path | None,
    overwrite: bool,
    dry_run: bool,
    watch: bool,
    every: str | None,
    interval: float | None,
    settle: float | None,
    poll: float | None,
    exclude: tuple[str, ...],
    grace: float | None,
    verbose: bool,
    sse: str | None,
    sse_kms_key_id: str | None,
) -> None:
    """Upload new and changed files under LOCAL_DIR to ADDRESS.

    Relative paths are kept. Each HDF5 file's attrs['metadata'] JSON goes into the
    object's metadata headers with the file's sha256. Unchanged files are not sent.
    A different object already at a key is refused unless you uploaded it yourself
    or pass --overwrite. LOCAL_DIR defaults to DATA_DIR/BUCKET/PREFIX. Prints the URI
    of every file that is now in the bucket.

    With --watch, keeps running and uploads each new or changed file once it is
    complete: unchanged for --settle seconds, not open for writing, and (HDF5) readable.
    SIGTERM or Ctrl-C stops it (exit 0). --every repeats the upload on a schedule.

    \b
    Example:
        deon up s3://lab-data/alice ./trajectories
        deon up --dry-run s3://lab-data/alice
        deon up --watch s3://lab-data/alice ./trajectories
        deon up --every 10m s3://lab-data/alice
    """
    from deon import api

    env.command_overrides.update(sse=sse, sse_kms_key_id=sse_kms_key_id)
    period = _watch.every_seconds(every, interval)
    tuning: dict[str, Any] = {"settle": settle, "poll": poll, "exclude": exclude, "grace": grace}
    _watch.check_watch_usage(watch, period, dry_run, **tuning, verbose=verbose)
    if watch:
        _watch.run_watch(env, address, local_dir, overwrite=overwrite, verbose=verbose, **tuning)
        return

    def body() -> None:
        transfer(env, "uploaded", api.up, address, local_dir, overwrite=overwrite, dry_run=dry_run)

    _watch.repeat(env, period, body)


@click.command()
@folder
@click.option("--force", is_flag=True, help="Download even files that are up to date.")
@click.option("-n", "--dry-run", is_flag=True, help="Show what would be downloaded.")
@_watch.every_options
@pass_env
def down(
    env: Env,
    address: str,
    local_dir: Path | None,
    force: bool,
    dry_run: bool,
    every: str | None,
    interval: float | None,
) -> None:
    """Make LOCAL_DIR hold every object under ADDRESS.

    Files already up to date are skipped; the rest are downloaded concurrently,
    verified (size and sha256) and renamed into place. LOCAL_DIR defaults to
    DATA_DIR/BUCKET/PREFIX. Prints the local path of every file now in place.

    \b
    Example:
        deon down s3://lab-data/alice
        deon down s3://lab-data/bob/2026-11 ./bob
        deon down --every 1h s3://lab-data/bob
    """
    from deon import api

    def body() -> None:
        transfer(env, "downloaded", api.down, address, local_dir, force=force, dry_run=dry_run)

    _watch.repeat(env, _watch.every_seconds(every, interval), body)


def read_uris(lines: Any) -> list[str]:
    """URIs from a stream: one per line, trimmed; blank lines and # comments skipped."""
    out = []
    for line in lines:
        text = line.strip()
        if text and not text.startswith("#"):
            out.append(text)
    return out


@click.command()
@click.argument("uris", nargs=-1)
@click.option("--force", is_flag=True, help="Download even files that are up to date.")
@click.option("-n", "--dry-run", is_flag=True, help="Show what would be downloaded.")
@click.option(
    "--manifest",
    metavar="FILE|S3_URI",
    help="Exactly the bytes a manifest (deon freeze) names, by VersionId where kept "
    "(- reads it from standard input).",
)
@pass_env
def pull(env: Env, uris: tuple[str, ...], force: bool, dry_run: bool, manifest: str | None) -> None:
    """Download the given objects to DATA_DIR/BUCKET/KEY.

    With no URI, or with -, URIs are read from standard input, one per line (blank
    lines and lines starting with # are skipped). Prints the local path of every file
    now in place. With --manifest, exactly the manifest's bytes: an object replaced
    since is fetched by its VersionId, or refused and named; no catalog is needed.

    \b
    Example:
        deon pull s3://lab-data/alice/traj_0001.h5
        deon query "robot = 'sawyer'" | deon pull
        deon pull --manifest sawyer-2027-03.manifest.jsonl
    """
    from deon import api
    from deon.errors import AddressError
    from deon.uri import parse_object_uri

    if manifest is not None:
        if uris:
            raise click.UsageError("give URIs or --manifest, not both")
        given = sys.stdin.buffer.read() if manifest == "-" else manifest  # freeze -o - | pull
        transfer(env, "downloaded", api.pull, manifest=given, force=force, dry_run=dry_run)
        return
    if not uris or uris == ("-",):
        if _env.stdin_is_tty():
            raise click.UsageError(
                "no URIs given: pass s3://BUCKET/KEY arguments or pipe them in "
                "(deon query ... | deon pull)"
            )
        uris = tuple(read_uris(sys.stdin))
    elif "-" in uris:
        raise click.UsageError("use - alone to read URIs from standard input")
    addresses = []
    for n, uri in enumerate(uris, 1):
        try:
            addresses.append(parse_object_uri(uri))
        except AddressError as e:
            raise DeonClickError(f"URI {n}: {e}", ExitStatus.USAGE) from e
    transfer(env, "downloaded", api.pull, addresses, force=force, dry_run=dry_run)
