"""`--every DURATION`: run a command again and again on a schedule, unattended.

Rounds start on a fixed grid (start, start + every, start + 2 every, ...) and never
overlap: a round that runs past its slot is followed at once by the next, and the slots
it overran are skipped, not queued. An error in a round is reported and the next round
still runs; only a bad usage in the very first round (a malformed address, a missing
folder, an unknown bucket: it would fail every round the same way) ends it. SIGTERM or
Ctrl-C stops: between rounds at once, during a round by interrupting it as Ctrl-C
interrupts any deon command (downloads, the catalog and multipart uploads are left
consistent); a second Ctrl-C is a plain KeyboardInterrupt.

The original deoncli's `--interval N` (minutes, any number > 0) slept N minutes after
each round ended, and stopped at the first error; this grid keeps rounds every N
minutes whatever they last.
"""

from __future__ import annotations

import math
import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from deon.errors import DeonError, ExitStatus, UsageError

T = TypeVar("T")

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([smhd]?)")


def parse_duration(text: str) -> float:
    """Seconds in `30s`, `5m`, `1h`, `1d`, `1h30m` or a plain number of seconds.

    Raises:
        UsageError: not a duration, or not more than zero.
    """
    s = text.strip().lower()
    pos, total = 0, 0.0
    while pos < len(s):
        m = _DURATION.match(s, pos)
        if m is None:
            break
        total += float(m.group(1)) * _UNITS[m.group(2) or "s"]
        pos = m.end()
    if not s or pos != len(s) or not math.isfinite(total):
        raise UsageError(f"not a duration: {text!r} (write it as 30s, 5m, 1h or 1h30m)")
    if total <= 0:
        raise UsageError(f"the duration must be more than zero: {text!r}")
    return total


class Stopped(KeyboardInterrupt):
    """Raised into a round by the first SIGTERM or Ctrl-C: stop after cleaning up."""


@dataclass(frozen=True)
class Round:
    """One round: its number (from 1), when it started (time.time()), how long it took,
    and when the next one starts (None: stopping)."""

    number: int
    started: float
    seconds: float
    next_start: float | None


def repeat(
    run_round: Callable[[], T],
    every: float,
    *,
    on_done: Callable[[Round, T], None] | None = None,
    on_error: Callable[[Round, BaseException], None] | None = None,
    fatal: Callable[[BaseException], bool] | None = None,
    stop: threading.Event | None = None,
    handle_signals: bool = True,
    max_rounds: int | None = None,
) -> int:
    """Run `run_round()` every `every` seconds until stopped; return the rounds run.

    Args:
        run_round: one round; its exceptions (any Exception) are reported, not raised.
        every: seconds from one round's start to the next one's.
        on_done: called after a round that returned, with its value.
        on_error: called after a round that raised.
        fatal: whether an error in the first round ends it all (re-raised); default:
            a DeonError whose exit status is USAGE.
        stop: set it to stop (after the current round, or at once between rounds).
        handle_signals: SIGTERM/SIGINT stop (main thread only); the second Ctrl-C is
            a KeyboardInterrupt.
        max_rounds: stop after this many rounds (tests).
    """
    stop = stop or threading.Event()
    fatal = fatal or _usage
    state = {"in_round": False}

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        stop.set()
        if state["in_round"]:
            raise Stopped

    previous: dict[int, Any] = {}
    if handle_signals and threading.current_thread() is threading.main_thread():
        previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    number = 0
    start = time.monotonic()
    try:
        while not stop.is_set():
            number += 1
            began, wall = time.monotonic(), time.time()
            error: BaseException | None = None
            value: Any = None
            state["in_round"] = True
            try:
                value = run_round()
            except Stopped:
                state["in_round"] = False
                break
            except Exception as e:
                error = e
            finally:
                state["in_round"] = False
            now = time.monotonic()
            done = max_rounds is not None and number >= max_rounds
            # The next slot of the grid that has not started yet.
            slots = math.floor((now - start) / every) + 1
            next_mono = start + slots * every
            nxt = None if done or stop.is_set() else wall + (next_mono - began)
            info = Round(number, wall, now - began, nxt)
            if error is not None:
                if number == 1 and fatal(error):
                    raise error
                if on_error is not None:
                    on_error(info, error)
            elif on_done is not None:
                on_done(info, value)
            if done:
                break
            stop.wait(max(0.0, next_mono - time.monotonic()))
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    return number


def _usage(error: BaseException) -> bool:
    if isinstance(error, DeonError):
        return error.exit_status == ExitStatus.USAGE
    return getattr(error, "exit_code", None) == ExitStatus.USAGE
