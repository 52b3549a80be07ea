"""Tools around the catalog and the bucket: browse, policy, verify, show, demo."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from deon.cli import _env
from deon.cli._env import Env, pass_env
from deon.cli._errors import DeonClickError
from deon.cli._render import show_description
from deon.errors import ExitStatus
from deon.output import printable


@click.command()
@click.option(
    "--port",
    default=8001,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port on 127.0.0.1 (0: any free port).",
)
@click.option("--open", "open_browser", is_flag=True, help="Open the page in a web browser.")
@pass_env
def browse(env: Env, port: int, open_browser: bool) -> None:
    """Browse and filter the catalog in a web page, served on 127.0.0.1.

    Serves the `objects` table with datasette (pip install 'deon[browse]'): facets on
    the metadata a lab filters on (robot, camera_configuration, ...), filters on any
    column, each row's s3:// URI, and SQL. Read-only. Ctrl-C stops it.

    \b
    Example:
        deon browse
        deon browse --port 8080 --open
    """
    from deon import api

    def ready(url: str) -> None:
        click.echo(url)
        env.log(f"serving the catalog at {url} (Ctrl-C stops)")
        if open_browser:
            import webbrowser

            webbrowser.open(url)

    api.browse(port, on_ready=ready, settings=env.settings())


@click.command()
@click.argument("bucket")
@click.option(
    "--org", metavar="o-XXXXXXXXXX", help="Share with every account of this AWS organization."
)
@click.option(
    "--account",
    "accounts",
    multiple=True,
    metavar="ID",
    help="Share with this AWS account (12 digits); repeatable.",
)
@click.option("--read-only", is_flag=True, help="List and read, but not write.")
@click.option(
    "--apply",
    "do_apply",
    is_flag=True,
    help="Put the policy on the bucket, merged with its current statements.",
)
@click.option("--yes", is_flag=True, help="With --apply: do not ask for confirmation.")
@pass_env
def policy(
    env: Env,
    bucket: str,
    org: str | None,
    accounts: tuple[str, ...],
    read_only: bool,
    do_apply: bool,
    yes: bool,
) -> None:
    """Print (or apply) the bucket policy that shares BUCKET with your organization.

    Allows ListBucket and GetObject — and, unless --read-only, PutObject — to every
    principal of the AWS organization given by --org (aws:PrincipalOrgID), and/or to
    the accounts given by --account. Prints the policy JSON. With --apply, merges
    deon's statements into the bucket's current policy (its other statements are
    kept), shows the difference on stderr and asks before putting it.

    \b
    Example:
        deon policy lab-data --org o-a1b2c3d4e5
        deon policy lab-data --org o-a1b2c3d4e5 --read-only --apply
        deon policy lab-data --account 123456789012 --apply --yes
    """
    import json

    from deon import api

    plan = api.policy(
        bucket,
        org=org,
        accounts=accounts,
        read_only=read_only,
        existing=do_apply,
        settings=env.settings(),
    )
    if do_apply:
        if plan.before == plan.after:
            env.log(f"policy of s3://{plan.bucket} already holds these statements")
            click.echo(json.dumps(plan.after, indent=2))
            return
        click.echo(plan.diff, err=True, nl=False)
        if not yes:
            if not _env.stdin_is_tty():
                raise DeonClickError(
                    "not changing the bucket policy without confirmation: pass --yes",
                    ExitStatus.USAGE,
                )
            if not click.confirm(f"Put this policy on s3://{plan.bucket}?", err=True):
                raise DeonClickError("policy not changed", ExitStatus.ERROR)
        api.apply_policy(plan, settings=env.settings())
        env.log(f"policy of s3://{plan.bucket} updated")
    click.echo(json.dumps(plan.after, indent=2))


@click.command()
@click.argument("target")
@click.option("--all", "show_all", is_flag=True, help="Also list the files that are fine.")
@pass_env
def verify(env: Env, target: str, show_all: bool) -> None:
    """Re-hash local files against the sha256 the catalog holds.

    TARGET is an s3:// address (its objects are looked for at DATA_DIR/BUCKET/KEY) or a
    folder or file inside DATA_DIR. Prints one line per finding, tab-separated: status,
    URI, local path. Statuses: missing (no local file), changed (the file was modified
    or replaced), corrupt (the file deon verified has different bytes now), unknown (a
    local file the catalog does not have), unverifiable (no sha256 to check against).
    Exits 1 when any file is missing, changed or corrupt. Run `deon metadata down`
    first so that the catalog is current.

    \b
    Example:
        deon verify s3://lab-data/alice
        deon verify ~/deon-data/lab-data/alice --all
        deon verify s3://lab-data/alice | cut -f2 | deon pull --force
    """
    from deon import api
    from deon.results import OK, PROBLEMS

    def report(finding: Any) -> None:
        if finding.status != OK or show_all:
            sys.stdout.write(f"{finding.status}\t{finding.uri}\t{finding.path or ''}\n")

    result = api.verify(target, on_finding=report, settings=env.settings())
    counts = ", ".join(
        f"{result.count(s)} {s}"
        for s in ("ok", "missing", "changed", "corrupt", "unknown", "unverifiable")
        if result.count(s) or s in ("ok", *PROBLEMS)
    )
    env.log(f"verify: {counts}")
    if not result.ok:
        raise click.exceptions.Exit(ExitStatus.ERROR)


@click.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--png",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write a contact sheet of the image frames to this PNG file.",
)
@click.option(
    "--frames",
    default=8,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Frames per camera in the contact sheet.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the structure as JSON.")
def show(file: Path, png: Path | None, frames: int, as_json: bool) -> None:
    """Show the structure of an HDF5 file and its metadata.

    Groups and datasets (shape, dtype), their attributes, and the metadata JSON,
    pretty-printed, and which metadata reader found it. With --png, a contact sheet
    of the image frames found in the file: uint8 arrays shaped (T, H, W, 3) or
    (T, ncam, H, W, 3), mp4 video and JPEG frames (as RoboNet stores cameras).

    \b
    Example:
        deon show ~/deon-data/lab-data/alice/traj_0001.h5
        deon show traj_0001.h5 --png frames.png
    """
    from deon import api

    show_description(api.show(file), as_json)
    if png is not None:
        rows = api.contact_sheet(file, png, frames=frames)
        click.echo(
            printable(f"wrote {png} ({rows} camera stream(s) x up to {frames} frames)"), err=True
        )


@click.command()
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Scratch folder, new or empty (default: a new temporary folder).",
)
@click.option("--keep", is_flag=True, help="Keep the scratch folder afterwards.")
@click.option(
    "--per-member",
    default=6,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="Trajectories to generate for each of the two lab members.",
)
def demo(workdir: Path | None, keep: bool, per_member: int) -> None:
    """Run the whole job on a local S3 server: no AWS account, no network.

    Starts an S3 server on 127.0.0.1, makes RoboNet-like trajectories for two lab
    members and runs the real deon commands against it, printing each command and
    what came out. Nothing is left running afterwards. Needs the demo extra
    (pip install 'deon[demo]').

    \b
    Example:
        deon demo
        deon demo --keep --workdir /tmp/deon-demo
    """
    from deon.tools.demo import run_demo

    status = run_demo(workdir, keep=keep, per_member=per_member, echo=click.echo)
    if status:
        raise click.exceptions.Exit(status)
