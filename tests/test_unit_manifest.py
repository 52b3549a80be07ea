"""The manifest format on its own (deon.manifest.format): no server, no catalog."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deon.manifest.format import Entry, ManifestError, Source, build, diff, iso_time, parse

keys = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30)
entries = st.lists(
    st.builds(
        Entry,
        bucket=st.sampled_from(["lab", "lab-2", "z"]),
        key=keys,
        size=st.integers(0, 2**63),
        etag=st.text("0123456789abcdef-", min_size=1, max_size=40),
        sha256=st.none() | st.text("0123456789abcdef", min_size=64, max_size=64),
        last_modified=st.just("2027-03-01T12:00:00.000Z"),
        version_id=st.none() | st.text(min_size=1, max_size=20),
    ),
    unique_by=lambda e: (e.bucket, e.key),
    max_size=20,
)


@given(entries)
def test_any_entries_round_trip_in_one_ascii_line_each(es: list[Entry]) -> None:
    m = build(es, query={"where": None}, sources=[Source("s3://lab/", None)], created=None)
    data = m.to_bytes()

    back = parse(data)

    assert data.isascii() and data.count(b"\n") == len(es) + 1
    assert back.entries == sorted(es, key=lambda e: (e.bucket, e.key))
    assert (
        back.digest == m.digest == "sha256:" + hashlib.sha256(data.split(b"\n", 1)[1]).hexdigest()
    )
    assert parse(back.to_bytes()).to_bytes() == data  # one selection, one file


def test_times_are_utc_milliseconds_with_z() -> None:
    assert iso_time("2027-03-01 12:00:00.123456") == "2027-03-01T12:00:00.123Z"
    assert iso_time("2027-03-01T13:00:00+01:00") == "2027-03-01T12:00:00.000Z"
    assert iso_time(None) is None


def _e(
    key: str, sha: str | None = "a" * 64, etag: str = "e1", size: int = 3, vid: str | None = None
) -> Entry:
    return Entry("lab", key, size, etag, sha, "2027-03-01T12:00:00.000Z", vid)


def test_changed_means_other_bytes() -> None:
    a = [
        _e("same"),
        _e("new-version", vid="v1"),
        _e("other"),
        _e("etag-only", sha=None),
        _e("gone"),
    ]
    b = [
        _e("same", etag="e2"),  # another upload of the same bytes (another part size)
        _e("new-version", vid="v2"),
        _e("other", sha="b" * 64),
        _e("etag-only", sha=None, etag="e2"),
        _e("added"),
    ]

    d = diff(a, b)

    assert [e.key for e in d.added] == ["added"] and [e.key for e in d.removed] == ["gone"]
    assert sorted(x.key for x, _ in d.changed) == ["etag-only", "other"]
    assert d.unchanged == 2 and d.differs


def test_a_key_selected_twice_is_refused() -> None:
    with pytest.raises(ManifestError, match="selected twice"):
        build([_e("k"), _e("k")], query={"where": None}, sources=[], created=None)


def test_another_version_of_the_format_is_refused_by_name() -> None:
    data = build([_e("k")], query={"where": None}, sources=[], created=None).to_bytes()
    head, rest = data.split(b"\n", 1)
    doc = json.loads(head)
    doc["version"] = 2
    with pytest.raises(ManifestError, match="manifest version 2, this deon reads version 1"):
        parse(json.dumps(doc).encode() + b"\n" + rest)
    with pytest.raises(ManifestError, match="cut short"):
        parse(data[:-1])
