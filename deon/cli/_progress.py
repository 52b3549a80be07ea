"""One progress display for every command: a tqdm bar on stderr, results on stdout."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

from deon.output import printable
from deon.results import Outcome, Progress, Status


class Bar(Progress):
    """A deon Progress drawn as a tqdm bar on stderr (only on a terminal, never with -q).

    With `unit="B"` the bar counts bytes (transfers); with `unit="obj"` it counts objects
    (the mirror). `record(outcome)` gives the stdout line of a successful item, or None;
    without `record`, items are not reported one by one (the command names failures at
    the end). Warnings are printed as they come.
    """

    def __init__(
        self, quiet: bool, record: Callable[[Outcome], str | None] | None = None, unit: str = "B"
    ) -> None:
        self.quiet = quiet
        self.record = record
        self.unit = unit
        self.lock = threading.Lock()
        self.bar: Any = None
        self.items = 0
        self.done = 0

    def begin(self, label: str, items: int, total_bytes: int) -> None:
        from tqdm import tqdm

        self.items = items
        by_bytes = self.unit == "B"
        self.bar = tqdm(
            total=total_bytes if by_bytes else (items or None),
            desc=label,
            unit=self.unit,
            unit_scale=by_bytes,
            unit_divisor=1024,
            file=sys.stderr,
            disable=True if self.quiet else None,  # None: only on a terminal
            leave=False,
            dynamic_ncols=True,
            mininterval=0.2,
        )

    def add_total(self, items: int, nbytes: int) -> None:
        with self.lock:
            self.items += items
            if self.bar is not None:
                self.bar.total = (self.bar.total or 0) + (nbytes if self.unit == "B" else items)

    def advance(self, nbytes: int) -> None:
        with self.lock:
            if self.bar is not None:
                self.bar.update(nbytes)

    def item_done(self, outcome: Outcome) -> None:
        if self.record is None:
            return
        from tqdm import tqdm

        with self.lock:
            self.done += 1
            if self.bar is not None:
                self.bar.set_postfix_str(f"{self.done}/{self.items} files", refresh=False)
            if outcome.status is Status.FAILED:
                tqdm.write(printable(f"error: {outcome.uri}: {outcome.message}"), file=sys.stderr)
                return
            line = self.record(outcome)
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
