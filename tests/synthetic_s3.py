"""A synthetic S3 endpoint: N objects computed on the fly, nothing stored.

    python -m tests.synthetic_s3 --objects 1000000 --port 0     # prints its URL

It answers what a metadata mirror and a download send — ListObjectsV2 (prefix,
delimiter, start-after, continuation-token, max-keys, encoding-type=url), HEAD and GET
of an object (ranged too), HEAD of the bucket — for one bucket whose objects are the
keys `ROOT/fFFFFF/traj_IIIIIIIII.h5` for i in range(N), FOLDERS folders of consecutive
indexes. Each object's ETag, LastModified, size, body and RoboNet-like metadata
headers are functions of its index, so a listing of 10 M objects costs no disk and no
fill time. `--gone-every K` leaves out every K-th object and `--changed-every K` gives
every K-th object another ETag (so a catalog written for the plain set sees objects
deleted and changed). `--delay-ms` answers every request that much later (a far
server); `--throttle-above N` answers 503 SlowDown beyond N requests in flight (a
server at its request rate); `--snapshot` also serves `ROOT/.deon/snapshot.jsonl.gz`, what
`deon metadata publish s3://BUCKET/ROOT/` of the plain set (no object gone or changed)
writes (README's format), built at start-up. GET /_stats gives the requests counted and the most in
flight at once, as JSON. Signatures are not checked. The tests and bench/ share it.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import io
import json
import random
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, quote, unquote, urlsplit

BUCKET = "synth"
ROOT = "many"
WHEN = "2026-11-01T00:00:00.000Z"
WHEN_HTTP = "Sun, 01 Nov 2026 00:00:00 GMT"
ROBOTS = ("sawyer", "franka", "baxter", "widowx", "kuka", "fetch", "locobot")


@dataclass(frozen=True)
class Objects:
    """The objects the endpoint serves, as functions of their index."""

    count: int
    folders: int = 1
    root: str = ROOT
    gone_every: int = 0
    changed_every: int = 0
    size: int = 4096

    @property
    def per_folder(self) -> int:
        return max(1, -(-self.count // max(1, self.folders)))

    def key(self, i: int) -> str:
        if self.folders > 1:
            return f"{self.root}/f{i // self.per_folder:05d}/traj_{i:09d}.h5"
        return f"{self.root}/traj_{i:09d}.h5"

    def exists(self, i: int) -> bool:
        return 0 <= i < self.count and not (self.gone_every and i % self.gone_every == 1)

    def generation(self, i: int) -> int:
        return 1 if self.changed_every and i % self.changed_every == 2 else 0

    def etag(self, i: int) -> str:
        return etag_of(i, self.generation(i))

    def index(self, key: str) -> int | None:
        """The index of a key this endpoint serves, else None."""
        name = key.rsplit("/traj_", 1)
        if len(name) != 2 or not name[1].endswith(".h5") or not name[1][:-3].isdigit():
            return None
        i = int(name[1][:-3])
        return i if self.exists(i) and self.key(i) == key else None

    def first_after(self, key: str) -> int:
        """The smallest index whose key sorts after `key` (keys sort as indexes do)."""
        lo, hi = 0, self.count
        while lo < hi:
            mid = (lo + hi) // 2
            if self.key(mid) <= key:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def first_at_or_after(self, key: str) -> int:
        lo, hi = 0, self.count
        while lo < hi:
            mid = (lo + hi) // 2
            if self.key(mid) < key:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def metadata(self, i: int) -> dict[str, object]:
        rng = random.Random(i * 7919 + self.generation(i))
        robot = ROBOTS[i % len(ROBOTS)]
        return {
            "robot": robot,
            "camera_configuration": f"{robot}{i % 3}",
            "action_space": "x,y,z,theta,gripper",
            "traj_ok": i % 5 != 0,
            "img_T": 30,
            "img_dims": [48, 64],
            "ncam": 1 + i % 3,
            "action_T": 29,
            "state_T": 30,
            "low_bound": [round(rng.uniform(-1, 0), 4) for _ in range(5)],
            "high_bound": [round(rng.uniform(0, 1), 4) for _ in range(5)],
            "object_classes": ["cup", "bowl", "spoon"][: 1 + i % 3],
            "environment_size": [0.4, 0.3, 0.2],
            "file_version": "0.1.0",
            "sha256": None,
            "term_t": 29,
            "contains_annotation": i % 10 == 0,
            "sim": False,
            "bin_type": "metal" if i % 2 else "plastic",
            "bin_insert": "none",
            "gripper": "default",
            "background": "lab",
            "primitives": "autograsp",
            "policy_desc": "random",
            "date": f"2026-10-{1 + i % 28:02d}",
            "traj_index": i,
            "generation": self.generation(i),
        }

    def headers(self, i: int) -> dict[str, str]:
        doc = json.dumps(self.metadata(i), separators=(",", ":"))
        return {
            "ETag": f'"{self.etag(i)}"',
            "Last-Modified": WHEN_HTTP,
            "x-amz-meta-deon-meta": "json:" + doc,
        }

    def body(self, i: int, start: int, end: int) -> bytes:
        """Bytes start..end (exclusive) of object i: a repeated 64 KiB block of its seed."""
        block = _block(i)
        n = len(block)
        out = bytearray()
        pos = start
        while pos < end:
            off = pos % n
            take = min(n - off, end - pos)
            out += block[off : off + take]
            pos += take
        return bytes(out)


def snapshot(objects: Objects) -> bytes:
    """The published snapshot of the plain objects (every index, generation 0): the
    README's format, written here without deon's code."""
    plain = Objects(objects.count, objects.folders, objects.root, size=objects.size)
    when = WHEN.replace(".000Z", ".000000Z")
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=1, mtime=0) as gz:
        header = {
            "format": "deon-snapshot",
            "version": 1,
            "bucket": BUCKET,
            "prefix": f"{plain.root}/",
            "created": when,
            "count": plain.count,
        }
        gz.write(json.dumps(header).encode() + b"\n")
        lines: list[bytes] = []
        for i in range(plain.count):
            doc = json.dumps(plain.metadata(i), separators=(",", ":"))
            line = {"k": plain.key(i), "e": plain.etag(i), "t": when, "s": plain.size, "h": None}
            line["m"] = doc
            lines.append(json.dumps(line, separators=(",", ":")).encode() + b"\n")
            if len(lines) == 10_000:
                gz.write(b"".join(lines))
                lines = []
        gz.write(b"".join(lines))
    return buf.getvalue()


def snapshot_key(objects: Objects) -> str:
    return f"{objects.root}/.deon/snapshot.jsonl.gz"


def etag_of(i: int, generation: int = 0) -> str:
    return hashlib.md5(f"{i}:{generation}".encode()).hexdigest()


_BLOCKS: dict[int, bytes] = {}


def _block(i: int) -> bytes:
    b = _BLOCKS.get(i % 64)
    if b is None:
        b = _BLOCKS[i % 64] = random.Random(i % 64).randbytes(65536)
    return b


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, code: str) -> None:
        body = f"<Error><Code>{code}</Code><Message>{code}</Message></Error>".encode()
        self._send(status, body if self.command != "HEAD" else b"", {})

    def _target(self) -> tuple[str, str, dict[str, str]]:
        u = urlsplit(self.path)
        path = unquote(u.path)
        bucket, _, key = path.lstrip("/").partition("/")
        return bucket, key, dict(parse_qsl(u.query, keep_blank_values=True))

    def handle_one_request(self) -> None:
        # http.server's, with the request counted as in flight only once it has come
        # (an idle keep-alive connection waits here too), then delayed or throttled.
        self.raw_requestline = self.rfile.readline(65537)
        if not self.raw_requestline:
            self.close_connection = True
            return
        if not self.parse_request():
            return
        server = self.server
        with server.lock:
            server.inflight += 1
            server.peak_inflight = max(server.peak_inflight, server.inflight)
            busy = bool(server.throttle_above and server.inflight > server.throttle_above)
        try:
            if server.delay:
                time.sleep(server.delay)
            if busy:
                server.count("SlowDown")
                self._error(503, "SlowDown")
            else:
                getattr(self, "do_" + self.command, self.do_PUT)()
            self.wfile.flush()
        finally:
            with server.lock:
                server.inflight -= 1

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        self.server.count("HEAD")
        bucket, key, _ = self._target()
        if bucket != BUCKET:
            return self._error(404, "NoSuchBucket")
        if not key:
            return self._send(200)
        objs = self.server.objects
        i = objs.index(key)
        if i is None:
            return self._error(404, "NotFound")
        self.send_response(200)
        for k, v in objs.headers(i).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(objs.size))
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802
        self.server.count("GET")
        bucket, key, query = self._target()
        if bucket == "_stats":
            stats = {**self.server.counts, "peak_inflight": self.server.peak_inflight}
            return self._send(200, json.dumps(stats).encode())
        if bucket != BUCKET:
            return self._error(404, "NoSuchBucket")
        if not key and query.get("list-type") == "2":
            return self._list(query)
        objs = self.server.objects
        if self.server.snapshot is not None and key == snapshot_key(objs):
            return self._send(200, self.server.snapshot, {"ETag": '"snapshot"'})
        i = objs.index(key)
        if i is None:
            return self._error(404, "NoSuchKey")
        start, end, status = 0, objs.size, 200
        rng = self.headers.get("Range")
        headers = objs.headers(i)
        if rng and rng.startswith("bytes="):
            a, _, b = rng[6:].partition("-")
            start = int(a)
            end = min(objs.size, int(b) + 1) if b else objs.size
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{objs.size}"
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(end - start))
        self.end_headers()
        pos = start
        while pos < end:
            chunk = objs.body(i, pos, min(end, pos + 1024 * 1024))
            self.wfile.write(chunk)
            pos += len(chunk)

    def _list(self, query: dict[str, str]) -> None:
        objs = self.server.objects
        prefix = query.get("prefix", "")
        delimiter = query.get("delimiter", "")
        max_keys = min(1000, int(query.get("max-keys") or 1000))
        encode = query.get("encoding-type") == "url"
        after = query.get("start-after", "")
        token = query.get("continuation-token")
        if token:
            after = max(after, unquote(token))
        i = objs.first_after(after) if after else 0
        i = max(i, objs.first_at_or_after(prefix))
        contents: list[str] = []
        prefixes: list[str] = []
        last = ""
        while i < objs.count and len(contents) + len(prefixes) < max_keys:
            key = objs.key(i)
            if not key.startswith(prefix):
                break
            if delimiter:
                cut = key.find(delimiter, len(prefix))
                if cut >= 0:
                    common = key[: cut + len(delimiter)]
                    prefixes.append(common)
                    last = common
                    # skip everything under this common prefix
                    i = objs.first_at_or_after(common[:-1] + chr(ord(common[-1]) + 1))
                    continue
            if objs.exists(i):
                shown = quote(key, safe="/") if encode else _xml(key)
                contents.append(
                    f"<Contents><Key>{shown}</Key><LastModified>{WHEN}</LastModified>"
                    f"<ETag>&quot;{objs.etag(i)}&quot;</ETag><Size>{objs.size}</Size>"
                    "<StorageClass>STANDARD</StorageClass></Contents>"
                )
                last = key
            i += 1
        truncated = False
        if i < objs.count and objs.key(i).startswith(prefix):
            truncated = bool(contents or prefixes)
        parts = [
            '<?xml version="1.0" encoding="UTF-8"?>',
            '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">',
            f"<Name>{BUCKET}</Name><Prefix>{_xml(prefix)}</Prefix>",
            f"<KeyCount>{len(contents) + len(prefixes)}</KeyCount><MaxKeys>{max_keys}</MaxKeys>",
            f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>",
        ]
        if encode:
            parts.append("<EncodingType>url</EncodingType>")
        if truncated:
            parts.append(f"<NextContinuationToken>{quote(last, safe='')}</NextContinuationToken>")
        parts.extend(contents)
        for p in prefixes:
            shown = quote(p, safe="/") if encode else _xml(p)
            parts.append(f"<CommonPrefixes><Prefix>{shown}</Prefix></CommonPrefixes>")
        parts.append("</ListBucketResult>")
        self._send(200, "".join(parts).encode(), {"Content-Type": "application/xml"})

    def do_PUT(self) -> None:  # noqa: N802
        self._error(403, "AccessDenied")

    do_POST = do_DELETE = do_PUT


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(
        self,
        port: int,
        objects: Objects,
        delay: float = 0.0,
        throttle_above: int = 0,
        with_snapshot: bool = False,
    ) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.objects = objects
        #: seconds each request waits before it is answered (a far server)
        self.delay = delay
        #: answer 503 SlowDown to requests beyond this many in flight (0: never)
        self.throttle_above = throttle_above
        #: the published snapshot served at snapshot_key(objects), if any
        self.snapshot = snapshot(objects) if with_snapshot else None
        self.counts: dict[str, int] = {}
        self.inflight = 0
        self.peak_inflight = 0
        self.lock = threading.Lock()

    def count(self, method: str) -> None:
        with self.lock:
            self.counts[method] = self.counts.get(method, 0) + 1

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def start(objects: Objects, port: int = 0, **options: float) -> Server:
    """Serve `objects` from a background thread of this process."""
    server = Server(port, objects, **options)  # type: ignore[arg-type]
    threading.Thread(target=server.serve_forever, daemon=True, name="synthetic-s3").start()
    return server


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--objects", type=int, default=1000)
    ap.add_argument("--folders", type=int, default=1)
    ap.add_argument("--gone-every", type=int, default=0)
    ap.add_argument("--changed-every", type=int, default=0)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--delay-ms", type=float, default=0.0, help="wait before each answer")
    ap.add_argument("--throttle-above", type=int, default=0, help="SlowDown beyond N in flight")
    ap.add_argument("--snapshot", action="store_true", help="serve a published snapshot")
    args = ap.parse_args(argv)
    objects = Objects(
        args.objects, args.folders, ROOT, args.gone_every, args.changed_every, args.size
    )
    server = Server(args.port, objects, args.delay_ms / 1000, args.throttle_above, args.snapshot)
    print(server.url, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
