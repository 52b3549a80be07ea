"""Where deon's requests go and how they are carried, against boto3 on the wire: each
scenario runs through boto3 (the reference) and through deon against the recording fake
AWS (tests/fakeaws.py), and both must reach the same host and path with a valid
signature. Issue 10, items 1-6 and 11, and the features of real buckets (anonymous
requests, Requester Pays, SSE, SHA256 checksums, the user's retry settings)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BUCKET, assert_no_traceback, run_deon
from tests.fakeaws import Record

BODY = b"trajectory bytes " * 64


def boto3_s3(region: str = "us-east-1", **kwargs: Any) -> Any:
    """A boto3 client as the user's configuration makes it (no arguments but these)."""
    import boto3

    return boto3.session.Session().client("s3", region_name=region, **kwargs)


def wire(records: list[Record], kind: str) -> set[tuple[str, str, str]]:
    return {(r.host, r.path, r.style) for r in records if r.kind == kind}


def down_both(fake: Any, tmp_path: Path, *deon_args: str, key: str = "run+1.h5", **kw: Any) -> Any:
    """GET `key` with boto3, then `deon [ARGS] down s3://lab/` into a folder: deon's
    result, and the GETs of each."""
    fake.requests.clear()
    assert boto3_s3().get_object(Bucket=BUCKET, Key=key)["Body"].read() == BODY
    ref = list(fake.requests)
    fake.requests.clear()
    out = tmp_path / "out"
    result = run_deon(*deon_args, "down", f"s3://{BUCKET}/", str(out), **kw)
    result.ours, result.ref, result.out = list(fake.requests), ref, out
    return result


def assert_same_get(result: Any, key: str = "run+1.h5") -> None:
    assert result.returncode == 0, result.stderr
    assert (result.out / key).read_bytes() == BODY
    assert wire(result.ours, "GET") == wire(result.ref, "GET"), (result.ref, result.ours)
    for r in result.ours:
        assert r.signature_ok, (r.kind, r.host, r.path, r.signature_error)


def aws_config(tmp_path: Path, text: str) -> None:
    (tmp_path / "aws-config").write_text(text)


# -- 1. endpoints botocore reads from the environment and ~/.aws/config -----------------------


