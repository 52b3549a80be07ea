#!/usr/bin/env python3
"""deon's benchmark: deon against its peers, side by side, in one run.

    python bench/run.py                 # the full run (10,000 small + 200 large objects)
    python bench/run.py --quick         # a tiny run, as the tests do
    python bench/run.py --only large --out /tmp/large.md
                                        # only `download large objects`, every peer

It starts a local S3 server on 127.0.0.1 (s3rver 3.7.1 from npm, the fastest one that
installs here; a moto server when npm is missing, and the report says so), fills it with
RoboNet-like objects carrying deon's metadata headers, then times each workload for deon
and its peers (a serial boto3 loop, `aws s3`, s5cmd, rclone), interleaved run by run, and
reports the median wall time and client CPU (user + system of the process and its
children) of each, with ratios. Results go to bench/RESULTS.md (or --out).

Peers that cannot be installed are skipped and named in the report.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BUCKET = "bench"
KEY, SECRET = "S3RVER", "S3RVER"  # the only credentials s3rver accepts
MiB = 1024 * 1024


# -- tools -------------------------------------------------------------------------------


def sh(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Tools:
    """Where each peer lives; None when it could not be installed."""

    work: Path
    notes: list[str] = field(default_factory=list)
    s3rver: Path | None = None
    aws: str | None = None
    s5cmd: str | None = None
    rclone: str | None = None
    python: str = sys.executable
    deon: list[str] = field(default_factory=lambda: [sys.executable, "-m", "deon"])

    @classmethod
    def install(cls, work: Path, want_peers: bool, want_s3rver: bool) -> Tools:
        tools = cls(work)
        work.mkdir(parents=True, exist_ok=True)
        deon_bin = Path(sys.executable).parent / "deon"
        if deon_bin.exists():
            tools.deon = [str(deon_bin)]
        if want_s3rver:
            tools.s3rver = _install_s3rver(work, tools.notes)
        if want_peers:
            venv = work / "peers"
            if not (venv / "bin" / "python").exists():
                sh([sys.executable, "-m", "venv", str(venv)])
            pip = venv / "bin" / "pip"
            if not (venv / "bin" / "aws").exists() or not (venv / "bin" / "s5cmd").exists():
                r = sh([str(pip), "install", "-q", "awscli", "s5cmd"])
                if r.returncode:
                    tools.notes.append(f"could not install awscli/s5cmd: {r.stderr.strip()[-200:]}")
            for name in ("aws", "s5cmd"):
                path = venv / "bin" / name
                if path.exists():
                    setattr(tools, name, str(path))
                else:
                    tools.notes.append(f"{name} not available: skipped")
            tools.rclone = shutil.which("rclone")
            if tools.rclone is None and os.geteuid() == 0 and shutil.which("apt-get"):
                sh(["apt-get", "install", "-y", "-q", "rclone"])
                tools.rclone = shutil.which("rclone")
            if tools.rclone is None:
                tools.notes.append("rclone not available (Debian package rclone): skipped")
        return tools


def _install_s3rver(work: Path, notes: list[str]) -> Path | None:
    node_dir = work / "node"
    binary = node_dir / "node_modules" / ".bin" / "s3rver"
    if binary.exists():
        return binary
    if not shutil.which("npm"):
        notes.append("npm is missing: using a moto server instead of s3rver (slower)")
        return None
    node_dir.mkdir(parents=True, exist_ok=True)
    r = sh(
        [
            "npm",
            "install",
            "--silent",
            "--no-audit",
            "--no-fund",
            "--prefix",
            str(node_dir),
            "s3rver@3.7.1",
        ]
    )
    if r.returncode or not binary.exists():
        notes.append(f"npm install s3rver failed ({r.stderr.strip()[-200:]}): using moto")
        return None
    return binary


class Server:
    """A local S3 server on 127.0.0.1: s3rver when installed, else moto."""

    def __init__(self, tools: Tools, data: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.kind = "s3rver 3.7.1" if tools.s3rver else "moto server"
        if tools.s3rver:
            data.mkdir(parents=True, exist_ok=True)
            env = {**os.environ, "NODE_OPTIONS": "--openssl-legacy-provider"}
            cmd = [
                str(tools.s3rver),
                "-d",
                str(data),
                "-a",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-s",
                "--no-vhost-buckets",
            ]
        else:
            env = dict(os.environ)
            cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        self.stop()
        raise SystemExit(f"the {self.kind} did not start")

    def cpu(self) -> float:
        """CPU seconds (user + system) the server has used so far."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return 0.0

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


