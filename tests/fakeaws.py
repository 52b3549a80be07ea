"""A recording fake AWS S3 on 127.0.0.1, for tests only: what a client meets on the
real service, without leaving the machine.

API (fixtures in tests/conftest.py: `fakeaws`, `fake_proxy`)
--------------------------------------------------------------
FakeAWS(moto_host, moto_port)   .start() / .stop() / .reset()
    Two listeners, `tls_port` (HTTPS, certificate of a throwaway CA, `ca_pem` is its
    file) and `plain_port` (HTTP), in front of a moto server (the object store). Clients
    use AWS's own names: with the `fakeaws` fixture, `*.amazonaws.com`, `localhost`,
    `*.localhost` and every name given to `add_base` resolve to 127.0.0.1, their port
    443 to `tls_port` and 80 to `plain_port` (socket.getaddrinfo is patched in the test
    process; subprocesses get the same patch from tests/fakeaws_site/sitecustomize.py
    through PYTHONPATH and FAKEAWS_RESOLVE, and AWS_CA_BUNDLE names the CA). So boto3
    and deon run with no endpoint URL at all and reach `lab.s3.amazonaws.com`.
  .env()                 the environment variables a deon subprocess needs (see above)
  .create_bucket(name, region="us-east-1")   a bucket in moto, and the region the fake
                         says it lives in (answers for other regions' endpoints follow)
  .put(bucket, key, body) / .get(bucket, key) / .keys(bucket)   moto directly, unrecorded
  .add_base(host, region="us-east-1", prefix="")   a custom endpoint host (path-style,
                         and BUCKET.host virtual-hosted), with a path prefix (`/s3`)
  .credentials           {access key: secret}; other keys get 403 InvalidAccessKeyId
  .tls_failures          TLS handshakes that failed (clients refusing the certificate)
  .requests              every request received: `Record`s (method, host, path, query,
                         params, headers, body_len, bucket, key, style, scope_region,
                         signed, signature_ok, signature_error, status, answered_by,
                         tls); `.find(kind=..., key=...)`, `.kinds()`, `.clear()`
  Every signed request is verified (SigV4 header auth, with botocore's signer as the
  reference: canonical request rebuilt from what arrived on the wire); a wrong one is
  answered 403 SignatureDoesNotMatch as S3 does, and recorded with signature_ok False.
  A body whose sha256 differs from x-amz-content-sha256 gets 400
  XAmzContentSHA256Mismatch. Unsigned requests are served (public bucket) unless
  `quirks.anonymous` is False.

Quirks (`fake.quirks`, reset per test; one-shot ones take `times`):
  .region_answer = "301" | "400" | "307" | None   a request for a bucket that lives in
        another region than the endpoint's: 301 PermanentRedirect (x-amz-bucket-region,
        <Endpoint>), 400 AuthorizationHeaderMalformed (<Region>), 307
        TemporaryRedirect (Location: the bucket's regional endpoint). None (default) =
        AWS's way: 400 when signed for the wrong region, else 301.
  .url_encoding = False  the store ignores encoding-type=url: listed keys come back
        raw and without <EncodingType> (several S3-compatibles do this)
  .clock_offset = SECONDS   the server's clock is that far ahead of the machine's (Date
        header); past 15 minutes, signed requests get 403 RequestTimeTooSkewed
  .expired_tokens        session tokens answered 400 ExpiredToken
  .anonymous = False     unsigned requests get 403 AccessDenied
  fake.early_reply(kind="PUT", times=1, code="AccessDenied")   answer a PUT (or
        UPLOAD_PART) 403 right after its headers, without reading the body (with
        `Expect: 100-continue`, instead of the 100), then close the connection
  fake.error_200(kind, times=1, code="InternalError")   answer 200 with an <Error>
        body (S3 does this for CompleteMultipartUpload, CopyObject and
        CreateMultipartUpload); not forwarded
  fake.non_xml_200(kind, times=1)   answer 200 with a body that is not XML; not forwarded
  fake.short_body(key, times=1)     a GET of `key` sends its headers (Content-Length
        of the whole body), half the body, then closes the connection cleanly (FIN)
  fake.fail(kind, status, code, times=1, key=None)  a canned S3 error, not forwarded
  Kinds are tests.s3proxy.request_kind's: GET, HEAD, PUT, LIST, HEAD_BUCKET,
  CREATE_MULTIPART, UPLOAD_PART, COMPLETE_MULTIPART, DELETE, POST, LIST_BUCKETS.

FakeProxy(user=None, password=None, tls=False, ca=None)   .start() / .stop()
    An HTTP(S) forward proxy on 127.0.0.1 (`url`, `url_with_credentials`): CONNECT
    tunnels and absolute-form requests; with a user, anything without the right
    `Proxy-Authorization: Basic` gets 407. `.requests`: (method, target, authorized).
"""

