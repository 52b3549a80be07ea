"""S3 access: the one module that imports boto3.

Every request goes through `Storage._call`, which turns botocore's exceptions into deon
errors (keeping the boto error as `__cause__`). Retries of whole requests, including
throttling (503 SlowDown), are botocore's "standard" retry mode; a body that breaks
while streaming is retried by the transfer engine, which knows how far it got.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, BinaryIO

from deon.errors import (
    AccessDenied,
    AddressError,
    BucketNotFound,
    ConfigError,
    DeonError,
    KeyNotFound,
    PreconditionFailed,
    StorageError,
)

log = logging.getLogger(__name__)

#: Attempts per request, for botocore's standard retry mode (exponential backoff with
#: jitter, capped at 20 s), which covers 5xx, SlowDown and connection errors.
MAX_ATTEMPTS = 10


def stream_errors() -> tuple[type[BaseException], ...]:
    """Exceptions raised while reading a response body that a re-request can cure."""
    import botocore.exceptions as bex
    import urllib3.exceptions as uex

    return (
        bex.ResponseStreamingError,
        bex.IncompleteReadError,
        bex.ReadTimeoutError,
        bex.ConnectionClosedError,
        bex.EndpointConnectionError,
        uex.ProtocolError,
        uex.ReadTimeoutError,
        ConnectionError,
        TimeoutError,
    )


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

    @classmethod
    def from_response(cls, r: dict[str, Any]) -> ObjectHead:
        size = int(r.get("ContentLength", 0))
        total = size
        content_range = r.get("ContentRange")
        if content_range and "/" in content_range:
            tail = content_range.rsplit("/", 1)[1]
            if tail.isdigit():
                total = int(tail)
        encryption = r.get("SSECustomerAlgorithm") and "SSE-C" or r.get("ServerSideEncryption")
        return cls(
            size=size,
            etag=clean_etag(r.get("ETag")),
            last_modified=r.get("LastModified"),
            metadata=dict(r.get("Metadata") or {}),
            encryption=encryption,
            total_size=total,
        )


class Storage:
    """A configured S3 client shared by all worker threads (boto3 clients are thread-safe).

    Args:
        endpoint_url: an S3-compatible endpoint (MinIO, Ceph, moto); None for AWS.
        profile: a profile from ~/.aws/config; None for boto3's default chain.
        max_pool_connections: size of the HTTP connection pool; set it to the number of
            threads that will use the client at once.
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
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self) -> Any:
        import boto3
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
            # Many S3-compatible servers reject the aws-chunked CRC trailers that botocore
            # sends by default since 1.36; deon sends Content-MD5 and checks sha256 itself.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            # Custom endpoints (MinIO, moto, on-premise) rarely resolve bucket subdomains.
            s3={"addressing_style": "path"} if self.endpoint_url else None,
        )
        try:
            session = boto3.session.Session(profile_name=self.profile)
            return session.client("s3", endpoint_url=self.endpoint_url, config=config)
        except bex.ProfileNotFound as e:
            raise ConfigError(
                f"AWS profile {self.profile!r} not found in ~/.aws/config or ~/.aws/credentials"
            ) from e
        except ValueError as e:
            raise ConfigError(f"bad endpoint URL {self.endpoint_url!r}: {e}") from e
        except bex.BotoCoreError as e:
            raise ConfigError(f"cannot configure S3 access: {e}") from e

    def _call(self, operation: str, what: str, **kwargs: Any) -> Any:
        """Call one client operation, translating errors. `what` names the target."""
        import botocore.exceptions as bex

        log.debug("%s %s", operation, what)
        try:
            return getattr(self.client, operation)(**kwargs)
        except bex.ClientError as e:
            raise translate_client_error(e, what, kwargs.get("Bucket")) from e
        except bex.NoCredentialsError as e:
            raise ConfigError(
                "no AWS credentials found: run `aws configure`, set AWS_PROFILE or pass "
                "--profile, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            ) from e
        except bex.NoRegionError as e:
            raise ConfigError("no AWS region configured: set AWS_DEFAULT_REGION") from e
        except bex.ParamValidationError as e:
            raise AddressError(f"{what}: {e}") from e
        except (bex.EndpointConnectionError, bex.ConnectionClosedError) as e:
            where = self.endpoint_url or "AWS"
            raise StorageError(f"{what}: cannot reach S3 at {where}: {e}") from e
        except bex.BotoCoreError as e:
            raise StorageError(f"{what}: {e}") from e

    # -- buckets ------------------------------------------------------------------

    def list_buckets(self) -> list[str]:
        """Names of the buckets the credentials can list."""
        r = self._call("list_buckets", "list buckets")
        return [b["Name"] for b in r.get("Buckets", [])]

    def check_bucket(self, bucket: str) -> None:
        """Raise BucketNotFound (exit 2) or AccessDenied unless the bucket is usable."""
        try:
            self._call("head_bucket", f"s3://{bucket}", Bucket=bucket)
        except KeyNotFound as e:  # HEAD has no body: a 404 carries no NoSuchBucket code
            raise BucketNotFound(f"no such bucket: {bucket}") from e

    # -- objects ------------------------------------------------------------------

    def iter_objects(self, bucket: str, prefix: str = "") -> Iterator[ObjectInfo]:
        """LIST every object under a prefix, one page (1000 keys) at a time."""
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            try:
                page = self._call("list_objects_v2", f"s3://{bucket}/{prefix}", **kwargs)
            except KeyNotFound as e:
                raise BucketNotFound(f"no such bucket: {bucket}") from e
            for item in page.get("Contents", []):
                yield ObjectInfo(
                    bucket=bucket,
                    key=item["Key"],
                    size=int(item.get("Size", 0)),
                    etag=clean_etag(item.get("ETag")),
                    last_modified=item["LastModified"],
                )
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")
            if not token:
                raise StorageError(f"s3://{bucket}/{prefix}: truncated listing without a token")

    def head(self, bucket: str, key: str) -> ObjectHead:
        r = self._call("head_object", f"s3://{bucket}/{key}", Bucket=bucket, Key=key)
        return ObjectHead.from_response(r)

    def get(
        self,
        bucket: str,
        key: str,
        *,
        start: int | None = None,
        end: int | None = None,
        if_match: str | None = None,
    ) -> tuple[ObjectHead, Any]:
        """GET an object (or the byte range start..end inclusive); returns head and body."""
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if start is not None:
            kwargs["Range"] = f"bytes={start}-{'' if end is None else end}"
        if if_match:
            kwargs["IfMatch"] = if_match
        r = self._call("get_object", f"s3://{bucket}/{key}", **kwargs)
        return ObjectHead.from_response(r), r["Body"]

    def get_bytes(self, bucket: str, key: str, max_bytes: int) -> bytes:
        """A whole small object in memory; refuses objects larger than max_bytes."""
        head, body = self.get(bucket, key)
        with body:
            if head.size > max_bytes:
                raise StorageError(f"s3://{bucket}/{key}: {head.size} bytes is over {max_bytes}")
            data: bytes = body.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise StorageError(f"s3://{bucket}/{key}: over {max_bytes} bytes")
        return data

    def put(
        self,
        bucket: str,
        key: str,
        body: bytes | BinaryIO,
        *,
        size: int,
        content_md5: str,
        metadata: dict[str, str],
        if_none_match: bool = False,
        if_match: str | None = None,
        content_type: str | None = None,
    ) -> str:
        """PUT an object, conditionally; returns its ETag.

        Raises:
            PreconditionFailed: the condition failed (someone else wrote the key).
        """
        kwargs: dict[str, Any] = {
            "Bucket": bucket,
            "Key": key,
            "Body": body,
            "ContentLength": size,
            "ContentMD5": content_md5,
            "Metadata": metadata,
        }
        if content_type:
            kwargs["ContentType"] = content_type
        if if_none_match:
            kwargs["IfNoneMatch"] = "*"
        if if_match:
            kwargs["IfMatch"] = f'"{if_match}"'
        r = self._call("put_object", f"s3://{bucket}/{key}", **kwargs)
        return clean_etag(r.get("ETag"))

    def create_multipart(
        self, bucket: str, key: str, metadata: dict[str, str], content_type: str | None = None
    ) -> str:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key, "Metadata": metadata}
        if content_type:
            kwargs["ContentType"] = content_type
        r = self._call("create_multipart_upload", f"s3://{bucket}/{key}", **kwargs)
        return str(r["UploadId"])

    def upload_part(
        self, bucket: str, key: str, upload_id: str, number: int, data: bytes, content_md5: str
    ) -> str:
        r = self._call(
            "upload_part",
            f"s3://{bucket}/{key} part {number}",
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=data,
            ContentLength=len(data),
            ContentMD5=content_md5,
        )
        return clean_etag(r.get("ETag"))

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
        kwargs: dict[str, Any] = {
            "Bucket": bucket,
            "Key": key,
            "UploadId": upload_id,
            "MultipartUpload": {
                "Parts": [{"ETag": f'"{e}"', "PartNumber": i + 1} for i, e in enumerate(etags)]
            },
        }
        if if_none_match:
            kwargs["IfNoneMatch"] = "*"
        if if_match:
            kwargs["IfMatch"] = f'"{if_match}"'
        r = self._call("complete_multipart_upload", f"s3://{bucket}/{key}", **kwargs)
        return clean_etag(r.get("ETag"))

    def abort_multipart(self, bucket: str, key: str, upload_id: str) -> None:
        try:
            self._call(
                "abort_multipart_upload",
                f"s3://{bucket}/{key}",
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
            )
        except DeonError as e:  # best effort: a lifecycle rule cleans up what remains
            log.debug("abort of multipart upload failed: %s", e)


