"""The S3 layer against the moto server on 127.0.0.1: listing, conditional writes, error
mapping, and the SigV4 signer checked against botocore's."""

from __future__ import annotations

import hashlib
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
from deon.s3.client import Storage, translate_client_error
from tests.conftest import Lab


@pytest.fixture
def storage(lab: Lab) -> Storage:
    return Storage(endpoint_url=lab.endpoint)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_listing_pages_past_1000_keys_and_keeps_the_prefix(storage: Storage, lab: Lab) -> None:
    for i in range(1005):
        lab.put(f"p/{i:05d}", b"")
    lab.put("q/other", b"")

    keys = [o.key for o in storage.iter_objects("lab", "p/")]

    assert len(keys) == 1005 and keys[0] == "p/00000" and keys[-1] == "p/01004"


def test_conditional_put_refuses_an_existing_key(storage: Storage) -> None:
    storage.put("lab", "k", b"one", sha256=sha(b"one"), metadata={}, if_none_match=True)

    with pytest.raises(PreconditionFailed):
        storage.put("lab", "k", b"two", sha256=sha(b"two"), metadata={}, if_none_match=True)
    with pytest.raises(PreconditionFailed):
        storage.put("lab", "k", b"two", sha256=sha(b"two"), metadata={}, if_match="0" * 32)
    assert storage.get_bytes("lab", "k", 100) == b"one"


def test_missing_bucket_and_key(storage: Storage) -> None:
    with pytest.raises(BucketNotFound) as e:
        list(storage.iter_objects("nope"))
    assert e.value.exit_status == ExitStatus.USAGE
    with pytest.raises(BucketNotFound):
        storage.check_bucket("nope")
    with pytest.raises(KeyNotFound):
        storage.head("lab", "missing")


def test_get_bytes_refuses_oversized_objects(storage: Storage, lab: Lab) -> None:
    lab.put("big", b"x" * 1000)

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


def test_keys_are_sent_literally(storage: Storage, lab: Lab) -> None:
    """Whatever a colleague named an object, it can be listed, read and named."""
    keys = [
        "w/sp ace.h5",
        "w/pct%41.h5",
        "w/plus+.h5",
        "w/ünï.h5",
        "w/q?x#y.h5",
        "w//double.h5",
        "w/../up.h5",
        "w/./dot.h5",
        "w/back\\slash.h5",
        "w/~tilde*star.h5",
    ]
    for i, key in enumerate(keys):
        lab.put(key, str(i).encode())

    listed = [o.key for o in storage.iter_objects("lab", "w/")]

    assert sorted(listed) == sorted(keys)
    for i, key in enumerate(keys):
        assert storage.get_bytes("lab", key, 10) == str(i).encode()
        assert storage.head("lab", key).size == len(str(i))


def test_multipart_upload_with_a_condition(storage: Storage, lab: Lab) -> None:
    parts = [b"a" * (5 * 1024 * 1024), b"b" * 100]
    upload = storage.create_multipart("lab", "mp", {"deon-sha256": "0" * 64})
    etags = [
        storage.upload_part("lab", "mp", upload, i + 1, p, sha(p)) for i, p in enumerate(parts)
    ]

    etag = storage.complete_multipart("lab", "mp", upload, etags, if_none_match=True)

    assert etag.endswith("-2")
    assert lab.get("mp") == b"".join(parts)
    assert lab.head("mp")["Metadata"] == {"deon-sha256": "0" * 64}


def test_a_payload_that_is_not_the_hashed_one_is_refused(storage: Storage, lab: Lab) -> None:
    """The sha256 is the signed payload hash: S3 (here the proxy, as AWS and MinIO do)
    refuses a body that is not the one hashed, and nothing is stored."""
    with pytest.raises(StorageError, match="different bytes than were hashed"):
        storage.put("lab", "k", b"these bytes", sha256=sha(b"other bytes"), metadata={})
    assert lab.list_keys() == []
    assert lab.proxy.count("PUT") == 1  # refused at once, not retried


@pytest.mark.parametrize(
    ("method", "path", "query", "headers"),
    [
        ("GET", "/lab/a/b.h5", {}, {}),
        ("HEAD", "/lab/sp%20ace/%C3%BC.h5", {}, {"range": "bytes=0-9"}),
        (
            "PUT",
            "/lab/k",
            {},
            {
                "x-amz-meta-deon-meta": 'json:{"a":1}',
                "if-none-match": "*",
                "content-type": "application/x-hdf5",
            },
        ),
        ("GET", "/lab/", {"list-type": "2", "prefix": "a b/", "continuation-token": "x/+="}, {}),
        ("POST", "/lab/k", {"uploads": ""}, {}),
    ],
)
def test_the_signer_agrees_with_botocore(method, path, query, headers, monkeypatch) -> None:
    import datetime as dt

    import botocore.auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials as BotoCredentials

    from deon.s3.signing import Credentials, Signer, query_string

    now = dt.datetime(2026, 11, 24, 12, 30, 45)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: now)
    creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "token/x=")
    payload = sha(b"")
    ours = Signer("eu-west-1").sign(
        creds,
        method,
        "127.0.0.1:9000",
        path,
        query,
        headers,
        payload,
        now.replace(tzinfo=dt.timezone.utc).timestamp(),
    )

    url = "http://127.0.0.1:9000" + path + ("?" + query_string(query) if query else "")
    request = AWSRequest(method=method, url=url, headers=dict(headers))
    botocore.auth.S3SigV4Auth(
        BotoCredentials(creds.access_key, creds.secret_key, creds.token), "s3", "eu-west-1"
    ).add_auth(request)

    assert ours["Authorization"] == request.headers["Authorization"]
    assert ours["x-amz-date"] == request.headers["X-Amz-Date"]


def test_a_listing_without_the_s3_namespace_is_read(storage: Storage, lab: Lab) -> None:
    """s3rver (and some other servers) answer ListObjectsV2 without xmlns."""
    for i in range(3):
        lab.put(f"n/{i}", b"x")
    lab.proxy.rules.listing = lambda body: body.replace(
        b' xmlns="http://s3.amazonaws.com/doc/2006-03-01/"', b""
    )

    assert [o.key for o in storage.iter_objects("lab", "n/")] == ["n/0", "n/1", "n/2"]


def test_a_listing_deon_cannot_read_is_an_error_not_an_empty_prefix(
    storage: Storage, lab: Lab
) -> None:
    for i in range(3):
        lab.put(f"n/{i}", b"x")
    lab.proxy.rules.listing = lambda body: body.replace(b"<Contents>", b"<Content>").replace(
        b"</Contents>", b"</Content>"
    )

    with pytest.raises(StorageError, match="the listing says 3 keys, deon read 0"):
        list(storage.iter_objects("lab", "n/"))