# -- measuring ---------------------------------------------------------------------------


@dataclass
class Sample:
    wall: float
    cpu: float
    maxrss_kb: int
    server_cpu: float = 0.0


SERVER: Server | None = None  # set by main(): its CPU is read around every command


def run_timed(
    cmd: list[str] | str, env: dict[str, str], *, shell: bool = False, stdin: str | None = None
) -> Sample:
    """Run a command; its wall time, and user + system CPU and peak RSS of its process
    tree (children that were waited for)."""
    server_before = SERVER.cpu() if SERVER else 0.0
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        env=env,
        shell=shell,
        stdin=subprocess.PIPE if stdin else None,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak = [0]
    watcher = threading.Thread(target=_watch_rss, args=(proc.pid, peak), daemon=True)
    watcher.start()
    if stdin:
        proc.stdin.write(stdin)  # type: ignore[union-attr]
        proc.stdin.close()  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    watcher.join()
    err = proc.stderr.read() if proc.stderr else ""  # type: ignore[union-attr]
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{cmd!r} exited {code}: {err.strip()[-600:]}")
    server = (SERVER.cpu() - server_before) if SERVER else 0.0
    return Sample(wall, usage.ru_utime + usage.ru_stime, peak[0], server)


def _watch_rss(pid: int, peak: list[int]) -> None:
    """Follow the peak resident set (VmHWM) of a process and its descendants until it
    exits. (ru_maxrss cannot be used: it survives fork + exec, so a child reports at
    least the RSS its parent had when it forked.)"""
    while True:
        total = 0
        try:
            for p in [pid, *_descendants(pid)]:
                for line in Path(f"/proc/{p}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1])
        except (OSError, ValueError):
            pass
        peak[0] = max(peak[0], total)
        try:
            if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
                return
        except OSError:
            return
        time.sleep(0.02)


def _descendants(pid: int) -> list[int]:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    out = [int(c) for c in children]
    for c in list(out):
        out.extend(_descendants(c))
    return out


@dataclass
class Row:
    workload: str
    tool: str
    samples: list[Sample] = field(default_factory=list)
    units: float = 0.0  # objects or bytes, for rates
    unit: str = ""
    note: str = ""

    @property
    def wall(self) -> float:
        return statistics.median(s.wall for s in self.samples)

    @property
    def cpu(self) -> float:
        return statistics.median(s.cpu for s in self.samples)

    @property
    def server_cpu(self) -> float:
        return statistics.median(s.server_cpu for s in self.samples)

    @property
    def rss_mb(self) -> float:
        return max(s.maxrss_kb for s in self.samples) / 1024

    def rate(self) -> str:
        if not self.units:
            return ""
        if self.unit == "B":
            return f"{self.units / self.wall / 1e6:.0f} MB/s"
        return f"{self.units / self.wall:.0f} {self.unit}/s"


# -- the data ----------------------------------------------------------------------------


def s3_client(url: str):
    import boto3
    import botocore.config

    return boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
        region_name="us-east-1",
        config=botocore.config.Config(
            max_pool_connections=32,
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
        ),
    )


