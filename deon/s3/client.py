"""S3 access: where requests go and how they are carried is botocore's to decide.

boto3/botocore provide what users already configure — the credential chain (env,
profiles, SSO, roles), regions, endpoints, proxies, TLS, timeouts and retries — and the
bucket-level calls, each through `Storage._call`, which turns botocore's exceptions into
deon errors (keeping the boto error as `__cause__`). Object requests, which deon sends
by the thousand, go through the lean client in transport.py: to the URL and signing
region botocore's client prepares for the bucket (`Storage._endpoint`), over the
connections botocore's HTTP session makes, with the same credentials. Both retry
throttling (503 SlowDown), 5xx and connection errors with exponential backoff; a body
that breaks while streaming is retried by the transfer engine, which knows how far it
got.
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
#: jitter, capped at 20 s), which covers 5xx, SlowDown and connection errors; unless
#: the user's configuration says otherwise (max_attempts, AWS_MAX_ATTEMPTS).
MAX_ATTEMPTS = 10
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0
#: aws-cli's values of --sse
SSE_CHOICES = ("AES256", "aws:kms")
#: the key of the HeadObject botocore prepares (and never sends) to show where a
#: bucket's requests go
_PROBE_KEY = "deon-endpoint-probe"


class _Captured(Exception):
    """Stops botocore before it sends the probe request."""


def _true(value: Any) -> bool:
    return str(value).strip().lower() == "true" if value is not None else False


def _check_signature_version(session: Any) -> None:
    """deon signs with SigV4 only: a profile asking for another signature (s3 =
    signature_version = s3, SigV2) is refused rather than silently not followed."""
    s3 = session.get_scoped_config().get("s3")
    wanted = s3.get("signature_version") if isinstance(s3, dict) else None
    if wanted and wanted not in ("s3v4", "v4"):
        raise ConfigError(
            f"~/.aws/config asks for s3 signature_version = {wanted}: deon signs with "
            "SigV4 (s3v4) only; remove the setting or set it to s3v4"
        )


def _add_request_payer(request: Any = None, **_: Any) -> None:
    request.headers["x-amz-request-payer"] = "requester"


def _checksum(sha256_hex: str) -> str:
    """The x-amz-checksum-sha256 of bytes whose sha256 is `sha256_hex` (base64)."""
    import base64

    return base64.b64encode(bytes.fromhex(sha256_hex)).decode()


def _botocore_error(e: Any, what: str, storage: Storage) -> DeonError:
    """Any other botocore error (its connection errors go to `_connection_error`)."""
    return StorageError(f"{what}: {e}")


def stream_errors() -> tuple[type[BaseException], ...]:
    """Exceptions raised while reading a response body that a re-request can cure
    (errors.RETRYABLE_ERRORS: resets, timeouts, bodies cut short)."""
    from deon.s3.errors import RETRYABLE_ERRORS

    return RETRYABLE_ERRORS


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

    Where each request goes and how it is carried is decided by the botocore S3 client
    that the user's configuration produces (profile, ~/.aws/config, AWS_* variables):
    deon resolves each bucket's endpoint once through it (see `_endpoint`) and sends
    the bulk requests itself, over botocore's own connections.

    Args:
        endpoint_url: an S3-compatible endpoint (MinIO, Ceph, moto); None: whatever
            botocore's configuration says (AWS_ENDPOINT_URL_S3, a [services] section),
            else AWS.
        profile: a profile from ~/.aws/config; None for boto3's default chain.
        max_pool_connections: connections kept open per host; set it to the number of
            threads that will use the instance at once.
        no_sign_request: anonymous requests (public datasets): no credentials looked up.
        request_payer: "requester" for Requester Pays buckets.
        sse: server-side encryption of uploads: "AES256" or "aws:kms".
        sse_kms_key_id: the KMS key for "aws:kms" (default: the account's S3 key).
        connect_timeout, read_timeout: seconds, for botocore and deon's requests alike.
        client_cert: a client certificate for TLS (a PEM file with its key, or the
            certificate file and the key file): botocore's `client_cert`.
    """

    def __init__(
        self,
        endpoint_url: str | None = None,
        profile: str | None = None,
        max_pool_connections: int = 32,
        *,
        no_sign_request: bool = False,
        request_payer: str | None = None,
        sse: str | None = None,
        sse_kms_key_id: str | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
        client_cert: str | tuple[str, str] | None = None,
    ) -> None:
        if request_payer not in (None, "requester"):
            raise ConfigError(f'request_payer must be "requester", not {request_payer!r}')
        if sse not in (None, *SSE_CHOICES):
            raise ConfigError(f"sse must be one of {', '.join(SSE_CHOICES)}, not {sse!r}")
        if sse_kms_key_id and sse != "aws:kms":
            raise ConfigError('sse_kms_key_id needs sse = "aws:kms" (--sse aws:kms)')
        self.explicit_endpoint_url = endpoint_url or None
        self.profile = profile
        self.max_pool_connections = max_pool_connections
        self.no_sign_request = no_sign_request
        self.request_payer = request_payer
        self.sse = sse
        self.sse_kms_key_id = sse_kms_key_id
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.client_cert = client_cert
        #: most LIST requests in flight for one prefix (None: DEON_LIST_WIDTH or 16);
        #: `-j`, when given, caps it (api.make_storage)
        self.list_width: int | None = None
        self._client: Any = None
        self._session: Any = None
        self._credentials: Any = None
        self._http: Any = None
        self._endpoints: dict[str, Any] = {}
        self._clients: dict[str, Any] = {}
        self._configured_endpoint: list[str | None] = []
        self._part_checksums: dict[tuple[str, int], str] = {}
        self._capture = threading.local()
        self._lock = threading.RLock()
        self._resolving = threading.Lock()

    # -- what botocore provides -------------------------------------------------------

    @property
    def endpoint_url(self) -> str | None:
        """The endpoint in use: the one given, else the one botocore's configuration
        names (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, `[services]`, a profile's
        endpoint_url); None for AWS."""
        if self.explicit_endpoint_url:
            return self.explicit_endpoint_url
        with self._lock:
            if not self._configured_endpoint:
                self._configured_endpoint.append(self._botocore_endpoint_url())
            return self._configured_endpoint[0]

    def _botocore_endpoint_url(self) -> str | None:
        try:
            from botocore.configprovider import ConfiguredEndpointProvider

            if _true(self.session.get_config_variable("ignore_configured_endpoint_urls")):
                return None
            found = ConfiguredEndpointProvider(
                full_config=self.session.full_config,
                scoped_config=self.session.get_scoped_config(),
                client_name="s3",
            ).provide()
        except (ImportError, AttributeError, TypeError):  # botocore changed: ask its client
            found = None
        return str(found) if found else None

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
        """A botocore S3 client, for the bucket-level calls."""
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self, region: str | None = None) -> Any:
        import botocore.config
        import botocore.exceptions as bex

        session = self.session
        # The user's retry settings (AWS_MAX_ATTEMPTS / AWS_RETRY_MODE, or max_attempts
        # / retry_mode in ~/.aws/config) win; botocore reads them itself.
        retries: dict[str, Any] = {}
        if not session.get_config_variable("retry_mode"):
            retries["mode"] = "standard"
        if not session.get_config_variable("max_attempts"):
            retries["total_max_attempts"] = MAX_ATTEMPTS
        options: dict[str, Any] = {}
        if self.no_sign_request:
            from botocore import UNSIGNED

            options["signature_version"] = UNSIGNED
        else:
            _check_signature_version(session)
        if self.client_cert:
            options["client_cert"] = self.client_cert
        config = botocore.config.Config(
            max_pool_connections=self.max_pool_connections,
            retries=retries or None,
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            **options,
        )
        try:
            client = session.create_client(
                "s3",
                # user:password@ in the URL is used by nobody; botocore would repeat it
                # in its messages.
                endpoint_url=safe_url(self.explicit_endpoint_url) or None,
                config=config,
                region_name=region or self.region,
            )
        except ValueError as e:
            raise ConfigError(f"bad endpoint URL {safe_url(self.endpoint_url)!r}: {e}") from e
        except bex.BotoCoreError as e:
            raise ConfigError(f"cannot configure S3 access: {e}") from e
        from deon.s3.errors import botocore_retry_veto

        # The same rule as the lean transport: no retry where it cannot help.
        client.meta.events.register_first("needs-retry.s3", botocore_retry_veto)
        client.meta.events.register("before-sign.s3", self._before_sign)
        client.meta.events.register_first("before-send.s3", self._before_send)
        if self.request_payer:
            client.meta.events.register("before-sign.s3", _add_request_payer)
        return client

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

    # -- where a bucket's requests go: botocore decides ---------------------------------

    def _before_sign(self, request: Any = None, region_name: str | None = None, **_: Any) -> None:
        probe = getattr(self._capture, "probe", None)
        if probe is not None:
            probe["region"] = region_name

    def _before_send(self, request: Any = None, **_: Any) -> None:
        probe = getattr(self._capture, "probe", None)
        if probe is not None:
            probe["url"] = request.url
            raise _Captured()

    def _endpoint(self, bucket: str) -> Any:
        """Where a bucket's object requests go, as botocore would send them: the URL
        and signing region of a HeadObject the user's botocore client prepares (never
        sent), for a client in the bucket's region (found once with HeadBucket). So
        every endpoint setting botocore knows is honoured: AWS_ENDPOINT_URL_S3,
        `[services]`, addressing_style, use_accelerate_endpoint, dualstack, FIPS, a
        path in the endpoint URL."""
        ep = self._endpoints.get(bucket)
        if ep is not None:
            return ep
        with self._resolving:  # once per bucket, however many threads ask at first
            ep = self._endpoints.get(bucket)
            if ep is None:
                ep = self._resolve(bucket)
                self._endpoints[bucket] = ep
            return ep

    def _resolve(self, bucket: str) -> Any:
        from urllib.parse import urlsplit

        from deon.s3.transport import Endpoint

        client = self._regional_client(self._bucket_region(bucket))
        probe: dict[str, Any] = {}
        self._capture.probe = probe
        try:
            client.head_object(Bucket=bucket, Key=_PROBE_KEY)
        except _Captured:
            pass
        except Exception as e:  # noqa: BLE001 - botocore refused the bucket name or config
            import botocore.exceptions as bex

            if isinstance(e, bex.ParamValidationError):
                raise AddressError(f"s3://{bucket}: {e}") from e
            if isinstance(e, bex.NoCredentialsError):
                raise ConfigError(NO_CREDENTIALS) from e
            raise ConfigError(f"s3://{bucket}: cannot resolve its endpoint: {e}") from e
        finally:
            self._capture.probe = None
        url = urlsplit(probe["url"])
        if not url.path.endswith("/" + _PROBE_KEY):
            raise ConfigError(f"s3://{bucket}: unexpected endpoint {url.scheme}://{url.netloc}")
        host = url.netloc.rsplit("@", 1)[-1].lower()
        # SigV4 signs the Host header as sent, which never carries the default port:
        # https://host:443 is signed and sent as "host".
        default = {"https": ":443", "http": ":80"}.get(url.scheme, "")
        if default and host.endswith(default):
            host = host[: -len(default)]
        ep = Endpoint(
            url.scheme,
            host,
            probe.get("region") or client.meta.region_name or self.region,
            url.path[: -len(_PROBE_KEY)],
            bucket,
            client._endpoint.http_session,
        )
        return ep

    def _bucket_region(self, bucket: str) -> str:
        """The bucket's region (x-amz-bucket-region of a HeadBucket, which S3 sends
        with 301, 400 and 403 answers too), else the configured one."""
        import botocore.exceptions as bex

        try:
            r = self.client.head_bucket(Bucket=bucket)
            headers = r["ResponseMetadata"]["HTTPHeaders"]
        except bex.ClientError as e:
            headers = e.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if "x-amz-bucket-region" not in headers:
                if status != 403:
                    raise self._diagnose_head_bucket(e, bucket) from e
                # Without ListBucket (a public dataset read anonymously, a write-only
                # uploader) HeadBucket is refused: the object requests will tell —
                # unless the refusal already names its cause (the clock, by its Date).
                refused = translate_client_error(e, f"s3://{bucket}", bucket)
                if refused.fatal:
                    raise refused from e
        except bex.NoCredentialsError as e:
            raise ConfigError(NO_CREDENTIALS) from e
        except (bex.ConnectionError, bex.HTTPClientError) as e:
            raise self._connection_error(e, f"s3://{bucket}") from e
        except bex.BotoCoreError as e:
            raise _botocore_error(e, f"s3://{bucket}", self) from e
        return str(headers.get("x-amz-bucket-region") or self.client.meta.region_name)

    def _diagnose_head_bucket(self, e: Any, bucket: str) -> DeonError:
        """A HeadBucket refused without a body (400, 403) cannot say why: an expired
        token, an unknown key id and a denied request look alike. One GET of the same
        bucket (a listing of no keys) brings S3's error document."""
        import botocore.exceptions as bex

        from deon.s3.errors import diagnosable, translate_client_error

        first = translate_client_error(e, f"s3://{bucket}", bucket)
        if first.fatal or not diagnosable(e.response):
            return first
        try:
            self.client.list_objects_v2(Bucket=bucket, MaxKeys=0)
        except bex.ClientError as again:
            return translate_client_error(again, f"s3://{bucket}", bucket)
        except bex.BotoCoreError:
            pass
        return first

    def _regional_client(self, region: str) -> Any:
        if region == (self.client.meta.region_name or ""):
            return self.client
        with self._lock:
            client = self._clients.get(region)
            if client is None:
                client = self._clients[region] = self._make_client(region)
            return client

    @property
    def http(self) -> Any:
        """The lean client for object requests, with botocore's retry and timeout
        settings."""
        from deon.s3.transport import S3Http

        with self._lock:
            if self._http is None:
                config = self.client.meta.config
                retries = config.retries or {}
                attempts = retries.get("total_max_attempts") or (
                    int(retries["max_attempts"]) + 1 if "max_attempts" in retries else 3
                )
                headers = {"x-amz-request-payer": "requester"} if self.request_payer else {}
                self._http = S3Http(
                    None if self.no_sign_request else self._frozen_credentials,
                    self._endpoint,
                    max_attempts=int(attempts),
                    connect_timeout=float(config.connect_timeout),
                    read_timeout=float(config.read_timeout),
                    headers=headers,
                )
            return self._http

    def throttled_until(self) -> float:
        """Grows whenever S3 throttled a request (the time every sender pauses until):
        what adaptive budgets (transfer/budget.py) back off on."""
        http = self._http
        return float(http._pause_until) if http is not None else 0.0

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
        except (bex.ConnectionError, bex.HTTPClientError) as e:
            raise self._connection_error(e, what) from e
        except bex.BotoCoreError as e:
            raise _botocore_error(e, what, self) from e

    def _connection_error(self, e: Exception, what: str) -> DeonError:
        from deon.s3.errors import translate_connection_error

        where = safe_url(self.endpoint_url) if self.endpoint_url else "AWS"
        endpoint = getattr(e, "kwargs", {}).get("endpoint_url")
        if endpoint and not self.endpoint_url:
            where = safe_url(str(endpoint))
        return translate_connection_error(e, what, where)

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
            **self._sse_params(),
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
        """LIST page by page, in key order; pages are fetched ahead while the caller
        works, by several key ranges at once on a long prefix (listing.py)."""
        from deon.s3.listing import list_width, parallel_pages

        def one(token: str | None, start_after: str | None) -> tuple[list[Any], str | None]:
            try:
                items, nxt = self.http.list_page(bucket, prefix, token, start_after)
            except KeyNotFound as e:
                raise BucketNotFound(f"no such bucket: {bucket}") from e
            return [ObjectInfo(bucket, k, size, etag, lm) for k, size, etag, lm in items], nxt

        width = list_width()
        if self.list_width is not None:
            width = max(1, min(width, self.list_width))
        return parallel_pages(one, prefix, width)

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
        headers.update(self._sse_headers())
        # S3 checks the bytes against this too (and Object Lock buckets require one).
        headers["x-amz-checksum-sha256"] = _checksum(sha256)
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
        headers = {f"x-amz-meta-{k}": v for k, v in metadata.items()}
        if content_type:
            headers["content-type"] = content_type
        headers.update(self._sse_headers())
        # Each part then carries its SHA256, which S3 checks and keeps.
        headers["x-amz-checksum-algorithm"] = "SHA256"
        r = self.http.request(
            "POST",
            bucket,
            key,
            f"s3://{bucket}/{key}",
            query={"uploads": ""},
            headers=headers,
            xml=True,  # S3 may answer 200 with an <Error>: retried
        )
        upload_id = _xml_text(r.xml, "UploadId")
        if not upload_id:
            raise StorageError(f"s3://{bucket}/{key}: no UploadId in the reply")
        return upload_id

    def upload_part(
        self, bucket: str, key: str, upload_id: str, number: int, data: bytes, sha256: str
    ) -> str:
        checksum = _checksum(sha256)
        r = self.http.request(
            "PUT",
            bucket,
            key,
            f"s3://{bucket}/{key} part {number}",
            query={"partNumber": str(number), "uploadId": upload_id},
            headers={"x-amz-checksum-sha256": checksum},
            body=data,
            payload_sha256=sha256,
        )
        # CompleteMultipartUpload names each part's checksum: kept until then.
        self._part_checksums[(upload_id, number)] = checksum
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
        from xml.sax.saxutils import escape

        def part(number: int, etag: str) -> str:
            checksum = self._part_checksums.pop((upload_id, number), None)
            sha = f"<ChecksumSHA256>{checksum}</ChecksumSHA256>" if checksum else ""
            return (
                f"<Part><PartNumber>{number}</PartNumber>"
                f"<ETag>&quot;{escape(etag)}&quot;</ETag>{sha}</Part>"
            )

        parts = "".join(part(i + 1, e) for i, e in enumerate(etags))
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
            # S3 answers 200 at once and may send an <Error> minutes later (InternalError
            # while it assembles the parts): the transport retries it as a 500, so the
            # parts are not thrown away.
            xml=True,
        )
        return clean_etag(_xml_text(r.xml, "ETag") or r.headers.get("etag"))

    def _sse_params(self) -> dict[str, str]:
        """--sse for botocore's calls (a copy onto itself would reset the encryption)."""
        params = {}
        if self.sse:
            params["ServerSideEncryption"] = self.sse
        if self.sse_kms_key_id:
            params["SSEKMSKeyId"] = self.sse_kms_key_id
        return params

    def _sse_headers(self) -> dict[str, str]:
        headers = {}
        if self.sse:
            headers["x-amz-server-side-encryption"] = self.sse
        if self.sse_kms_key_id:
            headers["x-amz-server-side-encryption-aws-kms-key-id"] = self.sse_kms_key_id
        return headers

    def abort_multipart(self, bucket: str, key: str, upload_id: str) -> None:
        for number in [n for (u, n) in list(self._part_checksums) if u == upload_id]:
            self._part_checksums.pop((upload_id, number), None)
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
    """Map a botocore ClientError to a deon error (the table in errors.py)."""
    from deon.s3.errors import translate_client_error as translate

    return translate(e, what, bucket)
