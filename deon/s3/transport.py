"""A lean S3 client for the object operations deon does in bulk: LIST, HEAD, GET, PUT and
multipart uploads.

Why not boto3 for these: its request pipeline costs ~1.5 ms of CPU per request (~8x
this client's; `python bench/transport.py`); on two cores that caps a metadata mirror
near 1,000 objects/s. Why not obstore (object_store): its listing fails outright on a
key with a `..` segment, which any colleague can create, it cannot address keys with
empty or dot segments, and it exposes neither SSE headers nor Content-MD5.

What this module does not decide: where a request goes (the Endpoint botocore resolved,
see client.Storage._endpoint) and how it is carried. Connections are made by urllib3
exactly as botocore's HTTP session for that endpoint makes them (proxy with its
credentials, https:// proxies, NO_PROXY, CA bundle, client certificate, socket options,
connect timeout), on botocore's connection classes (Expect: 100-continue). This module
only frames the requests (http.client), signs them (signing.py) and parses the answers
with a plain header parser: urllib3's own request/response path costs ~250 us of CPU a
request more (bench/transport.py measures each way).

Keys are sent literally: no path normalisation, so every key a bucket can hold can
be listed, read and named.
"""

from __future__ import annotations

import contextlib
import email.utils
import http.client
import random
import threading
import time
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import unquote_plus

import urllib3.exceptions

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
#: decides which of these another attempt can cure (errors.py). urllib3 opens the
#: connections: NewConnectionError, ConnectTimeoutError (not OSErrors).
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    *RETRYABLE_ERRORS,
    OSError,
    urllib3.exceptions.HTTPError,
)


@dataclass(frozen=True)
class Endpoint:
    """Where a bucket's requests go, as botocore resolved it (see `client.Storage`).

    `prefix` is the encoded path before the key: "/" (virtual-hosted), "/BUCKET/"
    (path style), "/s3/BUCKET/" (an endpoint URL with a path). `session` is the
    botocore HTTP session (urllib3, configured from the user's settings) whose
    connections carry the requests: proxies, CA bundle, client certificate, timeouts.
    """

    scheme: str
    host: str  # host[:port] as signed and sent in the Host header (no default port)
    region: str  # the signing region
    prefix: str
    bucket: str
    session: Any = field(default=None, compare=False, repr=False)

    def path(self, key: str) -> str:
        return self.prefix + uri_path(key) if key else self.prefix

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"


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
                    f"{self.what}: the connection closed {left} bytes before the end of the body"
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


def _connection_classes() -> dict[str, type]:
    """botocore's connection classes (urllib3's, with Expect: 100-continue) answering
    through the plain header parser."""
    from botocore.awsrequest import AWSHTTPConnection, AWSHTTPSConnection

    class _HTTP(AWSHTTPConnection):  # type: ignore[misc]
        response_class = _FastResponse
        # urllib3's versions only add checks for values that deon never sends (its
        # SKIP_HEADER marker, control characters in the method): ~10 us a request.
        putrequest = http.client.HTTPConnection.putrequest
        putheader = http.client.HTTPConnection.putheader

    class _HTTPS(AWSHTTPSConnection):  # type: ignore[misc]
        response_class = _FastResponse
        putrequest = http.client.HTTPConnection.putrequest
        putheader = http.client.HTTPConnection.putheader

    return {"http": _HTTP, "https": _HTTPS}


_CLASSES: dict[str, type] = {}
#: http.client's own request framing and response reading, on urllib3's connections:
#: urllib3's versions of these cost ~250 us of CPU a request (its header dict and
#: response object, the email parser), three times the rest of a HEAD (bench/transport.py).
_send_request = http.client.HTTPConnection.request
_get_response = http.client.HTTPConnection.getresponse