def fill(url: str, small: int, large: int, large_size: int) -> None:
    """small/ objects of 4 KiB and large/ objects of large_size, with deon headers."""
    import hashlib

    from deon.metadata import wire as meta
    from deon.tools.sample import ROBOTS, metadata_for

    client = s3_client(url)
    client.create_bucket(Bucket=BUCKET)
    robots = list(ROBOTS)

    def put(prefix: str, i: int, size: int) -> None:
        rng = random.Random(i)
        body = rng.randbytes(size)
        doc = metadata_for(robots[i % len(robots)], i, rng)
        enc = meta.encode(doc, hashlib.sha256(body).hexdigest(), lambda d: "")
        client.put_object(
            Bucket=BUCKET, Key=f"{prefix}/traj_{i:06d}.h5", Body=body, Metadata=enc.metadata
        )

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: put("small", i, 4096), range(small)))
        list(pool.map(lambda i: put("large", i, large_size), range(large)))


def touch_objects(url: str, prefix: str, count: int, seed: int) -> None:
    """Rewrite `count` objects with new bytes and metadata (a new ETag). (A metadata-only
    rewrite would not do: s3rver 3.7.1 keeps LastModified on an in-place copy, so no
    incremental mirror could see it; AWS updates it.)"""
    import hashlib

    from deon.metadata import wire as meta

    client = s3_client(url)
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + "/")
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    rng = random.Random(seed)
    time.sleep(1.1)  # S3 lists LastModified to the second
    for key in rng.sample(keys, min(count, len(keys))):
        head = client.head_object(Bucket=BUCKET, Key=key)
        doc = meta.decode(head["Metadata"]).document or {}
        doc["relabelled"] = seed
        body = rng.randbytes(4096)
        enc = meta.encode(doc, hashlib.sha256(body).hexdigest(), lambda d: "")
        client.put_object(Bucket=BUCKET, Key=key, Body=body, Metadata=enc.metadata)


SERIAL_LOOP = """
import sys, json, boto3, botocore.config
c = boto3.client("s3", endpoint_url=sys.argv[1], aws_access_key_id="S3RVER",
                 aws_secret_access_key="S3RVER", region_name="us-east-1",
                 config=botocore.config.Config(s3={"addressing_style": "path"}))
rows = {}
for page in c.get_paginator("list_objects_v2").paginate(Bucket="bench", Prefix=sys.argv[2]):
    for o in page.get("Contents", []):
        if sys.argv[3] == "head":
            rows[o["Key"]] = c.head_object(Bucket="bench", Key=o["Key"])["Metadata"]
        else:
            rows[o["Key"]] = o["ETag"]
print(len(rows))
"""


def synth_catalog(path: Path, rows: int) -> float:
    """A catalog of `rows` RoboNet-like rows, written through deon's own writer."""
    import datetime as dt

    from deon.catalog import ObjectRow, open_catalog
    from deon.catalog.flatten import flatten
    from deon.tools.sample import ROBOTS, metadata_for

    start = time.perf_counter()
    catalog = open_catalog(str(path))
    robots = list(ROBOTS)
    rng = random.Random(7)
    when = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
    batch = []
    for i in range(rows):
        robot = robots[i % len(robots)]
        doc = metadata_for(robot, i, rng)
        batch.append(
            ObjectRow(
                BUCKET,
                f"{robot}/traj_{i:07d}.h5",
                500_000,
                f"{i:032x}",
                when,
                f"{i:064x}",
                metadata=json.dumps(doc),
                flat=flatten(doc),
            )
        )
        if len(batch) == 10_000:
            catalog.write(batch)
            batch = []
    catalog.write(batch)
    catalog.index_columns()
    catalog.close()
    return time.perf_counter() - start


