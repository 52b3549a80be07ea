"""S3 errors → deon errors, and what is worth another attempt: one table for the boto3
side (client.py) and the lean transport (transport.py).

As s3fs keeps them (s3fs/errors.py `translate_boto_error`, core.py
`S3_RETRYABLE_ERRORS`): one function maps an S3 error code to an exception a person can
act on, keeping the original as `__cause__`; one tuple lists the failures that another
attempt can cure. Errors that no retry can cure — credentials, this machine's clock,
the region, a refused certificate, a refusing proxy — are raised at once, name the
cause and the setting that fixes it, and stop the whole run (`DeonError.fatal`): every
other request would fail the same way, and one line says it better than a thousand.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

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

#: Status codes worth another attempt (botocore's "standard" mode).
RETRYABLE_STATUS = frozenset({500, 502, 503, 504, 429})
#: S3 error codes that mean "slow down": every thread backs off.
THROTTLING_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "TooManyRequestsException",
    }
)
#: S3 error codes worth another attempt. Not RequestTimeTooSkewed: the clock is as
#: wrong a second later, and ten attempts only hide the cause (botocore does not retry
#: it either; https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html).
RETRYABLE_CODES = THROTTLING_CODES | {
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
    "OperationAborted",
}


class ResponseCut(StorageError):
    """A response body ended before the length its headers promised, with a clean
    close: retried (resumed with a Range) like a reset connection."""


class UnreadableResponse(StorageError):
    """A 200 answer whose body is not the XML document the operation returns (a proxy's
    page, a cut reply): retried, as s3fs retries botocore's ResponseParserError."""


#: Failures of a request or of reading its body that another attempt can cure.
RETRYABLE_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError,
    TimeoutError,
    socket.timeout,
    http.client.HTTPException,  # IncompleteRead, RemoteDisconnected, BadStatusLine
    ssl.SSLError,
    ResponseCut,
    UnreadableResponse,
)


def retryable(status: int, code: str) -> bool:
    """Whether an S3 error response is worth another attempt."""
    return status in RETRYABLE_STATUS or code in RETRYABLE_CODES


def throttled(status: int, code: str) -> bool:
    return code in THROTTLING_CODES or status in (503, 429)


def retryable_exception(e: BaseException) -> bool:
    """Whether a failure to send a request or read its answer is worth another
    attempt: network trouble is, a refused certificate or a refusing proxy is not."""
    if _refused_certificate(e) is not None or _proxy_refusal(e) is not None:
        return False
    return isinstance(e, (*RETRYABLE_ERRORS, OSError))


#: Error codes no retry can cure: the credentials, this machine's clock. (Not the
#: region answers: botocore's region redirector retries those in the right region, on
#: the same `needs-retry` event.)
FUTILE_CODES = frozenset(
    {
        "RequestTimeTooSkewed",
        "ExpiredToken",
        "TokenRefreshRequired",
        "InvalidToken",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
    }
)


def botocore_retry_veto(
    caught_exception: BaseException | None = None, response: Any = None, **kwargs: Any
) -> bool | None:
    """A `needs-retry.s3` handler, registered first on deon's botocore clients: False
    (no retry) for what retrying cannot help — a refused certificate, a refusing proxy,
    expired credentials, a wrong clock — which botocore's standard mode would retry up
    to max_attempts times (35 s for a certificate); None leaves the decision to
    botocore. botocore takes the first answer that is not None."""
    if caught_exception is not None:
        # Only the two refusals: every other exception botocore catches (its own
        # ConnectionClosedError, read timeouts) is botocore's to retry.
        futile = _refused_certificate(caught_exception) or _proxy_refusal(caught_exception)
        return False if futile else None
    if response is not None:
        try:
            code = response[1].get("Error", {}).get("Code", "")
        except (AttributeError, IndexError, TypeError):
            return None
        if code in FUTILE_CODES:
            return False
    return None


