"""Parallel listing by key ranges (deon/s3/listing.py): the pages come out exactly as
one sequential ListObjectsV2 gives them — against the synthetic endpoint (flat, in
folders, sparse) and, differentially, against boto3's paginator on moto with keys
whose byte order is not alphabetical — and ranges are listed at once."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

from deon.s3.client import Storage
from deon.s3.listing import boundaries, parallel_pages
from tests.conftest import Lab
from tests.synthetic_s3 import BUCKET, Objects, Server, start


@pytest.fixture
def creds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "synthetic")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "synthetic")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def serve(objects: Objects, **options: float) -> Iterator[Server]:
    server = start(objects, **options)
    try:
        yield server
    finally:
        server.shutdown()


def keys(storage: Storage, bucket: str, prefix: str) -> list[str]:
    return [o.key for page in storage.iter_pages(bucket, prefix) for o in page]


@pytest.mark.parametrize(
    "objects",
    [
        Objects(12_345),
        Objects(12_345, folders=40),
        Objects(9_999, folders=3, gone_every=3),
        Objects(2_000),
        Objects(1_001),
    ],
    ids=["flat", "folders", "sparse", "two-pages", "one-more"],
)
def test_the_pages_are_those_of_one_sequential_listing(creds: None, objects: Objects) -> None:
    for server in serve(objects, delay=0.005):
        storage = Storage(endpoint_url=server.url)

        got = keys(storage, BUCKET, "many/")

        assert got == [objects.key(i) for i in range(objects.count) if objects.exists(i)]
        if objects.count >= 9_999:
            assert server.peak_inflight > 1  # ranges were listed at once


def test_a_prefix_inside_the_names_is_listed_whole_and_only(creds: None) -> None:
    objects = Objects(30_000)
    for server in serve(objects):
        storage = Storage(endpoint_url=server.url)

        got = keys(storage, BUCKET, "many/traj_00001")

        assert got == [objects.key(i) for i in range(10_000, 20_000)]


def test_a_server_that_ignores_start_after_is_listed_sequentially() -> None:
    all_keys = [f"k/{i:05d}" for i in range(5_500)]

    class Item:
        def __init__(self, key: str) -> None:
            self.key = key

    def list_page(token: str | None, start_after: str | None) -> tuple[list[Any], str | None]:
        at = int(token) if token else 0  # start_after ignored
        page = [Item(k) for k in all_keys[at : at + 1000]]
        return page, (str(at + 1000) if at + 1000 < len(all_keys) else None)

    got = [o.key for page in parallel_pages(list_page, "k/", width=8) for o in page]

    assert got == all_keys


def test_cuts_fall_after_the_page_and_before_the_range_end() -> None:
    last = "many/traj_000001999.h5"
    cuts = boundaries("many/", "many/traj_000001000.h5", last, None)
    # blocks of 10 and 100 pages, not of one
    assert cuts[0] == "many/traj_00001" and "many/traj_0001" in cuts
    assert "many/traj_000002" not in cuts and cuts == sorted(cuts)
    hi = "many/traj_00005"
    bounded = boundaries("many/", "many/traj_000001000.h5", last, hi)
    assert bounded and all(last < c < hi for c in bounded)
    # a range that moved on to another folder is cut by folders too
    folders = boundaries(
        "many/", "many/f00004/traj_000001000.h5", "many/f00004/traj_000001999.h5", None, 10
    )
    assert "many/f00005" in folders and "many/f00009" in folders


def test_against_boto3_on_moto_with_keys_in_byte_order(lab: Lab, monkeypatch: Any) -> None:
    rng = random.Random(5)
    alphabet = "aZ09_-. /é\u00ffｚ\U0001f600"
    names = {
        "w/" + "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6))) + f"{i:04d}"
        for i in range(2_600)
    }
    names |= {f"w/d{j}/{i:03d}.h5" for j in range(3) for i in range(300)}
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: lab.client.put_object(Bucket="lab", Key=k, Body=b""), names))
    monkeypatch.setenv("DEON_LIST_WIDTH", "8")
    storage = Storage(endpoint_url=lab.endpoint)

    got = keys(storage, "lab", "w/")

    pages = lab.client.get_paginator("list_objects_v2").paginate(Bucket="lab", Prefix="w/")
    assert got == [o["Key"] for page in pages for o in page.get("Contents", [])]
    assert len(got) == len(names)


def test_width_one_lists_page_after_page(creds: None, monkeypatch: Any) -> None:
    monkeypatch.setenv("DEON_LIST_WIDTH", "1")
    objects = Objects(5_000)
    for server in serve(objects, delay=0.005):
        storage = Storage(endpoint_url=server.url)

        assert keys(storage, BUCKET, "many/") == [objects.key(i) for i in range(5_000)]
        assert server.counts["GET"] == 5 and server.peak_inflight == 1
