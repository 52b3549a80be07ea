"""A lean S3 client for the object operations deon does in bulk: LIST, HEAD, GET, PUT and
multipart uploads.

Why not boto3 for these: its request pipeline costs ~0.7 ms of CPU per request; on
two cores that caps a metadata mirror near 1,000 objects/s and transfers well below
the peers'. Why not obstore (object_store): its listing fails outright on a key with a
`..` segment, which any colleague can create, it cannot address keys with empty or
dot segments, and it exposes neither SSE headers nor Content-MD5. This module is
http.client plus SigV4 (sigv4.py); credentials, region and endpoint resolution stay
with botocore (storage.py). Measurements are in bench/RESULTS.md and the issue note.

Keys are sent literally: no path normalisation, so every key a bucket can hold can
be listed, read and named.
"""

from __future__ import annotations

import email.utils
import http.client
import random
import ssl
import threading
import time
import urllib.request
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import unquote_plus, urlsplit

from deon.errors import DeonError, KeyNotFound, StorageError
from deon.s3.errors import (
    RETRYABLE_ERRORS,
    ResponseCut,
    UnreadableResponse,
    error_document,
    error_fields,
    retryable,
    retryable_exception,
    throttled,
    translate_connection_error,
    translate_error,
)
from deon.s3.signing import EMPTY_SHA256, Credentials, Signer, uri_path

#: What sending a request or reading its answer can raise; `retryable_exception`
#: decides which of these another attempt can cure (errors.py).
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (*RETRYABLE_ERRORS, OSError)


@dataclass(frozen=True)
class Endpoint:
    """Where a bucket's requests go."""

    scheme: str
    host: str  # host[:port], as sent in the Host header
    region: str
    path_style: bool
    bucket: str

    def path(self, key: str) -> str:
        if self.path_style:
            return uri_path(f"/{self.bucket}/{key}" if key else f"/{self.bucket}/")
        return uri_path(f"/{key}")


@dataclass
class Response:
    """Status and headers (names lower-case) of an S3 response, and its body: read
    already (`xml` is its document when one was due), or streamed through `readinto`
    until `close()`."""

    status: int
    headers: dict[str, str]
    body: bytes = b""
    _raw: Any = None
    _release: Callable[[bool], None] | None = None
    what: str = ""
    xml: ET.Element | None = None

    def readinto(self, buffer: Any) -> int:
        n: int = self._raw.readinto(buffer)
        if n == 0:
            # http.client ends a body that stops short of its Content-Length with a
            # clean close as if it were complete (CPython keeps this for compatibility):
            # what is left is still counted in `length`. Such a body is cut, like one
            # whose connection was reset, and is resumed the same way.
            left = self._raw.length
            if left and len(buffer):
                if self._release is not None:
                    release, self._release = self._release, None
                    release(False)
                raise ResponseCut(
                    f"{self.what}: the connection closed {left} bytes before the end of "
                    "the body"
                )
            self.close()
        return n

    def iter_chunks(self, size: int = 1024 * 1024) -> Iterator[bytes]:
        buf = bytearray(size)
        view = memoryview(buf)
        while True:
            n = self.readinto(view)
            if not n:
                return
            yield bytes(view[:n])

    def close(self) -> None:
        if self._release is not None:
            release, self._release = self._release, None
            release(self._raw is not None and self._raw.isclosed())

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_MONTHS = {
    m: i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}


def parse_http_date(value: str | None) -> datetime | None:
    """An HTTP date. S3 sends RFC 1123 ("Tue, 24 Nov 2026 15:25:47 GMT"), parsed here
    directly (email.utils takes ~10 us); anything else goes to email.utils."""
    if not value:
        return None
    parts = value.split()
    if len(parts) == 6 and parts[5] == "GMT" and parts[2] in _MONTHS:
        try:
            h, m, sec = parts[4].split(":")
            return datetime(
                int(parts[3]),
                _MONTHS[parts[2]],
                int(parts[1]),
                int(h),
                int(m),
                int(sec),
                tzinfo=timezone.utc,
            )
        except ValueError:
            pass
    try:
        return email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None


def parse_iso_date(value: str) -> datetime:
    """S3's LastModified in a listing: 2026-11-24T15:25:47.000Z, read directly (this
    runs once per listed object); other ISO 8601 forms through datetime."""
    text = value.strip()
    if len(text) >= 20 and text[-1] == "Z" and text[10] == "T":
        try:
            frac = text[20:-1]
            return datetime(
                int(text[0:4]),
                int(text[5:7]),
                int(text[8:10]),
                int(text[11:13]),
                int(text[14:16]),
                int(text[17:19]),
                int((frac + "000000")[:6]) if frac else 0,
                tzinfo=timezone.utc,
            )
        except ValueError:
            pass
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    return datetime.fromisoformat(text).astimezone(timezone.utc)


