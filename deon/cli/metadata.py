"""`deon metadata`: mirror object metadata into the catalog, publish, forget, load."""

from __future__ import annotations

import sys
from typing import Any

import click

import deon
from deon.cli import _env, _watch
from deon.cli._env import Env, pass_env
from deon.cli._progress import Bar
from deon.cli._render import human
from deon.errors import ExitStatus, UsageError
from deon.output import printable


@click.group()
def metadata() -> None:
    """Mirror object metadata into the catalog, and explore it.

    \b
    Example:
        deon metadata down s3://lab-data
        deon metadata load
    """


@metadata.command("down")
@click.argument("addresses", nargs=-1)
@click.option(
    "--no-snapshot",
    is_flag=True,
    help="HEAD every new or changed object; ignore "
    "snapshots published with `deon metadata publish`.",
)
@_watch.every_options
@pass_env
def metadata_down(
    env: Env,
    addresses: tuple[str, ...],
    no_snapshot: bool,
    every: str | None = None,
    interval: float | None = None,
) -> None:
    """Mirror the metadata of every object under each ADDRESS into the catalog.

    Incremental: objects whose ETag and LastModified are unchanged since the last run
    cost no request beyond the listing; new and changed objects are HEADed
    concurrently; rows of deleted objects are removed. With no ADDRESS, every source
    already in the catalog is refreshed. An interrupted run leaves a consistent catalog;
    run it again to finish. Objects that a snapshot published with `deon metadata
    publish` describes exactly are taken from it instead of HEADed.

    \b
    Example:
        deon metadata down s3://lab-data/alice s3://lab-data/bob
        deon metadata down
        deon metadata down --every 5m
    """
    from deon import api

    def body() -> None:
        s = env.settings()
        progress = Bar(env.quiet, unit="obj")
        result = api.mirror(addresses, snapshots=not no_snapshot, progress=progress, settings=s)
        errors = result.source_errors
        if len(addresses) == 1 and len(errors) == 1 and isinstance(errors[0], UsageError):
            raise errors[0]  # the one address is bad input (no such bucket): exit 2
        # Several addresses are items: each failure is named, and the exit status is 1.
        for uri, message in result.failed:
            click.echo(printable(f"error: {uri}: {message}"), err=True)
        env.log(
            f"metadata down {' '.join(result.sources)}: {result.new} new"
            + (f" ({result.from_snapshot} from a snapshot)" if result.from_snapshot else "")
            + f", {result.changed} "
            f"changed, {result.deleted} deleted, {result.unchanged} unchanged"
            + (f", {len(result.failed)} failed" if result.failed else "")
            + f" in {result.seconds:.1f} s"
        )
        if result.failed:
            raise click.exceptions.Exit(ExitStatus.ERROR)

    _watch.repeat(env, _watch.every_seconds(every, interval), body)


@metadata.command("publish")
@click.argument("address")
@pass_env
def metadata_publish(env: Env, address: str) -> None:
    """Publish a snapshot of ADDRESS's metadata into the bucket, for faster first mirrors.

    Refreshes the catalog for ADDRESS, then writes PREFIX/.deon/snapshot.jsonl.gz: every
    object's key, ETag, LastModified, size, sha256 and metadata. Anyone's `deon metadata
    down` then takes the objects it describes exactly from it instead of sending one
    HEAD each. Prints the snapshot's URI.

    \b
    Example:
        deon metadata publish s3://lab-data/alice
    """
    from deon import api

    published = api.publish(address, progress=Bar(env.quiet, unit="obj"), settings=env.settings())
    click.echo(published.uri)
    env.log(f"metadata publish: {published.objects} objects in {human(published.nbytes)}")


@metadata.command("forget")
@click.argument("addresses", nargs=-1, required=True)
@pass_env
def metadata_forget(env: Env, addresses: tuple[str, ...]) -> None:
    """Stop mirroring each ADDRESS: remove the source and its rows from the catalog.

    Rows that another source also covers stay. The bucket is not touched.

    \b
    Example:
        deon metadata forget s3://lab-data/alcie
    """
    from deon import api

    s = env.settings()
    for address in addresses:
        removed = api.forget(address, settings=s)
        env.log(f"metadata forget {address}: {removed} rows removed")


def _run_script(script: str, ns: dict[str, Any]) -> None:
    """Run piped commands as `python -` runs a script: an error in them stops it with
    Python's own traceback of their code on stderr (not a deon error) and exit status 1;
    `sys.exit(n)` exits with n."""
    import linecache
    import traceback

    linecache.cache["<stdin>"] = (len(script), None, script.splitlines(True), "<stdin>")
    try:
        code = compile(script, "<stdin>", "exec")
    except (SyntaxError, ValueError) as e:  # ValueError: a NUL byte in the script
        sys.stderr.write("".join(traceback.format_exception_only(e)))
        raise click.exceptions.Exit(ExitStatus.ERROR) from None
    try:
        exec(code, ns)  # noqa: S102 - the user's own code
    except (BrokenPipeError, KeyboardInterrupt):
        raise  # `| head` and Ctrl-C end deon as they end any command
    except Exception as e:
        sys.stdout.flush()
        # The traceback starts in the user's code, as Python's would: this frame is left out.
        tb = e.__traceback__.tb_next if e.__traceback__ is not None else None
        sys.stderr.write("".join(traceback.format_exception(type(e), e, tb)))
        raise click.exceptions.Exit(ExitStatus.ERROR) from None


@metadata.command("load")
@click.argument("address", required=False)
@pass_env
def metadata_load(env: Env, address: str | None) -> None:
    """Open an interactive Python session with the catalog as a DataFrame.

    `df` holds the catalog rows (under ADDRESS, if given), indexed by URI, one column
    per metadata key; `pull(selection)` downloads the rows of a DataFrame (or a list of
    URIs) and returns their local paths. Uses IPython when it is installed. With
    commands on standard input, runs them instead and exits.

    \b
    Example:
        deon metadata load s3://lab-data/alice
        echo "print(df.robot.value_counts())" | deon metadata load
    """
    from deon import api

    ns, banner = api.session(address, settings=env.settings())
    ns["deon"] = deon
    if not _env.stdin_is_tty():
        # Commands from a pipe: run them as a script; stdout carries only their output.
        _run_script(sys.stdin.read(), ns)
        return
    from deon.cli._signals import interactive

    try:
        from IPython import start_ipython
    except ImportError:
        import code as console

        with interactive():
            console.interact(banner=banner, local=ns, exitmsg="")
        return
    click.echo(banner, err=True)
    with interactive():
        start_ipython(argv=["--no-banner"], user_ns=ns)
