"""Planning of up, down and pull, in process against an in-memory storage (tests/fakes.py):
what each run asks of S3, and what it decides. Fast tier: no server, no subprocess."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from deon.metadata import wire as meta
from deon.results import Status
from deon.transfer import sync
from deon.transfer.engine import Engine
from deon.transfer.state import State
from deon.uri import S3Address
from tests.conftest import make_h5
from tests.fakes import FakeStorage


@pytest.fixture
def storage() -> FakeStorage:
    return FakeStorage()


@pytest.fixture
def state(isolated_env: Path) -> State:
    s = State()
    yield s
    s.close()


def run_up(storage: FakeStorage, state: State, local: Path, **kw: object) -> sync.SyncResult:
    with Engine(storage, 4, None, state) as engine:
        return sync.up(engine, state, S3Address("lab", "alice/"), local, **kw)  # type: ignore[arg-type]


def run_down(storage: FakeStorage, local: Path, **kw: object) -> sync.SyncResult:
    with Engine(storage, 4, None, State()) as engine:
        return sync.down(engine, S3Address("lab", "alice/"), local, **kw)  # type: ignore[arg-type]


def test_up_sends_each_new_file_once_with_its_metadata_and_sha256(
    storage: FakeStorage, state: State, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    make_h5(src / "a.h5", {"robot": "sawyer", "img_T": 30})
    make_h5(src / "sub" / "b.h5", {"robot": "franka"}, seed=1)
    (src / "notes.txt").write_text("not hdf5")

    result = run_up(storage, state, src)

    assert result.count(Status.TRANSFERRED) == 3 and not result.failed
    assert storage.calls["PUT"] == 3
    assert sorted(storage.objects) == ["alice/a.h5", "alice/notes.txt", "alice/sub/b.h5"]
    stored = storage.objects["alice/a.h5"]
    assert stored.body == (src / "a.h5").read_bytes()
    decoded = meta.decode(stored.metadata)
    assert decoded.document == {"robot": "sawyer", "img_T": 30}
    assert decoded.sha256 == hashlib.sha256(stored.body).hexdigest()
    assert any(getattr(w, "code", None) for w in result.warnings)  # the not-HDF5 summary


def test_up_again_sends_nothing_for_unchanged_files(
    storage: FakeStorage, state: State, tmp_path: Path
) -> None:
    make_h5(tmp_path / "src" / "a.h5", {"robot": "sawyer"})
    run_up(storage, state, tmp_path / "src")
    storage.calls.clear()

    again = run_up(storage, state, tmp_path / "src")

    assert again.count(Status.UNCHANGED) == 1
    assert storage.calls["PUT"] == 0 and storage.calls["COPY"] == 0


def test_a_dry_run_plans_and_sends_nothing(
    storage: FakeStorage, state: State, tmp_path: Path
) -> None:
    make_h5(tmp_path / "src" / "a.h5", {"robot": "sawyer"})
    result = run_up(storage, state, tmp_path / "src", dry_run=True)
    assert result.count(Status.PLANNED) == 1
    assert storage.objects == {} and storage.calls["PUT"] == 0


def test_up_refuses_someone_elses_different_object_unless_overwrite(
    storage: FakeStorage, state: State, tmp_path: Path
) -> None:
    storage.add("alice/a.h5", b"a colleague's bytes")
    make_h5(tmp_path / "src" / "a.h5", {"robot": "sawyer"})

    refused = run_up(storage, state, tmp_path / "src")

    assert [o.status for o in refused.outcomes] == [Status.FAILED]
    assert "--overwrite" in refused.outcomes[0].message
    assert storage.objects["alice/a.h5"].body == b"a colleague's bytes"

    replaced = run_up(storage, state, tmp_path / "src", overwrite=True)
    assert [o.status for o in replaced.outcomes] == [Status.REPLACED]
    assert storage.objects["alice/a.h5"].body == (tmp_path / "src" / "a.h5").read_bytes()


def _deon_object(storage: FakeStorage, key: str, body: bytes, doc: object) -> None:
    sha256 = hashlib.sha256(body).hexdigest()
    storage.add(key, body, meta.encode(doc, sha256, lambda d: "").metadata)


def test_down_fetches_each_object_once_then_nothing(
    storage: FakeStorage, isolated_env: Path, tmp_path: Path
) -> None:
    for i in range(5):
        _deon_object(storage, f"alice/t{i}.h5", f"bytes {i}".encode() * 100, {"i": i})

    first = run_down(storage, tmp_path / "out")

    assert first.count(Status.TRANSFERRED) == 5 and storage.calls["GET"] == 5
    assert (tmp_path / "out" / "t3.h5").read_bytes() == b"bytes 3" * 100
    storage.calls.clear()

    second = run_down(storage, tmp_path / "out")

    assert second.count(Status.UNCHANGED) == 5
    assert storage.calls["GET"] == 0 and storage.calls["HEAD"] == 0


def test_down_refetches_a_changed_object_only(
    storage: FakeStorage, isolated_env: Path, tmp_path: Path
) -> None:
    for i in range(3):
        _deon_object(storage, f"alice/t{i}.h5", f"v1 {i}".encode(), {"i": i})
    run_down(storage, tmp_path / "out")
    _deon_object(storage, "alice/t1.h5", b"v2 of one", {"i": 1})
    storage.calls.clear()

    result = run_down(storage, tmp_path / "out")

    assert storage.calls["GET"] == 1
    assert (tmp_path / "out" / "t1.h5").read_bytes() == b"v2 of one"
    assert result.count(Status.UNCHANGED) == 2


def test_pull_names_a_missing_object_and_fetches_the_rest(
    storage: FakeStorage, isolated_env: Path, tmp_path: Path
) -> None:
    _deon_object(storage, "alice/here.h5", b"here", {"x": 1})
    with Engine(storage, 2, None, State()) as engine:
        result = sync.pull(
            engine,
            [S3Address("lab", "alice/here.h5"), S3Address("lab", "alice/gone.h5")],
            tmp_path / "data",
        )
    failed = {o.uri: o.message for o in result.failed}
    assert list(failed) == ["s3://lab/alice/gone.h5"]
    assert (tmp_path / "data" / "lab" / "alice" / "here.h5").read_bytes() == b"here"
    assert json.dumps(sorted(o.status.value for o in result.outcomes)) == json.dumps(
        ["failed", "transferred"]
    )


@pytest.mark.parametrize("size", [3 * 1024 * 1024 + 5, 20 * 1024 * 1024 + 5])
def test_downloads_reach_the_disk_in_small_writes_and_verify(
    storage: FakeStorage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    """A large file goes to disk in writes of at most 64 KiB (engine.WRITE_SIZE: Linux
    makes 1 MiB writes dear), whole or by ranges (above 16 MiB), and still lands whole
    and checked against its sha256."""
    import os

    body = os.urandom(size)
    storage.add("alice/big.h5", body, {meta.SHA256_KEY: hashlib.sha256(body).hexdigest()})
    sizes: list[int] = []
    real_write, real_pwrite = os.write, os.pwrite
    monkeypatch.setattr(
        os, "write", lambda fd, data: sizes.append(len(data)) or real_write(fd, data)
    )
    monkeypatch.setattr(
        os, "pwrite", lambda fd, data, off: sizes.append(len(data)) or real_pwrite(fd, data, off)
    )

    result = run_down(storage, tmp_path / "d")

    assert result.count(Status.TRANSFERRED) == 1 and not result.failed
    assert (tmp_path / "d" / "big.h5").read_bytes() == body
    assert sum(sizes) >= size and max(sizes) <= 64 * 1024


def test_a_ranged_download_whose_bytes_differ_from_its_sha256_is_refused(
    storage: FakeStorage, tmp_path: Path
) -> None:
    body = bytes(20 * 1024 * 1024 + 5)
    storage.add("alice/big.h5", body, {meta.SHA256_KEY: hashlib.sha256(b"other").hexdigest()})

    result = run_down(storage, tmp_path / "d")

    assert len(result.failed) == 1 and "sha256" in (result.failed[0].message or "")
    assert not (tmp_path / "d" / "big.h5").exists()
