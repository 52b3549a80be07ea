"""The fake AWS itself (tests/fakeaws.py) behaves as S3 does for boto3, the reference
client: if these fail, the conformance tests prove nothing."""

from __future__ import annotations

from typing import Any

import pytest


def boto3_client(region: str = "us-east-1", **config: Any) -> Any:
    import boto3
    import botocore.config

    return boto3.session.Session().client(  # a new session: credentials read afresh
        "s3",
        region_name=region,
        config=botocore.config.Config(retries={"max_attempts": 2, "mode": "standard"}, **config),
    )


def test_boto3_reaches_the_fake_with_no_endpoint_url(fakeaws: Any) -> None:
    s3 = boto3_client()
    s3.put_object(Bucket="lab", Key="a/run+1.h5", Body=b"hello")
    assert s3.get_object(Bucket="lab", Key="a/run+1.h5")["Body"].read() == b"hello"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="lab")["Contents"]]
    assert keys == ["a/run+1.h5"]
    recs = fakeaws.requests
    assert [r.kind for r in recs] == ["PUT", "GET", "LIST"]
    assert all(r.tls and r.signed and r.signature_ok for r in recs), [
        r.signature_error for r in recs
    ]
    assert {r.host for r in recs} == {"lab.s3.amazonaws.com"}
    assert recs[0].key == "a/run+1.h5" and recs[0].style == "virtual"


def test_a_wrong_signature_is_refused(fakeaws: Any) -> None:
    import botocore.exceptions

    fakeaws.credentials["testing"] = "another secret"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        boto3_client().get_object(Bucket="lab", Key="k")
    assert e.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    assert fakeaws.requests[0].signature_ok is False


def test_a_bucket_in_another_region_is_found_by_boto3(fakeaws: Any) -> None:
    fakeaws.create_bucket("far", "eu-west-1")
    fakeaws.put("far", "k", b"x")
    s3 = boto3_client("us-west-2")
    assert s3.get_object(Bucket="far", Key="k")["Body"].read() == b"x"
    first, *rest = fakeaws.requests
    assert first.status == 400 and first.host == "far.s3.us-west-2.amazonaws.com"
    assert rest[-1].host == "far.s3.eu-west-1.amazonaws.com" and rest[-1].status == 200


@pytest.mark.parametrize("answer", ["301", "307"])
def test_region_answers(fakeaws: Any, answer: str) -> None:
    fakeaws.create_bucket("far", "eu-west-1")
    fakeaws.put("far", "k", b"x")
    fakeaws.quirks.region_answer = answer
    s3 = boto3_client("us-west-2")
    assert s3.get_object(Bucket="far", Key="k")["Body"].read() == b"x"
    assert fakeaws.requests[0].status == int(answer)


def test_store_that_does_not_encode_listings(fakeaws: Any) -> None:
    fakeaws.put("lab", "run+1 x.h5", b"x")
    fakeaws.quirks.url_encoding = False
    s3 = boto3_client()
    r = s3.list_objects_v2(Bucket="lab", EncodingType="url")
    assert "EncodingType" not in r
    assert [o["Key"] for o in r["Contents"]] == ["run+1 x.h5"]


def test_clock_skew_and_credentials(fakeaws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import botocore.exceptions

    fakeaws.quirks.clock_offset = 3600
    with pytest.raises(botocore.exceptions.ClientError) as e:
        boto3_client().get_object(Bucket="lab", Key="k")
    assert e.value.response["Error"]["Code"] == "RequestTimeTooSkewed"
    fakeaws.quirks.clock_offset = 0
    monkeypatch.setenv("AWS_SESSION_TOKEN", "old")
    fakeaws.quirks.expired_tokens.add("old")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        boto3_client().get_object(Bucket="lab", Key="k")
    assert e.value.response["Error"]["Code"] == "ExpiredToken"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDONTKNOW")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        boto3_client().get_object(Bucket="lab", Key="k")
    assert e.value.response["Error"]["Code"] == "InvalidAccessKeyId"


def test_early_reply_reaches_boto3_as_access_denied(fakeaws: Any) -> None:
    import botocore.exceptions

    fakeaws.early_reply("PUT")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        boto3_client().put_object(Bucket="lab", Key="big", Body=b"x" * (12 << 20))
    assert e.value.response["Error"]["Code"] == "AccessDenied"
    put = fakeaws.requests.find("PUT")
    assert len(put) == 1 and put[0].body_len == 0
    assert put[0].headers.get("expect") == "100-continue"


def test_complete_multipart_200_error_is_retried_by_boto3(fakeaws: Any) -> None:
    s3 = boto3_client()
    up = s3.create_multipart_upload(Bucket="lab", Key="m")["UploadId"]
    etag = s3.upload_part(Bucket="lab", Key="m", UploadId=up, PartNumber=1, Body=b"p" * 10)["ETag"]
    fakeaws.error_200("COMPLETE_MULTIPART")
    s3.complete_multipart_upload(
        Bucket="lab",
        Key="m",
        UploadId=up,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
    )
    assert fakeaws.get("lab", "m") == b"p" * 10
    assert fakeaws.requests.kinds().count("COMPLETE_MULTIPART") == 2


def test_short_body_is_an_error_for_boto3(fakeaws: Any) -> None:
    import botocore.exceptions

    fakeaws.put("lab", "k", b"0123456789" * 1000)
    fakeaws.short_body("k")
    body = boto3_client().get_object(Bucket="lab", Key="k")["Body"]
    with pytest.raises(
        (botocore.exceptions.IncompleteReadError, botocore.exceptions.ResponseStreamingError)
    ):
        body.read()


def test_authenticating_proxy(
    fakeaws: Any, fake_proxy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import botocore.exceptions

    fakeaws.put("lab", "k", b"x")
    monkeypatch.setenv("HTTPS_PROXY", fake_proxy.url)
    with pytest.raises(botocore.exceptions.ProxyConnectionError):
        boto3_client().get_object(Bucket="lab", Key="k")
    assert fake_proxy.requests[-1].authorized is False
    monkeypatch.setenv("HTTPS_PROXY", fake_proxy.url_with_credentials)
    assert boto3_client().get_object(Bucket="lab", Key="k")["Body"].read() == b"x"
    assert fake_proxy.requests[-1].method == "CONNECT"
    assert fake_proxy.requests[-1].target == "lab.s3.amazonaws.com:443"


def test_deon_subprocess_sees_the_fake(fakeaws: Any, tmp_path: Any) -> None:
    from tests.conftest import run_deon

    fakeaws.put("lab", "d/x.bin", b"abc")
    r = run_deon("down", "s3://lab/d/", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "x.bin").read_bytes() == b"abc"
    assert fakeaws.requests.kinds()[-1] == "GET"
    assert {rec.host for rec in fakeaws.requests} == {"lab.s3.amazonaws.com"}
    assert all(rec.signature_ok for rec in fakeaws.requests)