@pytest.mark.parametrize("where", ["AWS_ENDPOINT_URL_S3", "services"])
def test_a_configured_endpoint_is_used_as_boto3_uses_it(
    fakeaws: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    fakeaws.add_base("minio.lab")
    fakeaws.put(BUCKET, "run+1.h5", BODY)
    if where == "AWS_ENDPOINT_URL_S3":
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://minio.lab")
    else:
        aws_config(
            tmp_path,
            "[default]\nservices = lab\n\n[services lab]\ns3 =\n  endpoint_url = http://minio.lab\n",
        )

    result = down_both(fakeaws, tmp_path)

    assert_same_get(result)
    assert {(r.host, r.style) for r in result.ours} == {("minio.lab", "path")}


# -- 2. proxies ----------------------------------------------------------------------------------


def test_a_proxy_with_credentials_is_given_them(
    fakeaws: Any, fake_proxy: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fakeaws.put(BUCKET, "run+1.h5", BODY)
    monkeypatch.setenv("HTTPS_PROXY", fake_proxy.url_with_credentials)

    result = down_both(fakeaws, tmp_path)

    assert_same_get(result)
    assert fake_proxy.requests and all(r.authorized for r in fake_proxy.requests)


def test_an_https_proxy_is_spoken_to_in_tls(
    fakeaws: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.fakeaws import FakeProxy

    fakeaws.put(BUCKET, "run+1.h5", BODY)
    proxy = FakeProxy("lab", "s3cret", tls=True, ca=fakeaws.tls).start()
    try:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url_with_credentials)
        result = down_both(fakeaws, tmp_path)
    finally:
        proxy.stop()

    assert_same_get(result)
    assert proxy.requests and all(r.authorized for r in proxy.requests)


def test_a_proxy_url_without_a_port_means_port_80_as_for_boto3(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deon.s3.client import Storage
    from deon.s3.transport import Endpoint

    monkeypatch.setenv("HTTPS_PROXY", "http://user:pw@proxy.lab")
    storage = Storage()
    reference = boto3_s3()._endpoint.http_session
    proxy_url = reference._proxy_config.proxy_url_for("https://lab.s3.amazonaws.com/")
    expected = reference._get_proxy_manager(proxy_url).proxy

    session = storage.client._endpoint.http_session
    ep = Endpoint("https", "lab.s3.amazonaws.com", "us-east-1", "/", BUCKET, session)
    pool = storage.http._pool(ep)

    assert (pool.pool.proxy.host, pool.pool.proxy.port) == (expected.host, expected.port)
    assert expected.port == 80
    assert pool.tunnel


def test_no_proxy_exempts_the_endpoint(
    fakeaws: Any, fake_proxy: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fakeaws.put(BUCKET, "run+1.h5", BODY)
    monkeypatch.setenv("HTTPS_PROXY", fake_proxy.url_with_credentials)
    monkeypatch.setenv("NO_PROXY", ".amazonaws.com")

    result = down_both(fakeaws, tmp_path)

    assert_same_get(result)
    assert fake_proxy.requests == []


# -- 3. the CA bundle of ~/.aws/config -----------------------------------------------------------


def test_ca_bundle_in_aws_config_is_used(
    fakeaws: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fakeaws.put(BUCKET, "run+1.h5", BODY)
    monkeypatch.delenv("AWS_CA_BUNDLE")
    aws_config(tmp_path, f"[default]\nca_bundle = {fakeaws.ca_pem}\n")

    result = down_both(fakeaws, tmp_path)

    assert_same_get(result)
    assert all(r.tls for r in result.ours)


# -- 4. an explicit default port -------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://minio.lab:80", "https://s3.us-east-1.amazonaws.com:443"])
def test_an_endpoint_with_its_default_port_is_signed_as_sent(
    fakeaws: Any, tmp_path: Path, url: str
) -> None:
    fakeaws.add_base("minio.lab")
    fakeaws.put(BUCKET, "run+1.h5", BODY)

    out = tmp_path / "out"
    result = run_deon("--endpoint-url", url, "down", f"s3://{BUCKET}/", str(out))

    assert result.returncode == 0, result.stderr
    assert (out / "run+1.h5").read_bytes() == BODY
    gets = fakeaws.requests.find(kind="GET")
    assert gets and all(r.signature_ok for r in gets), [r.signature_error for r in gets]
    assert all(":" not in r.host for r in gets)


# -- 5. Expect: 100-continue -----------------------------------------------------------------------


def test_an_upload_refused_after_its_headers_sends_no_body_and_says_access_denied(
    fakeaws: Any, tmp_path: Path
) -> None:
    from tests.conftest import make_h5

    make_h5(tmp_path / "up" / "a.h5", {"robot": "sawyer"})
    fakeaws.early_reply("PUT", times=1, code="AccessDenied")

    result = run_deon("up", f"s3://{BUCKET}/x", str(tmp_path / "up"))

    assert result.returncode == 1, result.stderr
    assert_no_traceback(result.stderr)
    assert "access denied" in result.stderr.lower()
    puts = fakeaws.requests.find(kind="PUT")
    assert len(puts) == 1, [(r.status, r.body_len) for r in puts]
    assert puts[0].headers.get("expect") == "100-continue"
    assert puts[0].body_len == 0


def test_uploads_ask_100_continue_and_send_the_body_after_it(fakeaws: Any, tmp_path: Path) -> None:
    from tests.conftest import make_h5

    path = make_h5(tmp_path / "up" / "a.h5", {"robot": "sawyer"})

    result = run_deon("up", f"s3://{BUCKET}/x", str(tmp_path / "up"))

    assert result.returncode == 0, result.stderr
    (put,) = fakeaws.requests.find(kind="PUT")
    assert put.headers.get("expect") == "100-continue"
    assert put.body_len == path.stat().st_size
    assert fakeaws.get(BUCKET, "x/a.h5") == path.read_bytes()


# -- 6. connect_timeout ----------------------------------------------------------------------------


def _black_hole() -> tuple[socket.socket, list[socket.socket]]:
    """A port on 127.0.0.1 whose connects never complete: a listener that accepts
    nothing, its backlog filled."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    fillers = []
    for _ in range(8):
        s = socket.socket()
        s.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            s.connect(server.getsockname())
        fillers.append(s)
    return server, fillers


def test_connect_timeout_bounds_a_black_holed_connect(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deon.errors import StorageError
    from deon.s3.client import Storage

    server, fillers = _black_hole()
    port = server.getsockname()[1]
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    storage = Storage(endpoint_url=f"http://127.0.0.1:{port}", connect_timeout=0.5)
    monkeypatch.setattr(storage, "_bucket_region", lambda bucket: "us-east-1")
    outcome: list[BaseException] = []

    def head() -> None:
        try:
            storage.head(BUCKET, "k")
        except BaseException as e:  # noqa: BLE001 - handed to the test
            outcome.append(e)

    t = threading.Thread(target=head, daemon=True)
    t.start()
    t.join(20)  # the default (60 s) would still be waiting
    try:
        assert not t.is_alive(), "the connect was not given up"
        assert outcome and isinstance(outcome[0], StorageError), outcome
        assert "cannot reach S3" in str(outcome[0])
    finally:
        for s in (server, *fillers):
            s.close()


# -- 11. addressing style, accelerate, FIPS, dualstack, endpoint paths, regions --------------------


@pytest.mark.parametrize(
    ("config", "host", "style"),
    [
        ("s3 =\n  addressing_style = path\n", "s3.amazonaws.com", "path"),
        ("s3 =\n  use_accelerate_endpoint = true\n", "lab.s3-accelerate.amazonaws.com", "virtual"),
        ("use_fips_endpoint = true\n", "lab.s3-fips.us-east-1.amazonaws.com", "virtual"),
        ("use_dualstack_endpoint = true\n", "lab.s3.dualstack.us-east-1.amazonaws.com", "virtual"),
    ],
    ids=["addressing_style", "accelerate", "fips", "dualstack"],
)
def test_endpoint_settings_of_aws_config_are_honoured(
    fakeaws: Any, tmp_path: Path, config: str, host: str, style: str
) -> None:
    fakeaws.put(BUCKET, "run+1.h5", BODY)
    aws_config(tmp_path, "[default]\n" + config)

    result = down_both(fakeaws, tmp_path)

    assert_same_get(result)
    assert {(r.host, r.style) for r in result.ours if r.kind == "GET"} == {(host, style)}


def test_virtual_addressing_on_a_custom_endpoint(fakeaws: Any, tmp_path: Path) -> None:
    fakeaws.add_base("minio.lab")
    fakeaws.put(BUCKET, "run+1.h5", BODY)
    aws_config(tmp_path, "[default]\ns3 =\n  addressing_style = virtual\n")

    result = down_both(fakeaws, tmp_path, "--endpoint-url", "http://minio.lab")

    assert result.returncode == 0, result.stderr
    gets = [r for r in result.ours if r.kind == "GET"]
    assert {(r.host, r.style) for r in gets} == {("lab.minio.lab", "virtual")}


def test_a_path_in_the_endpoint_url_is_kept(fakeaws: Any, tmp_path: Path) -> None:
    fakeaws.add_base("gw.lab", prefix="/s3")
    fakeaws.put(BUCKET, "run+1.h5", BODY)
    ref = boto3_s3(endpoint_url="http://gw.lab/s3")
    fakeaws.requests.clear()
    assert ref.get_object(Bucket=BUCKET, Key="run+1.h5")["Body"].read() == BODY
    expected = wire(list(fakeaws.requests), "GET")
    fakeaws.requests.clear()

    out = tmp_path / "out"
    result = run_deon("--endpoint-url", "http://gw.lab/s3", "down", f"s3://{BUCKET}/", str(out))

    assert result.returncode == 0, result.stderr
    assert (out / "run+1.h5").read_bytes() == BODY
    assert wire(list(fakeaws.requests), "GET") == expected
    assert {r.path for r in fakeaws.requests.find(kind="GET")} == {"/s3/lab/run%2B1.h5"}


def test_the_readme_endpoint_example_works_with_another_default_region(
    fakeaws: Any, tmp_path: Path
) -> None:
    fakeaws.create_bucket("west-lab", region="us-west-2")
    fakeaws.put("west-lab", "a.h5", BODY)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.toml").write_text(
        'endpoint_url = "https://s3.us-west-2.amazonaws.com"\n'
    )

    out = tmp_path / "out"
    result = run_deon("down", "s3://west-lab/", str(out))  # AWS_DEFAULT_REGION=us-east-1

    assert result.returncode == 0, result.stderr
    assert (out / "a.h5").read_bytes() == BODY
    (get,) = fakeaws.requests.find(kind="GET")
    assert get.signature_ok and get.scope_region == "us-west-2"
    assert get.host == "s3.us-west-2.amazonaws.com"


# -- features of real buckets --------------------------------------------------------------------


@pytest.mark.parametrize("how", ["flag", "config"])
def test_no_sign_request_reads_a_public_bucket_without_credentials(
    fakeaws: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    fakeaws.put(BUCKET, "run+1.h5", BODY, ACL="public-read")
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var)
    args: list[str] = []
    if how == "flag":
        args = ["--no-sign-request"]
    else:
        (tmp_path / "config").mkdir()
        (tmp_path / "config" / "config.toml").write_text("no_sign_request = true\n")

    out = tmp_path / "out"
    result = run_deon(*args, "down", f"s3://{BUCKET}/", str(out))

    assert result.returncode == 0, result.stderr
    assert (out / "run+1.h5").read_bytes() == BODY
    assert fakeaws.requests and not any(r.signed for r in fakeaws.requests)


@pytest.mark.parametrize("how", ["flag", "config"])
def test_request_payer_goes_with_every_request(fakeaws: Any, tmp_path: Path, how: str) -> None:
    fakeaws.put(BUCKET, "run+1.h5", BODY)
    args: list[str] = []
    if how == "flag":
        args = ["--request-payer", "requester"]
    else:
        (tmp_path / "config").mkdir()
        (tmp_path / "config" / "config.toml").write_text('request_payer = "requester"\n')

    out = tmp_path / "out"
    result = run_deon(*args, "down", f"s3://{BUCKET}/", str(out))

    assert result.returncode == 0, result.stderr
    assert fakeaws.requests
    for r in fakeaws.requests:
        assert r.headers.get("x-amz-request-payer") == "requester", r.kind
        assert r.signature_ok and "x-amz-request-payer" in r.headers["authorization"]


@pytest.mark.parametrize("how", ["flag", "config"])
def test_up_sse_kms_and_a_sha256_checksum(fakeaws: Any, tmp_path: Path, how: str) -> None:
    from tests.conftest import make_h5

    path = make_h5(tmp_path / "up" / "a.h5", {"robot": "sawyer"})
    args = ["--sse", "aws:kms", "--sse-kms-key-id", "alias/lab"]
    if how == "config":
        args = []
        (tmp_path / "config").mkdir()
        (tmp_path / "config" / "config.toml").write_text(
            '[up]\nsse = "aws:kms"\nsse_kms_key_id = "alias/lab"\n'
        )

    result = run_deon("up", *args, f"s3://{BUCKET}/x", str(tmp_path / "up"))

    assert result.returncode == 0, result.stderr
    (put,) = fakeaws.requests.find(kind="PUT")
    assert put.headers["x-amz-server-side-encryption"] == "aws:kms"
    assert put.headers["x-amz-server-side-encryption-aws-kms-key-id"] == "alias/lab"
    digest = base64.b64encode(hashlib.sha256(path.read_bytes()).digest()).decode()
    assert put.headers["x-amz-checksum-sha256"] == digest
    assert put.signature_ok


def test_multipart_uploads_declare_sha256_per_part(fakeaws: Any, tmp_path: Path) -> None:
    import os

    data = os.urandom(17 * 1024 * 1024)  # over the multipart threshold (16 MiB)
    (tmp_path / "up").mkdir()
    (tmp_path / "up" / "big.bin").write_bytes(data)

    result = run_deon("up", "--sse", "AES256", f"s3://{BUCKET}/x", str(tmp_path / "up"))

    assert result.returncode == 0, result.stderr
    (create,) = fakeaws.requests.find(kind="CREATE_MULTIPART")
    assert create.headers["x-amz-checksum-algorithm"] == "SHA256"
    assert create.headers["x-amz-server-side-encryption"] == "AES256"
    parts = sorted(
        fakeaws.requests.find(kind="UPLOAD_PART"), key=lambda r: int(r.param("partNumber") or 0)
    )
    sizes = [r.body_len for r in parts]
    offsets = [sum(sizes[:i]) for i in range(len(sizes))]
    for r, start, size in zip(parts, offsets, sizes, strict=True):
        expected = base64.b64encode(hashlib.sha256(data[start : start + size]).digest()).decode()
        assert r.headers["x-amz-checksum-sha256"] == expected
    assert fakeaws.get(BUCKET, "x/big.bin") == data


# -- retries as the user configured them ------------------------------------------------


def test_max_attempts_of_aws_config_is_honoured(fakeaws: Any, tmp_path: Path) -> None:
    fakeaws.put(BUCKET, "run+1.h5", BODY)
    aws_config(tmp_path, "[default]\nmax_attempts = 2\n")
    fakeaws.fail("GET", 500, "InternalError", times=10)

    out = tmp_path / "out"
    result = run_deon("down", f"s3://{BUCKET}/", str(out))

    assert result.returncode == 1, result.stderr
    assert len(fakeaws.requests.find(kind="GET")) == 2


# -- TLS: client certificates, refused certificates ------------------------------------


def _mutual_tls_server(fake: Any) -> tuple[Any, list[bool]]:
    """An HTTPS server on 127.0.0.1 ("localhost" in the fake's certificate) that wants a
    client certificate signed by the fake's CA and answers every HEAD 200."""
    import ssl
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[bool] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:
            seen.append(bool(self.connection.getpeercert()))
            self.send_response(200)
            self.send_header("Content-Length", "3")
            self.send_header("ETag", '"abc"')
            self.end_headers()

    ctx = fake.tls.server_context()
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=str(fake.ca_pem))
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


def test_a_client_certificate_is_presented(
    fakeaws: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deon.errors import DeonError
    from deon.s3.client import Storage

    pem = tmp_path / "client.pem"
    fakeaws.tls.ca.issue_cert("deon-client").private_key_and_cert_chain_pem.write_to_path(str(pem))
    server, seen = _mutual_tls_server(fakeaws)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    url = f"https://localhost:{server.server_address[1]}"
    try:
        with_cert = Storage(endpoint_url=url, client_cert=str(pem))
        monkeypatch.setattr(with_cert, "_bucket_region", lambda bucket: "us-east-1")
        assert with_cert.head(BUCKET, "k").size == 3
        assert seen == [True]

        without = Storage(endpoint_url=url)
        monkeypatch.setattr(without, "_bucket_region", lambda bucket: "us-east-1")
        with pytest.raises(DeonError):
            without.head(BUCKET, "k")
    finally:
        server.shutdown()
        server.server_close()


def test_a_refused_certificate_is_not_retried(
    fakeaws: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deon.errors import ConfigError
    from deon.s3 import transport
    from deon.s3.client import Storage

    monkeypatch.delenv("AWS_CA_BUNDLE")  # the fake's CA is then unknown
    connects: list[int] = []
    real = transport._Pool.get

    def counting(self: Any) -> Any:
        connects.append(1)
        return real(self)

    monkeypatch.setattr(transport._Pool, "get", counting)
    storage = Storage()
    monkeypatch.setattr(storage, "_bucket_region", lambda bucket: "us-east-1")

    with pytest.raises(ConfigError) as refused:
        storage.head(BUCKET, "k")

    assert len(connects) == 1
    assert "ca_bundle" in str(refused.value) and "AWS_CA_BUNDLE" in str(refused.value)


def test_a_signature_version_deon_cannot_follow_is_refused(fakeaws: Any, tmp_path: Path) -> None:
    aws_config(tmp_path, "[default]\ns3 =\n  signature_version = s3\n")

    result = run_deon("down", f"s3://{BUCKET}/", str(tmp_path / "out"))

    assert result.returncode == 2, result.stderr
    assert_no_traceback(result.stderr)
    assert "signature_version" in result.stderr and "s3v4" in result.stderr


# -- the README names every setting botocore reads --------------------------------------------


def test_the_readme_says_what_deon_does_with_every_botocore_setting() -> None:
    import re

    from botocore.configprovider import (
        BOTOCORE_DEFAUT_SESSION_VARIABLES,
        DEFAULT_S3_CONFIG_VARS,
    )

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("### AWS settings", 1)[1].split("\n## ", 1)[0]
    wildcards = re.findall(r"`([A-Za-z0-9_]+)\*`", section)

    def named(name: str) -> bool:
        return (
            f"`{name}`" in section
            or f"{name}`" in section
            or any(name.startswith(w) for w in wildcards)
        )

    missing = []
    for config_name, env, *_ in [
        *BOTOCORE_DEFAUT_SESSION_VARIABLES.values(),
        *DEFAULT_S3_CONFIG_VARS.values(),
    ]:
        keys = config_name if isinstance(config_name, list) else [config_name]
        for key in keys:
            if key is None:
                continue
            key = key[1] if isinstance(key, tuple) else key
            if not named(key):
                missing.append(key)
        for var in env if isinstance(env, list) else [env]:
            if var is not None and not named(var):
                missing.append(var)
    assert not missing, missing


def test_ignore_configured_endpoint_urls_is_honoured(
    fakeaws: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fakeaws.put(BUCKET, "run+1.h5", BODY)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://nowhere.invalid")
    monkeypatch.setenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true")

    result = down_both(fakeaws, tmp_path)

    assert_same_get(result)
    assert {r.host for r in result.ours} == {"lab.s3.amazonaws.com"}