class _Pool:
    """Keep-alive connections to one host, made by urllib3 exactly as botocore's HTTP
    session for this endpoint makes them: through the proxy botocore picked (NO_PROXY,
    Proxy-Authorization from the proxy URL, TLS to an https:// proxy), with its CA
    bundle, client certificate, socket options and connect timeout."""

    def __init__(self, ep: Endpoint, connect_timeout: float, read_timeout: float) -> None:
        from urllib3.util.proxy import connection_requires_http_tunnel

        self.url = ep.url + "/"
        self.session = ep.session
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self.proxy_url: str | None = self.session._proxy_config.proxy_url_for(self.url)
        self.pool = self._urllib3_pool()
        proxy = self.pool.proxy
        self.tunnel = proxy is not None and connection_requires_http_tunnel(
            proxy, self.pool.proxy_config, ep.scheme
        )
        #: Plain HTTP through a proxy: the whole URL is the request target, and the
        #: proxy's own headers (Proxy-Authorization) go with every request.
        self.absolute_form = proxy is not None and not self.tunnel
        self.proxy_headers = dict(self.pool.proxy_headers or {}) if self.absolute_form else {}

    def _urllib3_pool(self) -> Any:
        session = self.session
        manager = session._get_connection_manager(self.url, self.proxy_url)
        pool = manager.connection_from_url(self.url)
        session._setup_ssl_cert(pool, self.url, session._verify)
        if not _CLASSES:
            _CLASSES.update(_connection_classes())
        pool.ConnectionCls = _CLASSES[pool.scheme]
        # Idle connections are kept here, not in urllib3's queue (a lock and a poll per
        # request); urllib3's pool only makes them, as it would for botocore.
        self.idle: deque[Any] = deque()
        self.size = max(1, int(pool.pool.maxsize if pool.pool is not None else 10))
        return pool

    def get(self) -> Any:
        try:
            return self.idle.pop()  # deque.pop/append are atomic: no lock
        except IndexError:
            pass
        conn = self.pool._new_conn()
        conn.timeout = self.connect_timeout
        if self.tunnel:
            self.pool._prepare_proxy(conn)  # CONNECT, through TLS to an https proxy
        return conn

    def put(self, conn: Any) -> None:
        if len(self.idle) < self.size:
            self.idle.append(conn)
        else:
            conn.close()

    def discard(self, conn: Any) -> None:
        conn.close()