# -- workloads ---------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--small", type=int, default=10_000, help="4 KiB objects (default 10000)")
    ap.add_argument("--large", type=int, default=200, help="large objects (default 200)")
    ap.add_argument("--large-mib", type=int, default=8, help="size of a large object in MiB")
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows of the synthetic catalog")
    ap.add_argument(
        "--memory-objects",
        type=int,
        default=100_000,
        help="objects mirrored for the memory figure (0: skip)",
    )
    ap.add_argument("--runs", type=int, default=3, help="runs per figure (median is reported)")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="a tiny run: 40 small, 2 large of 1 MiB, "
        "50 for memory, 2000 rows, 1 run, moto, no peers",
    )
    ap.add_argument("--no-peers", action="store_true", help="time deon and the boto3 loop only")
    ap.add_argument(
        "--only",
        choices=["large"],
        help="large: only the large-download workload (no small objects, mirror, upload, "
        "memory or catalog figures)",
    )
    ap.add_argument("--moto", action="store_true", help="use a moto server, not s3rver")
    ap.add_argument("--work", type=Path, default=HERE / "work", help="scratch folder")
    ap.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    args = ap.parse_args()
    if args.quick:
        args.small, args.large, args.large_mib, args.rows, args.runs = 40, 2, 1, 2000, 1
        args.memory_objects = 50
        args.no_peers, args.moto = True, True

    if args.only == "large":
        args.small, args.memory_objects, args.rows = 0, 0, 0
    tools = Tools.install(args.work, want_peers=not args.no_peers, want_s3rver=not args.moto)
    if args.moto and not args.quick:
        tools.notes.append("--moto: a moto server instead of s3rver")
    scratch = Path(tempfile.mkdtemp(prefix="deon-bench-", dir=args.work))
    global SERVER
    server = Server(tools, scratch / "s3")
    SERVER = server
    rows: list[Row] = []
    try:
        print(
            f"# {server.kind} at {server.url}; filling {args.small} small + {args.large} "
            f"large objects",
            file=sys.stderr,
        )
        started = time.perf_counter()
        fill(server.url, args.small, args.large, args.large_mib * MiB)
        print(f"# filled in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        rows = run_workloads(args, tools, server, scratch)
    finally:
        server.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    report = render(args, tools, server, rows)
    args.out.write_text(report)
    print(report)
    return 0


MIRROR_COLD = "mirror cold (HEADs)"
MIRROR_WARM = "mirror warm, nothing changed"
MIRROR_CHANGED = "mirror, 1 % changed"
MIRROR_SNAPSHOT = "mirror cold, new user, published snapshot"
DOWN_FRESH = "down small objects, fresh"
DOWN_NOOP = "down small objects, nothing changed"
DOWNLOAD_LARGE = "download large objects"
UPLOAD_LARGE = "upload large objects (with sha256)"
MEMORY = "mirror cold, memory"
QUERY = "query, 1/4 of the rows match"
COUNT = "query --count"
HELP = "deon --help"


def run_workloads(
    args: argparse.Namespace, tools: Tools, server: Server, scratch: Path
) -> list[Row]:
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DEON_"))}
    base_env.pop("AWS_CA_BUNDLE", None)  # rclone refuses to start with it set
    env = {
        **base_env,
        "AWS_ACCESS_KEY_ID": KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": server.url,
        "AWS_CONFIG_FILE": str(scratch / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(scratch / "aws-credentials"),
        "DEON_CONFIG_DIR": str(scratch / "deon-config"),
        "XDG_DATA_HOME": str(scratch / "xdg"),
        "DEON_DATA_DIR": str(scratch / "data"),
    }
    rclone_env = {
        **env,
        "RCLONE_CONFIG_B_TYPE": "s3",
        "RCLONE_CONFIG_B_PROVIDER": "Other",
        "RCLONE_CONFIG_B_ENDPOINT": server.url,
        "RCLONE_CONFIG_B_ACCESS_KEY_ID": KEY,
        "RCLONE_CONFIG_B_SECRET_ACCESS_KEY": SECRET,
        "RCLONE_CONFIG_B_REGION": "us-east-1",
        "RCLONE_CONFIG": str(scratch / "rclone.conf"),
    }
    deon = tools.deon
    n = args.small
    small_bytes = n * 4096
    large_bytes = args.large * args.large_mib * MiB
    results: dict[tuple[str, str], Row] = {}

    def add(workload: str, tool: str, sample: Sample, units: float = 0, unit: str = "") -> None:
        row = results.setdefault((workload, tool), Row(workload, tool, units=units, unit=unit))
        row.samples.append(sample)
        print(
            f"  {workload:42s} {tool:20s} {sample.wall:7.2f} s  cpu {sample.cpu:6.2f} s  "
            f"server {sample.server_cpu:6.2f} s",
            file=sys.stderr,
        )

    def fresh(name: str) -> Path:
        d = scratch / name
        shutil.rmtree(d, ignore_errors=True)
        return d

    def deon_cmd(catalog: Path | str, *rest: str) -> list[str]:
        return [*deon, "--catalog", str(catalog), *rest]

    nocat = scratch / "no-catalog.sqlite"  # never created: transfers as a user without one
    only_large = args.only == "large"
    if not only_large:
        # The snapshot a colleague published (its own prefix, so the HEAD figures stay HEADs).
        run_timed(
            deon_cmd(scratch / "publisher.sqlite", "metadata", "publish", f"s3://{BUCKET}/small"),
            env,
        )
    peers: list[tuple[str, Callable[[str, Path], list[str]], dict[str, str]]] = [
        ("deon", lambda src, d: deon_cmd(nocat, "down", f"s3://{BUCKET}/{src}", str(d)), env)
    ]
    if tools.aws:
        peers.append(
            (
                "aws s3",
                lambda src, d: [
                    tools.aws or "",
                    "s3",
                    "sync",
                    "--only-show-errors",
                    f"s3://{BUCKET}/{src}",
                    str(d),
                ],
                env,
            )
        )
    if tools.s5cmd:
        peers.append(
            (
                "s5cmd",
                lambda src, d: [
                    tools.s5cmd or "",
                    "--endpoint-url",
                    server.url,
                    "sync",
                    f"s3://{BUCKET}/{src}/*",
                    f"{d}/",
                ],
                env,
            )
        )
    if tools.rclone:
        peers.append(
            (
                "rclone",
                lambda src, d: [
                    tools.rclone or "",
                    "copy",
                    "--transfers",
                    "16",
                    "--checkers",
                    "16",
                    f"b:{BUCKET}/{src}",
                    str(d),
                ],
                rclone_env,
            )
        )

    for run in range(args.runs):
        print(f"# run {run + 1} of {args.runs}", file=sys.stderr)
        if only_large:
            # the peers in a rotated order each run, so no tool always goes first
            for tool, cmd, tool_env in peers[run % len(peers) :] + peers[: run % len(peers)]:
                d = fresh(f"large-{tool.split()[0]}")
                add(DOWNLOAD_LARGE, tool, run_timed(cmd("large", d), tool_env), large_bytes, "B")
                shutil.rmtree(d, ignore_errors=True)
            continue
        cat = scratch / f"catalog-{run}.sqlite"
        add(
            MIRROR_COLD,
            "serial boto3 loop",
            run_timed([tools.python, "-c", SERIAL_LOOP, server.url, "small/", "head"], env),
            n,
            "obj",
        )
        add(
            MIRROR_COLD,
            "deon metadata down",
            run_timed(
                deon_cmd(cat, "metadata", "down", "--no-snapshot", f"s3://{BUCKET}/small"), env
            ),
            n,
            "obj",
        )
        add(
            MIRROR_WARM,
            "bare boto3 listing",
            run_timed([tools.python, "-c", SERIAL_LOOP, server.url, "small/", "list"], env),
            n,
            "obj",
        )
        add(
            MIRROR_WARM,
            "deon metadata down",
            run_timed(deon_cmd(cat, "metadata", "down", f"s3://{BUCKET}/small"), env),
            n,
            "obj",
        )
        touch_objects(server.url, "small", max(1, n // 100), seed=run)
        add(
            MIRROR_CHANGED,
            "deon metadata down",
            run_timed(
                deon_cmd(cat, "metadata", "down", "--no-snapshot", f"s3://{BUCKET}/small"), env
            ),
            n,
            "obj",
        )
        # a new user's first mirror, with the (now 1 % stale) published snapshot
        newcomer = scratch / f"newcomer-{run}.sqlite"
        add(
            MIRROR_SNAPSHOT,
            "deon metadata down",
            run_timed(deon_cmd(newcomer, "metadata", "down", f"s3://{BUCKET}/small"), env),
            n,
            "obj",
        )
        for tool, cmd, tool_env in peers:
            d = fresh(f"down-{tool.split()[0]}")
            add(DOWN_FRESH, tool, run_timed(cmd("small", d), tool_env), small_bytes, "B")
            add(DOWN_NOOP, tool, run_timed(cmd("small", d), tool_env), n, "obj")
            shutil.rmtree(d, ignore_errors=True)
        for tool, cmd, tool_env in peers:
            d = fresh(f"large-{tool.split()[0]}")
            add(DOWNLOAD_LARGE, tool, run_timed(cmd("large", d), tool_env), large_bytes, "B")
            dest = f"up-{tool.split()[0]}-{run}"
            up_cmd = {
                "deon": deon_cmd(nocat, "up", f"s3://{BUCKET}/{dest}", str(d)),
                "aws": [
                    tools.aws or "",
                    "s3",
                    "cp",
                    "--recursive",
                    "--only-show-errors",
                    str(d),
                    f"s3://{BUCKET}/{dest}",
                ],
                "s5cmd": [
                    tools.s5cmd or "",
                    "--endpoint-url",
                    server.url,
                    "cp",
                    f"{d}/*",
                    f"s3://{BUCKET}/{dest}/",
                ],
                "rclone": [
                    tools.rclone or "",
                    "copy",
                    "--transfers",
                    "16",
                    str(d),
                    f"b:{BUCKET}/{dest}",
                ],
            }[tool.split()[0]]
            add(UPLOAD_LARGE, tool, run_timed(up_cmd, tool_env), large_bytes, "B")
            shutil.rmtree(d, ignore_errors=True)
    # memory: one cold mirror of a large prefix
    if args.memory_objects:
        print(f"# filling {args.memory_objects} objects for the memory figure", file=sys.stderr)
        fill_prefix(server.url, "many", args.memory_objects)
        add(
            MEMORY,
            "deon metadata down",
            run_timed(
                deon_cmd(
                    scratch / "memory.sqlite",
                    "metadata",
                    "down",
                    "--no-snapshot",
                    f"s3://{BUCKET}/many",
                ),
                env,
            ),
            args.memory_objects,
            "obj",
        )
    if only_large:
        return list(results.values())
    # the catalog at scale, and start-up
    big = scratch / "big.sqlite"
    took = synth_catalog(big, args.rows)
    print(f"# synthetic catalog of {args.rows} rows written in {took:.0f} s", file=sys.stderr)
    for _ in range(args.runs):
        q = f"{' '.join(deon)} --catalog {big} query \"robot = 'sawyer'\" > /dev/null"
        add(QUERY, "deon query", run_timed(q, env, shell=True), args.rows, "row")
        q = f"{' '.join(deon)} --catalog {big} query --count \"camera_configuration = 'sudri0'\""
        add(COUNT, "deon query --count", run_timed(q, env, shell=True), args.rows, "row")
        add(HELP, "deon --help", run_timed([*deon, "--help"], env))
    return list(results.values())


def fill_prefix(url: str, prefix: str, count: int) -> None:
    """`count` tiny objects with deon headers under prefix/ (for the memory figure)."""
    from deon.metadata import wire as meta
    from deon.tools.sample import metadata_for

    client = s3_client(url)

    def put(i: int) -> None:
        doc = metadata_for("sawyer", i, random.Random(i))
        enc = meta.encode(doc, None, lambda d: "")
        client.put_object(
            Bucket=BUCKET, Key=f"{prefix}/{i:07d}.h5", Body=b"x", Metadata=enc.metadata
        )

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, range(count)))


# -- the report --------------------------------------------------------------------------


def render(args: argparse.Namespace, tools: Tools, server: Server, rows: list[Row]) -> str:
    import deon

    versions = {
        "python": platform.python_version(),
        "deon": deon.__version__,
        "server": server.kind,
    }
    for name, cmd in (
        ("aws", [tools.aws or "", "--version"]),
        ("s5cmd", [tools.s5cmd or "", "version"]),
        ("rclone", [tools.rclone or "", "version"]),
    ):
        if cmd[0]:
            out = sh(cmd)
            versions[name] = (
                (out.stdout or out.stderr).strip().splitlines()[0] if out.returncode == 0 else "?"
            )
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    lines = [
        "# deon benchmark results",
        "",
        f"Generated by `python bench/run.py{' --quick' if args.quick else ''}"
        f"{' --only ' + args.only if args.only else ''}` on "
        f"{time.strftime('%Y-%m-%d %H:%M')}: {os.cpu_count()} cores ({cpu}), "
        f"{_mem_gib():.0f} GiB, {platform.system()} {platform.release()}.",
        f"Server: {server.kind} on 127.0.0.1, sharing the cores with the client. Objects: "
        f"{args.small} x 4 KiB and {args.large} x {args.large_mib} MiB with RoboNet-like metadata "
        f"(27 keys) in deon's headers. Each figure is the median of {args.runs} run(s), runs "
        'interleaved; "CPU" is user + system of the client process tree, "server" the '
        "server's own CPU during the command.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        "",
    ]
    if tools.notes:
        lines += ["Notes:", *[f"- {n}" for n in tools.notes], ""]
    lines += targets(args, rows)
    lines += [
        "## All figures",
        "",
        "Commands: deon `down`/`up`/`metadata down`; aws `s3 sync` (down) and `s3 cp --recursive` "
        "(upload); s5cmd `sync` (down) and `cp` (upload); rclone `copy --transfers 16 "
        "--checkers 16`. The serial boto3 loop is LIST then one `head_object` per key, as the "
        "original deoncli did; the bare listing is the same LIST alone.",
        "",
        "| workload | tool | wall s | CPU s | server CPU s | rate | vs first | peak RSS MB |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    first: dict[str, Row] = {}
    for row in rows:
        ref = first.setdefault(row.workload, row)
        ratio = ref.wall / row.wall if row.wall else 0
        lines.append(
            f"| {row.workload} | {row.tool} | {row.wall:.2f} | {row.cpu:.2f} | "
            f"{row.server_cpu:.2f} | {row.rate()} | {ratio:.2f}x | {row.rss_mb:.0f} |"
        )
    lines.append("")
    return "\n".join(lines)


def targets(args: argparse.Namespace, rows: list[Row]) -> list[str]:
    """The issue's targets, each judged from this run's figures."""
    by = {(r.workload, r.tool): r for r in rows}
    out = ["## Targets", "", "| target | measured | met |", "| --- | --- | --- |"]

    def line(target: str, measured: str, ok: bool | None) -> None:
        out.append(f"| {target} | {measured} | {'yes' if ok else 'no' if ok is False else 'n/a'} |")

    loop = by.get((MIRROR_COLD, "serial boto3 loop"))
    cold = by.get((MIRROR_COLD, "deon metadata down"))
    if loop and cold:
        speedup = loop.wall / cold.wall
        per = cold.cpu / args.small * 1000
        line(
            "mirror cold: >= 4x the serial loop",
            f"{speedup:.2f}x ({args.small / cold.wall:.0f} vs {args.small / loop.wall:.0f} obj/s)",
            speedup >= 4,
        )
        line("mirror cold: <= 0.3 ms client CPU per object", f"{per:.3f} ms", per <= 0.3)
        if cold.server_cpu:
            cap = args.small / cold.server_cpu
            out.append(
                f"| (context) the server's CPU for these HEADs caps any HEAD-based mirror "
                f"at | {cap:.0f} obj/s = {cap / (args.small / loop.wall):.2f}x the loop | |"
            )
    bare = by.get((MIRROR_WARM, "bare boto3 listing"))
    warm = by.get((MIRROR_WARM, "deon metadata down"))
    if bare and warm:
        line("mirror warm: zero HEADs", "asserted by tests/test_catalog_mirror.py", True)
        line(
            "mirror warm: <= 1.3x a bare listing",
            f"{warm.wall / bare.wall:.2f}x",
            warm.wall / bare.wall <= 1.3,
        )
    snap = by.get((MIRROR_SNAPSHOT, "deon metadata down"))
    if loop and snap:
        line(
            "cold start with a snapshot: >= 10x the serial loop",
            f"{loop.wall / snap.wall:.1f}x",
            loop.wall / snap.wall >= 10,
        )
        if bare:
            out.append(
                f"| (context) the LIST a correct mirror needs takes {bare.wall:.2f} s alone "
                f"(a bare listing): at most | {loop.wall / bare.wall:.1f}x the loop | |"
            )

    def versus(workload: str, peer: str, better: str, label: str) -> None:
        d, p = by.get((workload, "deon")), by.get((workload, peer))
        if d is None or p is None:
            line(label, f"{peer} not measured", None)
            return
        if better == "faster":
            line(label, f"deon {d.wall:.2f} s, {peer} {p.wall:.2f} s", d.wall < p.wall)
        else:
            line(label, f"deon {d.wall:.2f} s, {peer} {p.wall:.2f} s", d.wall <= p.wall)

    versus(DOWN_FRESH, "rclone", "faster", f"down {args.small} small, fresh: faster than rclone")
    versus(DOWN_NOOP, "s5cmd", "no slower", f"down {args.small} small, nothing changed: <= s5cmd")
    versus(DOWNLOAD_LARGE, "s5cmd", "no slower", "download large: >= s5cmd")
    rate = _sha256_rate()
    large = args.large * args.large_mib * MiB
    out.append(
        f"| (context) deon checks the sha256 of every byte it downloads: | "
        f"{large / rate:.2f} s of CPU at {rate / 1e6:.0f} MB/s here; s5cmd checks none | |"
    )
    versus(UPLOAD_LARGE, "s5cmd", "no slower", "upload large with sha256: >= s5cmd")
    q = by.get((QUERY, "deon query"))
    if q:
        line(f"deon query on {args.rows} rows: < 1 s", f"{q.wall:.2f} s", q.wall < 1)
    h = by.get((HELP, "deon --help"))
    if h:
        line("deon --help: < 0.3 s", f"{h.wall:.2f} s", h.wall < 0.3)
    m = by.get((MEMORY, "deon metadata down"))
    if m:
        line(
            f"memory, mirror of {args.memory_objects} objects: < 300 MB",
            f"{m.rss_mb:.0f} MB",
            m.rss_mb < 300,
        )
    out.append("")
    return out


def _sha256_rate() -> float:
    """Bytes per second this machine hashes with sha256 (one core)."""
    import hashlib

    data = os.urandom(64 * MiB)
    start = time.perf_counter()
    hashlib.sha256(data).hexdigest()
    return len(data) / (time.perf_counter() - start)


def _mem_gib() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        return 0.0


if __name__ == "__main__":
    sys.exit(main())
