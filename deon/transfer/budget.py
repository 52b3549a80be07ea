"""An adaptive budget of requests in flight, for the small requests deon sends by the
thousand (the HEADs of a metadata mirror).

A fixed number is wrong somewhere: on loopback 16 HEADs in flight saturate the server,
over 40 ms of round trip they cap a mirror at 400 HEAD/s (issue 15: measured 411/s,
and 539/s with `-j 64`), and real S3 serves thousands per second per prefix. So the
budget grows while throughput grows and backs off when the server says SlowDown, the
way TCP finds a link's capacity (additive probing replaced by multiplicative steps
here: the range to search spans two orders of magnitude):

- it starts at `start` and, after each window (at least `WINDOW` seconds and `limit`
  completions), compares the window's completions per second with the best so far:
  more than `GAIN` better, it doubles (until the first window that is not better; by
  half after that); not better, it goes back to the best limit and holds there,
  probing again after `PROBE_EVERY` windows;
- a throttling reply (503 SlowDown and its kin: the transport pauses every sender,
  `Storage.throttled_until`) halves it at once, and the best rate is forgotten;
- it never leaves [floor, cap]; `cap` is `-j` when the user gave one.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

#: Shortest measuring window, seconds.
WINDOW = 0.25
#: Relative gain in throughput that counts as "throughput grew".
GAIN = 1.08
#: Windows spent at the best limit before trying a larger one again.
PROBE_EVERY = 8


class Budget:
    """At most `limit` holders at once; `limit` adapts between `floor` and `cap`.

    Args:
        start: the first limit.
        cap: the largest limit (the threads that can hold it must number at least this).
        throttled: returns a value that increases whenever the server throttled us.
        adaptive: False keeps the limit at `start`.
    """

    def __init__(
        self,
        start: int,
        cap: int,
        *,
        throttled: Callable[[], float] | None = None,
        adaptive: bool = True,
        floor: int = 4,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cap = max(1, cap)
        self.floor = min(floor, self.cap)
        self.limit = max(self.floor, min(start, self.cap))
        self.adaptive = adaptive
        self.active = 0
        self.peak = self.limit  # the largest limit reached (reported by bench/)
        self._throttled = throttled or (lambda: 0.0)
        self._last_throttle = self._throttled()
        self._clock = clock
        self._cond = threading.Condition()
        self._window_start = clock()
        self._window_done = 0
        self._best_rate = 0.0
        self._best_limit = self.limit
        self._holding = 0
        self._slow_start = True

    def __enter__(self) -> Budget:
        with self._cond:
            while self.active >= self.limit:
                self._cond.wait()
            self.active += 1
        return self

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self.active -= 1
            self._window_done += 1
            if self.adaptive:
                self._adjust()
            # Wake only as many waiters as there are free places: with the pool's
            # threads (up to `cap`) all waiting, notify_all() woke them all on every
            # completion, and on 2 cores that herd cost more CPU than the HEADs did.
            self._cond.notify(max(0, self.limit - self.active))

    def _adjust(self) -> None:
        mark = self._throttled()
        if mark > self._last_throttle:
            self._last_throttle = mark
            self._set(max(self.floor, self.limit // 2))
            self._best_rate, self._best_limit, self._holding = 0.0, self.limit, 0
            self._slow_start = False
            self._restart()
            return
        elapsed = self._clock() - self._window_start
        if elapsed < WINDOW or self._window_done < self.limit:
            return
        rate = self._window_done / elapsed
        if rate > self._best_rate * GAIN:
            self._best_rate, self._best_limit = rate, self.limit
            # Slow start (TCP's name for it): double until throughput stops growing,
            # then steps of half.
            step = self.limit if self._slow_start else max(1, self.limit // 2)
            self._set(min(self.cap, self.limit + step))
        elif self._holding >= PROBE_EVERY:
            self._holding = 0
            self._best_rate = rate  # conditions change: measure afresh from here
            self._set(min(self.cap, self.limit + max(1, self.limit // 2)))
        else:
            self._slow_start = False
            self._holding += 1
            self._set(self._best_limit)
        self._restart()

    def _set(self, limit: int) -> None:
        self.limit = limit
        self.peak = max(self.peak, limit)

    def _restart(self) -> None:
        self._window_start = self._clock()
        self._window_done = 0


class Workers:
    """Threads that run submitted calls, never more of them than the budget's limit.

    A ThreadPoolExecutor sized for the budget's cap starts a thread for every call
    submitted while none is idle, so with calls queued ahead of the budget it grew to
    the cap (256) and parked most of those threads on the budget: thread starts and
    wake-ups that cost more CPU, on 2 cores, than the HEADs themselves. Here a thread
    is started only while there are fewer than `budget.limit`, and one leaves when the
    limit has fallen below the count. Calls must not raise (they report through their
    own channel); one that does ends its thread's loop with the error lost, so callers
    catch everything.
    """

    def __init__(self, budget: Budget, name: str = "deon-worker") -> None:
        self._budget = budget
        self._name = name
        self._queue: queue.SimpleQueue[tuple[Callable[..., object], tuple[object, ...]] | None]
        self._queue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._running = 0

    def submit(self, fn: Callable[..., object], *args: object) -> None:
        self._queue.put((fn, args))
        if self._running < self._budget.limit:
            with self._lock:
                if self._running < self._budget.limit:
                    self._running += 1
                    t = threading.Thread(
                        target=self._loop, name=f"{self._name}-{len(self._threads)}", daemon=True
                    )
                    self._threads.append(t)
                    t.start()

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fn, args = item
            fn(*args)
            if self._running > self._budget.limit:
                with self._lock:
                    if self._running > self._budget.limit:
                        self._running -= 1
                        return

    def close(self, cancel: bool = False) -> None:
        """Wait for the calls submitted (with `cancel`, only for those running)."""
        if cancel:
            while True:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
        with self._lock:
            for _ in self._threads:
                self._queue.put(None)
        for t in self._threads:
            t.join()

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, kind: object, *exc: object) -> None:
        self.close(cancel=kind is not None)
