"""Listing a prefix in parallel, by key ranges, merged back in order.

ListObjectsV2 returns 1,000 keys a page and each page needs the previous one's token:
listed one page at a time, 1 M objects are 1,000 round trips (40 s at 40 ms RTT; issue
15). `start-after` lets a listing begin anywhere, so a prefix can be cut into key ranges
(lo, hi] that are listed at once and concatenated in order.

Where to cut, without knowing the keys: after the first page of a range, the place where
its keys start to differ tells the shape of the names (`many/f0003/traj_000041` varies
in its last digits; folders `f0003/` in theirs). Each position before that one, nearest
first, gives boundaries: the same name up to it, then each higher character of the same
class (digit, lower- or upper-case letter), so `traj_000041999` gives `traj_00005`, ...,
`traj_00009`, `traj_0001`, ..., `traj_0009` — folders are split by
their own names the same way. Ranges are listed sequentially page by page, and one that
is still long after its first page is cut again inside its bounds, so work is spread
however the keys are distributed. An empty range costs one request.

At most `width` ranges are listed at once, and each keeps at most `AHEAD` pages waiting
for the reader: memory stays bounded whatever the size of the prefix. Pages come out in
key order, exactly as one sequential listing would give them (each range checks it).
"""

from __future__ import annotations

import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

#: Ranges listed at once (DEON_LIST_WIDTH overrides; 1 lists sequentially).
WIDTH = 16
#: Pages a range may list ahead of the reader. At 2, a range of ~10 pages gave its
#: first few at once and the rest one round trip each as the reader took them: a
#: no-op refresh of 200 k objects over 40 ms RTT took 1.6x its loopback time; at 8,
#: 1.2x, for ~20 MB more at the peak (bench/profiles.py wan).
AHEAD = 8
#: Most boundaries one cut makes.
MAX_CUTS = 64

_CLASSES = ("0123456789", "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")

Page = list[Any]  # ObjectInfo items
ListPage = Callable[[str | None, str | None], tuple[Page, str | None]]


def boundaries(
    prefix: str, first: str, last: str, hi: str | None, moved: int | None = None
) -> list[str]:
    """Where to cut the keys after `last` (up to `hi`, inclusive), for a range whose
    latest page ran from `first` to `last`: sorted strings b with last < b < hi.

    Positions cut: the second and third before the one where the page's keys start to
    differ (the names' counters: ranges of about 10 and 100 pages; the one just before
    would make ranges of a page, each costing a second request to learn that it ended);
    and `moved` and the one before it, where the range's first key differs from where
    the range began, when that is shallower than the counters (the range moved on to
    another folder there)."""
    varies = len(os.path.commonprefix([first, last]))
    positions = {varies - 2, varies - 3}
    if moved is not None and moved < varies - 3:
        positions |= {moved, moved - 1}
    cuts: list[str] = []
    for p in sorted((p for p in positions if len(prefix) <= p < len(last)), reverse=True):
        c = last[p]
        for chars in _CLASSES:
            if c in chars:
                for ch in chars[chars.index(c) + 1 :]:
                    b = last[:p] + ch
                    if b > last and (hi is None or b < hi):
                        cuts.append(b)
                break
    return sorted(set(cuts))[:MAX_CUTS]


@dataclass
class _Range:
    """Keys in (lo, hi]; lo None: from the start of the prefix; hi None: to its end."""

    lo: str | None
    hi: str | None
    out: queue.Queue[tuple[str, Any]] = field(default_factory=lambda: queue.Queue(AHEAD + 2))
    started: bool = False


class _StartAfterIgnored(Exception):
    """The server answered a listing from `start-after` with keys before it."""


def parallel_pages(list_page: ListPage, prefix: str, width: int = WIDTH) -> Iterator[Page]:
    """The pages of a prefix in key order, listed by up to `width` ranges at once.

    Args:
        list_page: (continuation token, start_after) -> (items, next token), one
            ListObjectsV2 page of the prefix; items have `.key`.
        prefix: the prefix listed (boundaries never cut inside it).
        width: ranges listed at once; 1 lists page after page.

    A server that ignores `start-after` (it is in the S3 API since 2016, but not every
    S3-compatible store honours it) is detected on the first range that starts after a
    cut, and the prefix is then listed sequentially from the start, skipping what was
    already given.
    """
    stop = threading.Event()
    order: deque[_Range] = deque([_Range(None, None)])
    # (a, b): stretches known to hold no key, learnt when a range's first page began
    # past its end; a range inside one is not requested at all.
    empty: list[tuple[str, str]] = []
    empty_lock = threading.Lock()

    def put(r: _Range, item: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                r.out.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def run(r: _Range) -> None:
        try:
            token: str | None = None
            pages = 0
            first_key: str | None = None
            while True:
                items, token = list_page(token, None if token else r.lo)
                pages += 1
                if pages == 1 and r.lo is not None and items and items[0].key <= r.lo:
                    raise _StartAfterIgnored
                done = token is None
                first_past = pages == 1 and items and r.hi is not None and items[0].key > r.hi
                if first_past and r.lo is not None:
                    with empty_lock:
                        empty.append((r.lo, items[0].key))
                if r.hi is not None and items and items[-1].key > r.hi:
                    items = [o for o in items if o.key <= r.hi]
                    done = True
                if items and not put(r, ("page", items)):
                    return
                if done or not items:
                    put(r, ("end", None))
                    return
                if pages == 1:
                    first_key = items[0].key
                # A range still going after two pages is long: cut the rest of it.
                elif pages == 2 and width > 1:
                    moved = None
                    if r.lo is not None and first_key is not None:
                        moved = len(os.path.commonprefix([r.lo, first_key]))
                    cuts = boundaries(prefix, items[0].key, items[-1].key, r.hi, moved)
                    if cuts:
                        edges = [items[-1].key, *cuts]
                        children = [_Range(a, b) for a, b in zip(edges, [*cuts, r.hi], strict=True)]
                        put(r, ("split", children))
                        return
        except BaseException as e:  # noqa: BLE001 - handed to the reader
            put(r, ("error", e))

    def start(r: _Range) -> None:
        r.started = True
        if r.lo is not None and r.hi is not None:
            with empty_lock:
                known_empty = any(a <= r.lo and r.hi < b for a, b in empty)
            if known_empty:
                r.out.put(("end", None))
                return
        threading.Thread(target=run, args=(r,), name="deon-list", daemon=True).start()

    def start_window() -> None:
        # The first range always runs (so the reader can always go on); others while
        # fewer than `width` are running or holding pages for the reader.
        active = sum(r.started for r in order)
        if not order[0].started:
            start(order[0])
            active += 1
        for r in order:
            if active >= width:
                break
            if not r.started:
                start(r)
                active += 1

    previous: str | None = None
    try:
        start_window()
        while order:
            kind, value = order[0].out.get()
            if kind == "page":
                previous = value[-1].key
                yield value
            elif kind == "split":
                order.popleft()
                order.extendleft(reversed(value))
            elif kind == "end":
                order.popleft()
            elif isinstance(value, _StartAfterIgnored):
                break
            else:
                raise value
            if order:
                start_window()
        else:
            return
    finally:
        stop.set()
    # The server ignores start-after: the rest, sequentially, from the start.
    token = None
    while True:
        items, token = list_page(token, None)
        if previous is not None:
            items = [o for o in items if o.key > previous]
        if items:
            yield items
        if token is None:
            return


def list_width() -> int:
    from deon.config import ENV_LIST_WIDTH

    value = os.environ.get(ENV_LIST_WIDTH, "")
    return int(value) if value.isdigit() and int(value) > 0 else WIDTH
