"""The S3 layer in-process (moto's mock_aws): listing, conditional writes, error mapping."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from deon.errors import (
    AccessDenied,
    BucketNotFound,
    ConfigError,
    ExitStatus,
    KeyNotFound,
    PreconditionFailed,
    StorageError,
)
from deon.storage import Storage, translate_client_error


@pytest.fixture
def storage(isolated_env: Path) -> Iterator[Storage]:
    from moto import mock_aws

    with mock_aws():
        s = Storage()
        s.client.create_bucket(Bucket="lab")
        yield s


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def test_listing_pages_past_1000_keys_and_keeps_the_prefix(storage: Storage) -> None:
    for i in range(1005):
        storage.client.put_object(Bucket="lab", Key=f"p/{i:05d}", Body=b"")
    storage.client.put_object(Bucket="lab", Key="q/other", Body=b"")

    keys = [o.key for o in storage.iter_objects("lab", "p/")]

    assert len(keys) == 1005 and keys[0] == "p/00000" and keys[-1] == "p/01004"


def test_conditional_put_refuses_an_existing_key(storage: Storage) -> None:
    storage.put(
        "lab", "k", b"one", size=3, content_md5=md5_b64(b"one"), metadata={}, if_none_match=True
    )

    with pytest.raises(PreconditionFailed):
        storage.put(
            "lab", "k", b"two", size=3, content_md5=md5_b64(b"two"), metadata={}, if_none_match=True
        )
    with pytest.raises(PreconditionFailed):
        storage.put(
            "lab", "k", b"two", size=3, content_md5=md5_b64(b"two"), metadata={}, if_match="0" * 32
        )
    assert storage.get_bytes("lab", "k", 100) == b"one"


def test_missing_bucket_and_key(storage: Storage) -> None:
    with pytest.raises(BucketNotFound) as e:
        list(storage.iter_objects("nope"))
    assert e.value.exit_status == ExitStatus.USAGE
    with pytest.raises(BucketNotFound):
        storage.check_bucket("nope")
    with pytest.raises(KeyNotFound):
        storage.head("lab", "missing")


def test_get_bytes_refuses_oversized_objects(storage: Storage) -> None:
    storage.client.put_object(Bucket="lab", Key="big", Body=b"x" * 1000)

    with pytest.raises(StorageError, match="over 100"):
        storage.get_bytes("lab", "big", 100)


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("AccessDenied", 403, AccessDenied),
        ("NoSuchBucket", 404, BucketNotFound),
        ("NoSuchKey", 404, KeyNotFound),
        ("PreconditionFailed", 412, PreconditionFailed),
        ("InvalidAccessKeyId", 403, ConfigError),
        ("SlowDown", 503, StorageError),
    ],
)
def test_client_errors_become_deon_errors(code: str, status: int, expected: type) -> None:
    error = ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "GetObject",
    )

    translated = translate_client_error(error, "s3://lab/k", "lab")

    assert type(translated) is expected


def test_a_bad_profile_is_a_config_error(isolated_env: Path) -> None:
    with pytest.raises(ConfigError, match="profile 'ghost' not found"):
        _ = Storage(profile="ghost").client
