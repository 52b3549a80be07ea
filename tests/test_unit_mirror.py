"""The mirror's batching and incrementality, in process against an in-memory storage
(tests/fakes.py): how many HEADs a refresh costs and how its writes are grouped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deon.catalog.db import open_catalog
from deon.metadata import wire as meta
from deon.mirror import refresh
from deon.uri import S3Address
from tests.fakes import FakeStorage

N = 1234


@pytest.fixture
def storage() -> FakeStorage:
    s = FakeStorage(page_size=100)
    for i in range(N):
        s.add(f"p/{i:05d}.h5", f"{i}".encode(), meta.encode({"i": i}, None, lambda d: "").metadata)
    return s


def mirror(storage: FakeStorage, db: Path, writes: list[tuple[int, int]] | None = None) -> Any:
    with open_catalog(str(db)) as catalog:
        if writes is not None:
            real = catalog.write

            def counting(rows: Any, deletes: Any = ()) -> Any:
                writes.append((len(rows), len(deletes)))
                return real(rows, deletes)

            catalog.write = counting  # type: ignore[method-assign]
        return refresh.mirror(catalog, storage, [S3Address("lab", "p/")], jobs=8, snapshots=False)


def rows(db: Path) -> dict[str, Any]:
    import sqlite3

    con = sqlite3.connect(db)
    try:
        return dict(con.execute("SELECT key, i FROM objects").fetchall())
    finally:
        con.close()


def test_a_cold_mirror_heads_each_object_once_and_writes_in_batches(
    storage: FakeStorage, tmp_path: Path
) -> None:
    writes: list[tuple[int, int]] = []
    result = mirror(storage, tmp_path / "c.sqlite", writes)

    assert result.new == N and not result.failed
    assert storage.calls["HEAD"] == N
    assert len(rows(tmp_path / "c.sqlite")) == N
    written = [n for n, _ in writes if n]
    assert sum(written) == N
    # a transaction per batch (a few rows over BATCH_ROWS: those finished meanwhile)
    assert max(written) <= 2 * refresh.BATCH_ROWS
    assert len(written) < N / 10  # nor one per object


def test_an_unchanged_prefix_costs_no_head(storage: FakeStorage, tmp_path: Path) -> None:
    mirror(storage, tmp_path / "c.sqlite")
    storage.calls.clear()

    result = mirror(storage, tmp_path / "c.sqlite")

    assert result.unchanged == N and result.new == result.changed == result.deleted == 0
    assert storage.calls["HEAD"] == 0 and storage.calls["GET"] == 0


def test_a_refresh_heads_only_what_changed_and_drops_what_is_gone(
    storage: FakeStorage, tmp_path: Path
) -> None:
    db = tmp_path / "c.sqlite"
    mirror(storage, db)
    storage.add("p/00007.h5", b"new bytes", meta.encode({"i": 700}, None, lambda d: "").metadata)
    del storage.objects["p/00008.h5"]
    storage.add("p/99999.h5", b"added", meta.encode({"i": -1}, None, lambda d: "").metadata)
    storage.calls.clear()

    result = mirror(storage, db)

    assert (result.new, result.changed, result.deleted) == (1, 1, 1)
    assert storage.calls["HEAD"] == 2
    got = rows(db)
    assert got["p/00007.h5"] == 700 and got["p/99999.h5"] == -1 and "p/00008.h5" not in got
