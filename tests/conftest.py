"""Shared fixtures: a moto S3 server on 127.0.0.1 behind a counting proxy, an isolated
environment per test (no real AWS config can leak in), and helpers to make HDF5 files
and run the real `deon` command."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.s3proxy import S3Proxy

BUCKET = "lab"
_DEON = Path(sys.executable).parent / "deon"
DEON_CMD = [str(_DEON)] if _DEON.exists() else [sys.executable, "-m", "deon"]


@pytest.fixture(scope="session")
def moto_server() -> Any:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield host, port
    server.stop()


@pytest.fixture(scope="session")
def proxy(moto_server: tuple[str, int]) -> Any:
    p = S3Proxy(*moto_server).start()
    yield p
    p.stop()


@pytest.fixture
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point every deon and AWS setting at the test's own folder."""
    for var in list(os.environ):
        if var.startswith(("AWS_", "DEON_")):
            monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("DEON_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DEON_CATALOG", str(tmp_path / "catalog.sqlite"))
    monkeypatch.setenv("DEON_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path


@dataclass
class Lab:
    """One test's S3 world: a bucket behind the proxy, and a direct client to moto."""

    tmp: Path
    endpoint: str
    proxy: S3Proxy
    client: Any  # boto3 client straight to moto, bypassing the proxy (not counted)
    bucket: str = BUCKET

    @property
    def data_dir(self) -> Path:
        return self.tmp / "data"

    @property
    def catalog(self) -> Path:
        """The SQLite catalog the `deon` command uses in this test (DEON_CATALOG)."""
        return self.tmp / "catalog.sqlite"

    def rows(self, sql: str = "SELECT * FROM objects ORDER BY key") -> list[dict[str, Any]]:
        """Rows of the catalog, as a person would read them with sqlite3."""
        db = sqlite3.connect(self.catalog)
        db.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in db.execute(sql)]
        finally:
            db.close()

    def put(self, key: str, body: bytes, metadata: dict[str, str] | None = None) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body, Metadata=metadata or {})

    def put_doc(self, key: str, body: bytes, doc: Any, sha256: str | None = None) -> None:
        """An object as deon would upload it: `doc` in deon's metadata headers (inline;
        a document too large for them needs a sidecar, which tests write themselves)."""
        from deon.metadata import wire as meta

        self.put(key, body, meta.encode(doc, sha256, lambda d: "").metadata)

    def get(self, key: str) -> bytes:
        return bytes(self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def head(self, key: str) -> dict[str, Any]:
        return dict(self.client.head_object(Bucket=self.bucket, Key=key))

    def list_keys(self, prefix: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


@pytest.fixture
def lab(
    isolated_env: Path,
    moto_server: tuple[str, int],
    proxy: S3Proxy,
    monkeypatch: pytest.MonkeyPatch,
) -> Lab:
    import boto3

    host, port = moto_server
    urllib.request.urlopen(
        urllib.request.Request(f"http://{host}:{port}/moto-api/reset", method="POST")
    ).read()
    proxy.reset()
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    client = boto3.client("s3", endpoint_url=f"http://{host}:{port}", region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    return Lab(isolated_env, proxy.url, proxy, client)


def make_h5(
    path: Path,
    metadata: Any = None,
    *,
    raw_metadata: Any = None,
    frames: tuple[int, ...] | None = (6, 48, 64, 3),
    seed: int = 0,
) -> Path:
    """A RoboNet-like HDF5 file: image frames, states, actions and attrs['metadata']."""
    import h5py
    import numpy as np

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        if frames is not None:
            f.create_dataset(
                "env/cam0_video/frames", data=rng.integers(0, 255, frames, dtype=np.uint8)
            )
        f.create_dataset("env/state", data=rng.random((frames[0] if frames else 4, 5)))
        f.create_dataset("policy/actions", data=rng.random((frames[0] if frames else 4, 4)))
        if raw_metadata is not None:
            f.attrs["metadata"] = raw_metadata
        elif metadata is not None:
            f.attrs["metadata"] = json.dumps(metadata)
    return path


def run_deon(*args: str, input: str | None = None, timeout: float = 120, **kw: Any) -> Any:
    """Run the installed `deon` command; returns the CompletedProcess (text mode)."""
    return subprocess.run(
        [*DEON_CMD, *args], input=input, capture_output=True, text=True, timeout=timeout, **kw
    )


def run_deon_killed_at_get(lab: Lab, key: str, nth: int, *args: str) -> None:
    """Run `deon ARGS` and kill -9 it as the proxy receives its nth GET of `key`
    (that GET is still answered: the process dies while it arrives)."""
    import signal
    import time

    proc: subprocess.Popen[bytes] | None = None
    gets: list[int] = []

    def kill_at_nth_get(method: str, got: str, query: str) -> None:
        if method == "GET" and got == key:
            gets.append(1)
            if len(gets) == nth and proc is not None:
                proc.send_signal(signal.SIGKILL)
                time.sleep(0.5)

    lab.proxy.rules.before = kill_at_nth_get
    proc = subprocess.Popen([*DEON_CMD, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL


def assert_no_traceback(text: str) -> None:
    assert "Traceback" not in text, text


# -- PostgreSQL -----------------------------------------------------------------------------


def _pg_bindir() -> Path | None:
    import glob
    import shutil

    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A throwaway PostgreSQL server on 127.0.0.1 (the distribution's packages; .ci/run
    installs them). Yields a SQLAlchemy URL without a database name."""
    import shutil
    import socket
    import time

    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip(
            "PostgreSQL is not installed (Debian package postgresql; .ci/run installs "
            "it): skipping the PostgreSQL catalog tests"
        )
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install '.[test]'): skipping PostgreSQL tests")
    import tempfile

    # Not under pytest's temporary folder: that is private to root, and the server runs
    # as the postgres user.
    base = Path(tempfile.mkdtemp(prefix="deon-pg-"))
    base.chmod(0o755)
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    prefix: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL")
        shutil.chown(base, "postgres")
        shutil.chown(sock, "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    init = subprocess.run(
        [
            *prefix,
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        ],
        capture_output=True,
        text=True,
    )
    if init.returncode:
        pytest.skip(f"initdb failed: {init.stderr.strip()[-300:]}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [
            *prefix,
            str(bindir / "postgres"),
            "-D",
            str(data),
            "-k",
            str(sock),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-c",
            "fsync=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=200",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    import psycopg

    while True:
        try:
            psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres").close()
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                pytest.skip("PostgreSQL did not start")
            time.sleep(0.2)
    yield url
    server.terminate()
    server.wait(30)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_catalog(pg_server: str) -> Any:
    """A fresh, empty PostgreSQL database for one test: its URL."""
    import uuid

    import psycopg

    name = f"deon_{uuid.uuid4().hex[:12]}"
    admin = pg_server.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"{pg_server}/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- the recording fake AWS (tests/fakeaws.py) ----------------------------------------------


@pytest.fixture(scope="session")
def fakeaws_server(moto_server: tuple[str, int]) -> Any:
    from tests.fakeaws import FakeAWS

    fake = FakeAWS(*moto_server).start()
    yield fake
    fake.stop()


@pytest.fixture
def fakeaws(
    isolated_env: Path,
    fakeaws_server: Any,
    moto_server: tuple[str, int],
    monkeypatch: pytest.MonkeyPatch,
) -> Any:
    """The fake AWS (tests/fakeaws.py), reset, seen as AWS itself by this process and the
    deon subprocesses it starts (no endpoint URL: `lab.s3.amazonaws.com` is the fake);
    bucket `lab` in us-east-1."""
    host, port = moto_server
    urllib.request.urlopen(
        urllib.request.Request(f"http://{host}:{port}/moto-api/reset", method="POST")
    ).read()
    fakeaws_server.reset()
    fakeaws_server.use(monkeypatch)
    fakeaws_server.create_bucket(BUCKET)
    return fakeaws_server


@pytest.fixture
def fake_proxy(fakeaws: Any) -> Any:
    """An authenticating forward proxy (user `lab`, password `s3cret`) in front of the
    fake AWS."""
    from tests.fakeaws import FakeProxy

    p = FakeProxy("lab", "s3cret").start()
    yield p
    p.stop()
