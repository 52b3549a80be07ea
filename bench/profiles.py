#!/usr/bin/env python3
"""deon's WAN and scale benchmark profiles (issue 15), against the synthetic S3 endpoint
(tests/synthetic_s3.py: objects computed on the fly, no disk, no fill time).

    python bench/profiles.py wan   [--delay-ms 20] [--objects 200000] [--heads 6000]
    python bench/profiles.py scale [--sizes 100000,1000000] [--cold 20000,100000]
    python bench/profiles.py scale --sizes 10000000 --cold ''    # the 10 M no-op refresh
    python bench/profiles.py proxy --to PORT --delay-ms 20     # the proxy alone

wan: a latency-injecting TCP proxy on 127.0.0.1 delays every byte by `--delay-ms` each
way (so the round trip is twice that), between deon (or its peer) and the endpoint;
every tool runs at its defaults. It times a no-op refresh of `--objects` objects on
loopback and through the proxy (target: <= 1.3x), and a cold mirror of `--heads`
objects through the proxy with the default HEAD budget and with -j 32, 64, 128
(target: the default >= 90 % of the best, and >= 1,500 HEAD/s), beside a bare boto3
listing and boto3's serial list + head loop (the original deoncli's way).

scale: for each size, a catalog of that many rows is written directly, then a no-op
refresh is run: wall time and peak RSS, beside a bare boto3 listing of the same prefix
(which keeps every key, as the original deoncli did). Cold mirrors of the `--cold` sizes
give the cold peak RSS (target: within 20 % of each other) and catalog bytes per object.

Results are printed and written into bench/RESULTS.md between markers (one section per
profile), beside the figures of the peers measured in the same run. Timings are never
asserted by the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from run import Sample, run_timed  # noqa: E402

from tests.synthetic_s3 import BUCKET, WHEN, Objects, etag_of  # noqa: E402

# -- the latency proxy -----------------------------------------------------------------


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Forward bytes, each chunk `delay` seconds after it arrived, in order."""
    loop = asyncio.get_running_loop()
    q: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await q.get()
            if not data:
                break
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        writer.close()

    task = asyncio.create_task(deliver())
    try:
        while True:
            data = await reader.read(256 * 1024)
            await q.put((loop.time() + delay, data))
            if not data:
                break
    except ConnectionError:
        await q.put((0.0, b""))
    await task


