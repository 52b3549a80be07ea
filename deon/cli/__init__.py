"""The `deon` command: parses arguments, calls the library, prints, sets the exit status.

Data (URIs, paths, rows) go to stdout, one record per line; progress bars, warnings and
summaries go to stderr. Exit status: 0 all done, 1 some items failed (each named on
stderr), 2 bad usage or input, 130 interrupted. Each command lives in the module of its
group (transfer, metadata, query, tools) and calls one function of deon.api; heavy
modules are imported inside the commands so that `deon --help` starts quickly.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from deon import __version__, config
from deon.cli import manifest, metadata, query, tools, transfer
from deon.cli._config import config_schema, default_map
from deon.cli._env import Env
from deon.cli._errors import DeonClickError, debug, one_line, quiet_stdout
from deon.errors import DeonError, ExitStatus
from deon.output import printable


class DeonGroup(click.Group):
    """Loads the config file into click's default_map and maps every error to one line."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any
    ) -> Any:
        if parent is None and "default_map" not in extra:
            try:
                loaded = config.read_config_file(schema=config_schema(self))
            except DeonError as e:
                raise DeonClickError(str(e), e.exit_status) from e
            if not extra.get("resilient_parsing"):  # not while completing the shell's line
                for warning in loaded.warnings:
                    click.echo(f"warning: {printable(warning)}", err=True)
            extra["default_map"] = default_map(self, loaded.values)
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as e:
            raise one_line(e) from e

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as e:
            raise one_line(e) from e
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except DeonError as e:
            if debug():
                raise
            raise DeonClickError(str(e), e.exit_status) from e
        except KeyboardInterrupt as e:
            from deon.cli._signals import status

            code, line = status(e)
            click.echo(("\n" if sys.stderr.isatty() else "") + line, err=True)
            raise click.exceptions.Exit(code) from None
        except BrokenPipeError:
            quiet_stdout()
            raise click.exceptions.Exit(141) from None
        except Exception as e:
            if debug():
                raise
            raise DeonClickError(
                f"unexpected {type(e).__name__}: {e} (set {config.ENV_DEBUG}=1 for the traceback)",
                ExitStatus.ERROR,
            ) from e


@click.group(cls=DeonGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--endpoint-url",
    # botocore's order: the S3-specific variable first
    envvar=[config.ENV_ENDPOINT_URL_S3, config.ENV_ENDPOINT_URL],
    metavar="URL",
    help="S3-compatible endpoint (MinIO, Ceph, a local server). Default: what "
    "~/.aws/config says, else AWS.",
)
@click.option("--profile", envvar=config.ENV_PROFILE, help="AWS profile for credentials.")
@click.option(
    "--no-sign-request",
    is_flag=True,
    default=None,
    help="Anonymous requests (public datasets): no credentials are looked up.",
)
@click.option(
    "--request-payer",
    type=click.Choice(["requester"]),
    help="Pay for the requests to a Requester Pays bucket.",
)
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
    help=f"Concurrent transfers and requests (default {config.DEFAULT_JOBS}); given, it also "
    "caps the HEADs of `metadata down`, which otherwise adapt up to 256.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress or summaries on stderr.")
@click.version_option(__version__, prog_name="deon")
@click.pass_context
def cli(
    ctx: click.Context,
    endpoint_url,
    profile,
    no_sign_request,
    request_payer,
    catalog,
    data_dir,
    jobs,
    quiet,
) -> None:
    """Share HDF5 datasets through S3.

    Upload trajectories with their metadata, mirror every object's metadata into a
    local SQLite catalog, query it offline, and download only what matches.

    \b
    Example:
        deon up s3://lab-data/alice ./trajectories
        deon metadata down s3://lab-data
        deon query "robot = 'sawyer'" | deon pull
    """
    if ctx.get_parameter_source("endpoint_url") is click.core.ParameterSource.ENVIRONMENT:
        # as botocore reads them (AWS_IGNORE_CONFIGURED_ENDPOINT_URLS)
        endpoint_url = config.env_endpoint_url()
    ctx.obj = Env(
        overrides={
            "endpoint_url": endpoint_url,
            "profile": profile,
            "no_sign_request": no_sign_request,
            "request_payer": request_payer,
            "catalog": catalog,
            "data_dir": data_dir,
            "jobs": jobs,
        },
        quiet=quiet,
    )


for _command in (
    transfer.buckets,
    transfer.up,
    transfer.down,
    transfer.pull,
    metadata.metadata,
    query.query,
    tools.browse,
    query.export,
    tools.policy,
    tools.verify,
    tools.show,
    tools.demo,
    manifest.freeze,
    manifest.diff,
):
    cli.add_command(_command)


#: Young objects between two garbage collections (Python's default is 700). A mirror
#: makes and frees rows by the thousand, few of them in cycles: at the default, 800
#: collections for 8,000 objects took ~8 % of a cold mirror's CPU; at this threshold,
#: 3 collections and ~1 %, for a few MB more at most.
GC_THRESHOLD = (50_000, 20, 10)


def main() -> None:
    """Console-script entry point."""
    import gc

    from deon.cli._signals import install

    gc.set_threshold(*GC_THRESHOLD)
    install()
    cli(prog_name="deon")


if __name__ == "__main__":  # pragma: no cover
    main()
