"""A small reverse proxy in front of the moto server, for tests only (127.0.0.1).

It counts requests by (method, kind) so tests can assert what was *sent* ("no PUT on a
second up", "no HEAD on an unchanged prefix"), and it misbehaves on request:

- corrupt the body of GETs for chosen keys, or fail every request for chosen keys;
- seeded random faults at a given rate (`Rules.fault_rate`, `Rules.fault_kinds`):
  "slowdown" (503 SlowDown), "error500" (500 InternalError), "reset" (the connection
  closes before any response), "reset_headers" (closes after the status and headers),
  "truncate" (half the body, then closes), "lost_reply" (the request reaches the server,
  then the connection closes with no reply), "delay" (0.2-0.6 s before answering).
  "reset_headers", "truncate" and "lost_reply" happen after the request reached the
  server: a PUT may have succeeded though the client saw it fail, as on a real network.

It also makes conditional writes atomic (moto checks If-None-Match and then writes, in
two steps), serialising them per key as S3 does.
"""

from __future__ import annotations

import hashlib
import http.client
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
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
    #: only requests whose key starts with this are faulted ("" = all)
    fault_prefix: str = ""
    #: (method, key) -> fault for the next such request only
    once: dict[tuple[str, str], str] = field(default_factory=dict)
    faults: Counter[str] = field(default_factory=Counter)
    #: keep every request body: (kind, key, body) in S3Proxy.bodies
    record_bodies: bool = False

    def pick(self, key: str, lock: threading.Lock, method: str = "") -> str | None:
        """The fault for this request, if any (seeded, so runs are repeatable)."""
        with lock:
            kind = self.once.pop((method, key), None)
            if kind is not None:
                self.faults[kind] += 1
                return kind
        if not self.fault_rate or not key.startswith(self.fault_prefix):
            return None
        with lock:
            if self.rng.random() >= self.fault_rate:
                return None
            kind = self.rng.choice(self.fault_kinds)
            self.faults[kind] += 1
            return kind


FAULT_KINDS = ("slowdown", "error500", "reset", "reset_headers", "truncate", "lost_reply", "delay")


class S3Proxy:
    """Counting, tampering reverse proxy: 127.0.0.1:<free port> -> upstream."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.counts: Counter[str] = Counter()
        self.log: list[tuple[str, str]] = []
        #: (kind, key, status) of every request the upstream answered
        self.answered: list[tuple[str, str, int]] = []
        #: request body bytes received (what clients sent)
        self.bytes_in = 0
        #: (kind, key, body) of every request, with Rules.record_bodies
        self.bodies: list[tuple[str, str, bytes]] = []
        self.rules = Rules()
        self.lock = threading.Lock()
        self.key_locks: dict[str, threading.Lock] = {}
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
            self.answered.clear()
            self.bytes_in = 0
            self.bodies.clear()
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
            self.bytes_in += len(body)
            rules = self.rules
            if rules.record_bodies:
                self.bodies.append((kind, key, body))
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
        fault = rules.pick(key, self.lock, h.command)
        if (key and key in rules.fail_keys) or fault == "error500":
            self._error(h, 500, "InternalError")
            return
        if fault == "slowdown":
            self._error(h, 503, "SlowDown")
            return
        if fault == "reset":
            self._reset(h)
            return
        if fault == "delay":
            time.sleep(rules.rng.uniform(0.2, 0.6))
        headers = {k: v for k, v in h.headers.items() if k.lower() not in HOP_HEADERS}
        conditional = any(k.lower() in ("if-match", "if-none-match") for k in headers) and (
            h.command in ("PUT", "POST")
        )
        copy_if = {k.lower(): v for k, v in headers.items()}.get("x-amz-copy-source-if-match")
        if conditional or copy_if:
            with self.lock:
                key_lock = self.key_locks.setdefault(key, threading.Lock())
            with key_lock:  # check-and-write as one step, as S3 does
                if copy_if and not self._source_matches(headers, copy_if):
                    # moto ignores x-amz-copy-source-if-match; S3 answers 412.
                    self._error(h, 412, "PreconditionFailed")
                    return
                resp, data = self._upstream(h.command, h.path, body, headers)
        else:
            resp, data = self._upstream(h.command, h.path, body, headers)
        with self.lock:
            self.answered.append((kind, key, resp.status))
        out_headers = {k: v for k, v in resp.getheaders() if k.lower() not in HOP_HEADERS}
        if fault == "lost_reply":
            self._reset(h)
            return
        if fault in ("reset_headers", "truncate") and h.command != "HEAD":
            h.send_response_only(resp.status)
            for k, v in out_headers.items():
                if k.lower() != "content-length":
                    h.send_header(k, v)
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            if fault == "truncate":
                h.wfile.write(data[: len(data) // 2])
            h.wfile.flush()
            self._reset(h)
            return
        if kind == "LIST" and rules.listing is not None and resp.status == 200:
            data = rules.listing(data)
        if h.command == "GET" and key in rules.corrupt and resp.status in (200, 206):
            data = rules.corrupt[key][: len(data)].ljust(len(data), b"\0")
        self._reply(h, resp.status, out_headers, data, head=h.command == "HEAD")

    def _source_matches(self, headers: dict[str, str], etag: str) -> bool:
        """Whether the copy source's current ETag is the one the request names."""
        import boto3
        from botocore.exceptions import ClientError

        source = unquote({k.lower(): v for k, v in headers.items()}["x-amz-copy-source"])
        bucket, _, key = source.lstrip("/").partition("/")
        client = boto3.client(
            "s3",
            endpoint_url=f"http://{self.upstream[0]}:{self.upstream[1]}",
            region_name="us-east-1",
            aws_access_key_id="proxy",
            aws_secret_access_key="proxy",
        )
        try:
            current = client.head_object(Bucket=bucket, Key=key)["ETag"]
        except ClientError:
            return False
        return bool(current.strip('"') == etag.strip('"'))

    def _upstream(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[Any, bytes]:
        conn = http.client.HTTPConnection(*self.upstream, timeout=60)
        conn.request(method, path, body=body or None, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp, data

    def _error(self, h: BaseHTTPRequestHandler, status: int, code: str) -> None:
        error = f"<Error><Code>{code}</Code><Message>injected</Message></Error>".encode()
        self._reply(
            h,
            status,
            {"Content-Type": "application/xml", "Content-Length": str(len(error))},
            error,
            head=h.command == "HEAD",
        )

    @staticmethod
    def _reset(h: BaseHTTPRequestHandler) -> None:
        """Drop the connection (RST, not a polite close)."""
        h.close_connection = True
        try:
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.connection.close()
        except OSError:
            pass

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
