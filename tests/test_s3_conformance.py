"""deon against boto3 on the wire: each scenario runs through boto3 (the reference) and
through the `deon` command, against the recording fake AWS (tests/fakeaws.py: TLS, AWS
host names on 127.0.0.1, SigV4 checked, S3's quirks on demand). Both must reach the same
host and path with a valid signature, and deon's result — bytes, catalog rows, exit
status, message — must be right."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import assert_no_traceback, make_h5, run_deon
from tests.fakeaws import Record


def boto3_s3(region: str = "us-east-1", **config: Any) -> Any:
    """A boto3 client as a user has it: no endpoint URL, a fresh credential chain."""
    import boto3
    import botocore.config

    config.setdefault("retries", {"mode": "standard", "max_attempts": 3})
    return boto3.session.Session().client(
        "s3", region_name=region, config=botocore.config.Config(**config)
    )


def twice(
    fake: Any, reference: Any, deon_args: list[str], before: Any = None, **kw: Any
) -> tuple[list[Record], Any, list[Record]]:
    """Run `reference()` (boto3), then `deon ARGS`, each after `before()` (to arm a
    quirk): the requests of each, and deon's result (`.reference_error` is what boto3
    raised, if anything)."""
    fake.requests.clear()
    if before is not None:
        before()
    try:
        reference()
    except Exception as e:  # noqa: BLE001 - some references are expected to fail
        reference_error: Exception | None = e
    else:
        reference_error = None
    ref = list(fake.requests)
    fake.requests.clear()
    if before is not None:
        before()
    result = run_deon(*deon_args, **kw)
    ours = list(fake.requests)
    result.reference_error = reference_error
    return ref, result, ours


def wire(records: list[Record], kind: str | None = None) -> set[tuple[str, str]]:
    return {(r.host, r.path) for r in records if kind is None or r.kind == kind}


def assert_not_retried(records: list[Record], items: int = 1) -> None:
    """No request sent more often than there are items (each item may need the bucket's
    region; none is sent again after a refusal)."""
    from collections import Counter

    sent = Counter((r.method, r.path, r.query) for r in records)
    assert max(sent.values()) <= items, sent


def assert_same_wire(ref: list[Record], ours: list[Record], kind: str | None = None) -> None:
    assert wire(ours, kind), f"deon sent no {kind}: {[r.kind for r in ours]}"
    assert wire(ours, kind) <= wire(ref, kind) or wire(ref, kind) <= wire(ours, kind), (
        wire(ref, kind),
        wire(ours, kind),
    )
    for r in ours:
        assert r.signed and r.signature_ok, (r.kind, r.path, r.signature_error)


def one_error_line(stderr: str) -> str:
    assert_no_traceback(stderr)
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.lower().startswith(("error", "deon: error"))]
    assert len(errors) == 1, stderr
    return errors[0]


# -- the baseline: deon reaches what boto3 reaches -------------------------------------------


def test_download_reaches_the_object_boto3_reaches(fakeaws: Any, tmp_path: Path) -> None:
    fakeaws.put("lab", "runs/run+1 x~.bin", b"payload")
    out = tmp_path / "out"
    ref, r, ours = twice(
        fakeaws,
        lambda: boto3_s3().get_object(Bucket="lab", Key="runs/run+1 x~.bin")["Body"].read(),
        ["down", "s3://lab/runs/", str(out)],
    )
    assert r.returncode == 0, r.stderr
    assert (out / "run+1 x~.bin").read_bytes() == b"payload"
    assert (
        wire(ours, "GET")
        == wire(ref, "GET")
        == {("lab.s3.amazonaws.com", "/runs/run%2B1%20x~.bin")}
    )
    assert_same_wire(ref, ours, "GET")
    assert all(rec.tls for rec in ours)


# -- 7: RequestTimeTooSkewed -----------------------------------------------------------------


def test_clock_skew_is_said_once_with_the_offset_and_not_retried(
    fakeaws: Any, tmp_path: Path
) -> None:
    """A robot whose clock is 1 h 2 min slow: boto3 gets RequestTimeTooSkewed; deon says
    the clock is off and by how much, once, and does not retry."""
    fakeaws.put("lab", "d/a.bin", b"a")
    fakeaws.quirks.clock_offset = 3600 + 125
    ref, r, ours = twice(
        fakeaws,
        lambda: boto3_s3().list_objects_v2(Bucket="lab", Prefix="d/"),
        ["down", "s3://lab/d/", str(tmp_path / "out")],
    )
    assert r.reference_error is not None
    assert r.reference_error.response["Error"]["Code"] == "RequestTimeTooSkewed"
    assert r.returncode != 0
    line = one_error_line(r.stderr)
    assert "clock" in line and "1 h 2 min behind" in line, line
    assert "access denied" not in r.stderr.lower()
    assert_not_retried(ours)
    assert_same_wire(ref, ours)


def test_clock_skew_on_heads_without_a_body_is_said_once(fakeaws: Any, tmp_path: Path) -> None:
    """A HEAD's 403 carries no error code: the server's Date tells it is the clock. Three
    objects pulled: one line, not three "access denied"."""
    for name in "abc":
        fakeaws.put("lab", f"p/{name}.bin", name.encode())
    fakeaws.quirks.clock_offset = -(2 * 3600)
    ref, r, ours = twice(
        fakeaws,
        lambda: boto3_s3().head_object(Bucket="lab", Key="p/a.bin"),
        ["pull", "s3://lab/p/a.bin", "s3://lab/p/b.bin", "s3://lab/p/c.bin"],
    )
    assert r.returncode != 0
    line = one_error_line(r.stderr)
    assert "2 h 0 min ahead of" in line, line
    assert "access denied" not in r.stderr.lower()
    assert_not_retried(ours, items=3)
    assert wire(ours) <= wire(ref) | {("lab.s3.amazonaws.com", "/")}


# -- 8: 200 with an <Error> body; a 200 that is not XML -------------------------------------


def _big(tmp_path: Path, size: int = 17 * 1024 * 1024) -> tuple[Path, bytes]:
    folder = tmp_path / "up"
    folder.mkdir()
    data = os.urandom(size)
    (folder / "big.bin").write_bytes(data)
    return folder, data


def _boto3_upload(folder: Path, key: str) -> Any:
    def upload() -> None:
        from boto3.s3.transfer import TransferConfig

        boto3_s3().upload_file(
            str(folder / "big.bin"),
            "lab",
            key,
            Config=TransferConfig(multipart_threshold=16 << 20, multipart_chunksize=8 << 20),
        )

    return upload


@pytest.mark.parametrize("kind", ["COMPLETE_MULTIPART", "CREATE_MULTIPART"])
def test_200_with_an_error_body_is_retried(fakeaws: Any, tmp_path: Path, kind: str) -> None:
    folder, data = _big(tmp_path)
    fakeaws.error_200(kind)
    ref, r, ours = twice(fakeaws, lambda: None, ["up", "s3://lab/up/", str(folder)])
    assert r.returncode == 0, r.stderr
    assert fakeaws.get("lab", "up/big.bin") == data
    kinds = [rec.kind for rec in ours]
    assert kinds.count(kind) == 2, kinds  # the 200-with-Error, then the retry
    assert kinds.count("UPLOAD_PART") == 3, kinds  # no part thrown away and sent again
    assert "DELETE" not in kinds  # the upload was not aborted
    # boto3 sends the same requests to the same place
    fakeaws.error_200(kind)
    ref, _, _ = twice(fakeaws, _boto3_upload(folder, "up/big.bin"), ["--help"])
    assert [rec.kind for rec in ref].count(kind) == 2  # botocore retries it too
    assert_same_wire(ref, ours, "UPLOAD_PART")
    assert_same_wire(ref, ours, kind)


def test_a_200_that_is_not_xml_is_retried_then_one_line(fakeaws: Any, tmp_path: Path) -> None:
    """A proxy's page with a 200 where CreateMultipartUpload's XML was due: retried, as
    botocore does (its ResponseParserError is retryable, and s3fs retries it too); after
    the last attempt one line quoting what came, never a raw ParseError."""
    folder, data = _big(tmp_path)
    ref, r, ours = twice(
        fakeaws,
        lambda: boto3_s3().create_multipart_upload(Bucket="lab", Key="up/big.bin"),
        ["up", "s3://lab/up/", str(folder)],
        before=lambda: fakeaws.non_xml_200("CREATE_MULTIPART", times=1),
    )
    assert r.reference_error is None and [x.kind for x in ref].count("CREATE_MULTIPART") == 2
    assert r.returncode == 0, r.stderr
    assert fakeaws.get("lab", "up/big.bin") == data
    assert [x.kind for x in ours].count("CREATE_MULTIPART") == 2
    assert_same_wire(ref, ours, "CREATE_MULTIPART")
    fakeaws.requests.clear()
    fakeaws.non_xml_200("CREATE_MULTIPART", times=100)
    (folder / "big.bin").write_bytes(os.urandom(17 << 20))
    r = run_deon("up", "s3://lab/up/", str(folder), env={**os.environ, "AWS_MAX_ATTEMPTS": "3"})
    assert r.returncode == 1, r.stderr
    assert_no_traceback(r.stderr)
    assert "ParseError" not in r.stderr
    assert "not XML (text/html)" in r.stderr and "502 Bad Gateway" in r.stderr, r.stderr
    assert fakeaws.requests.kinds().count("CREATE_MULTIPART") == 3


# -- 9: listed keys decoded only when the listing says so ------------------------------------


KEYS = ["run+1.h5", "a b.h5", "x%41.h5"]


@pytest.mark.parametrize("encodes", [False, True])
def test_listing_keys_are_decoded_only_when_encoded(
    fakeaws: Any, tmp_path: Path, encodes: bool
) -> None:
    for i, key in enumerate(KEYS):
        path = make_h5(tmp_path / "src" / f"{i}.h5", {"n": i})
        fakeaws.put("lab", key, path.read_bytes(), Metadata={})
    fakeaws.quirks.url_encoding = encodes

    def reference() -> list[str]:
        s3 = boto3_s3()
        listed = [o["Key"] for o in s3.list_objects_v2(Bucket="lab")["Contents"]]
        for key in listed:
            s3.head_object(Bucket="lab", Key=key)
        return listed

    fakeaws.requests.clear()
    assert sorted(reference()) == sorted(KEYS)
    ref = list(fakeaws.requests)
    assert ref[0].param("encoding-type") == "url"
    fakeaws.requests.clear()
    out = tmp_path / "out"
    r = run_deon("down", "s3://lab/", str(out))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(KEYS)
    assert_same_wire(ref, list(fakeaws.requests), "LIST")
    gets = {(rec.host, rec.path) for rec in fakeaws.requests if rec.kind == "GET"}
    assert gets == wire(ref, "HEAD")  # the very objects boto3 found


def test_metadata_down_catalogues_keys_a_store_does_not_encode(
    fakeaws: Any, tmp_path: Path
) -> None:
    """`run+1.h5` listed as `run 1.h5` would 404 on its HEAD and be missing from the catalog
    while `metadata down` says it succeeded."""
    from tests.conftest import Lab

    src = tmp_path / "src"
    for i, key in enumerate(KEYS):
        make_h5(src / key, {"robot": "sawyer", "n": i})
    fakeaws.quirks.url_encoding = True
    r = run_deon("up", "s3://lab/", str(src))
    assert r.returncode == 0, r.stderr
    fakeaws.quirks.url_encoding = False
    fakeaws.requests.clear()
    r = run_deon("metadata", "down", "s3://lab/")
    assert r.returncode == 0, r.stderr
    lab = Lab(tmp_path, "", None, None)  # type: ignore[arg-type]
    assert sorted(row["key"] for row in lab.rows()) == sorted(KEYS)
    heads = [rec for rec in fakeaws.requests if rec.kind == "HEAD"]
    assert all(rec.status == 200 for rec in heads), [(h.path, h.status) for h in heads]


# -- 10: a body that ends early with a clean close -------------------------------------------


@pytest.mark.parametrize("size", [46728, 17 * 1024 * 1024 + 3])
def test_a_body_cut_short_with_a_clean_close_is_resumed(
    fakeaws: Any, tmp_path: Path, size: int
) -> None:
    data = os.urandom(size)
    fakeaws.put("lab", "s/obj.bin", data)

    def reference() -> None:
        boto3_s3().download_file("lab", "s/obj.bin", str(tmp_path / "ref.bin"))

    ref, r, ours = twice(
        fakeaws,
        reference,
        ["down", "s3://lab/s/", str(tmp_path / "out")],
        before=lambda: fakeaws.short_body("s/obj.bin"),
    )
    assert r.reference_error is None and (tmp_path / "ref.bin").read_bytes() == data
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "obj.bin").read_bytes() == data
    gets = [rec for rec in ours if rec.kind == "GET"]
    cut = [g for g in gets if g.answered_by == "short_body"]
    assert len(cut) == 1
    # resumed where the cut body stopped, not fetched again from byte 0
    start = int((cut[0].headers.get("range") or "bytes=0-").split("=")[1].split("-")[0])
    resumed = [
        g for g in gets if g is not cut[0] and g.headers.get("range", "").startswith("bytes=")
    ]
    assert any(int(g.headers["range"].split("=")[1].split("-")[0]) > start for g in resumed), [
        g.headers.get("range") for g in gets
    ]
    assert_same_wire(ref, ours, "GET")


# -- 5: S3 refuses a PUT after its headers ---------------------------------------------------


def test_a_put_refused_after_its_headers_is_access_denied_sent_once(
    fakeaws: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "up"
    folder.mkdir()
    (folder / "f.bin").write_bytes(os.urandom(12 << 20))
    fakeaws.early_reply("PUT", times=100)
    ref, r, ours = twice(
        fakeaws,
        lambda: boto3_s3().put_object(
            Bucket="lab", Key="up/f.bin", Body=(folder / "f.bin").read_bytes()
        ),
        ["up", "s3://lab/up/", str(folder)],
        env={**os.environ, "AWS_MAX_ATTEMPTS": "3"},
    )
    assert r.reference_error.response["Error"]["Code"] == "AccessDenied"
    assert r.returncode == 1
    assert_no_traceback(r.stderr)
    assert "access denied" in r.stderr.lower(), r.stderr
    puts = [rec for rec in ours if rec.method == "PUT"]
    assert len(puts) == 1 and puts[0].body_len == 0, [(p.kind, p.body_len) for p in puts]
    assert_same_wire(ref, ours, "PUT")


# -- errors a person can act on --------------------------------------------------------------


@pytest.mark.parametrize(
    "setting, value, says",
    [
        ("AWS_SESSION_TOKEN", "expired-token", ["session token has expired", "AWS_SESSION_TOKEN"]),
        ("AWS_ACCESS_KEY_ID", "AKIANOSUCHKEY", ["AKIANOSUCHKEY", "AWS_ACCESS_KEY_ID"]),
        ("AWS_SECRET_ACCESS_KEY", "wrong", ["SignatureDoesNotMatch", "AWS_SECRET_ACCESS_KEY"]),
    ],
)
def test_credential_errors_are_one_line_naming_the_setting(
    fakeaws: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    setting: str,
    value: str,
    says: list[str],
) -> None:
    for name in "abc":
        fakeaws.put("lab", f"p/{name}.bin", name.encode())
    fakeaws.quirks.expired_tokens.add("expired-token")
    monkeypatch.setenv(setting, value)
    ref, r, ours = twice(
        fakeaws,
        lambda: boto3_s3().get_object(Bucket="lab", Key="p/a.bin"),
        ["pull", "s3://lab/p/a.bin", "s3://lab/p/b.bin", "s3://lab/p/c.bin"],
    )
    assert r.returncode == 2, r.stderr
    line = one_error_line(r.stderr)
    for text in says:
        assert text in line, line
    assert_not_retried(ours, items=3)
    assert wire(ours) <= {
        ("lab.s3.amazonaws.com", p) for p in ("/", "/p/a.bin", "/p/b.bin", "/p/c.bin")
    }
    assert {host for host, _ in wire(ref)} == {host for host, _ in wire(ours)}


def test_a_refused_certificate_is_one_line_naming_aws_ca_bundle(
    fakeaws: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import trustme

    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    monkeypatch.setenv("AWS_CA_BUNDLE", str(other))
    fakeaws.put("lab", "p/a.bin", b"a")
    r = run_deon("pull", "s3://lab/p/a.bin")
    assert r.returncode == 2, r.stderr
    line = one_error_line(r.stderr)
    assert "certificate" in line and "AWS_CA_BUNDLE" in line, line
    assert "lab.s3.amazonaws.com" in line or "AWS" in line, line
    assert not fakeaws.requests  # nothing got through
    assert fakeaws.tls_failures == 1  # and it was not tried again


def test_a_refusing_proxy_is_one_line_naming_https_proxy(
    fakeaws: Any, fake_proxy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fakeaws.put("lab", "p/a.bin", b"a")
    monkeypatch.setenv("HTTPS_PROXY", fake_proxy.url)  # no user and password
    r = run_deon("pull", "s3://lab/p/a.bin")
    assert r.returncode == 2, r.stderr
    line = one_error_line(r.stderr)
    assert "407" in line and "HTTPS_PROXY" in line, line
    assert len(fake_proxy.requests) == 1 and not fake_proxy.requests[0].authorized


@pytest.mark.parametrize(
    "status, code, extra, headers",
    [
        (301, "PermanentRedirect", {"Endpoint": "far.s3.eu-west-1.amazonaws.com"}, True),
        (307, "TemporaryRedirect", {"Endpoint": "far.s3.eu-west-1.amazonaws.com"}, True),
        (400, "AuthorizationHeaderMalformed", {"Region": "eu-west-1"}, False),
        (301, "301", {}, True),  # a HEAD: no body, only the header
    ],
)
def test_a_wrong_region_is_one_line_naming_the_region(
    status: int, code: str, extra: dict[str, str], headers: bool
) -> None:
    """The region answers as the fake AWS sends them, read by the one table."""
    from deon.s3.errors import error_fields, translate_error
    from tests.fakeaws import error_xml

    body = b"" if code.isdigit() else error_xml(code, "...", **extra)
    fields = error_fields(body, status)
    h = {"x-amz-bucket-region": "eu-west-1"} if headers else {}
    e = translate_error(status, fields["Code"], fields["Message"], "s3://far/k", "far", h, fields)
    assert e.fatal and e.exit_status == 2
    assert "bucket far is in region eu-west-1: set AWS_DEFAULT_REGION=eu-west-1" in str(e)


@pytest.mark.parametrize(
    "args, reference",
    [
        (["buckets"], lambda s3: s3.list_buckets()),
        (["metadata", "down", "s3://lab/p/"], lambda s3: s3.list_objects_v2(Bucket="lab")),
    ],
)
def test_an_expired_token_stops_every_command_in_one_line(
    fakeaws: Any, monkeypatch: pytest.MonkeyPatch, args: list[str], reference: Any
) -> None:
    """Bucket-level calls (botocore's) and the mirror (deon's transport) read the same
    table."""
    fakeaws.put("lab", "p/a.bin", b"a")
    fakeaws.quirks.expired_tokens.add("old")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "old")
    ref, r, ours = twice(fakeaws, lambda: reference(boto3_s3()), args)
    assert r.reference_error.response["Error"]["Code"] == "ExpiredToken"
    assert r.returncode == 2, r.stderr
    line = one_error_line(r.stderr)
    assert "session token has expired (ExpiredToken)" in line, line
    assert_not_retried(ours)
    assert {host for host, _ in wire(ours)} <= {"s3.amazonaws.com", "lab.s3.amazonaws.com"}


@pytest.mark.parametrize("answer", [None, "301", "400", "307"])
def test_a_bucket_in_another_region_is_found_as_boto3_finds_it(
    fakeaws: Any, tmp_path: Path, answer: str | None
) -> None:
    """Under each of S3's region answers (AWS's own mix, 301, 400, 307) deon reads the
    object from the bucket's regional endpoint, as boto3 does."""
    fakeaws.create_bucket("far", "eu-west-1")
    fakeaws.put("far", "d/k.bin", b"far away")
    fakeaws.quirks.region_answer = answer
    ref, r, ours = twice(
        fakeaws,
        lambda: boto3_s3().get_object(Bucket="far", Key="d/k.bin")["Body"].read(),
        ["down", "s3://far/d/", str(tmp_path / "out")],
    )
    assert r.reference_error is None
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "k.bin").read_bytes() == b"far away"
    served = {("far.s3.eu-west-1.amazonaws.com", "/d/k.bin")}
    assert {(x.host, x.path) for x in ref if x.kind == "GET" and x.status == 200} == served
    assert {(x.host, x.path) for x in ours if x.kind == "GET" and x.status == 200} == served
    assert_same_wire(ref, ours, "GET")


def test_an_expired_token_stops_a_manifest_pull_in_one_line(
    fakeaws: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`pull --manifest` reads the same error table as `down`: an expired token is said
    once and stops the pull, not once per object."""
    for i in range(5):
        fakeaws.put("lab", f"m/{i}.bin", f"object {i}".encode())
    assert run_deon("metadata", "down", "s3://lab/m/").returncode == 0
    manifest = tmp_path / "sel.manifest.jsonl"
    frozen = run_deon("freeze", "-o", str(manifest))
    assert frozen.returncode == 0, frozen.stderr
    fakeaws.quirks.expired_tokens.add("old")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "old")
    fakeaws.requests.clear()

    r = run_deon("pull", "--manifest", str(manifest))

    assert r.returncode == 2, r.stderr
    line = one_error_line(r.stderr)
    assert "session token has expired (ExpiredToken)" in line, line
    assert r.stderr.count("ExpiredToken") == 1, r.stderr
    assert len([x for x in fakeaws.requests if x.kind == "GET"]) <= 1
