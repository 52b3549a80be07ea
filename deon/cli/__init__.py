"""The `deon` command: parses arguments, calls the library, prints, sets the exit status.

Data (URIs, paths, rows) go to stdout, one record per line; progress bars, warnings and
summaries go to stderr. Exit status: 0 all done, 1 some items failed (each named on
stderr), 2 bad usage or input, 130 interrupted. Heavy modules are imported inside the
commands so that `deon --help` starts quickly.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from deon import __version__, config
from deon.errors import DeonError, ExitStatus, UsageError
from deon.output import printable

# -- error handling -------------------------------------------------------------------------


class DeonClickError(click.ClickException):
    """A library error shown as one line, with the library's exit status."""

    def __init__(self, message: str, exit_code: int) -> None:
        # One line (drivers' messages span lines: SQLAlchemy appends the SQL, psycopg a
        # hint), with the control characters of keys and file names escaped.
        # (split at newlines only: splitlines() would also split at \x1c, \x85 or \u2028,
        # which printable() must show escaped)
        one = " ".join(line.strip() for line in message.strip().split("\n"))
        super().__init__(printable(one))
        self.exit_code = exit_code  # type: ignore[misc]


def _one_line(e: click.UsageError) -> DeonClickError:
    """Click's usage error (usage, a hint and the error on three lines) as one line."""
    where = e.ctx.command_path if e.ctx is not None else "deon"
    return DeonClickError(f"{e.format_message()} (see '{where} --help')", ExitStatus.USAGE)


def _debug() -> bool:
    return os.environ.get(config.ENV_DEBUG, "") not in ("", "0")


def _quiet_stdout() -> None:
    """After EPIPE (`deon query | head`), send further output nowhere (dvc/cli/__init__.py)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _option_check(param: click.Option) -> Any:
    """A config.Check accepting the TOML values click takes for this option."""
    kind = param.type
    bounded = isinstance(kind, (click.IntRange, click.FloatRange, click.Choice))
    if param.is_bool_flag or isinstance(kind, click.types.BoolParamType):
        types: tuple[type, ...] = (bool,)
        expected = "true or false"
    elif isinstance(kind, click.types.IntParamType):
        types, expected = (int,), "a whole number"
    elif isinstance(kind, click.types.FloatParamType):
        types, expected = (int, float), "a number"
    elif isinstance(kind, click.Choice):
        types = (str,)
        expected = "one of " + ", ".join(f'"{c}"' for c in kind.choices)
    else:
        types, expected = (str,), "a string"
    if isinstance(kind, (click.IntRange, click.FloatRange)):
        if kind.max is None:
            expected += f" of at least {kind.min}"
        elif kind.min is None:
            expected += f" of at most {kind.max}"
        else:
            expected += f" from {kind.min} to {kind.max}"

    def one(value: Any) -> bool:
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            return False
        if bounded:
            try:
                kind.convert(value, param, None)
            except click.BadParameter:
                return False
        return True

    def check(value: Any) -> str | None:
        if param.multiple:
            ok = isinstance(value, list) and all(one(v) for v in value)
            return None if ok else f"a list, each item {expected}"
        return None if one(value) else expected

    return check


def _config_names(param: click.Option) -> list[str]:
    """The keys that set an option in the config file: its name in click's default_map
    (`fmt`), then its long option spelled with `_` (`format` for --format)."""
    assert param.name is not None
    long = [o[2:].replace("-", "_") for o in param.opts if o.startswith("--")]
    return [param.name, *(n for n in long if n != param.name)]


def _config_options(command: click.Command) -> list[click.Option]:
    return [p for p in command.params if isinstance(p, click.Option) and p.expose_value]


def _config_schema(command: click.Command) -> dict[str, Any]:
    """What the config file may hold for a command: its options, a table per subcommand."""
    schema: dict[str, Any] = {}
    for param in _config_options(command):
        check = _option_check(param)
        schema.update(dict.fromkeys(_config_names(param), check))
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            schema[name] = _config_schema(sub)
    return schema


def _default_map(command: click.Command, values: dict[str, Any]) -> dict[str, Any]:
    """Checked config values keyed as click's default_map wants them (`format` → `fmt`)."""
    out = dict(values)
    for param in _config_options(command):
        name, *aliases = _config_names(param)
        for alias in aliases:
            if alias in out:
                value = out.pop(alias)
                out.setdefault(name, value)
    if isinstance(command, click.Group):
        for sub_name, sub in command.commands.items():
            if isinstance(out.get(sub_name), dict):
                out[sub_name] = _default_map(sub, out[sub_name])
    return out


