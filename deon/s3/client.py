"""S3 access: the one module that imports boto3.

boto3/botocore provide what users already configure — the credential chain (env,
profiles, SSO, roles), regions and endpoints — and the bucket-level calls, each through
`Storage._call`, which turns botocore's exceptions into deon errors (keeping the boto
error as `__cause__`). Object requests, which deon sends by the thousand, go through
the lean client in s3http.py with the same credentials. Both retry throttling (503
SlowDown), 5xx and connection errors with exponential backoff; a body that breaks
while streaming is retried by the transfer engine, which knows how far it got.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from deon.errors import (
    AddressError,
    BucketNotFound,
    ConfigError,
    DeonError,
    KeyNotFound,
    StorageError,
)

log = logging.getLogger(__name__)

#: Attempts per request, for botocore's standard retry mode (exponential backoff with
#: jitter, capped at 20 s), which covers 5xx, SlowDown and connection errors.
MAX_ATTEMPTS = 10


def stream_errors() -> tuple[type[BaseException], ...]:
    """Exceptions raised while reading a response body that a re-request can cure."""
    import http.client
    import socket
    import ssl

    return (
        http.client.HTTPException,
        ConnectionError,
        TimeoutError,
        socket.timeout,
        ssl.SSLError,
    )


def utf8(value: str) -> str:
    """A header value as its sender meant it. HTTP hands headers over as Latin-1; S3
    servers (moto, MinIO, Ceph) pass raw UTF-8 user metadata through, so non-ASCII text
    that is valid UTF-8 is read as UTF-8 (Latin-1 text almost never is)."""
    if value.isascii():
        return value
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


def clean_etag(etag: str | None) -> str:
    return (etag or "").strip('"')


@dataclass(frozen=True)
class ObjectInfo:
    """An object as LIST reports it."""

    bucket: str
    key: str
    size: int
    etag: str
    last_modified: datetime

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class ObjectHead:
    """An object as HEAD (or the headers of a GET) reports it."""

    size: int
    etag: str
    last_modified: datetime | None
    metadata: dict[str, str] = field(default_factory=dict)
    #: server-side encryption: with SSE-KMS or SSE-C the ETag is not an MD5
    encryption: str | None = None
    #: total size of the object (differs from `size` for a ranged GET)
    total_size: int | None = None
    #: x-amz-version-id where the bucket keeps versions; None for the "null" version,
    #: which a later write replaces in place (so it pins nothing)
    version_id: str | None = None

    @classmethod
    def from_headers(cls, status: int, h: dict[str, str]) -> ObjectHead:
        """From the (lower-cased) headers of a HEAD or GET response."""
        from deon.s3.transport import parse_http_date

        size = int(h.get("content-length", 0))
        total = size
        content_range = h.get("content-range")
        if status == 206 and content_range and "/" in content_range:
            tail = content_range.rsplit("/", 1)[1]
            if tail.isdigit():
                total = int(tail)
        encryption = (
            "SSE-C"
            if h.get("x-amz-server-side-encryption-customer-algorithm")
            else (h.get("x-amz-server-side-encryption"))
        )
        return cls(
            size=size,
            etag=clean_etag(h.get("etag")),
            last_modified=parse_http_date(h.get("last-modified")),
            metadata={k[11:]: utf8(v) for k, v in h.items() if k.startswith("x-amz-meta-")},
            encryption=encryption,
            total_size=total,
            version_id=h.get("x-amz-version-id") if h.get("x-amz-version-id") != "null" else None,
        )


class Storage:
    """S3 for deon: one instance shared by all worker threads.

    Args:
        endpoint_url: an S3-compatible endpoint (MinIO, Ceph, moto); None for AWS.
        profile: a profile from ~/.aws/config; None for boto3's default chain.
        max_pool_connections: connections kept open per host; set it to the number of
            threads that will use the instance at once.
    """

    def __init__(
        self,
        endpoint_url: str | None = None,
        profile: str | None = None,
        max_pool_connections: int = 32,
    ) -> None:
        self.endpoint_url = endpoint_url
        self.profile = profile
        self.max_pool_connections = max_pool_connections
        self._client: Any = None
        self._session: Any = None
        self._credentials: Any = None
        self._http: Any = None
        self._endpoints: dict[str, Any] = {}
        self._lock = threading.RLock()

    # -- what botocore provides -------------------------------------------------------

    @property
    def session(self) -> Any:
        with self._lock:
            if self._session is None:
                # botocore's session is boto3's credential and config chain without
                # boto3 and s3transfer, which add ~0.1 s to every start.
                import botocore.exceptions as bex
                import botocore.session

                session = botocore.session.Session(profile=self.profile)
                try:
                    session.get_scoped_config()  # an unknown profile fails here
                except bex.ProfileNotFound as e:
                    raise ConfigError(
                        f"AWS profile {self.profile!r} not found in ~/.aws/config or "
                        "~/.aws/credentials"
                    ) from e
                self._session = session
            return self._session

    @property
    def client(self) -> Any:
        """A boto3 S3 client, for the bucket-level calls."""
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self, region: str | None = None) -> Any:
        import botocore.config
        import botocore.exceptions as bex

        # AWS_MAX_ATTEMPTS / AWS_RETRY_MODE, when set, win: botocore reads them itself.
        retries: dict[str, Any] = {}
        if not os.environ.get("AWS_RETRY_MODE"):
            retries["mode"] = "standard"
        if not os.environ.get("AWS_MAX_ATTEMPTS"):
            retries["max_attempts"] = MAX_ATTEMPTS
        config = botocore.config.Config(
            max_pool_connections=self.max_pool_connections,
            retries=retries or None,
            connect_timeout=10,
            read_timeout=60,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            # Custom endpoints (MinIO, moto, on-premise) rarely resolve bucket subdomains.
            s3={"addressing_style": "path"} if self.endpoint_url else None,
        )
        try:
            return self.session.create_client(
                "s3",
                # user:password@ in the URL is used by nobody; botocore would repeat it
                # in its messages.
                endpoint_url=safe_url(self.endpoint_url) or None,
                config=config,
                region_name=region or self.region,
            )
        except ValueError as e:
            raise ConfigError(f"bad endpoint URL {safe_url(self.endpoint_url)!r}: {e}") from e
        except bex.BotoCoreError as e:
            raise ConfigError(f"cannot configure S3 access: {e}") from e

    @property
    def region(self) -> str:
        """The configured region, else us-east-1: what botocore would use."""
        env = os.environ.get("AWS_DEFAULT_REGION")  # botocore's "region" variable
        if env:
            return env
        return str(self.session.get_config_variable("region") or "us-east-1")

    def _frozen_credentials(self) -> Any:
        from deon.s3.signing import Credentials

        if self.profile is None:
            # botocore's chain starts with these variables unless a profile is given
            # explicitly; reading them directly saves loading botocore (~50 ms a start).
            key = os.environ.get("AWS_ACCESS_KEY_ID")
            secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
            if key and secret:
                token = os.environ.get("AWS_SESSION_TOKEN") or os.environ.get("AWS_SECURITY_TOKEN")
                return Credentials(key, secret, token or None)
        if self._credentials is None:
            with self._lock:
                if self._credentials is None:
                    creds = self.session.get_credentials()
                    if creds is None:
                        raise ConfigError(NO_CREDENTIALS)
                    self._credentials = creds
        frozen = self._credentials.get_frozen_credentials()  # refreshes when due
        return Credentials(frozen.access_key, frozen.secret_key, frozen.token)

    def _endpoint(self, bucket: str) -> Any:
        """Where a bucket's object requests go: the custom endpoint, path-style; or the
        bucket's own regional AWS endpoint (found once per bucket with HeadBucket)."""
        from urllib.parse import urlsplit

        from deon.s3.transport import Endpoint

        ep = self._endpoints.get(bucket)
        if ep is not None:
            return ep
        if self.endpoint_url:
            u = urlsplit(self.endpoint_url)
            if u.scheme not in ("http", "https") or not u.hostname:
                raise ConfigError(f"bad endpoint URL {safe_url(self.endpoint_url)!r}")
            host = u.hostname if u.port is None else f"{u.hostname}:{u.port}"
            if ":" in (u.hostname or "") and not host.startswith("["):
                host = f"[{u.hostname}]" + (f":{u.port}" if u.port else "")  # IPv6
            ep = Endpoint(u.scheme, host, self.region, True, bucket)
        else:
            region = self._bucket_region(bucket)
            base = urlsplit(self._regional_client(region).meta.endpoint_url)
            # Virtual-hosted style, except for names that cannot be a TLS host label.
            dns_safe = "." not in bucket and bucket.lower() == bucket and "_" not in bucket
            host = f"{bucket}.{base.netloc}" if dns_safe else base.netloc
            ep = Endpoint(base.scheme, host, region, not dns_safe, bucket)
        with self._lock:
            self._endpoints[bucket] = ep
        return ep

    def _bucket_region(self, bucket: str) -> str:
        import botocore.exceptions as bex

        try:
            r = self.client.head_bucket(Bucket=bucket)
            headers = r["ResponseMetadata"]["HTTPHeaders"]
        except bex.ClientError as e:
            headers = e.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
            if "x-amz-bucket-region" not in headers:
                raise translate_client_error(e, f"s3://{bucket}", bucket) from e
        except bex.NoCredentialsError as e:
            raise ConfigError(NO_CREDENTIALS) from e
        except bex.BotoCoreError as e:
            raise StorageError(f"s3://{bucket}: {e}") from e
        return str(headers.get("x-amz-bucket-region") or self.region)

    def _regional_client(self, region: str) -> Any:
        if region == (self.client.meta.region_name or ""):
            return self.client
        return self._make_client(region)

    @property
    def http(self) -> Any:
        """The lean client for object requests."""
        from deon.s3.transport import S3Http

        with self._lock:
            if self._http is None:
                attempts = os.environ.get("AWS_MAX_ATTEMPTS", "")
                self._http = S3Http(
                    self._frozen_credentials,
                    self._endpoint,
                    max_attempts=int(attempts) if attempts.isdigit() else MAX_ATTEMPTS,
                    pool_size=self.max_pool_connections,
                    ca_bundle=os.environ.get("AWS_CA_BUNDLE") or _default_ca_bundle(),
                )
            return self._http

    def _call(self, operation: str, what: str, **kwargs: Any) -> Any:
        """Call one boto3 client operation, translating errors. `what` names the target."""
        import botocore.exceptions as bex

        log.debug("%s %s", operation, what)
        try:
            return getattr(self.client, operation)(**kwargs)
        except bex.ClientError as e:
            raise translate_client_error(e, what, kwargs.get("Bucket")) from e
        except bex.NoCredentialsError as e:
            raise ConfigError(NO_CREDENTIALS) from e
        except bex.NoRegionError as e:
            raise ConfigError("no AWS region configured: set AWS_DEFAULT_REGION") from e
        except bex.ParamValidationError as e:
            raise AddressError(f"{what}: {e}") from e
        except (bex.EndpointConnectionError, bex.ConnectionClosedError) as e:
            where = safe_url(self.endpoint_url) if self.endpoint_url else "AWS"
            raise StorageError(f"{what}: cannot reach S3 at {where}: {e}") from e
        except bex.BotoCoreError as e:
            raise StorageError(f"{what}: {e}") from e

    # -- buckets ------------------------------------------------------------------

    def list_buckets(self) -> list[str]:
        """Names of the buckets the credentials can list."""
        r = self._call("list_buckets", "list buckets")
        return [b["Name"] for b in r.get("Buckets", [])]

    def create_bucket(self, bucket: str) -> None:
        """Create a bucket in the client's region (the demo's local server)."""
        kwargs: dict[str, Any] = {"Bucket": bucket}
        if self.region != "us-east-1":  # us-east-1 refuses a LocationConstraint
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        self._call("create_bucket", f"s3://{bucket}", **kwargs)

    def check_bucket(self, bucket: str) -> None:
        """Raise BucketNotFound (exit 2) or AccessDenied unless the bucket is usable."""
        try:
            self._call("head_bucket", f"s3://{bucket}", Bucket=bucket)
        except KeyNotFound as e:  # HEAD has no body: a 404 carries no NoSuchBucket code
            raise BucketNotFound(f"no such bucket: {bucket}") from e

    def get_bucket_policy(self, bucket: str) -> dict[str, Any] | None:
        """The bucket's policy document, or None when it has none."""
        import json

        try:
            r = self._call("get_bucket_policy", f"s3://{bucket} policy", Bucket=bucket)
        except KeyNotFound:  # NoSuchBucketPolicy (NoSuchBucket becomes BucketNotFound)
            return None
        policy: dict[str, Any] = json.loads(r["Policy"])
        return policy

    def put_bucket_policy(self, bucket: str, policy: dict[str, Any]) -> None:
        import json

        self._call(
            "put_bucket_policy", f"s3://{bucket} policy", Bucket=bucket, Policy=json.dumps(policy)
        )

    def replace_metadata(
        self,
        bucket: str,
        key: str,
        etag: str,
        metadata: dict[str, str],
        content_type: str | None,
    ) -> str:
        """Give an object new user metadata without sending its bytes again: a copy onto
        itself, made only if it still has `etag`. Returns the object's new ETag.

        Raises:
            PreconditionFailed: the object changed since its ETag was read.
        """
        r = self._call(
            "copy_object",
            f"s3://{bucket}/{key}",
            Bucket=bucket,
            Key=key,
            CopySource={"Bucket": bucket, "Key": key},
            CopySourceIfMatch=f'"{etag}"',
            MetadataDirective="REPLACE",
            Metadata=metadata,
            ContentType=content_type or "binary/octet-stream",
        )
        return clean_etag(r["CopyObjectResult"]["ETag"])

    def find_version(self, bucket: str, key: str, etag: str, size: int) -> str | None:
        """The VersionId of the newest version of `key` with this ETag and size, if the
        bucket still keeps one (ListObjectVersions; None in an unversioned bucket)."""
        what = f"s3://{bucket}/{key}"
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": key}
        while True:
            r = self._call("list_object_versions", what, **kwargs)
            for v in r.get("Versions", []):  # newest first, per key
                vid = v.get("VersionId")
                if (
                    v.get("Key") == key
                    and clean_etag(v.get("ETag")) == etag
                    and v.get("Size") == size
                ):
                    return vid if vid and vid != "null" else None
            if not r.get("IsTruncated"):
                return None
            kwargs["KeyMarker"] = r.get("NextKeyMarker")
            kwargs["VersionIdMarker"] = r.get("NextVersionIdMarker")

    # -- objects (the lean client) -------------------------------------------------------

    def iter_objects(self, bucket: str, prefix: str = "") -> Iterator[ObjectInfo]:
        """LIST every object under a prefix. The next page (1000 keys) is requested in
        the background while the caller works through the current one."""
        for page in self.iter_pages(bucket, prefix):
            yield from page

    def iter_pages(self, bucket: str, prefix: str = "") -> Iterator[list[ObjectInfo]]:
        """LIST page by page, the next page fetched while the caller works."""
        return _prefetched(self._pages(bucket, prefix))

    def _pages(self, bucket: str, prefix: str) -> Iterator[list[ObjectInfo]]:
        token: str | None = None
        while True:
            try:
                items, token = self.http.list_page(bucket, prefix, token)
            except KeyNotFound as e:
                raise BucketNotFound(f"no such bucket: {bucket}") from e
            yield [ObjectInfo(bucket, k, size, etag, lm) for k, size, etag, lm in items]
            if token is None:
                return

    def head(self, bucket: str, key: str) -> ObjectHead:
        r = self.http.request("HEAD", bucket, key, f"s3://{bucket}/{key}")
        return ObjectHead.from_headers(r.status, r.headers)

    def get(
        self,
        bucket: str,
        key: str,
        *,
        start: int | None = None,
        end: int | None = None,
        if_match: str | None = None,
        version_id: str | None = None,
    ) -> tuple[ObjectHead, Any]:
        """GET an object (or the byte range start..end inclusive; a given version of it),
        its body streamed: returns the head and a body with `readinto`, `iter_chunks`
        and `close`."""
        headers = {}
        if start is not None:
            headers["range"] = f"bytes={start}-{'' if end is None else end}"
        if if_match:
            headers["if-match"] = f'"{if_match}"'
        r = self.http.request(
            "GET",
            bucket,
            key,
            f"s3://{bucket}/{key}",
            headers=headers,
            query={"versionId": version_id} if version_id else None,
            stream=True,
        )
        return ObjectHead.from_headers(r.status, r.headers), r

    def get_bytes(self, bucket: str, key: str, max_bytes: int) -> bytes:
        """A whole small object in memory; refuses objects larger than max_bytes."""
        head, body = self.get(bucket, key)
        with body:
            if head.size > max_bytes:
                raise StorageError(f"s3://{bucket}/{key}: {head.size} bytes is over {max_bytes}")
            data = bytearray()
            for chunk in body.iter_chunks():
                data += chunk
                if len(data) > max_bytes:
                    raise StorageError(f"s3://{bucket}/{key}: over {max_bytes} bytes")
        return bytes(data)

    def put(
        self,
        bucket: str,
        key: str,
        body: bytes | memoryview,
        *,
        sha256: str,
        metadata: dict[str, str],
        if_none_match: bool = False,
        if_match: str | None = None,
        content_type: str | None = None,
    ) -> str:
        """PUT an object, conditionally; returns its ETag.

        `sha256` (of `body`) is the signed payload hash, so S3 itself refuses bytes that
        differ from the ones hashed.

        Raises:
            PreconditionFailed: the condition failed (someone else wrote the key).
        """
        headers = {f"x-amz-meta-{k}": v for k, v in metadata.items()}
        if content_type:
            headers["content-type"] = content_type
        headers.update(_conditions(if_none_match, if_match))
        r = self.http.request(
            "PUT",
            bucket,
            key,
            f"s3://{bucket}/{key}",
            headers=headers,
            body=body,
            payload_sha256=sha256,
        )
        return clean_etag(r.headers.get("etag"))

    def create_multipart(
        self, bucket: str, key: str, metadata: dict[str, str], content_type: str | None = None
    ) -> str:
        import xml.etree.ElementTree as ET

        headers = {f"x-amz-meta-{k}": v for k, v in metadata.items()}
        if content_type:
            headers["content-type"] = content_type
        r = self.http.request(
            "POST", bucket, key, f"s3://{bucket}/{key}", query={"uploads": ""}, headers=headers
        )
        upload_id = _xml_text(ET.fromstring(r.body), "UploadId")
        if not upload_id:
            raise StorageError(f"s3://{bucket}/{key}: no UploadId in the reply")
        return upload_id

    def upload_part(
        self, bucket: str, key: str, upload_id: str, number: int, data: bytes, sha256: str
    ) -> str:
        r = self.http.request(
            "PUT",
            bucket,
            key,
            f"s3://{bucket}/{key} part {number}",
            query={"partNumber": str(number), "uploadId": upload_id},
            body=data,
            payload_sha256=sha256,
        )
        return clean_etag(r.headers.get("etag"))

    def complete_multipart(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        etags: list[str],
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
    ) -> str:
        import xml.etree.ElementTree as ET
        from xml.sax.saxutils import escape

        parts = "".join(
            f"<Part><PartNumber>{i + 1}</PartNumber><ETag>&quot;{escape(e)}&quot;</ETag></Part>"
            for i, e in enumerate(etags)
        )
        body = f"<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>".encode()
        headers = _conditions(if_none_match, if_match)
        r = self.http.request(
            "POST",
            bucket,
            key,
            f"s3://{bucket}/{key}",
            query={"uploadId": upload_id},
            headers=headers,
            body=body,
        )
        # S3 can answer 200 with an error document once the upload has started.
        root = ET.fromstring(r.body)
        if root.tag.endswith("Error"):
            from deon.s3.transport import translate_error

            raise translate_error(
                200,
                _xml_text(root, "Code"),
                _xml_text(root, "Message"),
                f"s3://{bucket}/{key}",
                bucket,
                r.headers,
            )
        return clean_etag(_xml_text(root, "ETag") or r.headers.get("etag"))

    def abort_multipart(self, bucket: str, key: str, upload_id: str) -> None:
        try:
            self.http.request(
                "DELETE",
                bucket,
                key,
                f"s3://{bucket}/{key}",
                query={"uploadId": upload_id},
                ok=(200, 204),
            )
        except DeonError as e:  # best effort: a lifecycle rule cleans up what remains
            log.debug("abort of multipart upload failed: %s", e)