# -- reading S3's error documents ---------------------------------------------------------


def error_fields(body: bytes, status: int) -> dict[str, str]:
    """The fields of an S3 error document (Code, Message, Region, ServerTime, …); for
    a body-less error (HEAD) or one that is not XML, Code is the status."""
    if body:
        try:
            root = ET.fromstring(body)
        except ET.ParseError:
            root = None
        if root is not None and _local(root.tag) == "Error":
            fields = {_local(el.tag): (el.text or "") for el in root}
            if fields.get("Code"):
                return fields
    return {"Code": str(status), "Message": http.client.responses.get(status, "")}


def error_document(body: bytes) -> dict[str, str] | None:
    """The fields of `body` if it is an S3 <Error> document (as S3 may send with a 200
    to CreateMultipartUpload, UploadPartCopy, CopyObject, CompleteMultipartUpload:
    https://docs.aws.amazon.com/AmazonS3/latest/API/API_CompleteMultipartUpload.html),
    else None."""
    head = body.lstrip()[:200]
    if b"<Error" not in head:
        return None
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return None
    if _local(root.tag) != "Error":
        return None
    return {_local(el.tag): (el.text or "") for el in root}


def parse_xml(body: bytes, what: str, content_type: str | None = None) -> ET.Element:
    """An S3 answer's XML document, or one line saying what came instead."""
    try:
        return ET.fromstring(body)
    except ET.ParseError as e:
        raise UnreadableResponse(f"{what}: {_not_xml(body, content_type)}") from e


def _not_xml(body: bytes, content_type: str | None) -> str:
    if not body.strip():
        return "S3 answered with an empty body where an XML document was due"
    start = " ".join(body[:60].decode("utf-8", "replace").split())
    kind = f" ({content_type})" if content_type else ""
    return (
        f"S3 answered with a body that is not XML{kind}: {start!r}; a proxy or gateway "
        "between deon and S3 may have answered instead"
    )


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


# -- the table -------------------------------------------------------------------------


def translate_error(
    status: int,
    code: str,
    message: str,
    what: str,
    bucket: str | None,
    headers: Mapping[str, str],
    fields: Mapping[str, str] | None = None,
) -> DeonError:
    """Map an S3 error (status, code, message, and the error document's other fields)
    to a deon error a person can act on. Used for deon's own requests and for
    botocore's (`translate_client_error`)."""
    fields = fields or {}
    if code == "NoSuchBucket":
        return BucketNotFound(f"no such bucket: {bucket or what}")
    if code in ("NoSuchKey", "NotFound", "404") or status == 404:
        return KeyNotFound(f"{what}: no such object")
    if code in ("ExpiredToken", "TokenRefreshRequired"):
        return _fatal(
            f"{what}: the AWS session token has expired ({code}): get new credentials "
            "(`aws sso login`, or a new AWS_SESSION_TOKEN), or use another --profile"
        )
    if code == "InvalidToken":
        return _fatal(
            f"{what}: S3 cannot read the AWS session token (InvalidToken): check "
            "AWS_SESSION_TOKEN or the profile's aws_session_token"
        )
    if code == "InvalidAccessKeyId":
        key = fields.get("AWSAccessKeyId")
        return _fatal(
            f"{what}: S3 does not know the access key id{f' {key}' if key else ''} "
            "(InvalidAccessKeyId): check AWS_ACCESS_KEY_ID or the profile's "
            "aws_access_key_id (--profile, AWS_PROFILE)"
        )
    if code == "SignatureDoesNotMatch":
        return _fatal(
            f"{what}: S3 refused the request signature (SignatureDoesNotMatch): check that "
            "the secret key belongs to the access key id (AWS_SECRET_ACCESS_KEY or the "
            "profile's aws_secret_access_key)"
        )
    if code == "RequestTimeTooSkewed" or (
        status == 403 and code in ("403", "AccessDenied") and _skewed(headers)
    ):
        # A HEAD's 403 has no body to name the cause: the server's Date tells.
        return _fatal(f"{what}: {clock_message(headers, fields)}")
    if status in (301, 307) or code in (
        "PermanentRedirect",
        "TemporaryRedirect",
        "AuthorizationHeaderMalformed",
        "IllegalLocationConstraintException",
    ):
        region = headers.get("x-amz-bucket-region") or fields.get("Region")
        if region:
            name = f"bucket {bucket}" if bucket else "the bucket"
            return _fatal(
                f"{what}: {name} is in region {region}: set AWS_DEFAULT_REGION={region} "
                f"(or region = {region} in ~/.aws/config)"
            )
        endpoint = fields.get("Endpoint")
        if endpoint:
            return _fatal(
                f"{what}: S3 says to use the endpoint {endpoint} ({code}): set the region "
                "of the bucket (AWS_DEFAULT_REGION) or --endpoint-url"
            )
    if status == 407:
        return _fatal(f"{what}: {PROXY_407}")
    if code in ("AccessDenied", "AllAccessDisabled", "403") or status == 403:
        return AccessDenied(f"{what}: access denied by S3 for these credentials")
    if code in ("PreconditionFailed", "412") or status == 412:
        return PreconditionFailed(f"{what}: the object changed meanwhile (precondition failed)")
    if code == "ConditionalRequestConflict" or status == 409:
        return PreconditionFailed(f"{what}: a concurrent write to the same key won")
    if code in ("BadDigest", "XAmzContentSHA256Mismatch", "InvalidDigest"):
        return StorageError(
            f"{what}: S3 received different bytes than were hashed "
            "(did the file change while it was uploaded?)"
        )
    if code == "InvalidBucketName":
        return AddressError(f"invalid bucket name in {what}")
    return StorageError(f"{what}: {code or status}: {message}".rstrip(": "))