class DeonGroup(click.Group):
    """Loads the config file into click's default_map and maps every error to one line."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any
    ) -> Any:
        if parent is None and "default_map" not in extra:
            try:
                loaded = config.read_config_file(schema=_config_schema(self))
            except DeonError as e:
                raise DeonClickError(str(e), e.exit_status) from e
            if not extra.get("resilient_parsing"):  # not while completing the shell's line
                for warning in loaded.warnings:
                    click.echo(f"warning: {printable(warning)}", err=True)
            extra["default_map"] = _default_map(self, loaded.values)
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as e:
            raise _one_line(e) from e

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as e:
            raise _one_line(e) from e
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except DeonError as e:
            if _debug():
                raise
            raise DeonClickError(str(e), e.exit_status) from e
        except KeyboardInterrupt:
            click.echo("\nInterrupted.", err=True)
            raise click.exceptions.Exit(ExitStatus.INTERRUPTED) from None
        except BrokenPipeError:
            _quiet_stdout()
            raise click.exceptions.Exit(141) from None
        except Exception as e:
            if _debug():
                raise
            raise DeonClickError(
                f"unexpected {type(e).__name__}: {e} (set {config.ENV_DEBUG}=1 for the traceback)",
                ExitStatus.ERROR,
            ) from e


# -- shared state and output -----------------------------------------------------------------


@dataclass
class Env:
    """What the global options set, handed to every command."""

    overrides: dict[str, Any] = field(default_factory=dict)
    quiet: bool = False

    def settings(self) -> Any:
        return config.load_settings(**self.overrides)

    def log(self, message: str) -> None:
        """One line of chatter on stderr (none with -q)."""
        if not self.quiet:
            click.echo(printable(message), err=True)


pass_env = click.make_pass_decorator(Env)


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def _make_progress(env: Env, record: Any) -> Any:
    """A deon.Progress drawing a tqdm bar on stderr (only on a terminal, never with -q).

    `record(outcome)` returns the stdout line for a successful item, or None.
    """
    from deon.results import Progress, Status

    class Bar(Progress):
        def __init__(self) -> None:
            self.lock = threading.Lock()
            self.bar: Any = None
            self.items = 0
            self.done = 0

        def begin(self, label: str, items: int, total_bytes: int) -> None:
            from tqdm import tqdm

            self.items = items
            self.bar = tqdm(
                total=total_bytes,
                desc=label,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                file=sys.stderr,
                disable=True if env.quiet else None,  # None: only on a terminal
                leave=False,
                dynamic_ncols=True,
                mininterval=0.2,
            )

        def add_total(self, items: int, nbytes: int) -> None:
            with self.lock:
                self.items += items
                if self.bar is not None:
                    self.bar.total = (self.bar.total or 0) + nbytes

        def advance(self, nbytes: int) -> None:
            with self.lock:
                if self.bar is not None:
                    self.bar.update(nbytes)

        def item_done(self, outcome: Any) -> None:
            from tqdm import tqdm

            with self.lock:
                self.done += 1
                if self.bar is not None:
                    self.bar.set_postfix_str(f"{self.done}/{self.items} files", refresh=False)
                if outcome.status is Status.FAILED:
                    tqdm.write(
                        printable(f"error: {outcome.uri}: {outcome.message}"), file=sys.stderr
                    )
                    return
                line = record(outcome)
                if line is None:
                    return
                if self.bar is not None and not self.bar.disable:
                    tqdm.write(line, file=sys.stdout)  # keeps the bar below the output
                else:
                    sys.stdout.write(line + "\n")

        def warn(self, message: str) -> None:
            from tqdm import tqdm

            with self.lock:
                tqdm.write(f"warning: {printable(message)}", file=sys.stderr)

        def end(self) -> None:
            with self.lock:
                if self.bar is not None:
                    self.bar.close()

    return Bar()


def _summarize(env: Env, result: Any, verb: str) -> None:
    """One summary line on stderr; exit 1 when any item failed."""
    from deon.results import Status

    parts = []
    for status, word in (
        (Status.TRANSFERRED, verb),
        (Status.REPLACED, "replaced"),
        (Status.TAGGED, "given metadata"),
        (Status.UNCHANGED, "unchanged"),
        (Status.PLANNED, f"would be {verb}"),
        (Status.FAILED, "failed"),
    ):
        n = result.count(status)
        if n or status in (Status.TRANSFERRED, Status.FAILED):
            parts.append(f"{n} {word}")
    for w in result.warnings:
        # per-file warnings were printed as they came; this one sums them up
        if "are not HDF5: their objects carry no metadata" in w:
            click.echo(f"warning: {printable(w)}", err=True)
    env.log(
        f"{result.action}: {', '.join(parts)}; "
        f"{_human(result.bytes_transferred)} in {result.seconds:.1f} s"
    )
    if result.failed:
        raise click.exceptions.Exit(ExitStatus.ERROR)


# -- the group ---------------------------------------------------------------------------------


@click.group(cls=DeonGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--endpoint-url",
    envvar=config.ENV_ENDPOINT_URL,
    metavar="URL",
    help="S3-compatible endpoint (MinIO, Ceph, a local server). Default: AWS.",
)
@click.option("--profile", envvar=config.ENV_PROFILE, help="AWS profile for credentials.")
@click.option(
    "--catalog",
    envvar=config.ENV_CATALOG,
    metavar="PATH_OR_URL",
    help="Catalog: a SQLite file path or any SQLAlchemy URL.",
)
@click.option(
    "--data-dir",
    envvar=config.ENV_DATA_DIR,
    type=click.Path(file_okay=False, path_type=Path),
    help="Local root: s3://BUCKET/KEY lives at DATA_DIR/BUCKET/KEY.",
)
@click.option(
    "-j",
    "--jobs",
    envvar=config.ENV_JOBS,
    type=click.IntRange(1, 512),
    help=f"Concurrent transfers and requests (default {config.DEFAULT_JOBS}).",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress or summaries on stderr.")
@click.version_option(__version__, prog_name="deon")
@click.pass_context
def cli(ctx: click.Context, endpoint_url, profile, catalog, data_dir, jobs, quiet) -> None:
    """Share HDF5 datasets through S3.

    Upload trajectories with their metadata, mirror every object's metadata into a
    local SQLite catalog, query it offline, and download only what matches.

    \b
    Example:
        deon up s3://lab-data/alice ./trajectories
        deon metadata down s3://lab-data
        deon query "robot = 'sawyer'" | deon pull
    """
    ctx.obj = Env(
        overrides={
            "endpoint_url": endpoint_url,
            "profile": profile,
            "catalog": catalog,
            "data_dir": data_dir,
            "jobs": jobs,
        },
        quiet=quiet,
    )


# -- commands ---------------------------------------------------------------------------------


@cli.command()
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


@cli.command()
@click.argument("address")
@click.argument("local_dir", required=False, type=click.Path(path_type=Path))
@click.option("--overwrite", is_flag=True, help="Replace different objects someone else uploaded.")
@click.option("-n", "--dry-run", is_flag=True, help="Show what would be uploaded; send nothing.")
@pass_env
def up(env: Env, address: str, local_dir: Path | None, overwrite: bool, dry_run: bool) -> None:
    """Upload new and changed files under LOCAL_DIR to ADDRESS.

    Relative paths are kept. Each HDF5 file's attrs['metadata'] JSON goes into the
    object's metadata headers with the file's sha256. Unchanged files are not sent.
    A different object already at a key is refused unless you uploaded it yourself
    or pass --overwrite. LOCAL_DIR defaults to DATA_DIR/BUCKET/PREFIX. Prints the URI
    of every file that is now in the bucket.

    \b
    Example:
        deon up s3://lab-data/alice ./trajectories
        deon up --dry-run s3://lab-data/alice
    """
    from deon import api

    progress = _make_progress(env, lambda o: o.uri)
    result = api.up(
        address,
        local_dir,
        overwrite=overwrite,
        dry_run=dry_run,
        progress=progress,
        settings=env.settings(),
    )
    _summarize(env, result, "uploaded")


@cli.command()
@click.argument("address")
@click.argument("local_dir", required=False, type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Download even files that are up to date.")
@click.option("-n", "--dry-run", is_flag=True, help="Show what would be downloaded.")
@pass_env
def down(env: Env, address: str, local_dir: Path | None, force: bool, dry_run: bool) -> None:
    """Make LOCAL_DIR hold every object under ADDRESS.

    Files already up to date are skipped; the rest are downloaded concurrently,
    verified (size and sha256) and renamed into place. LOCAL_DIR defaults to
    DATA_DIR/BUCKET/PREFIX. Prints the local path of every file now in place.

    \b
    Example:
        deon down s3://lab-data/alice
        deon down s3://lab-data/bob/2026-11 ./bob
    """
    from deon import api

    progress = _make_progress(env, lambda o: str(o.local))
    result = api.down(
        address,
        local_dir,
        force=force,
        dry_run=dry_run,
        progress=progress,
        settings=env.settings(),
    )
    _summarize(env, result, "downloaded")


def _stdin_is_tty() -> bool:
    return sys.stdin.isatty()


def read_uris(lines: Any) -> list[str]:
    """URIs from a stream: one per line, trimmed; blank lines and # comments skipped."""
    out = []
    for line in lines:
        text = line.strip()
        if text and not text.startswith("#"):
            out.append(text)
    return out


