"""Ctrl-C and SIGTERM for the `deon` command.

The first SIGINT or SIGTERM raises in the main thread (KeyboardInterrupt, or its
subclass `Terminated`): the library unwinds as for Ctrl-C, so workers stop at their next
chunk, temporary downloads are removed (a large ranged download keeps its resumable
partial file), multipart uploads are aborted and open catalog transactions roll back.
The command then exits 130 (SIGINT) or 143 (SIGTERM) with one line (DeonGroup.invoke).

A second signal while the first is being handled exits at once (os._exit): whatever
was still being cleaned up is left to the next run, which sweeps temporary files of
processes that are gone (engine.sweep_temps).
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from typing import Any

from deon.errors import ExitStatus


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is, but exiting 143."""


_received: list[int] = []


def _handle(signum: int, frame: Any) -> None:
    _received.append(signum)
    if len(_received) > 1:
        with contextlib.suppress(OSError):
            os.write(2, b"\ninterrupted again: exiting at once\n")
        os._exit(ExitStatus.TERMINATED if signum == signal.SIGTERM else ExitStatus.INTERRUPTED)
    if signum == signal.SIGTERM:
        raise Terminated()
    raise KeyboardInterrupt()


def install() -> None:
    """Handle SIGINT and SIGTERM as described above (main thread only)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError, OSError):  # not the main thread
            signal.signal(sig, _handle)


def status(e: KeyboardInterrupt) -> tuple[int, str]:
    """The exit status and the one line for an interruption."""
    if isinstance(e, Terminated):
        return ExitStatus.TERMINATED, "terminated (SIGTERM): stopped; run it again to finish"
    return ExitStatus.INTERRUPTED, "interrupted (Ctrl-C): stopped; run it again to finish"


@contextlib.contextmanager
def interactive() -> Iterator[None]:
    """Python's own Ctrl-C for an interactive session (each Ctrl-C interrupts the
    statement running, as in `python`), restored afterwards."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)