def diagnosable(response: Mapping[str, Any]) -> bool:
    """Whether a botocore error response is a body-less 400/403 (a HEAD's), whose cause
    only a GET of the same resource can tell."""
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    code = str(response.get("Error", {}).get("Code", ""))
    return status in (400, 403) and code in ("400", "403", "BadRequest", "Forbidden")


def translate_client_error(e: Any, what: str, bucket: str | None) -> DeonError:
    """Map a botocore ClientError to a deon error with a message a person can act on."""
    err = e.response.get("Error", {})
    code = str(err.get("Code", ""))
    meta = e.response.get("ResponseMetadata", {})
    message = err.get("Message") or code
    headers = {str(k).lower(): str(v) for k, v in (meta.get("HTTPHeaders") or {}).items()}
    fields = {str(k): str(v) for k, v in err.items()}
    return translate_error(
        meta.get("HTTPStatusCode") or 0, code, message, what, bucket, headers, fields
    )


def translate_connection_error(e: BaseException, what: str, where: str) -> DeonError:
    """A request that could not be sent or answered: a refused certificate or a refusing
    proxy is a setting to fix; anything else is the network."""
    cert = _refused_certificate(e)
    if cert is not None:
        return _fatal(
            f"{what}: the TLS certificate of {where} was refused ({cert}): if a proxy or a "
            "private CA signs it, set AWS_CA_BUNDLE (or ca_bundle in ~/.aws/config) to "
            "that CA's certificate file"
        )
    proxy = _proxy_refusal(e)
    if proxy is not None:
        return _fatal(f"{what}: {proxy}")
    return StorageError(f"{what}: cannot reach S3 at {where}: {e or type(e).__name__}")


PROXY_407 = (
    "the proxy refused deon (407 Proxy Authentication Required): put its user and "
    "password in HTTPS_PROXY / HTTP_PROXY (http://user:password@host:port), or list "
    "the S3 host in NO_PROXY"
)


