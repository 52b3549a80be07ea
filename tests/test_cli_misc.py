"""`deon buckets`, and requests kept in flight concurrently."""

from __future__ import annotations

import pytest

from tests.conftest import Lab, make_h5, run_deon


def test_buckets_prints_one_name_per_line(lab: Lab) -> None:
    lab.client.create_bucket(Bucket="other-lab")

    r = run_deon("buckets")

    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["lab", "other-lab"]
    assert r.stderr == ""


UNPRINTABLE = {chr(c) for c in [*range(0x20), *range(0x7F, 0xA0), *range(0xD800, 0xE000)]}


@pytest.mark.parametrize("command", ["up", "down", "metadata down"])
def test_requests_run_concurrently(lab: Lab, command: str) -> None:
    """With -j 4, several object requests are in flight at once: the proxy holds each
    for a moment and counts how many it holds together."""
    import threading
    import time

    src = lab.tmp / "src"
    for i in range(8):
        make_h5(src / f"t{i}.h5", {"i": i}, seed=i)
    if command != "up":
        assert run_deon("up", "s3://lab/c", str(src)).returncode == 0
    kind = {"up": "PUT", "down": "GET", "metadata down": "HEAD"}[command]
    lock = threading.Lock()
    now, most = [0], [0]

    def hold(method: str, key: str, query: str) -> None:
        if method != kind or not key.startswith("c/t"):
            return
        with lock:
            now[0] += 1
            most[0] = max(most[0], now[0])
        time.sleep(0.3)
        with lock:
            now[0] -= 1

    lab.proxy.rules.before = hold
    args = {
        "up": ["up", "s3://lab/c", str(src)],
        "down": ["down", "s3://lab/c", str(lab.tmp / "dest")],
        "metadata down": ["metadata", "down", "s3://lab/c"],
    }[command]

    r = run_deon("-j", "4", *args)

    assert r.returncode == 0, r.stderr
    assert most[0] >= 3, most[0]
