#!/usr/bin/env python3
"""Client CPU per S3 request, for the ways deon could carry its bulk requests.

    python bench/transport.py [--requests N]

A tiny keep-alive HTTP/1.1 server (a subprocess, so its CPU is not counted) answers
every request like an S3 HEAD of a RoboNet object (27 metadata headers). One thread
sends N signed HEADs (and GETs of 4 KiB) through each client; the figure is the
client process's CPU (user + system) per request. Compared:

- deon's S3Http (deon/s3/transport.py): botocore's urllib3 connections (proxies, TLS,
  100-continue), http.client's framing and a plain header parser;
- botocore's URLLib3Session.send (what botocore's own requests go through);
- urllib3's HTTPConnectionPool.urlopen on botocore's pool;
- a botocore S3 client's head_object (the whole boto3 pipeline).

`--against CHECKOUT` also loads that checkout's deon/s3/transport.py and measures the
two S3Http side by side, alternating batches (the median of the batches is reported),
so that a busy machine slows both alike.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SERVER = r"""
import asyncio, sys
META = "".join(f"x-amz-meta-key{i}: {'v' * 40}\r\n" for i in range(27))
HEAD = ("HTTP/1.1 200 OK\r\nx-amz-id-2: abc\r\nx-amz-request-id: 123\r\n"
        "Date: Tue, 24 Nov 2026 15:25:47 GMT\r\nLast-Modified: Tue, 24 Nov 2026 15:25:47 GMT\r\n"
        "ETag: \"0123456789abcdef0123456789abcdef\"\r\nContent-Type: application/x-hdf5\r\n"
        "Server: AmazonS3\r\nContent-Length: 4096\r\n" + META + "\r\n").encode()
async def handle(r, w):
    try:
        while True:
            line = await r.readline()
            if not line:
                break
            method, clen = line.split()[0], 0
            while True:
                h = await r.readline()
                if h in (b"\r\n", b""):
                    break
                if h.lower().startswith(b"content-length:"):
                    clen = int(h.split(b":")[1])
            if clen:
                await r.readexactly(clen)
            w.write(HEAD if method == b"HEAD" else HEAD + b"x" * 4096)
            await w.drain()
    except Exception:
        pass
    w.close()
async def main():
    s = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(s.sockets[0].getsockname()[1], flush=True)
    await s.serve_forever()
asyncio.run(main())
"""


def cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def measure(n: int, fn: Callable[[], object]) -> float:
    for _ in range(min(200, n)):
        fn()
    start = cpu()
    for _ in range(n):
        fn()
    return (cpu() - start) / n * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--against", type=Path, help="a checkout of deon to compare with")
    args = ap.parse_args()
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())  # type: ignore[union-attr]
        if args.against:
            return against(args.requests, port, args.against)
        return run(args.requests, port)
    finally:
        server.kill()


def run(n: int, port: int) -> int:
    import os

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    import botocore.session
    import urllib3
    from botocore.awsrequest import AWSPreparedRequest

    import deon
    from deon.s3.signing import EMPTY_SHA256, Credentials, Signer
    from deon.s3.transport import Endpoint, S3Http

    host = f"127.0.0.1:{port}"
    url = f"http://{host}"
    client = botocore.session.Session().create_client(
        "s3", endpoint_url=url, region_name="us-east-1"
    )
    session = client._endpoint.http_session
    creds = Credentials("bench", "bench")
    try:  # this checkout's Endpoint: botocore's session carries the requests
        ep = Endpoint("http", host, "us-east-1", "/bench/", "bench", session)
    except TypeError:  # before: http.client connections of deon's own
        ep = Endpoint("http", host, "us-east-1", True, "bench")  # type: ignore[arg-type]
    http = S3Http(lambda: creds, lambda b: ep)
    signer = Signer("us-east-1")
    path = "/bench/a/key.h5"

    def signed(method: str) -> dict[str, str]:
        return signer.sign(creds, method, host, path, {}, {}, EMPTY_SHA256)

    def botocore_send() -> None:
        r = session.send(AWSPreparedRequest("HEAD", url + path, signed("HEAD"), None, False))
        dict(r.headers)

    pool = session._manager.connection_from_url(url + "/")
    no_retries = urllib3.util.Retry(False)

    def urlopen() -> None:
        r = pool.urlopen(
            "HEAD",
            path,
            headers=signed("HEAD"),
            retries=no_retries,
            assert_same_host=False,
            preload_content=False,
            decode_content=False,
        )
        r.read()
        dict(r.headers)
        r.release_conn()

    rows = [
        (
            f"deon S3Http HEAD ({Path(deon.__file__).parent.parent})",
            measure(n, lambda: http.request("HEAD", "bench", "a/key.h5", "bench")),
        ),
        (
            "deon S3Http GET 4 KiB",
            measure(n, lambda: http.request("GET", "bench", "a/key.h5", "b")),
        ),
        ("botocore URLLib3Session.send HEAD", measure(n, botocore_send)),
        ("urllib3 pool.urlopen HEAD", measure(n, urlopen)),
        (
            "botocore client head_object",
            measure(max(200, n // 5), lambda: client.head_object(Bucket="bench", Key="k")),
        ),
    ]
    print(f"| client | CPU per request (us), {n} requests, python {sys.version.split()[0]} |")
    print("| --- | ---: |")
    for name, us in rows:
        print(f"| {name} | {us:.0f} |")
    return 0


def against(n: int, port: int, checkout: Path) -> int:
    """This S3Http and the checkout's, HEAD and GET, in alternating batches."""
    import importlib.util
    import os
    import statistics

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    import botocore.session

    from deon.s3 import transport as new
    from deon.s3.signing import Credentials

    spec = importlib.util.spec_from_file_location(
        "deon.s3._other_transport", checkout / "deon" / "s3" / "transport.py"
    )
    assert spec is not None and spec.loader is not None
    old = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = old  # dataclasses look their module up
    spec.loader.exec_module(old)
    host = f"127.0.0.1:{port}"
    session = (
        botocore.session.Session()
        .create_client("s3", endpoint_url=f"http://{host}", region_name="us-east-1")
        ._endpoint.http_session
    )
    creds = Credentials("bench", "bench")
    clients = {}
    for name, mod in (("this", new), (str(checkout), old)):
        try:
            ep = mod.Endpoint("http", host, "us-east-1", "/bench/", "bench", session)
        except TypeError:
            ep = mod.Endpoint("http", host, "us-east-1", True, "bench")
        clients[name] = mod.S3Http(lambda: creds, lambda b, ep=ep: ep)
    batches: dict[tuple[str, str], list[float]] = {}
    for _ in range(12):
        for name, http in clients.items():
            for method in ("HEAD", "GET"):

                def one(http: Any = http, method: str = method) -> object:
                    return http.request(method, "b", "a/k.h5", "b")

                us = measure(max(100, n // 12), one)
                batches.setdefault((name, method), []).append(us)
    print("| S3Http of | HEAD CPU us | GET 4 KiB CPU us |")
    print("| --- | ---: | ---: |")
    for name in clients:
        head = statistics.median(batches[(name, "HEAD")])
        get = statistics.median(batches[(name, "GET")])
        print(f"| {name} | {head:.0f} | {get:.0f} |")
    return 0


if __name__ == "__main__":
    time.sleep(0)
    sys.exit(main())
