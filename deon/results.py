"""What the library reports back: progress while it works, outcomes when it is done.

The library never prints. Long operations take a `Progress` (a no-op by default) and
return a `SyncResult`; the CLI turns both into progress bars and summaries on stderr.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path


class Status(str, Enum):
    """What happened to one item (a file or an object)."""

    TRANSFERRED = "transferred"  # uploaded or downloaded, new at the destination
    REPLACED = "replaced"  # an older version at the destination was replaced
    TAGGED = "tagged"  # the object already held the bytes; deon's headers were added
    UNCHANGED = "unchanged"  # already up to date: nothing sent
    PLANNED = "planned"  # --dry-run: would have been transferred
    FAILED = "failed"  # named on stderr; the run exits 1


@dataclass(frozen=True)
class Outcome:
    """The result for one item: its URI, its local path, and what happened."""

    uri: str
    local: Path | None
    status: Status
    nbytes: int = 0
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not Status.FAILED


@dataclass
class SyncResult:
    """The outcome of `up`, `down` or `pull`."""

    action: str
    outcomes: list[Outcome] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, *statuses: Status) -> int:
        return sum(1 for o in self.outcomes if o.status in statuses)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status is Status.FAILED]

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def bytes_transferred(self) -> int:
        return sum(
            o.nbytes for o in self.outcomes if o.status in (Status.TRANSFERRED, Status.REPLACED)
        )


class Progress:
    """Receives progress from a running operation. Every method may be called from any
    worker thread; implementations must be thread-safe. The base class ignores it all."""

    def begin(self, label: str, items: int, total_bytes: int) -> None:
        """Work starts: `items` items of `total_bytes` bytes in all (0 if unknown)."""

    def add_total(self, items: int, nbytes: int) -> None:
        """More work was discovered (for example while listing)."""

    def advance(self, nbytes: int) -> None:
        """`nbytes` more bytes were read, hashed or sent."""

    def item_done(self, outcome: Outcome) -> None:
        """One item finished (in any status)."""

    def warn(self, message: str) -> None:
        """Something the user should know that does not fail the item."""

    def end(self) -> None:
        """Work is over (also after an interruption)."""


# What `deon verify` found for one file (deon.tools.verify.Finding.status).
OK = "ok"
MISSING = "missing"
CHANGED = "changed"
CORRUPT = "corrupt"
UNKNOWN = "unknown"
UNVERIFIABLE = "unverifiable"
#: Statuses that make `deon verify` exit 1.
PROBLEMS = (MISSING, CHANGED, CORRUPT)