from __future__ import annotations

import base64
import calendar
import contextlib
import hashlib
import hmac
import http.client
import json
import re
import select
import socket
import ssl
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit
from xml.sax.saxutils import escape

from tests.s3proxy import HOP_HEADERS, request_kind

SITE_DIR = Path(__file__).parent / "fakeaws_site"
REGIONS = ("us-east-1", "us-east-2", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-2")
MAX_SKEW = 15 * 60  # seconds, as S3
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

_AWS_HOST = re.compile(
    r"^s3(?:[.-](?:fips|dualstack|accelerate))*(?:[.-](?P<region>[a-z]{2}(?:-gov)?-[a-z]+-\d))?"
    r"(?:\.dualstack)?\.amazonaws\.com$"
)
_AUTH = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<cred>[^,\s]+),\s*SignedHeaders=(?P<signed>[^,\s]+),"
    r"\s*Signature=(?P<sig>[0-9a-f]+)"
)


@dataclass
class Record:
    """One request as the fake received it."""

    method: str
    host: str  # the Host header
    path: str  # raw, as sent
    query: str  # raw, as sent
    params: list[tuple[str, str]]  # decoded
    headers: dict[str, str]  # names lower-case
    tls: bool
    body_len: int = 0
    bucket: str = ""
    key: str = ""
    style: str = ""  # "virtual" | "path"
    scope_region: str = ""
    signed: bool = False
    signature_ok: bool | None = None
    signature_error: str = ""
    status: int = 0
    answered_by: str = "moto"  # or the quirk that answered

    @property
    def kind(self) -> str:
        path = f"/{self.bucket}/{self.key}" if self.key else f"/{self.bucket}"
        return request_kind(self.method, path if self.bucket else "/", self.query)

    def param(self, name: str) -> str | None:
        for k, v in self.params:
            if k == name:
                return v
        return None


class Requests(list):  # type: ignore[type-arg]
    """The recorded requests, with look-ups tests need."""

    def find(self, kind: str | None = None, key: str | None = None) -> list[Record]:
        return [
            r for r in self if (kind is None or r.kind == kind) and (key is None or r.key == key)
        ]

    def kinds(self) -> list[str]:
        return [r.kind for r in self]


@dataclass
class _Once:
    kind: str
    action: str  # early | error200 | nonxml | short | fail
    times: int
    key: str | None = None
    status: int = 200
    code: str = ""


@dataclass
class Quirks:
    region_answer: str | None = None
    url_encoding: bool = True
    clock_offset: float = 0.0
    expired_tokens: set[str] = field(default_factory=set)
    anonymous: bool = True


def error_xml(code: str, message: str, **extra: str) -> bytes:
    fields = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in extra.items())
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
        f"<Message>{escape(message)}</Message>{fields}"
        f"<RequestId>{uuid.uuid4().hex[:16].upper()}</RequestId></Error>"
    ).encode()


