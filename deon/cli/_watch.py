"""`up --watch` and `--every` on the command line: options, the status line, rounds.

The watching and the schedule are the library's (deon.transfer.watch, deon.tools.schedule,
through deon.api); this module parses their options and renders what they report.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from deon.errors import ExitStatus
from deon.output import printable

#: Without a terminal (a journal, a log file) the status line is written when it
#: changes, at most this often.
STATUS_EVERY_SECONDS = 60.0


def watch_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--watch and the options that tune it (for `up`)."""
    options = [
        click.option(
            "--watch",
            is_flag=True,
            help="Keep running: upload each new or changed file once it is complete.",
        ),
        click.option(
            "--settle",
            type=click.FloatRange(0, min_open=False),
            metavar="SECONDS",
            help="With --watch: seconds a file must stay unchanged (default 5).",
        ),
        click.option(
            "--poll",
            type=click.FloatRange(0, min_open=True),
            metavar="SECONDS",
            help="With --watch: scan every SECONDS instead of listening for file "
            "system events (network file systems).",
        ),
        click.option(
            "--exclude",
            multiple=True,
            metavar="PATTERN",
            help="With --watch: leave out files matching this pattern (name or relative "
            "path; repeatable). *.tmp, .*.swp and *.part are always left out.",
        ),
        click.option(
            "--grace",
            type=click.FloatRange(0),
            metavar="SECONDS",
            help="With --watch: on SIGTERM or Ctrl-C, how long uploads in flight may "
            "take to finish before they are abandoned (default 20).",
        ),
        click.option(
            "-v", "--verbose", is_flag=True, help="With --watch: one line per upload on stderr."
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def every_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--every DURATION and the original deoncli's --interval MINUTES."""
    f = click.option(
        "--interval",
        type=click.FloatRange(0, min_open=True),
        metavar="MINUTES",
        help="The same as --every, in minutes (the original deoncli's option).",
    )(f)
    return click.option(
        "--every",
        metavar="DURATION",
        help="Repeat on this schedule until stopped: 30s, 5m, 1h.",
    )(f)


def _usage(message: str) -> Exception:
    from deon.cli._errors import DeonClickError

    return DeonClickError(message, ExitStatus.USAGE)


def every_seconds(every: str | None, interval: float | None) -> float | None:
    """The period asked for, in seconds, or None to run once."""
    from deon.errors import UsageError
    from deon.tools.schedule import parse_duration

    if every is not None and interval is not None:
        raise _usage("give --every or --interval, not both")
    if interval is not None:
        return interval * 60
    if every is None:
        return None
    try:
        return parse_duration(every)
    except UsageError as e:
        raise _usage(f"--every: {e}") from e


def check_watch_usage(watch: bool, every: float | None, dry_run: bool, **tuning: Any) -> None:
    """Refuse combinations that cannot go together, before doing anything."""
    if watch and every is not None:
        raise _usage("--watch keeps running already; use --watch or --every, not both")
    if watch and dry_run:
        raise _usage("--watch sends files as they are complete; it has no --dry-run")
    if not watch:
        given = [name for name, value in tuning.items() if value not in (None, False, ())]
        if given:
            raise _usage(f"--{given[0].replace('_', '-')} needs --watch")


def repeat(env: Any, every: float | None, body: Callable[[], None]) -> None:
    """Run a command's body once, or every `every` seconds until stopped (--every)."""
    if every is None:
        body()
        return
    from deon import api
    from deon.tools.schedule import Round

    def when(info: Round) -> str:
        if info.next_start is None:
            return "stopping"
        return "next round at " + time.strftime("%H:%M:%S", time.localtime(info.next_start))

    def round_body() -> None:
        rounds[0] += 1
        env.prefix = f"round {rounds[0]} ({time.strftime('%H:%M:%S')}): "
        try:
            body()
        finally:
            sys.stdout.flush()  # a journal or pipe sees each round's lines when it ends

    def on_error(info: Round, error: BaseException) -> None:
        if isinstance(error, click.exceptions.Exit):
            return  # items failed: each was named and the summary line says so
        if isinstance(error, click.ClickException):
            message = error.format_message()
        else:
            message = str(error) or type(error).__name__
        click.echo(printable(f"error: round {info.number}: {message} ({when(info)})"), err=True)

    rounds = [0]
    try:
        api.repeat(round_body, every, on_error=on_error, fatal=_fatal)
    finally:
        env.prefix = ""


def _fatal(error: BaseException) -> bool:
    """A first round that fails for bad usage would fail every round: end it there."""
    from deon.errors import DeonError

    if isinstance(error, DeonError):
        return error.exit_status == ExitStatus.USAGE
    return isinstance(error, click.ClickException) and error.exit_code == ExitStatus.USAGE


# -- up --watch -----------------------------------------------------------------------------


class _Console:
    """Lines on stdout and stderr from several threads, and the status line below them
    (redrawn in place on a terminal; elsewhere written when it changes, now and then)."""

    def __init__(self, quiet: bool) -> None:
        self.lock = threading.Lock()
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.shown = ""  # the status line on the terminal now
        self.status = ""
        self.written_at = 0.0
        self.written = ""

    def _clear(self) -> None:
        if self.tty and self.shown:
            sys.stderr.write("\r\x1b[K")
            self.shown = ""

    def _redraw(self) -> None:
        if self.tty and self.status and not self.quiet:
            width = 200
            try:
                import shutil

                width = shutil.get_terminal_size().columns - 1
            except (OSError, ValueError):
                pass
            sys.stderr.write(self.status[:width])
            sys.stderr.flush()
            self.shown = self.status

    def out(self, line: str) -> None:
        with self.lock:
            self._clear()
            sys.stdout.write(line + "\n")
            sys.stdout.flush()  # a pipe reader sees each URI as it goes up
            self._redraw()

    def err(self, line: str) -> None:
        with self.lock:
            self._clear()
            sys.stderr.write(printable(line) + "\n")
            sys.stderr.flush()
            self._redraw()

    def set_status(self, text: str, force: bool = False) -> None:
        if self.quiet:
            return
        with self.lock:
            self.status = text
            if self.tty:
                self._clear()
                self._redraw()
                return
            now = time.monotonic()
            if text != self.written and (force or now - self.written_at >= STATUS_EVERY_SECONDS):
                sys.stderr.write(printable(text) + "\n")
                sys.stderr.flush()
                self.written, self.written_at = text, now

    def flush_status(self) -> None:
        """The last status, as a line of its own (at exit)."""
        with self.lock:
            if self.tty:
                self._clear()
                if self.status and not self.quiet:
                    sys.stderr.write(printable(self.status) + "\n")
                    sys.stderr.flush()
                self.status = ""
            elif self.status and self.status != self.written and not self.quiet:
                sys.stderr.write(printable(self.status) + "\n")
                sys.stderr.flush()
                self.written = self.status


def _why(items: list[tuple[str, str]]) -> str:
    first = items[0]
    more = f", +{len(items) - 1} more" if len(items) > 1 else ""
    return f"{first[0]}: {first[1]}{more}"


def status_line(address: str, s: Any) -> str:
    """`watch s3://lab/alice: 12 seen, 3 uploaded, 8 in bucket, 1 waiting (x.h5: ...)`."""
    parts = [f"{s.seen} seen", f"{s.uploaded} uploaded", f"{s.in_bucket} already there"]
    if s.uploading:
        parts.append(f"{s.uploading} uploading")
    if s.waiting:
        parts.append(f"{len(s.waiting)} waiting ({_why(s.waiting)})")
    if s.failing:
        parts.append(f"{len(s.failing)} failing ({_why(s.failing)})")
    mode = "" if s.events else " (polling)"
    return f"watch {address}{mode}: " + ", ".join(parts)


def run_watch(
    env: Any,
    address: str,
    local_dir: Path | None,
    *,
    overwrite: bool,
    verbose: bool,
    **tuning: Any,
) -> None:
    """`deon up --watch`: until SIGTERM or Ctrl-C (exit 0; 130 on a second Ctrl-C).
    `tuning`: settle, poll, exclude, grace as the options gave them (None: default)."""
    from deon import api
    from deon.cli._render import human as _human
    from deon.results import Status
    from deon.transfer.watch import WatchReport

    console = _Console(env.quiet)
    shown_address = address if address.startswith("s3://") else f"s3://{address}"

    class Report(WatchReport):
        def uploaded(self, outcome: Any, seconds: float) -> None:
            console.out(outcome.uri)
            if verbose and outcome.status is not Status.UNCHANGED:
                word = {Status.REPLACED: "replaced", Status.TAGGED: "gave metadata to"}.get(
                    outcome.status, "uploaded"
                )
                console.err(f"{word} {outcome.uri} ({_human(outcome.nbytes)} in {seconds:.1f} s)")

        def failing(self, outcome: Any, retry_in: float) -> None:
            console.err(
                f"error: {outcome.uri}: {outcome.message} (retrying in {retry_in:.0f} s, "
                "then with backoff until it goes up)"
            )

        def warn(self, message: str) -> None:
            console.err(f"warning: {message}")

        def status(self, status: Any) -> None:
            console.set_status(status_line(shown_address, status))

        def stopping(self, inflight: int, grace_s: float) -> None:
            if not env.quiet:
                what = (
                    f"; {inflight} upload(s) in flight get {grace_s:g} s to finish"
                    if (inflight)
                    else ""
                )
                console.err(f"stopping: taking no new files{what}")

    options = {k: v for k, v in tuning.items() if v is not None}
    try:
        result = api.up_watch(
            address,
            local_dir,
            overwrite=overwrite,
            report=Report(),
            settings=env.settings(),
            **options,
        )
    finally:
        console.flush_status()
    if result.abandoned:
        console.err(
            f"stopped: {len(result.abandoned)} upload(s) abandoned (e.g. {result.abandoned[0]}); "
            "they go up on the next run"
        )
    env.log(
        f"up --watch: {result.uploaded} uploaded, {result.in_bucket} already there in "
        f"{result.seconds:.0f} s"
    )
    if result.interrupted:
        raise click.exceptions.Exit(ExitStatus.INTERRUPTED)