class S3Http:
    """Signed S3 requests over pooled keep-alive connections, with retries.

    Args:
        credentials: returns current credentials (botocore refreshes them); None sends
            requests unsigned (--no-sign-request).
        endpoint: returns the Endpoint of a bucket.
        max_attempts: attempts per request for throttling, 5xx and connection errors
            (botocore's resolved `max_attempts`).
        connect_timeout, read_timeout: seconds, as botocore's client config has them.
        headers: sent (and signed) with every request (x-amz-request-payer).
    """

    def __init__(
        self,
        credentials: Callable[[], Credentials] | None,
        endpoint: Callable[[str], Endpoint],
        *,
        max_attempts: int = 10,
        connect_timeout: float = 10,
        read_timeout: float = 60,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.credentials = credentials
        self.endpoint = endpoint
        self.max_attempts = max(1, max_attempts)
        self.timeout = read_timeout
        self.connect_timeout = connect_timeout
        self.headers = dict(headers or {})
        self._pools: dict[tuple[str, str, int], _Pool] = {}
        self._signers: dict[str, Signer] = {}
        self._lock = threading.Lock()
        #: when throttled, no thread sends before this time (time.monotonic())
        self._pause_until = 0.0

    # -- plumbing -------------------------------------------------------------------

    def _pool(self, ep: Endpoint) -> _Pool:
        key = (ep.scheme, ep.host, id(ep.session))
        pool = self._pools.get(key)
        if pool is None:
            with self._lock:
                pool = self._pools.get(key)
                if pool is None:
                    pool = _Pool(ep, self.connect_timeout, self.timeout)
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
        A PUT with a body asks `Expect: 100-continue`, so that a refusal (access
        denied, an expired token) arrives before the body is sent, and is reported
        as what it is.
        """
        ep = self.endpoint(bucket)
        pool = self._pool(ep)
        path = ep.path(key)
        query = dict(query or {})
        target = path + ("?" + _query(query) if query else "")
        if pool.absolute_form:
            target = ep.url + target
        payload = payload_sha256 or (EMPTY_SHA256 if not body else None)
        if payload is None:
            import hashlib

            payload = hashlib.sha256(body).hexdigest()  # type: ignore[arg-type]
        given = {**self.headers, **(headers or {})}
        expect = method == "PUT" and bool(body)
        attempt = 0
        while True:
            attempt += 1
            pause = self._pause_until - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            if self.credentials is None:
                sent = dict(given)
            else:
                sent = self._signer(ep.region).sign(
                    self.credentials(), method, ep.host, path, query, dict(given), payload
                )
            sent["Host"] = ep.host
            sent.update(pool.proxy_headers)
            conn = None
            try:
                conn = pool.get()
                if expect:
                    # botocore's connection (AWSConnection) sends the headers, waits up
                    # to 1 s for "100 Continue", and sends no body after a final answer.
                    sent["Expect"] = b"100-continue"  # type: ignore[assignment]
                    # A server that answered and closed early: read its answer.
                    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                        conn.request(method, target, body=body, headers=sent)
                else:
                    _send_request(conn, method, target, body=body, headers=sent)
                if conn.timeout != self.timeout:  # connected (connect_timeout): now reads
                    conn.timeout = self.timeout
                    conn.sock.settimeout(self.timeout)
                raw = _get_response(conn)
            except CONNECTION_ERRORS as e:
                if conn is not None:
                    pool.discard(conn)
                if attempt < self.max_attempts and _worth_retrying(e):
                    self._backoff(attempt)
                    continue
                raise translate_connection_error(e, what, _where(ep, pool)) from e
            # After an answer to the headers alone, the body was never sent: the
            # connection is out of step and must not be reused.
            early = bool(getattr(conn, "_response_received", False))
            resp_headers = {k.lower(): v for k, v in raw.getheaders()}
            status = raw.status
            if status in ok and not early:
                if stream and method != "HEAD":

                    def release(finished: bool, conn: Any = conn, raw: Any = raw) -> None:
                        if finished and not raw.will_close:
                            pool.put(conn)
                        else:
                            pool.discard(conn)

                    return Response(status, resp_headers, b"", raw, release, what)
                try:
                    data = raw.read()
                except CONNECTION_ERRORS as e:
                    pool.discard(conn)
                    if attempt < self.max_attempts:
                        self._backoff(attempt)
                        continue
                    raise StorageError(f"{what}: connection broke: {e}") from e
                (pool.discard(conn) if raw.will_close else pool.put(conn))
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
                (pool.discard(conn) if raw.will_close or early else pool.put(conn))
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
        self, bucket: str, prefix: str, token: str | None, start_after: str | None = None
    ) -> tuple[list[tuple[str, int, str, datetime]], str | None]:
        """One page (up to 1000 keys) of ListObjectsV2: [(key, size, etag, last_modified)]
        and the continuation token, or None on the last page. `start_after`: only keys
        after it (S3 ignores it once a token is given)."""
        query = {"list-type": "2", "prefix": prefix, "encoding-type": "url", "max-keys": "1000"}
        if token:
            query["continuation-token"] = token
        elif start_after:
            query["start-after"] = start_after
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


def _worth_retrying(e: BaseException) -> bool:
    """errors.retryable_exception, for urllib3's connection errors too (a refused
    certificate or a refusing proxy stays final)."""
    if isinstance(e, urllib3.exceptions.HTTPError):
        return not getattr(translate_connection_error(e, "", ""), "fatal", False)
    return retryable_exception(e)


def _where(ep: Endpoint, pool: _Pool) -> str:
    """The endpoint, and the proxy when one carries the request (without credentials)."""
    from botocore.httpsession import mask_proxy_url  # as botocore shows it: ***:***@

    proxy = f" through the proxy {mask_proxy_url(pool.proxy_url)}" if pool.proxy_url else ""
    return ep.url + proxy


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
