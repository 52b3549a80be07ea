"""A small reverse proxy in front of the moto server, for tests only (127.0.0.1).

It counts requests by (method, kind) so tests can assert what was *sent* ("no PUT on a
second up", "no HEAD on an unchanged prefix"), and it can tamper with responses:
replace the body of a GET for chosen keys (a corrupt object) or fail requests for chosen
keys. The fault-injection tests extend it.
"""

from __future__ import annotations

import hashlib
import http.client
import random
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


def request_kind(method: str, path: str, query: str) -> str:
    """Name an S3 request the way tests talk about it: GET, HEAD, PUT, LIST, ..."""
    parts = [p for p in path.split("/") if p]
    if method == "GET" and len(parts) <= 1:
        return "LIST" if parts else "LIST_BUCKETS"
    if method == "POST" and "uploads" in query:
        return "CREATE_MULTIPART"
    if method == "POST" and "uploadId" in query:
        return "COMPLETE_MULTIPART"
    if method == "PUT" and "partNumber" in query:
        return "UPLOAD_PART"
    if method == "HEAD" and len(parts) <= 1:
        return "HEAD_BUCKET"
    return method


@dataclass
class Rules:
    """What the proxy should do to requests; tests set these."""

    #: key -> bytes served instead of the real GET body (same length keeps headers valid)
    corrupt: dict[str, bytes] = field(default_factory=dict)
    #: keys for which every request answers 500
    fail_keys: set[str] = field(default_factory=set)
    #: a hook(method, key, query) run before forwarding (e.g. to kill a process)
    before: Callable[[str, str, str], None] | None = None
    #: rewrites the body of LIST responses (to mimic other servers' dialects)
    listing: Callable[[bytes], bytes] | None = None
    #: seeded random faults, set by the fault-injection tests
    fault_rate: float = 0.0
    fault_kinds: tuple[str, ...] = ()
    rng: random.Random = field(default_factory=lambda: random.Random(0))


class S3Proxy:
    """Counting, tampering reverse proxy: 127.0.0.1:<free port> -> upstream."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.counts: Counter[str] = Counter()
        self.log: list[tuple[str, str]] = []
        self.rules = Rules()
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _handle(self) -> None:
                proxy._forward(self)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> S3Proxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reset(self) -> None:
        with self.lock:
            self.counts.clear()
            self.log.clear()
            self.rules = Rules()

    def count(self, *kinds: str) -> int:
        with self.lock:
            return sum(self.counts[k] for k in kinds)

    def _forward(self, h: BaseHTTPRequestHandler) -> None:
        split = urlsplit(h.path)
        kind = request_kind(h.command, split.path, split.query)
        parts = split.path.lstrip("/").split("/", 1)
        key = unquote(parts[1]) if len(parts) > 1 else ""
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        with self.lock:
            self.counts[kind] += 1
            self.log.append((kind, key))
            rules = self.rules
        if rules.before is not None:
            rules.before(h.command, key, split.query)
        claimed = h.headers.get("x-amz-content-sha256", "")
        if body and len(claimed) == 64 and hashlib.sha256(body).hexdigest() != claimed:
            # What S3 does with a body that is not the one signed (moto does not check).
            error = (
                b"<Error><Code>XAmzContentSHA256Mismatch</Code><Message>The provided "
                b"'x-amz-content-sha256' header does not match what was computed.</Message></Error>"
            )
            self._reply(h, 400, {"Content-Type": "application/xml"}, error)
            return
        if key and key in rules.fail_keys:
            error = b"<Error><Code>InternalError</Code><Message>injected</Message></Error>"
            self._reply(
                h,
                500,
                {"Content-Type": "application/xml", "Content-Length": str(len(error))},
                error,
                head=h.command == "HEAD",
            )
            return
        conn = http.client.HTTPConnection(*self.upstream, timeout=60)
        headers = {k: v for k, v in h.headers.items() if k.lower() not in HOP_HEADERS}
        conn.request(h.command, h.path, body=body or None, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        out_headers = {k: v for k, v in resp.getheaders() if k.lower() not in HOP_HEADERS}
        if kind == "LIST" and rules.listing is not None and resp.status == 200:
            data = rules.listing(data)
        if h.command == "GET" and key in rules.corrupt and resp.status in (200, 206):
            data = rules.corrupt[key][: len(data)].ljust(len(data), b"\0")
        self._reply(h, resp.status, out_headers, data, head=h.command == "HEAD")

    @staticmethod
    def _reply(
        h: BaseHTTPRequestHandler,
        status: int,
        headers: dict[str, str],
        data: bytes,
        head: bool = False,
    ) -> None:
        h.send_response_only(status)
        for k, v in headers.items():
            if k.lower() != "content-length":
                h.send_header(k, v)
        if head:
            h.send_header(
                "Content-Length",
                headers.get("Content-Length") or headers.get("content-length") or "0",
            )
        else:
            h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if not head:
            h.wfile.write(data)
