"""Commands on manifests: freeze, diff (`pull --manifest` is in transfer.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from deon.cli._env import Env, pass_env
from deon.cli._errors import usage_error
from deon.cli._options import selection
from deon.errors import ExitStatus

_OUTPUT = "Write the manifest to FILE (NAME.manifest.jsonl), or - for standard output."
_PUBLISH = "Also write it to s3://BUCKET/KEY, only if nothing is there yet."


@click.command()
@selection
@click.option("-o", "--output", "out", metavar="FILE", help=_OUTPUT)
@click.option("--publish", metavar="S3_URI", help=_PUBLISH)
@pass_env
def freeze(env: Env, where: str | None, sql: str | None, out: str | None, publish: str | None):
    """Freeze the selected objects into a manifest of their exact bytes.

    WHERE selects catalog rows as for `deon query` (no WHERE: every row; --sql: the
    objects a SELECT names by a uri column, or bucket and key columns). The manifest
    records each object's bucket, key, size, ETag, sha256, LastModified and VersionId
    (where the bucket keeps versions), sorted, under a header with the query, the
    catalog's sources and a digest of the entries. The same selection gives the same
    bytes. `deon pull --manifest FILE` brings back exactly those bytes; `deon diff`
    shows what changed since. --publish never replaces another manifest.

    \b
    Example:
        deon freeze "robot = 'sawyer' AND traj_ok" -o sawyer-2027-03.manifest.jsonl
        deon freeze "traj_ok" -o - --publish s3://lab-data/.deon/manifests/sawyer-2027-03
    """
    from deon import api

    if out is None and publish is None:
        raise usage_error("say where the manifest goes: -o FILE, -o -, or --publish S3_URI")
    settings = env.settings()
    frozen = api.freeze(
        where, sql=sql, out=None if out in (None, "-") else Path(out), publish=publish,
        settings=settings,
    )  # fmt: skip
    m = frozen.manifest
    if out == "-":
        sys.stdout.buffer.write(m.to_bytes())
        sys.stdout.flush()
    elif frozen.path is not None:
        click.echo(str(frozen.path))
    if frozen.uri is not None:
        click.echo(frozen.uri, err=out == "-")
        if not frozen.published:
            env.log(f"freeze: {frozen.uri} already holds this very manifest")
    env.log(
        f"freeze: {len(m.entries)} objects, {m.nbytes} bytes, "
        f"{sum(1 for e in m.entries if e.version_id)} with a VersionId; {m.digest[:19]}…"
    )
    if not m.entries:
        click.echo("warning: the selection is empty: the manifest holds no object", err=True)


@click.command()
@click.argument("a")
@click.argument("b", required=False)
@pass_env
def diff(env: Env, a: str, b: str | None) -> None:
    """Show what changed between manifests A and B, or from A to the catalog now.

    Compares by bucket and key: `+ URI` an object only in B (added), `- URI` only in A
    (removed), `* URI` in both with other bytes (changed: another size or sha256, or
    ETag when there is no sha256), one per line in URI order on standard output, and
    the counts on standard error. With no B, A's own query is frozen again against the
    catalog. A or B may be the s3:// URI of a published manifest. Exit status 1 when
    they differ, 0 when not, as diff(1).

    \b
    Example:
        deon diff sawyer-2027-03.manifest.jsonl sawyer-2027-06.manifest.jsonl
        deon metadata down && deon diff sawyer-2027-03.manifest.jsonl
    """
    from deon import api

    d = api.diff(a, b, settings=env.settings())
    for mark, uri in d.lines():
        click.echo(f"{mark} {uri}")
    env.log(
        f"diff: {len(d.added)} added, {len(d.removed)} removed, {len(d.changed)} changed, "
        f"{d.unchanged} unchanged"
    )
    if d.differs:
        raise click.exceptions.Exit(ExitStatus.ERROR)
