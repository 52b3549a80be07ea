"""AWS Signature Version 4 for S3 requests.

https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html

deon signs its object requests itself: botocore's request pipeline costs ~0.7 ms of CPU
per request, which caps a 2-core machine near 1,000 requests/s; this costs a few
microseconds (see bench/RESULTS.md). Credentials still come from botocore's chain.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
ALGORITHM = "AWS4-HMAC-SHA256"


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    token: str | None = None


def uri_path(path: str) -> str:
    """The canonical (and wire) form of a path: each byte outside RFC 3986's unreserved
    set percent-encoded, `/` kept, nothing normalised (S3 keys are literal)."""
    return quote(path, safe="/~")


def query_string(params: Mapping[str, str]) -> str:
    """The canonical query string: keys sorted, keys and values fully encoded."""
    return "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(params.items())
    )


class Signer:
    """Signs requests for one region, caching the derived signing key per day."""

    def __init__(self, region: str, service: str = "s3") -> None:
        self.region = region
        self.service = service
        self._keys: dict[tuple[str, str], bytes] = {}
        self._lock = threading.Lock()
        self._date: tuple[int, str] = (-1, "")  # (second, x-amz-date): strftime once a second

    def _signing_key(self, secret: str, day: str) -> bytes:
        cached = self._keys.get((secret, day))
        if cached is not None:
            return cached
        key = hmac.new(f"AWS4{secret}".encode(), day.encode(), hashlib.sha256).digest()
        for part in (self.region, self.service, "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        with self._lock:
            if len(self._keys) > 8:
                self._keys.clear()
            self._keys[(secret, day)] = key
        return key

    def sign(
        self,
        creds: Credentials,
        method: str,
        host: str,
        path: str,
        query: Mapping[str, str],
        headers: dict[str, str],
        payload_sha256: str,
        now: float | None = None,
    ) -> dict[str, str]:
        """Return `headers` plus the date, payload hash, token and Authorization headers.

        `path` is the wire path (already encoded by `uri_path`); every header given is
        signed, so send them exactly as given.
        """
        second = int(time.time() if now is None else now)
        cached_second, amz_date = self._date
        if cached_second != second:
            amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(second))
            self._date = (second, amz_date)
        day = amz_date[:8]
        out = dict(headers)
        out["x-amz-date"] = amz_date
        out["x-amz-content-sha256"] = payload_sha256
        if creds.token:
            out["x-amz-security-token"] = creds.token
        canonical = {k.lower(): " ".join(str(v).split()) for k, v in out.items()}
        canonical["host"] = host
        names = sorted(canonical)
        signed_headers = ";".join(names)
        request = "\n".join(
            [
                method,
                path,
                query_string(query),
                "".join(f"{n}:{canonical[n]}\n" for n in names),
                signed_headers,
                payload_sha256,
            ]
        )
        scope = f"{day}/{self.region}/{self.service}/aws4_request"
        to_sign = "\n".join(
            [ALGORITHM, amz_date, scope, hashlib.sha256(request.encode("utf-8")).hexdigest()]
        )
        signature = hmac.new(
            self._signing_key(creds.secret_key, day), to_sign.encode("utf-8"), hashlib.sha256
        ).hexdigest()
        out["Authorization"] = (
            f"{ALGORITHM} Credential={creds.access_key}/{scope}, "
            f"SignedHeaders={signed_headers}, Signature={signature}"
        )
        return out