def _chain(e: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [e]
    while todo:
        cur = todo.pop()
        if cur is None or any(cur is s for s in seen) or len(seen) > 20:
            continue
        seen.append(cur)
        todo += [cur.__cause__, cur.__context__]
        todo += [a for a in getattr(cur, "args", ()) if isinstance(a, BaseException)]
        for name in ("reason", "error", "original_error"):
            inner = getattr(cur, name, None)
            if isinstance(inner, BaseException):
                todo.append(inner)
        kwargs = getattr(cur, "kwargs", None)  # botocore keeps the urllib3 error there
        if isinstance(kwargs, dict):
            todo += [v for v in kwargs.values() if isinstance(v, BaseException)]
    return seen


def _refused_certificate(e: BaseException) -> str | None:
    for cur in _chain(e):
        if isinstance(cur, ssl.SSLCertVerificationError):
            return str(cur.verify_message or cur.reason or "verification failed")
        text = str(cur)
        if "CERTIFICATE_VERIFY_FAILED" in text:
            return text.split("CERTIFICATE_VERIFY_FAILED", 1)[1].strip(" ]():") or (
                "verification failed"
            )
    return None


def _proxy_refusal(e: BaseException) -> str | None:
    for cur in _chain(e):
        text = str(cur)
        if "407" in text and ("Proxy" in text or "Tunnel" in text):
            return PROXY_407
        if "Tunnel connection failed" in text:
            reply = text.split("Tunnel connection failed:", 1)[-1].strip()
            return (
                f"the proxy refused to connect deon to S3 ({reply}): check HTTPS_PROXY / "
                "HTTP_PROXY, or list the S3 host in NO_PROXY"
            )
    return None


def _fatal(message: str) -> ConfigError:
    error = ConfigError(message)
    error.fatal = True
    return error


# -- clocks ---------------------------------------------------------------------------------


def clock_offset(headers: Mapping[str, str]) -> float | None:
    """How far the server's clock (its Date header) is ahead of this machine's, in
    seconds."""
    import email.utils

    try:
        server = email.utils.parsedate_to_datetime(headers.get("date") or "")
    except (TypeError, ValueError):
        return None
    if server.tzinfo is None:
        server = server.replace(tzinfo=timezone.utc)
    return (server - datetime.now(timezone.utc)).total_seconds()


def _skewed(headers: Mapping[str, str]) -> bool:
    offset = clock_offset(headers)
    return offset is not None and abs(offset) > MAX_SKEW


#: S3 refuses requests signed more than 15 minutes from its own time.
MAX_SKEW = 15 * 60


def clock_message(headers: Mapping[str, str], fields: Mapping[str, str]) -> str:
    """RequestTimeTooSkewed, said as what to do: by how much this machine's clock is off
    (the server's Date against the clock now, else the error's ServerTime against its
    RequestTime)."""
    offset = clock_offset(headers)
    if offset is None and fields.get("ServerTime") and fields.get("RequestTime"):
        try:
            sent = datetime.strptime(fields["RequestTime"], "%Y%m%dT%H%M%SZ").replace(
                tzinfo=timezone.utc
            )
            server = datetime.fromisoformat(fields["ServerTime"].replace("Z", "+00:00"))
            offset = (server - sent).total_seconds()
        except ValueError:
            offset = None
    fix = "set it right (enable NTP: `sudo timedatectl set-ntp true`) and try again"
    if offset is None:
        return f"this computer's clock is off by more than 15 minutes (RequestTimeTooSkewed): {fix}"
    side = "behind" if offset > 0 else "ahead of"
    return (
        f"this computer's clock is {_duration(abs(offset))} {side} S3's "
        f"(RequestTimeTooSkewed; S3 allows 15 minutes): {fix}"
    )


def _duration(seconds: float) -> str:
    s = round(seconds)
    if s >= 86400:
        return f"{s // 86400} d {s % 86400 // 3600} h"
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60} min"
    if s >= 60:
        return f"{s // 60} min {s % 60} s"
    return f"{s} s"