@cli.command()
@click.argument("uris", nargs=-1)
@click.option("--force", is_flag=True, help="Download even files that are up to date.")
@click.option("-n", "--dry-run", is_flag=True, help="Show what would be downloaded.")
@pass_env
def pull(env: Env, uris: tuple[str, ...], force: bool, dry_run: bool) -> None:
    """Download the given objects to DATA_DIR/BUCKET/KEY.

    With no URI, or with -, URIs are read from standard input, one per line (blank
    lines and lines starting with # are skipped). Prints the local path of every file
    now in place.

    \b
    Example:
        deon pull s3://lab-data/alice/traj_0001.h5
        deon query "robot = 'sawyer'" | deon pull
    """
    from deon import api
    from deon.errors import AddressError
    from deon.uri import parse_object_uri

    if not uris or uris == ("-",):
        if _stdin_is_tty():
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
    progress = _make_progress(env, lambda o: str(o.local))
    result = api.pull(
        addresses, None, force, dry_run=dry_run, progress=progress, settings=env.settings()
    )
    _summarize(env, result, "downloaded")


@cli.group()
def metadata() -> None:
    """Mirror object metadata into the catalog, and explore it.

    \b
    Example:
        deon metadata down s3://lab-data
        deon metadata load
    """


class _Counter:
    """A deon.Progress counting objects on a tqdm bar (stderr, terminal only)."""

    def __new__(cls, env: Env) -> Any:
        from deon.results import Progress

        class Count(Progress):
            def __init__(self) -> None:
                self.lock = threading.Lock()
                self.bar: Any = None

            def begin(self, label: str, items: int, total_bytes: int) -> None:
                from tqdm import tqdm

                self.bar = tqdm(
                    total=items or None,
                    desc=label,
                    unit="obj",
                    file=sys.stderr,
                    disable=True if env.quiet else None,
                    leave=False,
                    dynamic_ncols=True,
                    mininterval=0.2,
                )

            def add_total(self, items: int, nbytes: int) -> None:
                with self.lock:
                    if self.bar is not None:
                        self.bar.total = (self.bar.total or 0) + items

            def advance(self, n: int) -> None:
                with self.lock:
                    if self.bar is not None:
                        self.bar.update(n)

            def warn(self, message: str) -> None:
                from tqdm import tqdm

                with self.lock:
                    tqdm.write(f"warning: {printable(message)}", file=sys.stderr)

            def end(self) -> None:
                with self.lock:
                    if self.bar is not None:
                        self.bar.close()

        return Count()