def serve_proxy(to_port: int, delay: float, port: int = 0) -> None:
    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", to_port)
        except OSError:
            w.close()
            return
        await asyncio.gather(_pipe(r, uw, delay), _pipe(ur, w, delay), return_exceptions=True)

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=512)
        print(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# -- helpers ------------------------------------------------------------------------------


def spawn(args: list[str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def endpoint(objects: int, **options: object) -> tuple[subprocess.Popen[str], str]:
    extra = [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
    return spawn([sys.executable, "-m", "tests.synthetic_s3", "--objects", str(objects), *extra])


def proxy(port: int, delay_ms: float) -> tuple[subprocess.Popen[str], str]:
    return spawn(
        [
            sys.executable,
            str(HERE / "profiles.py"),
            "proxy",
            "--to",
            str(port),
            "--delay-ms",
            str(delay_ms),
        ]
    )


def _cpu(pid: int) -> float:
    """User + system CPU seconds of a running process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def fill_catalog(path: Path, objects: Objects) -> float:
    """The rows a mirror of the objects makes (fixed columns only: a refresh compares
    key, ETag and LastModified), written through deon's own writer."""
    from deon.catalog.db import ObjectRow, open_catalog

    start = time.perf_counter()
    when = dt.datetime.fromisoformat(WHEN.replace("Z", "+00:00"))
    catalog = open_catalog(str(path))
    batch = []
    for i in range(objects.count):
        batch.append(ObjectRow(BUCKET, objects.key(i), objects.size, etag_of(i), when))
        if len(batch) == 50_000:
            catalog.write(batch)
            batch = []
    catalog.write(batch)
    catalog.close()
    return time.perf_counter() - start


def env_for(url: str, scratch: Path, catalog: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DEON_"))}
    return {
        **base,
        "AWS_ACCESS_KEY_ID": "synthetic",
        "AWS_SECRET_ACCESS_KEY": "synthetic",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": url,
        "AWS_CONFIG_FILE": str(scratch / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(scratch / "aws-credentials"),
        "DEON_CONFIG_DIR": str(scratch / "deon-config"),
        "DEON_CATALOG": str(catalog),
        "DEON_DATA_DIR": str(scratch / "data"),
    }


DEON = [sys.executable, "-m", "deon"]
BOTO = """
import sys, boto3, botocore.config
c = boto3.client("s3", endpoint_url=sys.argv[1], aws_access_key_id="x",
                 aws_secret_access_key="x", region_name="us-east-1",
                 config=botocore.config.Config(s3={"addressing_style": "path"}))
rows = {}
for page in c.get_paginator("list_objects_v2").paginate(Bucket="synth", Prefix=sys.argv[2]):
    for o in page.get("Contents", []):
        if sys.argv[3] == "head":
            rows[o["Key"]] = c.head_object(Bucket="synth", Key=o["Key"])["Metadata"]
        else:
            rows[o["Key"]] = o["ETag"]
print(len(rows))
"""


def fmt(s: Sample) -> str:
    return f"{s.wall:.2f} s, {s.maxrss_kb / 1024:.0f} MB"


# -- profiles ---------------------------------------------------------------------------------


class _Skip(Exception):
    """A part of a profile left out (--only)."""


def wan(args: argparse.Namespace, scratch: Path) -> list[str]:
    out = [
        f"One-way delay {args.delay_ms:g} ms (RTT {2 * args.delay_ms:g} ms) through a TCP proxy "
        "on 127.0.0.1; the synthetic endpoint behind it; every tool at its defaults.",
        "",
        "| workload | tool | loopback | through the proxy | ratio |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    n = args.objects
    targets: list[tuple[str, str, bool]] = []
    server, url = endpoint(n if args.only != "heads" else 1)
    far, far_url = proxy(port_of(url), args.delay_ms)
    try:
        if args.only == "heads":
            raise _Skip
        cat = scratch / "wan.sqlite"
        fill_catalog(cat, Objects(n))
        print(f"# catalog of {n} rows written", file=sys.stderr)
        near_env, far_env = env_for(url, scratch, cat), env_for(far_url, scratch, cat)
        cmd = [*DEON, "metadata", "down", "--no-snapshot", f"s3://{BUCKET}/many/"]
        near = run_timed(cmd, near_env)
        farr = run_timed(cmd, far_env)
        ratio = farr.wall / near.wall
        out.append(
            f"| no-op refresh, {n} objects | deon | {fmt(near)} | {fmt(farr)} | {ratio:.2f}x |"
        )
        sq = [*DEON, "metadata", "down", "--no-snapshot", f"s3://{BUCKET}/many/"]
        seq_env = {**far_env, "DEON_LIST_WIDTH": "1"}
        seq = run_timed(sq, seq_env)
        out.append(
            f"| no-op refresh, {n} objects | deon, sequential listing "
            f"(DEON_LIST_WIDTH=1) | | {fmt(seq)} | {seq.wall / near.wall:.2f}x |"
        )
        b_near = run_timed([sys.executable, "-c", BOTO, url, "many/", "list"], near_env)
        b_far = run_timed([sys.executable, "-c", BOTO, far_url, "many/", "list"], far_env)
        out.append(
            f"| bare listing, {n} objects | boto3 paginator | {fmt(b_near)} | "
            f"{fmt(b_far)} | {b_far.wall / b_near.wall:.2f}x |"
        )
        targets.append(
            ("no-op refresh over the WAN <= 1.3x loopback", f"{ratio:.2f}x", ratio <= 1.3)
        )
    except _Skip:
        pass
    finally:
        far.terminate()
        server.terminate()
    # HEADs: a cold mirror of --heads objects through the proxy, then with the delay
    # made by the endpoint itself (no proxy: its CPU is spent on deon and the server)
    h = args.heads
    configs = (
        ("deon, defaults", None),
        ("deon -j 32", 32),
        ("deon -j 64", 64),
        ("deon -j 128", 128),
    )
    out += [
        "",
        f"Cold mirrors of {h} objects, each configuration run {args.rounds} times interleaved "
        "(median shown). CPU per HEAD is the client's, the endpoint's and the proxy's, in "
        "ms; the machine's 2 cores divided by their sum is the most HEAD/s this machine "
        "can serve, whatever the concurrency.",
        "",
        "| cold mirror | HEADs | wall s | HEAD/s | CPU/HEAD deon | endpoint | proxy "
        "| ceiling HEAD/s | peak RSS MB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    rates: dict[str, float] = {}
    near_rates: dict[str, float] = {}
    # deon's start-up (imports, opening the catalog, the bucket's region), measured on a
    # prefix of one object and taken off each run: the rate is that of the HEADs.
    server, run_url = endpoint(1)
    try:
        base = min(
            (
                run_timed(
                    [*DEON, "metadata", "down", "--no-snapshot", f"s3://{BUCKET}/many/"],
                    env_for(run_url, scratch, scratch / f"base-{i}.sqlite"),
                )
                for i in range(3)
            ),
            key=lambda x: x.wall,
        )
    finally:
        server.terminate()
    out.insert(
        -3,
        f"HEAD/s and CPU per HEAD are net of deon's start-up, measured on a prefix of one "
        f"object: {base.wall:.2f} s, {base.cpu:.2f} s of CPU.",
    )
    out.insert(-3, "")
    for far_side in (True, False):
        if far_side:
            server, url = endpoint(h)
            far, run_url = proxy(port_of(url), args.delay_ms)
            where, table = "through the proxy", rates
        else:
            server, run_url = endpoint(h, delay_ms=2 * args.delay_ms)
            far, where, table = None, "endpoint delays each answer by the RTT", near_rates
        try:
            samples: dict[str, list[tuple[Sample, float, float]]] = {}
            chosen = configs if far_side else (configs[0], configs[-1])
            for r in range(args.rounds):
                for label, jobs in chosen:
                    cat = scratch / f"cold-{jobs}-{r}-{far_side}.sqlite"
                    env = env_for(run_url, scratch, cat)
                    opts = [] if jobs is None else ["-j", str(jobs)]
                    s0 = _cpu(server.pid)
                    p0 = _cpu(far.pid) if far else 0.0
                    cmd = [*DEON, *opts, "metadata", "down", "--no-snapshot"]
                    s = run_timed([*cmd, f"s3://{BUCKET}/many/"], env)
                    took = (_cpu(server.pid) - s0, (_cpu(far.pid) - p0) if far else 0.0)
                    samples.setdefault(label, []).append((s, *took))
                    for p in scratch.glob(f"cold-{jobs}-{r}-{far_side}.sqlite*"):
                        p.unlink()
            for label, runs in samples.items():
                runs.sort(key=lambda x: x[0].wall)
                s, srv, prx = runs[len(runs) // 2]
                net = max(1e-3, s.wall - base.wall)
                table[label] = h / net
                ms = [1000 * x / h for x in (max(0.0, s.cpu - base.cpu), srv, prx)]
                ceiling = (os.cpu_count() or 1) * 1000 / sum(ms)
                out.append(
                    f"| {label}, {where} | {h} | {s.wall:.2f} | {h / net:.0f} | "
                    f"{ms[0]:.3f} | {ms[1]:.3f} | {ms[2]:.3f} | {ceiling:.0f} | "
                    f"{s.maxrss_kb / 1024:.0f} |"
                )
            if far_side and far is not None:
                loop_n = 100  # the keys under many/traj_0000000
                s = run_timed(
                    [sys.executable, "-c", BOTO, run_url, "many/traj_0000000", "head"],
                    env_for(run_url, scratch, scratch / "x.sqlite"),
                )
                out.append(
                    f"| boto3 serial list + head loop (first {loop_n}), {where} | {loop_n} | "
                    f"{s.wall:.2f} | {loop_n / s.wall:.0f} | | | | | {s.maxrss_kb / 1024:.0f} |"
                )
        finally:
            if far is not None:
                far.terminate()
            server.terminate()
    best = max(v for k, v in rates.items() if k != "deon, defaults")
    default = rates["deon, defaults"]
    targets.append(
        (
            "defaults >= 90 % of the best -j (32, 64, 128), through the proxy",
            f"{default:.0f} vs {best:.0f} HEAD/s = {default / best:.0%}",
            default >= 0.9 * best,
        )
    )
    top = max(near_rates.values())
    targets.append(
        (
            ">= 1,500 HEAD/s where the server can take it (the endpoint delaying, no proxy)",
            f"{near_rates['deon, defaults']:.0f} HEAD/s at the defaults, {top:.0f} the best",
            near_rates["deon, defaults"] >= 1500,
        )
    )
    return out + ["", *target_table(targets)]


def scale(args: argparse.Namespace, scratch: Path) -> list[str]:
    out = [
        "| workload | objects | tool | wall s | peak RSS MB | catalog B/object |",
        "| --- | ---: | --- | ---: | ---: | ---: |",
    ]
    targets = []
    noop: dict[int, Sample] = {}
    for n in [int(x) for x in args.sizes.split(",") if x]:
        server, url = endpoint(n)
        try:
            cat = scratch / f"noop-{n}.sqlite"
            took = fill_catalog(cat, Objects(n))
            print(f"# catalog of {n} rows written in {took:.0f} s", file=sys.stderr)
            env = env_for(url, scratch, cat)
            s = run_timed([*DEON, "metadata", "down", "--no-snapshot", f"s3://{BUCKET}/many/"], env)
            noop[n] = s
            out.append(
                f"| no-op refresh | {n} | deon | {s.wall:.2f} | {s.maxrss_kb / 1024:.0f} | |"
            )
            if n <= args.peer_max:
                b = run_timed([sys.executable, "-c", BOTO, url, "many/", "list"], env)
                out.append(
                    f"| bare listing into a dict | {n} | boto3 paginator | {b.wall:.2f} | "
                    f"{b.maxrss_kb / 1024:.0f} | |"
                )
        finally:
            server.terminate()
            for p in scratch.glob(f"noop-{n}.sqlite*"):
                p.unlink()
    if noop:
        n, s = max(noop.items())
        targets.append(
            (
                f"no-op refresh of {n} objects < 300 MB peak (10 M asked: see note)",
                f"{s.maxrss_kb / 1024:.0f} MB",
                s.maxrss_kb / 1024 < 300,
            )
        )
    cold: dict[int, Sample] = {}
    for n in [int(x) for x in args.cold.split(",") if x]:
        server, url = endpoint(n)
        try:
            cat = scratch / f"cold-{n}.sqlite"
            env = env_for(url, scratch, cat)
            s = run_timed([*DEON, "metadata", "down", "--no-snapshot", f"s3://{BUCKET}/many/"], env)
            cold[n] = s
            import sqlite3

            db = sqlite3.connect(cat)
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            db.close()
            per = cat.stat().st_size / n
            out.append(
                f"| cold mirror | {n} | deon | {s.wall:.2f} | {s.maxrss_kb / 1024:.0f} "
                f"| {per:.0f} |"
            )
        finally:
            server.terminate()
    if len(cold) >= 2:
        (a, sa), (b, sb) = min(cold.items()), max(cold.items())
        diff = sb.maxrss_kb / sa.maxrss_kb - 1
        targets.append(
            (
                f"cold mirror peak independent of count ({a} vs {b}: within 20 %)",
                f"{sa.maxrss_kb / 1024:.0f} MB vs {sb.maxrss_kb / 1024:.0f} MB ({diff:+.0%})",
                abs(diff) <= 0.2,
            )
        )
    return out + ["", *target_table(targets)]


def target_table(targets: list[tuple[str, str, bool]]) -> list[str]:
    out = ["| target | measured | met |", "| --- | --- | --- |"]
    out += [f"| {t} | {m} | {'yes' if ok else 'no'} |" for t, m, ok in targets]
    return out


def write_section(name: str, title: str, body: list[str]) -> None:
    path = HERE / "RESULTS.md"
    text = path.read_text() if path.exists() else "# deon benchmark results\n"
    start, end = f"<!-- {name}: begin -->", f"<!-- {name}: end -->"
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    section = "\n".join(
        [
            start,
            f"## {title}",
            "",
            f"`python bench/profiles.py {name}` on {when}, {os.cpu_count()} cores, the "
            "client and its peers run side by side in this one run.",
            "",
            *body,
            end,
        ]
    )
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    text = (
        pattern.sub(lambda _: section, text)
        if pattern.search(text)
        else (text.rstrip() + "\n\n" + section + "\n")
    )
    path.write_text(text)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="profile", required=True)
    w = sub.add_parser("wan")
    w.add_argument("--delay-ms", type=float, default=20.0, help="one-way delay")
    w.add_argument("--objects", type=int, default=200_000)
    w.add_argument("--heads", type=int, default=6000)
    w.add_argument("--rounds", type=int, default=3, help="runs of each cold mirror")
    w.add_argument("--only", choices=("heads",), help="only the cold mirrors (HEADs)")
    s = sub.add_parser("scale")
    s.add_argument("--sizes", default="100000,1000000")
    s.add_argument("--cold", default="20000,100000")
    s.add_argument(
        "--peer-max",
        type=int,
        default=1_000_000,
        help="run the boto3 listing only up to this size (at 10 M it holds ~2.5 GB, 45 min)",
    )
    p = sub.add_parser("proxy")
    p.add_argument("--to", type=int, required=True)
    p.add_argument("--delay-ms", type=float, default=20.0)
    p.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    if args.profile == "proxy":
        serve_proxy(args.to, args.delay_ms / 1000, args.port)
        return 0
    scratch = Path(tempfile.mkdtemp(prefix="deon-profile-"))
    try:
        if args.profile == "wan":
            body = wan(args, scratch)
            title = "WAN profile"
        else:
            body = scale(args, scratch)
            title = "Scale profile"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print("\n".join(body))
    if not getattr(args, "only", None):  # a part of a profile does not replace it
        write_section(args.profile, title, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
