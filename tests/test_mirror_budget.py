"""The HEADs of a metadata mirror have their own budget: it grows while throughput
grows (a far server), backs off when the server says SlowDown, and `-j` caps it.
Observed on the server's side: the synthetic endpoint counts the requests in flight."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_deon
from tests.synthetic_s3 import BUCKET

ROOT = Path(__file__).resolve().parent.parent
N = 3000


@pytest.fixture
def endpoint(request: pytest.FixtureRequest, isolated_env: Path, monkeypatch: Any) -> Iterator[str]:
    options = getattr(request, "param", {})
    args = [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.synthetic_s3", "--objects", str(N), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    yield url
    proc.terminate()
    proc.wait(10)


def stats(url: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{url}/_stats") as r:
        return dict(json.loads(r.read()))


@pytest.mark.parametrize("endpoint", [{"delay_ms": 30}], indirect=True)
def test_by_default_heads_to_a_far_server_grow_past_the_transfer_budget(endpoint: str) -> None:
    r = run_deon("metadata", "down", f"s3://{BUCKET}/many")

    assert r.returncode == 0, r.stderr
    assert f"{N} new" in r.stderr
    # the fixed budget it replaces: 2 x 16 HEADs, and one LIST
    assert stats(endpoint)["peak_inflight"] > 2 * 16 + 1


@pytest.mark.parametrize("endpoint", [{"delay_ms": 30}], indirect=True)
def test_jobs_caps_the_heads_too(endpoint: str) -> None:
    r = run_deon("-j", "8", "metadata", "down", f"s3://{BUCKET}/many")

    assert r.returncode == 0, r.stderr
    assert f"{N} new" in r.stderr
    # at most 8 HEADs and 8 LIST ranges (the fixed budget it replaced: 2 x 8 HEADs + 1)
    assert stats(endpoint)["peak_inflight"] <= 8 + 8


@pytest.mark.parametrize("endpoint", [{"delay_ms": 10, "throttle_above": 12}], indirect=True)
def test_slowdown_makes_the_heads_back_off(endpoint: str) -> None:
    r = run_deon("metadata", "down", f"s3://{BUCKET}/many")

    assert r.returncode == 0, r.stderr
    assert f"{N} new" in r.stderr
    s = stats(endpoint)
    # A budget that kept its size would be refused on most of its requests.
    assert s.get("SlowDown", 0) < 0.1 * N, s


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def window(budget: Any, clock: FakeClock, per_second: Any) -> None:
    """One measuring window (0.25 s) at the throughput `per_second(limit)` gives."""
    n = max(budget.limit, int(per_second(budget.limit) * 0.25))
    for _ in range(n):
        clock.now += 0.2501 / n  # just past the window, whatever the rounding
        with budget:
            pass


def test_the_budget_doubles_while_throughput_grows_then_holds_and_halves_on_slowdown() -> None:
    from deon.transfer.budget import Budget

    clock = FakeClock()
    throttles = [0.0]
    budget = Budget(8, 1000, throttled=lambda: throttles[0], clock=clock)
    # a far server: throughput grows with the limit, up to 40 in flight
    far = lambda limit: 25 * min(limit, 40)  # noqa: E731
    seen = []
    for _ in range(5):
        window(budget, clock, far)
        seen.append(budget.limit)
    # doubling while throughput grows; 128 gave no more than 64: back to 64, held
    assert seen == [16, 32, 64, 128, 64]
    for _ in range(3):
        window(budget, clock, far)
    assert budget.limit == 64
    # SlowDown: halved at once
    throttles[0] = 1.0
    with budget:
        pass
    assert budget.limit == 32
    # never above the cap (-j)
    capped = Budget(8, 10, clock=clock)
    for _ in range(4):
        window(capped, clock, lambda limit: 25 * limit)
    assert capped.limit == 10 and capped.peak == 10


def test_the_workers_never_outnumber_the_budget_and_leave_when_it_shrinks() -> None:
    import threading
    import time

    from deon.transfer.budget import Budget, Workers

    budget = Budget(4, 64, adaptive=False)
    gate = threading.Event()
    lock = threading.Lock()
    running, most, done = [0], [0], []

    def call(i: int) -> None:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        gate.wait(10)
        with budget:
            pass
        with lock:
            running[0] -= 1
            done.append(i)

    workers = Workers(budget, "test")
    for i in range(50):  # queued far ahead of the budget, as the mirror queues HEADs
        workers.submit(call, i)
    time.sleep(0.2)
    assert most[0] == 4
    assert len([t for t in threading.enumerate() if t.name.startswith("test-")]) == 4
    budget.limit = 2  # SlowDown halved it
    gate.set()
    deadline = time.monotonic() + 10
    while len(done) < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    assert len([t for t in threading.enumerate() if t.name.startswith("test-")]) == 2
    workers.close()
    assert sorted(done) == list(range(50))
    assert most[0] == 4
    assert not [t for t in threading.enumerate() if t.name.startswith("test-")]


def test_closing_the_workers_after_an_error_drops_the_calls_still_queued() -> None:
    import threading

    from deon.transfer.budget import Budget, Workers

    budget = Budget(2, 2, adaptive=False)
    gate = threading.Event()
    done: list[int] = []

    def call(i: int) -> None:
        gate.wait(10)
        done.append(i)

    with pytest.raises(KeyboardInterrupt), Workers(budget, "test") as workers:
        for i in range(20):
            workers.submit(call, i)
        threading.Timer(0.2, gate.set).start()
        raise KeyboardInterrupt
    assert len(done) == 2  # the two running finished; the 18 queued never started