@metadata.command("down")
@click.argument("addresses", nargs=-1)
@click.option(
    "--no-snapshot",
    is_flag=True,
    help="HEAD every new or changed object; ignore "
    "snapshots published with `deon metadata publish`.",
)
@pass_env
def metadata_down(env: Env, addresses: tuple[str, ...], no_snapshot: bool) -> None:
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
    """
    from deon import api

    s = env.settings()
    result = api.mirror(addresses, snapshots=not no_snapshot, progress=_Counter(env), settings=s)
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

    published = api.publish(address, progress=_Counter(env), settings=env.settings())
    click.echo(published.uri)
    env.log(f"metadata publish: {published.objects} objects in {_human(published.nbytes)}")


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
    from deon.tools.session import make_namespace

    ns, banner = make_namespace(env.settings(), address)
    if not _stdin_is_tty():
        # Commands from a pipe: run them as a script; stdout carries only their output.
        _run_script(sys.stdin.read(), ns)
        return
    try:
        from IPython import start_ipython
    except ImportError:
        import code as console

        console.interact(banner=banner, local=ns, exitmsg="")
        return
    click.echo(banner, err=True)
    start_ipython(argv=["--no-banner"], user_ns=ns)


@cli.command()
@click.argument("where", required=False)
@click.option("--sql", help="A whole SELECT statement instead of a WHERE condition.")
@click.option(
    "-f",
    "--format",
    "fmt",
    type=click.Choice(["uri", "key", "json", "csv", "table"]),
    default="uri",
    show_default=True,
    help="Output: one URI per line, keys, JSON lines (typed), CSV, or a table.",
)
@click.option("-n", "--limit", type=click.IntRange(0), help="At most this many rows.")
@click.option(
    "-c",
    "--count",
    is_flag=True,
    help="Print only the number of rows the query would print (at most --limit).",
)
@click.option(
    "--columns",
    "list_columns",
    is_flag=True,
    help="List the columns with their kinds and common values, to learn what to filter on.",
)
@pass_env
def query(
    env: Env,
    where: str | None,
    sql: str | None,
    fmt: str,
    limit: int | None,
    count: bool,
    list_columns: bool,
) -> None:
    """Select objects from the catalog; print one s3:// URI per line.

    WHERE is an SQL condition on the `objects` table, whose columns are the fixed
    ones (bucket, key, uri, size, etag, last_modified, sha256, metadata, ...) and one
    per metadata key (nested keys joined with _). Queries are read-only. Pipe the
    output into `deon pull` to download what matched.

    \b
    Example:
        deon query "robot = 'sawyer' AND traj_ok"
        deon query "robot = 'sawyer' AND traj_ok" | deon pull
        deon query --count "object_classes LIKE '%cup%'"
        deon query --columns
        deon query --sql "SELECT robot, count(*) AS n FROM objects GROUP BY robot" -f table
    """
    from deon.catalog.query import Reader, describe_columns, run
    from deon.catalog.query import count as count_rows
    from deon.output import format_rows

    if where is not None and sql is not None:
        raise DeonClickError("give a WHERE condition or --sql, not both", ExitStatus.USAGE)
    if list_columns and (where or sql or count):
        raise DeonClickError("--columns lists the columns; use it alone", ExitStatus.USAGE)
    with Reader.open(env.settings().catalog) as reader:
        if list_columns:
            rows = [
                (c.name, c.kind, c.path, c.non_null, ", ".join(repr(v) for v in c.examples))
                for c in describe_columns(reader)
            ]
            names = ["column", "kind", "metadata key", "rows", "common values"]
            for line in format_rows(names, rows, "table" if fmt == "uri" else fmt):
                click.echo(line)
            return
        if count:
            click.echo(count_rows(reader, where, sql, limit))
            return
        # URIs and keys need one narrow column, not the whole (wide) rows.
        columns, rows_iter = run(
            reader, where=where, sql=sql, limit=limit, columns=fmt if fmt in ("uri", "key") else "*"
        )
        # Kinds belong to the catalog's columns: a --sql result may reuse their names for
        # other values (`size AS ok`), so it is printed as SQLite returns it.
        kinds = reader.column_kinds() if fmt == "json" and sql is None else None
        out = sys.stdout
        buffer: list[str] = []
        for line in format_rows(columns, rows_iter, fmt, kinds):
            buffer.append(line)
            if len(buffer) >= 4096:
                out.write("\n".join(buffer) + "\n")
                buffer.clear()
        if buffer:
            out.write("\n".join(buffer) + "\n")
        out.flush()


@cli.command()
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
    import signal
    import socket
    import subprocess
    import tempfile
    import time

    from deon.tools.browse import command

    if port == 0:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="deon-browse-") as tmp:
        cmd = command(env.settings().catalog, port, "127.0.0.1", Path(tmp) / "metadata.json")
        database = Path(cmd[4]).stem
        url = f"http://127.0.0.1:{port}/{database}/objects"
        server = subprocess.Popen(cmd)

        def stop(signum: int, frame: Any) -> None:
            # Python's default SIGTERM/SIGHUP end deon without `finally`: the server
            # would outlive it, orphaned, still serving the catalog.
            raise click.exceptions.Exit(128 + signum)

        handlers = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and server.poll() is None:
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
                time.sleep(0.1)
            if server.poll() is not None:
                raise DeonClickError(
                    "datasette did not start (see its message above)", ExitStatus.ERROR
                )
            click.echo(url)
            env.log(f"serving the catalog at {url} (Ctrl-C stops)")
            if open_browser:
                import webbrowser

                webbrowser.open(url)
            server.wait()
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            if server.poll() is None:
                server.terminate()
                try:
                    server.wait(10)
                except subprocess.TimeoutExpired:
                    server.kill()


@cli.command()
@click.argument("where", required=False)
@click.option("--sql", help="A whole SELECT statement instead of a WHERE condition.")
@click.option(
    "-f",
    "--format",
    "fmt",
    type=click.Choice(["parquet", "csv", "jsonl"]),
    default="parquet",
    show_default=True,
    help="File format.",
)
@click.option(
    "-o",
    "--output",
    required=True,
    metavar="FILE",
    help="Where to write (- for standard output, CSV and JSON lines only).",
)
@pass_env
def export(env: Env, where: str | None, sql: str | None, fmt: str, output: str) -> None:
    """Write selected catalog rows to a Parquet, CSV or JSON-lines file.

    Columns are typed by what they hold: booleans, 64-bit integers, doubles, strings,
    UTC timestamps; lists and objects as JSON text (parsed, in JSON lines). The file
    reads as it is in DuckDB, pandas, Spark and Athena. Parquet needs pyarrow
    (pip install 'deon[parquet]').

    \b
    Example:
        deon export "robot = 'sawyer'" -o sawyer.parquet
        deon export --format csv -o catalog.csv
        deon export "traj_ok" --format jsonl -o - | head
    """
    from deon import api

    if where is not None and sql is not None:
        raise DeonClickError("give a WHERE condition or --sql, not both", ExitStatus.USAGE)
    count = api.export(output, where, fmt=fmt, sql=sql, settings=env.settings())
    env.log(f"export: {count} rows to {output if output != '-' else 'standard output'}")


@cli.command()
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
            if not _stdin_is_tty():
                raise DeonClickError(
                    "not changing the bucket policy without confirmation: pass --yes",
                    ExitStatus.USAGE,
                )
            if not click.confirm(f"Put this policy on s3://{plan.bucket}?", err=True):
                raise DeonClickError("policy not changed", ExitStatus.ERROR)
        api.apply_policy(plan, settings=env.settings())
        env.log(f"policy of s3://{plan.bucket} updated")
    click.echo(json.dumps(plan.after, indent=2))


@cli.command()
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
    from deon.tools.verify import OK, PROBLEMS

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


@cli.command()
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
    pretty-printed. With --png, a contact sheet of the image frames found in the file
    (uint8 arrays shaped (T, H, W, 3) or (T, ncam, H, W, 3)).

    \b
    Example:
        deon show ~/deon-data/lab-data/alice/traj_0001.h5
        deon show traj_0001.h5 --png frames.png
    """
    import json

    from deon import api
    from deon.metadata.hdf5 import contact_sheet
    from deon.output import json_printable

    # Names, attribute values and the metadata come from the file: any control
    # character is shown escaped, so that none reaches the terminal.
    d = api.show(file)
    if as_json:
        click.echo(json_printable(json.dumps(d.to_dict(), indent=2, ensure_ascii=False)))
    else:
        click.echo(printable(f"{d.path}  ({_human(d.size)})"))
        for node in d.nodes:
            depth = 0 if node.path == "/" else node.path.count("/")
            indent = "  " * depth
            name = node.path if node.path == "/" else node.path.rsplit("/", 1)[1]
            if node.kind == "dataset":
                click.echo(f"{indent}{printable(name)}  {node.shape} {node.dtype}")
            else:
                click.echo(f"{indent}{printable(name)}{'' if name.endswith('/') else '/'}")
            for attr, value in node.attrs.items():
                click.echo(f"{indent}  @{printable(attr)} = {printable(value)}")
        click.echo("")
        if d.metadata.status == "ok":
            click.echo("metadata:")
            click.echo(
                json_printable(json.dumps(d.metadata.document, indent=2, ensure_ascii=False))
            )
        else:
            click.echo(printable(f"metadata: none ({d.metadata.detail})"))
    if png is not None:
        rows = contact_sheet(file, png, frames=frames)
        click.echo(
            printable(f"wrote {png} ({rows} camera stream(s) x up to {frames} frames)"), err=True
        )


@cli.command()
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


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="deon")


if __name__ == "__main__":  # pragma: no cover
    main()
