"""An in-memory stand-in for deon.s3.client.Storage, for fast unit tests of the layers
above it (planning of up/down/pull, the mirror's batching): no server, no HTTP.

It keeps objects as S3 would (bytes, user metadata, an MD5 ETag, LastModified), honours
the conditional writes deon relies on, and counts every call by operation so that a test
can assert what a run asked of S3 ("an unchanged prefix costs no HEAD").
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import threading
from dataclasses import dataclass, field
from typing import Any

from deon.errors import KeyNotFound, PreconditionFailed
from deon.s3.client import ObjectHead, ObjectInfo


@dataclass
class Stored:
    body: bytes
    metadata: dict[str, str]
    etag: str
    last_modified: dt.datetime


class Body:
    """A streamed body as Storage.get returns it."""

    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)
        self.pos = 0

    def readinto(self, buf: Any) -> int:
        n = min(len(buf), len(self.data) - self.pos)
        buf[:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n

    def read(self, n: int = -1) -> bytes:
        end = len(self.data) if n < 0 else min(len(self.data), self.pos + n)
        out = bytes(self.data[self.pos : end])
        self.pos = end
        return out

    def iter_chunks(self, size: int = 1 << 16) -> Any:
        while chunk := self.read(size):
            yield chunk

    def close(self) -> None:
        pass

    def __enter__(self) -> Body:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class FakeStorage:
    bucket: str = "lab"
    endpoint_url: str | None = "http://127.0.0.1:1"
    objects: dict[str, Stored] = field(default_factory=dict)
    calls: collections.Counter[str] = field(default_factory=collections.Counter)
    page_size: int = 1000
    clock: dt.datetime = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.uploads: dict[str, list[bytes]] = {}

    # -- test helpers ------------------------------------------------------------------

    def add(self, key: str, body: bytes, metadata: dict[str, str] | None = None) -> None:
        with self.lock:
            self.clock += dt.timedelta(seconds=1)
            etag = hashlib.md5(body).hexdigest()
            self.objects[key] = Stored(body, dict(metadata or {}), etag, self.clock)

    def _get(self, bucket: str, key: str) -> Stored:
        assert bucket == self.bucket, bucket
        try:
            return self.objects[key]
        except KeyError:
            raise KeyNotFound(f"no such object: s3://{bucket}/{key}") from None

    def _head(self, o: Stored) -> ObjectHead:
        return ObjectHead(len(o.body), o.etag, o.last_modified, dict(o.metadata), None, len(o.body))

    def _check(self, key: str, if_none_match: bool, if_match: str | None) -> None:
        current = self.objects.get(key)
        if if_none_match and current is not None:
            raise PreconditionFailed(f"s3://{self.bucket}/{key} exists")
        if if_match is not None and (current is None or current.etag != if_match):
            raise PreconditionFailed(f"s3://{self.bucket}/{key} changed")

    # -- what deon's layers call ---------------------------------------------------------

    def throttled_until(self) -> float:
        """Never throttles (transfer/budget.py backs off when this grows)."""
        return 0.0

    def iter_pages(self, bucket: str, prefix: str = "") -> Any:
        self.calls["LIST"] += 1
        keys = sorted((k for k in self.objects if k.startswith(prefix)), key=lambda k: k.encode())
        for i in range(0, len(keys), self.page_size):
            page = []
            for k in keys[i : i + self.page_size]:
                o = self.objects[k]
                page.append(ObjectInfo(bucket, k, len(o.body), o.etag, o.last_modified))
            yield page
        if not keys:
            yield []

    def iter_objects(self, bucket: str, prefix: str = "") -> Any:
        for page in self.iter_pages(bucket, prefix):
            yield from page

    def head(self, bucket: str, key: str, **_: Any) -> ObjectHead:
        self.calls["HEAD"] += 1
        return self._head(self._get(bucket, key))

    def get(
        self,
        bucket: str,
        key: str,
        *,
        start: int | None = None,
        end: int | None = None,
        if_match: str | None = None,
        **_: Any,
    ) -> tuple[ObjectHead, Body]:
        self.calls["GET"] += 1
        o = self._get(bucket, key)
        if if_match is not None and if_match != o.etag:
            raise PreconditionFailed(f"s3://{bucket}/{key} changed")
        data = o.body[start or 0 : None if end is None else end + 1]
        head = ObjectHead(len(data), o.etag, o.last_modified, dict(o.metadata), None, len(o.body))
        return head, Body(data)

    def get_bytes(self, bucket: str, key: str, max_bytes: int) -> bytes:
        self.calls["GET"] += 1
        return self._get(bucket, key).body[: max_bytes + 1]

    def put(
        self,
        bucket: str,
        key: str,
        body: bytes | memoryview,
        *,
        metadata: dict[str, str],
        if_none_match: bool = False,
        if_match: str | None = None,
        **_: Any,
    ) -> str:
        self.calls["PUT"] += 1
        with self.lock:
            self._check(key, if_none_match, if_match)
        self.add(key, bytes(body), metadata)
        return self.objects[key].etag

    def replace_metadata(self, bucket: str, key: str, metadata: dict[str, str], **kw: Any) -> str:
        self.calls["COPY"] += 1
        o = self._get(bucket, key)
        etag = kw.get("if_match") or kw.get("etag")
        if etag is not None and etag != o.etag:
            raise PreconditionFailed(f"s3://{bucket}/{key} changed")
        o.metadata = dict(metadata)
        return o.etag

    def create_multipart(self, bucket: str, key: str, metadata: dict[str, str], **_: Any) -> str:
        self.calls["CREATE_MULTIPART"] += 1
        upload_id = f"u{len(self.uploads)}"
        self.uploads[upload_id] = []
        self._meta = metadata
        return upload_id

    def upload_part(
        self, bucket: str, key: str, upload_id: str, number: int, data: bytes, *_: Any, **__: Any
    ) -> str:
        self.calls["UPLOAD_PART"] += 1
        parts = self.uploads[upload_id]
        while len(parts) < number:
            parts.append(b"")
        parts[number - 1] = bytes(data)
        return hashlib.md5(data).hexdigest()

    def complete_multipart(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        etags: list[Any],
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
        **_: Any,
    ) -> str:
        self.calls["COMPLETE_MULTIPART"] += 1
        parts = self.uploads.pop(upload_id)
        with self.lock:
            self._check(key, if_none_match, if_match)
        body = b"".join(parts)
        digest = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
        self.add(key, body, self._meta)
        self.objects[key].etag = f"{digest}-{len(parts)}"
        return self.objects[key].etag

    def abort_multipart(self, bucket: str, key: str, upload_id: str) -> None:
        self.calls["ABORT_MULTIPART"] += 1
        self.uploads.pop(upload_id, None)