class _Headers(dict):  # type: ignore[type-arg]
    """Response headers, names lower-cased: the little of http.client.HTTPMessage that
    http.client itself uses (get), without the email parser, which costs ~40 us a
    response (a third of a HEAD's client CPU)."""

    def get_all(self, name: str, default: Any = None) -> Any:
        value = self.get(name.lower())
        return default if value is None else [value]


class _FastResponse(http.client.HTTPResponse):
    """http.client's response with a plain header parser (begin() follows CPython's)."""

    def begin(self) -> None:
        if self.headers is not None:
            return
        while True:
            version, status, reason = self._read_status()
            if status != http.client.CONTINUE:
                break
            while self.fp.readline(65537) not in (b"\r\n", b"\n", b""):
                pass
        self.code = self.status = status
        self.reason = reason.strip()
        if version in ("HTTP/1.0", "HTTP/0.9"):
            self.version = 10
        elif version.startswith("HTTP/1."):
            self.version = 11
        else:
            raise http.client.UnknownProtocol(version)
        headers = _Headers()
        for _ in range(200):  # http.client's _MAXHEADERS
            line = self.fp.readline(65537)
            if len(line) > 65536:
                raise http.client.LineTooLong("header line")
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("iso-8859-1").partition(":")
            name = name.strip().lower()
            value = value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        else:
            raise http.client.HTTPException("got more than 200 headers")
        self.headers = self.msg = headers
        encoding = headers.get("transfer-encoding")
        self.chunked = bool(encoding and encoding.lower() == "chunked")
        self.chunk_left = None
        self.will_close = self._check_close()
        self.length = None
        length = headers.get("content-length")
        if length and not self.chunked:
            try:
                self.length = int(length)
            except ValueError:
                self.length = None
            else:
                if self.length < 0:
                    self.length = None
        if status in (204, 304) or 100 <= status < 200 or self._method == "HEAD":
            self.length = 0
        if not self.will_close and not self.chunked and self.length is None:
            self.will_close = True

    def getheaders(self) -> list[tuple[str, str]]:
        return list(self.headers.items())


class _Pool:
    """Idle keep-alive connections to one host (through a proxy, if configured)."""

    def __init__(
        self, scheme: str, host: str, context: ssl.SSLContext | None, timeout: float, size: int
    ) -> None:
        self.scheme, self.host, self.context, self.timeout = scheme, host, context, timeout
        # deque.append/pop are atomic: a lock-free pool of idle connections
        self.idle: deque[http.client.HTTPConnection] = deque()
        self.size = size
        proxies = urllib.request.getproxies()
        hostname = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        proxy = proxies.get(scheme)
        self.proxy = (
            None
            if proxy is None or urllib.request.proxy_bypass(hostname)
            else urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        )

    @property
    def absolute_form(self) -> bool:
        """Plain HTTP through a proxy sends the whole URL as the request target."""
        return self.proxy is not None and self.scheme == "http"

    def get(self) -> http.client.HTTPConnection:
        try:
            return self.idle.pop()
        except IndexError:
            pass
        conn = self._new()
        conn.response_class = _FastResponse
        return conn

    def _new(self) -> http.client.HTTPConnection:
        if self.proxy is not None:
            phost, pport = self.proxy.hostname or "", self.proxy.port or 8080
            if self.scheme == "https":
                conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                    phost, pport, timeout=self.timeout, context=self.context
                )
                conn.set_tunnel(self.host)
                return conn
            return http.client.HTTPConnection(phost, pport, timeout=self.timeout)
        if self.scheme == "https":
            return http.client.HTTPSConnection(
                self.host, timeout=self.timeout, context=self.context
            )
        return http.client.HTTPConnection(self.host, timeout=self.timeout)

    def put(self, conn: http.client.HTTPConnection) -> None:
        if len(self.idle) < self.size:
            self.idle.append(conn)
        else:
            conn.close()