def _prefetched(pages: Iterator[list[ObjectInfo]]) -> Iterator[list[ObjectInfo]]:
    """Run a page iterator one page ahead in a thread; errors surface in order."""
    import queue

    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def put(item: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for page in pages:
                if not put(("page", page)):
                    return
            put(("end", None))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            put(("error", e))

    thread = threading.Thread(target=produce, name="deon-list", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "page":
                yield value
            elif kind == "error":
                raise value
            else:
                return
    finally:
        stop.set()


def safe_url(url: str | None) -> str:
    """A URL fit to print or store: any user:password@ part removed."""
    if not url:
        return ""
    from urllib.parse import urlsplit, urlunsplit

    u = urlsplit(url)
    if "@" not in u.netloc:
        return url
    return urlunsplit(u._replace(netloc=u.netloc.rsplit("@", 1)[1]))


NO_CREDENTIALS = (
    "no AWS credentials found: run `aws configure`, set AWS_PROFILE or pass "
    "--profile, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
)


def _xml_text(root: Any, name: str) -> str:
    """The text of the first element named `name` (any namespace)."""
    for el in root.iter():
        if el.tag == name or el.tag.endswith("}" + name):
            return str(el.text or "")
    return ""


def _default_ca_bundle() -> str | None:
    """The CA bundle botocore would use (certifi's, when installed)."""
    try:
        from botocore.httpsession import get_cert_path

        path = get_cert_path(True)
        return path if isinstance(path, str) else None
    except Exception:  # noqa: BLE001 - fall back to the system store
        return None


def _conditions(if_none_match: bool, if_match: str | None) -> dict[str, str]:
    """The headers of a conditional write: only if the key is new, or only if it still
    holds the object with this ETag."""
    headers = {}
    if if_none_match:
        headers["if-none-match"] = "*"
    if if_match:
        headers["if-match"] = f'"{if_match}"'
    return headers


def translate_client_error(e: Any, what: str, bucket: str | None) -> DeonError:
    """Map a botocore ClientError to a deon error with a message a person can act on."""
    from deon.s3.transport import translate_error

    err = e.response.get("Error", {})
    code = str(err.get("Code", ""))
    meta = e.response.get("ResponseMetadata", {})
    message = err.get("Message") or code
    return translate_error(
        meta.get("HTTPStatusCode") or 0, code, message, what, bucket, meta.get("HTTPHeaders") or {}
    )