class _TestCA:
    """A throwaway CA (trustme) and one server certificate for every name the fake
    answers to."""

    def __init__(self, extra_names: tuple[str, ...] = ()) -> None:
        import trustme

        self.ca = trustme.CA()
        names = [
            "s3.amazonaws.com",
            "*.s3.amazonaws.com",
            "s3-accelerate.amazonaws.com",
            "*.s3-accelerate.amazonaws.com",
            "localhost",
            "127.0.0.1",
            *extra_names,
        ]
        for r in REGIONS:
            for base in (
                f"s3.{r}.amazonaws.com",
                f"s3-{r}.amazonaws.com",
                f"s3.dualstack.{r}.amazonaws.com",
                f"s3-fips.{r}.amazonaws.com",
                f"s3-fips.dualstack.{r}.amazonaws.com",
            ):
                names += [base, f"*.{base}"]
        self.cert = self.ca.issue_cert(*names)
        self.dir = Path(tempfile.mkdtemp(prefix="fakeaws-ca-"))
        self.ca_pem = self.dir / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_pem))

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.cert.configure_cert(ctx)
        return ctx


def _iso_now(offset: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() + offset))


class FakeAWS:
    """See the module docstring."""

    def __init__(self, moto_host: str, moto_port: int) -> None:
        self.upstream = (moto_host, moto_port)
        self.tls = _TestCA()
        self.ca_pem = self.tls.ca_pem
        self.credentials: dict[str, str] = {"testing": "testing"}
        self.requests = Requests()
        self.quirks = Quirks()
        self.bucket_regions: dict[str, str] = {}
        self.bases: dict[str, tuple[str, str]] = {}  # host -> (region, prefix)
        self._once: list[_Once] = []
        self.lock = threading.Lock()
        self.monkeypatch: Any = None
        #: TLS handshakes that failed (a client that refused the certificate)
        self.tls_failures = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "AmazonS3"
            sys_version = ""

            def setup(self) -> None:
                if getattr(self.server, "tls_context", None) is not None:
                    self.request.settimeout(30)
                    try:
                        self.request = self.server.tls_context.wrap_socket(  # type: ignore[attr-defined]
                            self.request, server_side=True
                        )
                    except (OSError, ssl.SSLError):
                        with fake.lock:
                            fake.tls_failures += 1
                        raise
                super().setup()

            def log_message(self, *args: object) -> None:
                pass

            def handle_expect_100(self) -> bool:
                return fake._expect_100(self)

            def _handle(self) -> None:
                try:
                    fake._serve(self)
                finally:
                    self._fake_record = None

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        self._handler = Handler
        self.tls_server = self._server(Handler, self.tls.server_context())
        self.plain_server = self._server(Handler, None)
        self.tls_port = self.tls_server.server_address[1]
        self.plain_port = self.plain_server.server_address[1]
        self._threads = [
            threading.Thread(target=s.serve_forever, daemon=True)
            for s in (self.tls_server, self.plain_server)
        ]

    @staticmethod
    def _server(handler: Any, context: ssl.SSLContext | None) -> ThreadingHTTPServer:
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        server.tls_context = context  # type: ignore[attr-defined]
        server.handle_error = lambda *args: None  # type: ignore[method-assign]
        return server

    # -- lifecycle and set-up ------------------------------------------------------------

    def start(self) -> FakeAWS:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        for s in (self.tls_server, self.plain_server):
            s.shutdown()
            s.server_close()

    def reset(self) -> None:
        """Forget requests, quirks, buckets and custom bases (moto is reset separately)."""
        with self.lock:
            self.requests.clear()
            self.tls_failures = 0
            self.quirks = Quirks()
            self._once.clear()
            self.bucket_regions.clear()
            self.bases.clear()
            self.credentials = {"testing": "testing"}
            self.monkeypatch = None

    def resolve_map(self) -> dict[str, Any]:
        return {
            "names": ["localhost", *self.bases],
            "suffixes": [".amazonaws.com", ".localhost", *(f".{b}" for b in self.bases)],
            "ports": {"443": self.tls_port, "80": self.plain_port},
        }

    def env(self) -> dict[str, str]:
        """Environment for a subprocess that should see the fake as AWS."""
        return {
            "FAKEAWS_RESOLVE": json.dumps(self.resolve_map()),
            "PYTHONPATH": str(SITE_DIR),
            "AWS_CA_BUNDLE": str(self.ca_pem),
        }

    def add_base(self, host: str, region: str = "us-east-1", prefix: str = "") -> None:
        """Answer to a custom endpoint host (`https://HOST/PREFIX`): it and its
        subdomains resolve to the fake from now on, here and in subprocesses."""
        self.bases[host.lower()] = (region, prefix.rstrip("/"))
        if self.monkeypatch is not None:
            self.monkeypatch.setenv("FAKEAWS_RESOLVE", json.dumps(self.resolve_map()))

    def use(self, monkeypatch: Any) -> None:
        """Make this process and its subprocesses see the fake as AWS (the fixture
        does this): names mapped to 127.0.0.1, AWS_CA_BUNDLE set; undone by
        `monkeypatch` at the end of the test."""
        import os

        from tests.fakeaws_site import sitecustomize

        self.monkeypatch = monkeypatch
        monkeypatch.setattr(socket, "getaddrinfo", sitecustomize.patched(self.resolve_map))
        for name, value in self.env().items():
            if name == "PYTHONPATH" and os.environ.get("PYTHONPATH"):
                value = f"{value}{os.pathsep}{os.environ['PYTHONPATH']}"
            monkeypatch.setenv(name, value)

    def moto(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=f"http://{self.upstream[0]}:{self.upstream[1]}",
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def create_bucket(self, name: str, region: str = "us-east-1") -> None:
        kwargs: dict[str, Any] = {"Bucket": name}
        if region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        self.moto().create_bucket(**kwargs)
        self.bucket_regions[name] = region

    def put(self, bucket: str, key: str, body: bytes, **kwargs: Any) -> None:
        self.moto().put_object(Bucket=bucket, Key=key, Body=body, **kwargs)

    def get(self, bucket: str, key: str) -> bytes:
        return bytes(self.moto().get_object(Bucket=bucket, Key=key)["Body"].read())

    def keys(self, bucket: str) -> list[str]:
        pages = self.moto().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return sorted(o["Key"] for p in pages for o in p.get("Contents", []))

    # -- one-shot quirks -------------------------------------------------------------------

    def early_reply(self, kind: str = "PUT", times: int = 1, code: str = "AccessDenied") -> None:
        self._add(_Once(kind, "early", times, status=403, code=code))

    def error_200(self, kind: str, times: int = 1, code: str = "InternalError") -> None:
        self._add(_Once(kind, "error200", times, code=code))

    def non_xml_200(self, kind: str, times: int = 1) -> None:
        self._add(_Once(kind, "nonxml", times))

    def short_body(self, key: str, times: int = 1) -> None:
        self._add(_Once("GET", "short", times, key=key))

    def fail(
        self, kind: str, status: int, code: str, times: int = 1, key: str | None = None
    ) -> None:
        self._add(_Once(kind, "fail", times, key=key, status=status, code=code))

    def _add(self, once: _Once) -> None:
        with self.lock:
            self._once.append(once)

    def _take(self, rec: Record, actions: tuple[str, ...]) -> _Once | None:
        with self.lock:
            for once in self._once:
                if (
                    once.action in actions
                    and once.times > 0
                    and (once.kind == rec.kind or (once.kind == "PUT" and rec.method == "PUT"))
                    and (once.key is None or once.key == rec.key)
                ):
                    once.times -= 1
                    return once
        return None

    # -- serving ------------------------------------------------------------------------

    def _record(self, h: BaseHTTPRequestHandler) -> Record:
        rec: Record | None = getattr(h, "_fake_record", None)
        if rec is not None:
            return rec
        split = urlsplit(h.path)
        params = [
            (unquote(k), unquote(v))
            for k, _, v in (p.partition("=") for p in split.query.split("&") if p)
        ]
        headers: dict[str, str] = {}
        for k, v in h.headers.items():
            k = k.lower()
            headers[k] = f"{headers[k]},{v}" if k in headers else v
        rec = Record(
            h.command,
            headers.get("host", ""),
            split.path,
            split.query,
            params,
            headers,
            tls=getattr(h.server, "tls_context", None) is not None,
        )
        self._address(rec)
        h._fake_record = rec  # type: ignore[attr-defined]
        with self.lock:
            self.requests.append(rec)
        return rec

    def _address(self, rec: Record) -> None:
        """Bucket, key and style from the Host header and path, as S3 reads them."""
        host = rec.host.lower()
        if host.startswith("["):
            host = host.split("]")[0] + "]"
        elif host.count(":") == 1:
            host = host.split(":")[0]
        path = unquote(rec.path)
        base = self._base(host)
        if base is not None and base[0] != host:
            rec.bucket, rec.style = host[: -len(base[0]) - 1], "virtual"
            prefix = base[2] + "/"
            rec.key = path[len(prefix) :] if path.startswith(prefix) else ""
        else:
            prefix = base[2] if base else ""
            rest = path[len(prefix) :] if path.startswith(prefix) else path
            bucket, _, key = rest.lstrip("/").partition("/")
            rec.bucket, rec.key, rec.style = bucket, key, "path"

    def _base(self, host: str) -> tuple[str, str | None, str] | None:
        """(base host, its region or None, path prefix) of a Host the fake answers to."""
        for name, (region, prefix) in self.bases.items():
            if host == name or host.endswith("." + name):
                return name, region, prefix
        labels = host.split(".")
        for i in range(len(labels)):
            candidate = ".".join(labels[i:])
            m = _AWS_HOST.match(candidate)
            if m:
                return candidate, m.group("region") or "us-east-1", ""
            if candidate == "localhost" or candidate == "127.0.0.1":
                return candidate, None, ""
        return None

    def _host_region(self, rec: Record) -> str | None:
        host = rec.host.lower().split(":")[0] if not rec.host.startswith("[") else ""
        base = self._base(host)
        return base[1] if base else None

    def _expect_100(self, h: BaseHTTPRequestHandler) -> bool:
        rec = self._record(h)
        error = self._check(rec, None)  # S3 refuses before the body, as it would after
        if error is not None:
            rec.answered_by = "before_body"
            status, payload, extra = error
            self._send(h, rec, status, payload, headers=extra, close=True)
            return False
        once = self._take(rec, ("early",))
        if once is not None:
            rec.answered_by = "early_reply"
            self._send(h, rec, 403, error_xml(once.code, "Access Denied"), close=True)
            return False
        h.send_response_only(100)
        h.end_headers()
        return True

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        rec = self._record(h)
        if rec.answered_by == "early_reply":
            return
        if rec.method in ("PUT", "POST"):
            once = self._take(rec, ("early",))
            if once is not None:
                rec.answered_by = "early_reply"
                self._send(h, rec, 403, error_xml(once.code, "Access Denied"), close=True)
                return
        body = self._read_body(h, rec)
        error = self._check(rec, body)
        if error is not None:
            status, payload, extra = error
            self._send(h, rec, status, payload, headers=extra)
            return
        once = self._take(rec, ("error200", "nonxml", "fail"))
        if once is not None:
            rec.answered_by = once.action
            if once.action == "error200":
                self._send(
                    h,
                    rec,
                    200,
                    error_xml(once.code, "We encountered an internal error. Please try again."),
                )
            elif once.action == "nonxml":
                self._send(
                    h,
                    rec,
                    200,
                    b"<html><body>502 Bad Gateway</body>",
                    headers={"Content-Type": "text/html"},
                )
            else:
                self._send(h, rec, once.status, error_xml(once.code, "injected"))
            return
        self._forward(h, rec, body)

    def _read_body(self, h: BaseHTTPRequestHandler, rec: Record) -> bytes:
        if rec.headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(h.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if not size:
                    while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(h.rfile.read(size))
                h.rfile.readline()
            body = b"".join(chunks)
        else:
            length = int(rec.headers.get("content-length") or 0)
            body = h.rfile.read(length) if length else b""
        rec.body_len = len(body)
        return body

    def _check(self, rec: Record, body: bytes | None) -> tuple[int, bytes, dict[str, str]] | None:
        """What S3 would refuse before touching the bucket: credentials, clock,
        signature, payload hash (unless the body is still to come: None), region. None
        when the request may go on."""
        q = self.quirks
        auth = rec.headers.get("authorization")
        server_now = time.time() + q.clock_offset
        if auth is None:
            if not q.anonymous:
                return 403, error_xml("AccessDenied", "Access Denied"), {}
        else:
            rec.signed = True
            m = _AUTH.match(auth)
            if m is None:
                return (
                    400,
                    error_xml(
                        "AuthorizationHeaderMalformed", "The authorization header is malformed"
                    ),
                    {},
                )
            access_key, day, scope_region, service, _ = (m.group("cred").split("/") + [""] * 5)[:5]
            rec.scope_region = scope_region
            secret = self.credentials.get(access_key)
            if secret is None:
                rec.signature_ok = False
                rec.signature_error = "unknown access key"
                return (
                    403,
                    error_xml(
                        "InvalidAccessKeyId",
                        "The AWS Access Key Id you provided does not exist in our records.",
                        AWSAccessKeyId=access_key,
                    ),
                    {},
                )
            amz_date = rec.headers.get("x-amz-date", "")
            expected, canonical = self._signature(
                rec, secret, m.group("signed"), scope_region, amz_date
            )
            rec.signature_ok = hmac.compare_digest(expected, m.group("sig"))
            if not rec.signature_ok:
                rec.signature_error = canonical
            try:
                sent = calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ"))
            except ValueError:
                sent = 0
            if abs(sent - server_now) > MAX_SKEW:
                return (
                    403,
                    error_xml(
                        "RequestTimeTooSkewed",
                        "The difference between the request time and the current time is "
                        "too large.",
                        RequestTime=amz_date,
                        ServerTime=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(server_now)),
                        MaxAllowedSkewMilliseconds="900000",
                    ),
                    {},
                )
            token = rec.headers.get("x-amz-security-token")
            if token is not None and token in q.expired_tokens:
                return 400, error_xml("ExpiredToken", "The provided token has expired."), {}
            if not rec.signature_ok:
                return (
                    403,
                    error_xml(
                        "SignatureDoesNotMatch",
                        "The request signature we calculated does not match the signature you "
                        "provided. Check your key and signing method.",
                        CanonicalRequest=canonical,
                    ),
                    {},
                )
            claimed = rec.headers.get("x-amz-content-sha256", "")
            if (
                body is not None
                and len(claimed) == 64
                and hashlib.sha256(body).hexdigest() != claimed
            ):
                return (
                    400,
                    error_xml(
                        "XAmzContentSHA256Mismatch",
                        "The provided 'x-amz-content-sha256' header does not match what "
                        "was computed.",
                    ),
                    {},
                )
        # Region: the bucket's home against the endpoint's and the signature's.
        home = self.bucket_regions.get(rec.bucket)
        where = self._host_region(rec)
        if home is None or rec.kind == "LIST_BUCKETS":
            return None
        wrong_host = where is not None and where != home
        wrong_scope = rec.signed and rec.scope_region != home
        if not (wrong_host or wrong_scope):
            return None
        mode = q.region_answer or ("400" if wrong_scope else "301")
        endpoint = f"{rec.bucket}.s3.{home}.amazonaws.com"
        extra = {"x-amz-bucket-region": home}
        if mode == "307" and wrong_host:
            location = f"https://{endpoint}{rec.path}" + (f"?{rec.query}" if rec.query else "")
            extra["Location"] = location
            return (
                307,
                error_xml(
                    "TemporaryRedirect",
                    "Please re-send this request to the specified temporary endpoint.",
                    Endpoint=endpoint,
                    Bucket=rec.bucket,
                ),
                extra,
            )
        if mode == "400" or (mode == "301" and not wrong_host):
            return (
                400,
                error_xml(
                    "AuthorizationHeaderMalformed",
                    f"The authorization header is malformed; the region '{rec.scope_region}' is "
                    f"wrong; expecting '{home}'",
                    Region=home,
                ),
                extra,
            )
        return (
            301,
            error_xml(
                "PermanentRedirect",
                "The bucket you are attempting to access must be addressed using the specified "
                "endpoint. Please send all future requests to this endpoint.",
                Endpoint=endpoint,
                Bucket=rec.bucket,
            ),
            extra,
        )

    @staticmethod
    def _signature(
        rec: Record, secret: str, signed_headers: str, region: str, amz_date: str
    ) -> tuple[str, str]:
        """The signature S3 would compute for what arrived, and the canonical request.
        The canonical form is the server's: path and query decoded and encoded again
        (botocore's encoding), headers as received; hashing and key derivation are
        botocore's own code."""
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.compat import HTTPHeaders
        from botocore.credentials import Credentials

        auth = S3SigV4Auth(Credentials("x", secret), "s3", region)
        names = signed_headers.split(";")
        headers = HTTPHeaders()
        for name in names:
            headers[name] = rec.headers.get(name) or ""
        request = AWSRequest(method=rec.method, url="http://x/", headers={})
        request.context["timestamp"] = amz_date
        path = quote(unquote(rec.path), safe="/~")
        canonical = "\n".join(
            [
                rec.method,
                path,
                auth._canonical_query_string_params(rec.params),
                auth.canonical_headers(headers) + "\n",
                ";".join(sorted(names)),
                rec.headers.get("x-amz-content-sha256", EMPTY_SHA256),
            ]
        )
        string_to_sign = auth.string_to_sign(request, canonical)
        return auth.signature(string_to_sign, request), canonical

    def _forward(self, h: BaseHTTPRequestHandler, rec: Record, body: bytes) -> None:
        params = rec.query
        if rec.kind == "LIST" and not self.quirks.url_encoding:
            params = "&".join(p for p in rec.query.split("&") if not p.startswith("encoding-type="))
        raw_key = ""
        if rec.key:
            raw_key = quote(rec.key, safe="/~")
        target = (
            f"/{quote(rec.bucket)}"
            + (f"/{raw_key}" if rec.key else "")
            + (f"?{params}" if params else "")
        )
        headers = {
            k: v
            for k, v in rec.headers.items()
            if k not in HOP_HEADERS and k not in ("host", "expect")
        }
        headers["host"] = f"{self.upstream[0]}:{self.upstream[1]}"
        if "authorization" not in headers:
            # A public bucket: moto refuses anonymous reads of private objects, so the
            # fake (which has served the request) asks moto as the bucket's owner.
            headers["authorization"] = (
                "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/s3/aws4_request, "
                "SignedHeaders=host, Signature=0"
            )
        if rec.headers.get("transfer-encoding", "").lower() == "chunked":
            headers["content-length"] = str(len(body))
        conn = http.client.HTTPConnection(*self.upstream, timeout=60)
        try:
            conn.request(rec.method, target, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        out = {k: v for k, v in resp.getheaders() if k.lower() not in HOP_HEADERS}
        if rec.kind == "HEAD_BUCKET" and rec.bucket:
            out["x-amz-bucket-region"] = self.bucket_regions.get(rec.bucket, "us-east-1")
        once = (
            self._take(rec, ("short",))
            if rec.method == "GET" and resp.status in (200, 206)
            else None
        )
        if once is not None:
            rec.answered_by = "short_body"
            rec.status = resp.status
            h.send_response_only(resp.status)
            for k, v in out.items():
                if k.lower() not in ("content-length", "date"):
                    h.send_header(k, v)
            h.send_header("Date", self._date())
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data[: len(data) // 2])
            h.wfile.flush()
            h.close_connection = True
            with contextlib.suppress(OSError):
                h.connection.shutdown(socket.SHUT_WR)  # FIN: a clean close, not a reset
            return
        self._send(h, rec, resp.status, data, headers=out, length=out.get("Content-Length"))

    def _date(self) -> str:
        return formatdate(time.time() + self.quirks.clock_offset, usegmt=True)

    def _send(
        self,
        h: BaseHTTPRequestHandler,
        rec: Record,
        status: int,
        data: bytes,
        headers: dict[str, str] | None = None,
        close: bool = False,
        length: str | None = None,
    ) -> None:
        rec.status = status
        head = rec.method == "HEAD"
        h.send_response_only(status)
        out = dict(headers or {})
        if data and not any(k.lower() == "content-type" for k in out):
            out["Content-Type"] = "application/xml"
        for k, v in out.items():
            if k.lower() not in ("content-length", "date", "server"):
                h.send_header(k, v)
        h.send_header("Date", self._date())
        h.send_header("Server", "AmazonS3")
        h.send_header("x-amz-request-id", uuid.uuid4().hex[:16].upper())
        h.send_header(
            "Content-Length", length if head and length else str(0 if head else len(data))
        )
        if close:
            h.send_header("Connection", "close")
            h.close_connection = True
        h.end_headers()
        if not head:
            h.wfile.write(data)
        h.wfile.flush()


# -- the proxy ----------------------------------------------------------------------------


@dataclass
class ProxyRecord:
    method: str
    target: str
    authorized: bool


class FakeProxy:
    """See the module docstring."""

    def __init__(
        self,
        user: str | None = None,
        password: str | None = None,
        tls: bool = False,
        ca: _TestCA | None = None,
    ) -> None:
        self.user, self.password = user, password
        self.requests: list[ProxyRecord] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                ctx = getattr(self.server, "tls_context", None)
                if ctx is not None:
                    self.request = ctx.wrap_socket(self.request, server_side=True)
                super().setup()

            def log_message(self, *args: object) -> None:
                pass

            def do_CONNECT(self) -> None:
                proxy._connect(self)

            def _handle(self) -> None:
                proxy._absolute(self)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.tls_context = None  # type: ignore[attr-defined]
        if tls:
            assert ca is not None
            self.server.tls_context = ca.server_context()  # type: ignore[attr-defined]
        self.port = self.server.server_address[1]
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        secret = f"{quote(user or '', safe='')}:{quote(password or '', safe='')}"
        self.url_with_credentials = (
            f"{scheme}://{secret}@127.0.0.1:{self.port}" if user else self.url
        )
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> FakeProxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _authorized(self, h: BaseHTTPRequestHandler) -> bool:
        if self.user is None:
            return True
        value = h.headers.get("Proxy-Authorization", "")
        expected = base64.b64encode(f"{self.user}:{self.password or ''}".encode()).decode()
        return value.strip() == f"Basic {expected}"

    def _refuse(self, h: BaseHTTPRequestHandler) -> None:
        body = b"Proxy Authentication Required"
        h.send_response_only(407)
        h.send_header("Proxy-Authenticate", 'Basic realm="fakeaws"')
        h.send_header("Content-Length", str(len(body)))
        h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.write(body)
        h.close_connection = True

    def _connect(self, h: BaseHTTPRequestHandler) -> None:
        ok = self._authorized(h)
        self.requests.append(ProxyRecord("CONNECT", h.path, ok))
        if not ok:
            self._refuse(h)
            return
        host, _, port = h.path.rpartition(":")
        try:
            upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=30)
        except OSError:
            h.send_response_only(502)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        h.send_response_only(200, "Connection established")
        h.end_headers()
        h.wfile.flush()
        client = h.connection
        h.close_connection = True
        try:
            socks = [client, upstream]
            while True:
                pending = isinstance(client, ssl.SSLSocket) and client.pending()
                ready = [client] if pending else select.select(socks, [], [], 30)[0]
                if not ready:
                    break
                done = False
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        done = True
                        break
                    (upstream if s is client else client).sendall(data)
                if done:
                    break
        except OSError:
            pass
        finally:
            upstream.close()

    def _absolute(self, h: BaseHTTPRequestHandler) -> None:
        ok = self._authorized(h)
        self.requests.append(ProxyRecord(h.command, h.path, ok))
        if not ok:
            self._refuse(h)
            return
        u = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        headers = {
            k: v
            for k, v in h.headers.items()
            if k.lower() not in HOP_HEADERS | {"proxy-authorization"}
        }
        cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
        conn = cls(u.hostname or "", u.port, timeout=60)
        try:
            target = u.path + (f"?{u.query}" if u.query else "")
            conn.request(h.command, target, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        h.send_response_only(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in HOP_HEADERS | {"content-length"}:
                h.send_header(k, v)
        h.send_header("Content-Length", resp.getheader("Content-Length") or str(len(data)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)