def translate_client_error(e: Any, what: str, bucket: str | None) -> DeonError:
    """Map a botocore ClientError to a deon error with a message a person can act on."""
    err = e.response.get("Error", {})
    code = str(err.get("Code", ""))
    status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    message = err.get("Message") or code
    if code == "NoSuchBucket":
        return BucketNotFound(f"no such bucket: {bucket or what}")
    if code in ("NoSuchKey", "NotFound", "404") or status == 404:
        return KeyNotFound(f"{what}: no such object")
    if code in (
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "TokenRefreshRequired",
        "InvalidToken",
    ):
        return ConfigError(
            f"{what}: S3 rejected the credentials ({code}); check your AWS profile or keys"
        )
    if code in ("AccessDenied", "AllAccessDisabled", "403") or status == 403:
        return AccessDenied(f"{what}: access denied by S3 for these credentials")
    if code in ("PreconditionFailed", "412") or status == 412:
        return PreconditionFailed(f"{what}: the object changed meanwhile (precondition failed)")
    if code == "ConditionalRequestConflict" or status == 409:
        return PreconditionFailed(f"{what}: a concurrent write to the same key won")
    if code == "InvalidBucketName":
        return AddressError(f"invalid bucket name in {what}")
    return StorageError(f"{what}: {code or status}: {message}")