class S3Http:
    """Signed S3 requests over pooled keep-alive connections, with retries.

    Args:
        credentials: returns current credentials (botocore refreshes them).
        endpoint: returns the Endpoint of a bucket.
        max_attempts: attempts per request for throttling, 5xx and connection errors.
        pool_size: idle connections kept per host (set it to the thread count).
        ca_bundle: a CA bundle for HTTPS (AWS_CA_BUNDLE), else the system's.
    """

    def __init__(
        self,
        credentials: Callable[[], Credentials],
        endpoint: Callable[[str], Endpoint],
        *,
        max_attempts: int = 10,
        pool_size: int = 32,
        connect_timeout: float = 10,
        read_timeout: float = 60,
        ca_bundle: str | None = None,
    ) -> None:
        self.credentials = credentials
        self.endpoint = endpoint
        self.max_attempts = max(1, max_attempts)
        self.pool_size = pool_size
        self.timeout = read_timeout
        self.connect_timeout = connect_timeout
        self.ca_bundle = ca_bundle
        self._pools: dict[tuple[str, str], _Pool] = {}
        self._signers: dict[str, Signer] = {}
        self._lock = threading.Lock()
        self._context: ssl.SSLContext | None = None
        #: when throttled, no thread sends before this time (time.monotonic())
        self._pause_until = 0.0

    # -- plumbing -------------------------------------------------------------------

    def _pool(self, ep: Endpoint) -> _Pool:
        key = (ep.scheme, ep.host)
        pool = self._pools.get(key)
        if pool is None:
            with self._lock:
                pool = self._pools.get(key)
                if pool is None:
                    if ep.scheme == "https" and self._context is None:
                        self._context = ssl.create_default_context(cafile=self.ca_bundle)
                    pool = _Pool(ep.scheme, ep.host, self._context, self.timeout, self.pool_size)
                    self._pools[key] = pool
        return pool

    def _signer(self, region: str) -> Signer:
        signer = self._signers.get(region)
        if signer is None:
            with self._lock:
                signer = self._signers.setdefault(region, Signer(region))
        return signer

    def request(
        self,
        method: str,
        bucket: str,
        key: str,
        what: str,
        *,
        query: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes | memoryview | None = None,
        payload_sha256: str | None = None,
        stream: bool = False,
        ok: tuple[int, ...] = (200, 206),
        xml: bool = False,
    ) -> Response:
        """Send one request, retrying what is worth retrying; raise deon errors.

        With `stream`, the body is left on the connection for `Response.readinto`.
        With `xml`, the answer must be an XML document (`Response.xml`): a 200 carrying
        an S3 <Error> document is an error, retried as a 500 (S3 sends these once it has
        answered 200, e.g. to CompleteMultipartUpload; botocore does the same), and a
        body that is not XML is retried, then reported in one line.
        """
        ep = self.endpoint(bucket)
        pool = self._pool(ep)
        path = ep.path(key)
        query = dict(query or {})
        target = path + ("?" + _query(query) if query else "")
        if pool.absolute_form:
            target = f"{ep.scheme}://{ep.host}{target}"
        payload = payload_sha256 or (EMPTY_SHA256 if not body else None)
        if payload is None:
            import hashlib

            payload = hashlib.sha256(body).hexdigest()  # type: ignore[arg-type]
        attempt = 0
        while True:
            attempt += 1
            pause = self._pause_until - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            signed = self._signer(ep.region).sign(
                self.credentials(), method, ep.host, path, query, dict(headers or {}), payload
            )
            conn = pool.get()
            try:
                conn.timeout = self.timeout
                conn.request(method, target, body=body, headers=signed)
                raw = conn.getresponse()
            except CONNECTION_ERRORS as e:
                conn.close()
                if attempt < self.max_attempts and retryable_exception(e):
                    self._backoff(attempt)
                    continue
                raise translate_connection_error(e, what, f"{ep.scheme}://{ep.host}") from e
            resp_headers = {k.lower(): v for k, v in raw.getheaders()}
            status = raw.status
            if status in ok:
                if stream and method != "HEAD":

                    def release(finished: bool, conn: Any = conn, raw: Any = raw) -> None:
                        if finished and not raw.will_close:
                            pool.put(conn)
                        else:
                            conn.close()

                    return Response(status, resp_headers, b"", raw, release, what)
                try:
                    data = raw.read()
                except CONNECTION_ERRORS as e:
                    conn.close()
                    if attempt < self.max_attempts:
                        self._backoff(attempt)
                        continue
                    raise StorageError(f"{what}: connection broke: {e}") from e
                (conn.close() if raw.will_close else pool.put(conn))
                if not xml:
                    return Response(status, resp_headers, data, what=what)
                fields = error_document(data)
                if fields is None:
                    try:
                        root = ET.fromstring(data)
                    except ET.ParseError:
                        if attempt < self.max_attempts:
                            self._backoff(attempt)
                            continue
                        raise UnreadableResponse(
                            f"{what}: {_not_xml(data, resp_headers.get('content-type'))}"
                        ) from None
                    return Response(status, resp_headers, data, what=what, xml=root)
                status = 500  # an error after the 200: retried as botocore does
            else:
                try:
                    data = raw.read()
                except CONNECTION_ERRORS:
                    data = b""
                (conn.close() if raw.will_close else pool.put(conn))
                fields = error_fields(data, status)
            code, message = fields.get("Code", str(status)), fields.get("Message", "")
            if retryable(status, code) and attempt < self.max_attempts:
                if throttled(status, code):
                    # Throttling is about the request rate: every thread backs off, so
                    # that deon slows down instead of failing (botocore's adaptive mode).
                    self._pause_until = max(
                        self._pause_until, time.monotonic() + random.uniform(0.05, 0.25 * attempt)
                    )
                self._backoff(attempt, throttled=throttled(status, code))
                continue
            error = translate_error(raw.status, code, message, what, bucket, resp_headers, fields)
            if method == "HEAD" and status in (400, 403) and not data and not error.fatal:
                raise self._diagnose(bucket, key, what, query, headers, error)
            raise error

    def _diagnose(
        self,
        bucket: str,
        key: str,
        what: str,
        query: Mapping[str, str],
        headers: Mapping[str, str] | None,
        error: DeonError,
    ) -> DeonError:
        """A HEAD refused without a body (400, 403) cannot say why: an expired token, an
        unknown key id and a denied read look alike. One GET of the first byte brings
        S3's error document; if it is refused the same way, its error is the one."""
        get_headers = {k: v for k, v in (headers or {}).items() if k.lower() != "range"}
        get_headers["range"] = "bytes=0-0"
        try:
            self.request("GET", bucket, key, what, query=query, headers=get_headers)
        except DeonError as e:
            return e if type(e) is not KeyNotFound else error
        return error

    def _backoff(self, attempt: int, throttled: bool = False) -> None:
        # Exponential backoff with full jitter, as botocore's standard mode; throttling
        # backs off harder so that a busy server is slowed down, not failed.
        base = 0.5 if throttled else 0.1
        time.sleep(random.uniform(0, min(20.0, base * 2 ** (attempt - 1))))

    # -- operations -----------------------------------------------------------------

    def list_page(
        self, bucket: str, prefix: str, token: str | None
    ) -> tuple[list[tuple[str, int, str, datetime]], str | None]:
        """One page (up to 1000 keys) of ListObjectsV2: [(key, size, etag, last_modified)]
        and the continuation token, or None on the last page."""
        query = {"list-type": "2", "prefix": prefix, "encoding-type": "url", "max-keys": "1000"}
        if token:
            query["continuation-token"] = token
        where = f"s3://{bucket}/{prefix}"
        r = self.request("GET", bucket, "", where, query=query, xml=True)
        root = r.xml
        assert root is not None
        # Match tags by local name: AWS and moto use the S3 namespace, s3rver none.
        items = []
        truncated, next_token, key_count, encoded = False, None, None, False
        for el in root:
            tag = el.tag.rsplit("}", 1)[-1]
            if tag == "Contents":
                fields = {c.tag.rsplit("}", 1)[-1]: c.text or "" for c in el}
                items.append(
                    (
                        fields.get("Key", ""),
                        int(fields.get("Size") or 0),
                        fields.get("ETag", "").strip('"'),
                        parse_iso_date(fields.get("LastModified") or "1970-01-01T00:00:00Z"),
                    )
                )
            elif tag == "IsTruncated":
                truncated = (el.text or "").strip().lower() == "true"
            elif tag == "NextContinuationToken":
                next_token = el.text
            elif tag == "KeyCount" and (el.text or "").strip().isdigit():
                key_count = int((el.text or "").strip())
            elif tag == "EncodingType":
                encoded = (el.text or "").strip().lower() == "url"
        if encoded:
            # Only a listing that says it is URL-encoded is decoded: several S3-compatible
            # stores ignore encoding-type=url, and `run+1.h5` must stay `run+1.h5`.
            items = [(_key(k), size, etag, lm) for k, size, etag, lm in items]
        if key_count is not None and key_count != len(items):
            # Never mistake a listing we could not read for an empty prefix.
            raise StorageError(
                f"{where}: the listing says {key_count} keys, deon read {len(items)}"
            )
        if truncated and not next_token:
            raise StorageError(f"{where}: truncated listing without a token")
        return items, (next_token if truncated else None)


def _key(encoded: str) -> str:
    """A key from a listing whose EncodingType is url (spaces come as `+`, as botocore
    reads them)."""
    return unquote_plus(encoded) if "%" in encoded or "+" in encoded else encoded


def _query(params: Mapping[str, str]) -> str:
    from deon.s3.signing import query_string

    return query_string(params)


def _not_xml(body: bytes, content_type: str | None) -> str:
    from deon.s3.errors import _not_xml as describe

    return describe(body, content_type)


__all__ = ["S3Http", "Endpoint", "Response", "translate_error", "ResponseCut"]
