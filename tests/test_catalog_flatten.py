"""Flattening metadata documents into catalog columns (deon/catalog/flatten.py), and the
columns a real SQLite catalog ends up with when those documents are written."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import re
import shutil
import sqlite3
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deon.catalog import flatten as fl
from deon.catalog.db import ObjectRow, open_catalog
from deon.catalog.models import FIXED_COLUMNS

SAFE = re.compile(r"^[a-z_][a-z0-9_]*$")
HEX6 = r"[0-9a-f]{6}"
ALL_KINDS = (None, *fl.KINDS)
FIXED = set(FIXED_COLUMNS)
WHEN = dt.datetime(2024, 5, 1, 12, 0, 0)


# -- flatten: examples ------------------------------------------------------------------


def test_nested_objects_are_joined_with_underscore() -> None:
    flat = fl.flatten({"gripper": {"type": "x", "fingers": 2}, "robot": "sawyer"})
    assert flat == {
        ("gripper", "type"): ("x", fl.KIND_TEXT),
        ("gripper", "fingers"): (2, fl.KIND_INTEGER),
        ("robot",): ("sawyer", fl.KIND_TEXT),
    }
    assert fl.base_name(("gripper", "type")) == "gripper_type"


def test_lists_and_empty_objects_become_json_text() -> None:
    doc = {"classes": ["cup", "spoon", 3, None], "extra": {}, "nested": [{"a": [1, 2]}]}
    flat = fl.flatten(doc)
    assert set(flat) == {("classes",), ("extra",), ("nested",)}
    for path, original in [
        (("classes",), ["cup", "spoon", 3, None]),
        (("extra",), {}),
        (("nested",), [{"a": [1, 2]}]),
    ]:
        value, kind = flat[path]
        assert kind == fl.KIND_JSON
        assert isinstance(value, str)
        assert json.loads(value) == original


def test_non_ascii_in_json_text_is_kept_readable() -> None:
    value, kind = fl.flatten({"l": ["Zürich", "ロボット"]})[("l",)]
    assert kind == fl.KIND_JSON
    assert "Zürich" in value and "ロボット" in value  # not \u escapes


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, (0, fl.KIND_INTEGER)),
        (-17, (-17, fl.KIND_INTEGER)),
        (2**63 - 1, (2**63 - 1, fl.KIND_INTEGER)),
        (-(2**63), (-(2**63), fl.KIND_INTEGER)),
        (1.5, (1.5, fl.KIND_REAL)),
        (-0.0, (-0.0, fl.KIND_REAL)),
        (float("inf"), (float("inf"), fl.KIND_REAL)),
        (True, (True, fl.KIND_BOOLEAN)),
        (False, (False, fl.KIND_BOOLEAN)),
        ("sawyer", ("sawyer", fl.KIND_TEXT)),
        ("", ("", fl.KIND_TEXT)),
        (None, (None, None)),
    ],
)
def test_scalars_keep_their_type(value: Any, expected: tuple[Any, str | None]) -> None:
    got = fl.flatten({"v": value})[("v",)]
    assert got == expected
    # bool is a subclass of int: make sure the Python types are right too
    assert type(got[0]) is type(expected[0])


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 10**30, -(10**40)])
def test_integers_beyond_64_bits_are_text(value: int) -> None:
    assert fl.flatten({"big": value}) == {("big",): (str(value), fl.KIND_TEXT)}


def test_nan_is_null() -> None:
    assert fl.flatten({"x": float("nan")}) == {("x",): (None, None)}
    assert fl.scalar(float("nan")) == (None, None)


def _nested(depth: int, leaf: Any) -> dict[str, Any]:
    """{"k0": {"k1": ... {"k<depth-1>": leaf}}}: leaf sits at path length `depth`."""
    doc: Any = leaf
    for i in reversed(range(depth)):
        doc = {f"k{i}": doc}
    return doc  # type: ignore[no-any-return]


def test_nesting_up_to_max_depth_is_flattened() -> None:
    flat = fl.flatten(_nested(fl.MAX_DEPTH, 7))
    path = tuple(f"k{i}" for i in range(fl.MAX_DEPTH))
    assert flat == {path: (7, fl.KIND_INTEGER)}


def test_nesting_deeper_than_max_depth_is_json_at_max_depth() -> None:
    doc = _nested(fl.MAX_DEPTH + 3, "deep")
    flat = fl.flatten(doc)
    assert len(flat) == 1
    ((path, (value, kind)),) = flat.items()
    assert path == tuple(f"k{i}" for i in range(fl.MAX_DEPTH))
    assert kind == fl.KIND_JSON
    assert json.loads(value) == {"k8": {"k9": {"k10": "deep"}}}


def test_lone_surrogates_become_replacement_characters() -> None:
    flat = fl.flatten({"s": "a\ud800b?", "l": ["\udc00?"], "ok": "what?"})
    assert flat[("s",)] == ("a\ufffdb?", fl.KIND_TEXT)
    assert flat[("ok",)] == ("what?", fl.KIND_TEXT)  # a real '?' is not touched
    value, kind = flat[("l",)]
    assert kind == fl.KIND_JSON
    assert json.loads(value) == ["\ufffd?"]
    for v, _ in flat.values():
        v.encode("utf-8")  # a database accepts it


@pytest.mark.parametrize("document", [[], [{"a": 1}], "robot", 3, 2.5, True, None])
def test_non_object_documents_have_no_columns(document: Any) -> None:
    assert fl.flatten(document) == {}


def test_keys_are_stringified() -> None:
    assert fl.flatten({1: "one"}) == {("1",): ("one", fl.KIND_TEXT)}


# -- widen ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (fl.KIND_INTEGER, fl.KIND_REAL, fl.KIND_REAL),
        (fl.KIND_BOOLEAN, fl.KIND_INTEGER, fl.KIND_INTEGER),
        (fl.KIND_JSON, fl.KIND_TEXT, fl.KIND_TEXT),
        (fl.KIND_INTEGER, fl.KIND_JSON, fl.KIND_TEXT),
        (None, fl.KIND_REAL, fl.KIND_REAL),
        (None, None, None),
    ],
)
def test_widen_examples(a: str | None, b: str | None, expected: str | None) -> None:
    assert fl.widen(a, b) == expected
    assert fl.widen(b, a) == expected


@pytest.mark.parametrize(("a", "b"), list(itertools.product(ALL_KINDS, repeat=2)))
def test_widen_over_all_pairs(a: str | None, b: str | None) -> None:
    w = fl.widen(a, b)
    assert w == fl.widen(b, a)  # commutative
    assert w in ALL_KINDS
    if a == b:
        assert w == a  # idempotent
    if a is None:
        assert w == b  # None: no value seen yet
    if fl.KIND_TEXT in (a, b):
        assert w == fl.KIND_TEXT  # text holds anything
    if a is not None and b is not None and a != b:
        # a mix of two kinds never narrows to something neither was, except text
        assert w in (a, b, fl.KIND_TEXT)
    assert fl.widen(w, a) == w and fl.widen(w, b) == w  # the result holds both


def test_widen_is_associative() -> None:
    bad = [
        (a, b, c)
        for a, b, c in itertools.product(ALL_KINDS, repeat=3)
        if fl.widen(fl.widen(a, b), c) != fl.widen(a, fl.widen(b, c))
    ]
    assert bad == []


# -- base_name --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (("robot",), "robot"),
        (("Robot",), "robot"),
        (("gripper", "type"), "gripper_type"),
        (("Gripper Type",), "gripper_type"),
        (("a-b.c",), "a_b_c"),
        (("2nd", "arm"), "_2nd_arm"),
        (("9",), "_9"),
        (("",), "_"),
        (("é",), "_"),
        (("x", "ロボ"), "x___"),
    ],
)
def test_base_name_examples(path: tuple[str, ...], expected: str) -> None:
    assert fl.base_name(path) == expected


def test_long_names_are_cut_and_stay_distinct() -> None:
    p1 = ("a" * 80,)
    p2 = ("a" * 80 + "b",)
    n1, n2 = fl.base_name(p1), fl.base_name(p2)
    assert len(n1) == len(n2) == fl.MAX_NAME
    assert n1 != n2
    assert re.fullmatch("a" * 55 + "__" + HEX6, n1)


paths = st.lists(st.text(), min_size=1, max_size=10).map(tuple)


@given(paths)
def test_base_name_is_sql_safe(path: tuple[str, ...]) -> None:
    name = fl.base_name(path)
    assert SAFE.match(name), name
    assert name == name.lower()
    assert 1 <= len(name) <= fl.MAX_NAME
    assert fl.base_name(path) == name  # deterministic


@given(
    st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,5}", fullmatch=True), min_size=1, max_size=10).map(
        tuple
    )
)
def test_base_name_of_a_safe_path_is_the_plain_join(path: tuple[str, ...]) -> None:
    joined = "_".join(path)
    if len(joined) <= fl.MAX_NAME:
        assert fl.base_name(path) == joined
    else:
        assert fl.base_name(path).startswith(joined[:55] + "__")


# -- naming: wished_name, rank, suffixed_name ------------------------------------------


@pytest.mark.parametrize("fixed", sorted(FIXED_COLUMNS))
def test_fixed_column_names_get_meta_prefix(fixed: str) -> None:
    assert fl.wished_name((fixed,), FIXED) == f"meta_{fixed}"
    assert fl.wished_name((fixed.upper(),), FIXED) == f"meta_{fixed}"


def test_a_taken_name_gets_a_hash_of_the_path() -> None:
    name = fl.suffixed_name(("Robot",), {"robot"}, FIXED)
    assert name == "robot__" + fl.path_hash(("Robot",))
    # the hash is of the path, so another path gets another name
    assert fl.suffixed_name(("ROBOT",), {"robot"}, FIXED) != name
    assert re.fullmatch("meta_size__" + HEX6, fl.suffixed_name(("size",), {"meta_size"}, FIXED))
    # a name someone made to look like ours is stepped over
    assert fl.suffixed_name(("Robot",), {"robot", name}, FIXED) == name + "1"


@pytest.mark.parametrize(
    ("winner", "loser"),
    [
        (("a_b",), ("a", "b")),  # a top-level key before a nested path
        (("robot",), ("Robot",)),  # spelled exactly as the name
        (("meta_size",), ("size",)),
        (("a", "b_c"), ("a_b", "c")),  # then by the path's JSON text
    ],
)
def test_rank_orders_paths_that_wish_one_name(
    winner: tuple[str, ...], loser: tuple[str, ...]
) -> None:
    assert fl.wished_name(winner, FIXED) == fl.wished_name(loser, FIXED)
    assert fl.rank(winner, FIXED) < fl.rank(loser, FIXED)


def test_shown_paths_never_look_alike() -> None:
    assert fl.shown(("gripper", "type")) == "gripper.type"
    assert fl.shown(("a.b",)) == '["a.b"]'
    assert fl.shown(("a", "b")) != fl.shown(("a.b",))


# -- the column registry's path keys --------------------------------------------------


_json_paths = st.lists(
    st.text(alphabet=st.one_of(st.characters(), st.characters(categories=["Cs"]))),
    min_size=1,
    max_size=10,
).map(lambda parts: tuple(json.loads(json.dumps(parts))))


@given(_json_paths)
def test_path_key_round_trips_for_json_paths(path: tuple[str, ...]) -> None:
    assert fl.path_from_key(fl.path_key(path)) == path


def test_path_key_is_the_identity_of_surrogate_pair_paths(tmp_path: Path) -> None:
    """A surrogate pair and the character it encodes are one JSON key, so one column:
    writing such a document twice must reuse the column, not fail."""
    path = ("\ud800\udc00",)
    key = fl.path_key(path)
    assert fl.path_key(fl.path_from_key(key)) == key
    assert fl.path_key(("\U00010000",)) == key
    catalog = open_catalog(str(tmp_path / "c.sqlite"))
    catalog.write([_row("a.h5", {"\ud800\udc00": 1})])
    catalog.write([_row("a.h5", {"\ud800\udc00": 2}), _row("b.h5", {"\U00010000": 3})])
    assert [c.name for c in catalog.columns()] == [fl.base_name(path)]
    catalog.close()


# -- end to end through a real SQLite catalog --------------------------------------------


def _row(key: str, doc: Any, size: int = 100) -> ObjectRow:
    return ObjectRow(
        bucket="lab",
        key=key,
        size=size,
        etag=f'"etag-{key}"',
        last_modified=WHEN,
        metadata=json.dumps(doc),
        flat=fl.flatten(doc),
    )


def _read(db: Path, key: str) -> dict[str, Any]:
    con = sqlite3.connect(db)
    try:
        con.row_factory = sqlite3.Row
        row = con.execute("SELECT * FROM objects WHERE key = ?", (key,)).fetchone()
        assert row is not None, f"no row for {key}"
        return dict(row)
    finally:
        con.close()


def _sql(db: Path, query: str, *args: Any) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(db)
    try:
        return con.execute(query, args).fetchall()
    finally:
        con.close()


COLLIDING = {
    "k1.h5": {"a_b": 1, "a": {"b": 2}},
    "k2.h5": {"size": 5, "key": "k"},
    "k3.h5": {"Robot": "x", "robot": "y"},
}


def test_colliding_keys_are_all_kept(tmp_path: Path) -> None:
    db = tmp_path / "c.sqlite"
    with open_catalog(str(db)) as catalog:
        warnings = catalog.write(
            [_row(k, doc, size=1000 + i) for i, (k, doc) in enumerate(COLLIDING.items())]
        )
        cols = catalog.columns()
    name_of = {c.path: c.name for c in cols}
    all_paths = {p for doc in COLLIDING.values() for p in fl.flatten(doc)}
    assert set(name_of) == all_paths  # one column per path, nothing more
    assert len(set(name_of.values())) == len(name_of)  # distinct columns
    assert not set(name_of.values()) & FIXED
    assert warnings  # renamed columns are reported

    for i, (key, doc) in enumerate(COLLIDING.items()):
        row = _read(db, key)
        for path, (value, _) in fl.flatten(doc).items():
            assert row[name_of[path]] == value, (key, path)
        # the fixed columns hold the object's own values, not the metadata's
        assert row["size"] == 1000 + i
        assert row["key"] == key
        assert row["uri"] == f"s3://lab/{key}"

    row2 = _read(db, "k2.h5")
    assert row2["meta_size"] == 5
    assert row2["meta_key"] == "k"
    assert name_of[("size",)] == "meta_size"
    assert name_of[("key",)] == "meta_key"
    # the path of higher rank keeps the plain name; the other gets a hash suffix
    assert name_of[("a_b",)] == "a_b"
    assert name_of[("a", "b")] == "a_b__" + fl.path_hash(("a", "b"))
    assert name_of[("robot",)] == "robot"
    assert name_of[("Robot",)] == "robot__" + fl.path_hash(("Robot",))
    assert _sql(db, "SELECT uri FROM objects WHERE robot = ?", "y") == [("s3://lab/k3.h5",)]


@given(
    st.permutations(
        [
            {"a": {"b": 2}},
            {"a_b": 1},
            {"Robot": "x"},
            {"robot": "y"},
            {"size": 5},
            {"meta_size": 6},
            {"A": {"B": 3}},
            {"a": {"b_c": 4}},
            {"a_b": {"c": 7}},
        ]
    )
)
@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_column_names_do_not_depend_on_the_order_objects_arrive(
    tmp_path: Path, docs: list[dict[str, Any]]
) -> None:
    """Two colleagues who mirror the same objects in another order get the same columns:
    `WHERE a_b = 1` means the same in both catalogs, and every value stays with its path."""
    db = tmp_path / f"{uuid.uuid4().hex}.sqlite"
    with open_catalog(str(db)) as catalog:
        for doc in docs:  # one write each: a later path may outrank an earlier holder
            catalog.write([_row(json.dumps(doc, sort_keys=True), doc)])
            catalog.index_columns()  # a holder that moves has its index moved too
        name_of = {c.path: c.name for c in catalog.columns()}
    assert name_of[("a_b",)] == "a_b" and name_of[("robot",)] == "robot"
    assert name_of[("meta_size",)] == "meta_size"
    assert name_of[("a", "b")] == "a_b__" + fl.path_hash(("a", "b"))
    assert name_of[("size",)] == "meta_size__" + fl.path_hash(("size",))
    assert name_of[("A", "B")] == "a_b__" + fl.path_hash(("A", "B"))
    assert name_of[("a", "b_c")] == "a_b_c"
    assert name_of[("a_b", "c")] == "a_b_c__" + fl.path_hash(("a_b", "c"))
    for doc in docs:
        row = _read(db, json.dumps(doc, sort_keys=True))
        for path, (value, _) in fl.flatten(doc).items():
            assert row[name_of[path]] == value
    table = {r[1] for r in _sql(db, "PRAGMA table_info(objects)")}
    assert set(name_of.values()) <= table
    assert _sql(db, "PRAGMA integrity_check") == [("ok",)]
    # every column has its own index, under its own name (a moved column's index moved)
    covers = dict(
        _sql(
            db,
            "SELECT il.name, ii.name FROM pragma_index_list('object_rows') AS il, "
            "pragma_index_info(il.name) AS ii",
        )
    )
    assert all(covers.get(f"ix_objects_m_{n}") == n for n in name_of.values()), covers


def test_new_keys_add_columns_and_missing_keys_become_null(tmp_path: Path) -> None:
    db = tmp_path / "c.sqlite"
    with open_catalog(str(db)) as catalog:
        catalog.write([_row("one.h5", {"robot": "sawyer", "grip": {"width": 0.5}})])
        catalog.write([_row("two.h5", {"robot": "baxter", "camera": "c1"})])
        names = {c.path: c.name for c in catalog.columns()}
        table_cols = {r[1] for r in _sql(db, "PRAGMA table_info(objects)")}
        assert {"robot", "grip_width", "camera"} <= table_cols
        assert names[("camera",)] == "camera"
        assert _read(db, "one.h5")["camera"] is None
        assert _read(db, "two.h5")["camera"] == "c1"
        assert _read(db, "one.h5")["grip_width"] == 0.5

        # rewriting an object whose document lost a key clears that key
        catalog.write([_row("one.h5", {"robot": "sawyer"})])
        row = _read(db, "one.h5")
        assert row["robot"] == "sawyer"
        assert row["grip_width"] is None
        assert json.loads(row["metadata"]) == {"robot": "sawyer"}
        # the other object is untouched
        assert _read(db, "two.h5")["camera"] == "c1"
        assert catalog.count() == 2


def test_writing_the_same_documents_again_adds_no_columns(tmp_path: Path) -> None:
    docs = {**COLLIDING, "k4.h5": json.loads('{"\\ud800?": {"x": [1]}, "ok": true}')}
    with open_catalog(str(tmp_path / "c.sqlite")) as catalog:
        catalog.write([_row(k, d) for k, d in docs.items()])
        before = catalog.columns()
        assert catalog.write([_row(k, d) for k, d in docs.items()]) == []
        assert catalog.columns() == before
        assert catalog.count() == len(docs)
    assert {c.path for c in before} == {p for d in docs.values() for p in fl.flatten(d)}


def test_booleans_are_0_1_and_plain_sql_works(tmp_path: Path) -> None:
    db = tmp_path / "c.sqlite"
    with open_catalog(str(db)) as catalog:
        catalog.write(
            [
                _row("a.h5", {"robot": "y", "success": True}),
                _row("b.h5", {"robot": "z", "success": False}),
            ]
        )
        kinds = {c.name: c.kind for c in catalog.columns()}
    assert kinds == {"robot": fl.KIND_TEXT, "success": fl.KIND_BOOLEAN}
    assert _sql(db, "SELECT uri FROM objects WHERE robot = 'y'") == [("s3://lab/a.h5",)]
    assert _sql(db, "SELECT key, success, typeof(success) FROM objects ORDER BY key") == [
        ("a.h5", 1, "integer"),
        ("b.h5", 0, "integer"),
    ]
    assert _sql(db, "SELECT key FROM objects WHERE success") == [("a.h5",)]


def test_column_kind_widens_across_writes(tmp_path: Path) -> None:
    with open_catalog(str(tmp_path / "c.sqlite")) as catalog:
        catalog.write([_row("a.h5", {"n": 1})])
        assert [c.kind for c in catalog.columns()] == [fl.KIND_INTEGER]
        catalog.write([_row("b.h5", {"n": 2.5})])
        assert [c.kind for c in catalog.columns()] == [fl.KIND_REAL]
        catalog.write([_row("c.h5", {"n": None})])
        assert [c.kind for c in catalog.columns()] == [fl.KIND_REAL]
        catalog.write([_row("d.h5", {"n": "many"})])
        assert [c.kind for c in catalog.columns()] == [fl.KIND_TEXT]


def test_column_kind_does_not_depend_on_write_order(tmp_path: Path) -> None:
    kinds: list[list[str | None]] = []
    for order in ([True, 1, 2.5], [1, 2.5, True]):
        db = tmp_path / f"{len(kinds)}.sqlite"
        with open_catalog(str(db)) as catalog:
            for i, v in enumerate(order):
                catalog.write([_row(f"o{i}.h5", {"x": v})])
            kinds.append([c.kind for c in catalog.columns()])
    assert kinds[0] == kinds[1]


def test_write_keeps_key_equal_to_a_hashed_name(tmp_path: Path) -> None:
    db = tmp_path / "c.sqlite"
    hashed = "robot__" + fl.path_hash(("Robot",))
    with open_catalog(str(db)) as catalog:
        catalog.write([_row("a.h5", {"robot": 1})])
        catalog.write([_row("b.h5", {hashed: 2})])
        catalog.write([_row("c.h5", {"Robot": 3})])
        name_of = {c.path: c.name for c in catalog.columns()}
    assert len(set(name_of.values())) == 3
    assert _read(db, "c.h5")[name_of[("Robot",)]] == 3


# -- property: what goes in comes out ---------------------------------------------------

_surrogates_too = st.one_of(st.characters(categories=["Cs"]), st.sampled_from("?aA_"))
_keys = st.one_of(
    st.sampled_from(["a", "A", "a_b", "b", "B", "_", "size", "Size", "key", "meta_size", ""]),
    st.text(max_size=6),
    st.text(alphabet=_surrogates_too, max_size=3),
)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=10),
    st.text(alphabet=_surrogates_too, max_size=3),
)
_leaf = st.one_of(_scalars, st.lists(_scalars, max_size=3))
_level3 = st.dictionaries(_keys, _leaf, max_size=3)
_level2 = st.dictionaries(_keys, st.one_of(_leaf, _level3), max_size=3)
# A JSON object document is what json.loads returns: mapping through a JSON round trip
# also turns two surrogates that form a pair into the one character they encode.
_documents = st.dictionaries(_keys, st.one_of(_leaf, _level2), max_size=6).map(
    lambda d: json.loads(json.dumps(d))
)


def _same(stored: Any, value: Any, kind: str | None) -> bool:
    if kind is None:
        return stored is None
    if kind == fl.KIND_BOOLEAN:
        return type(stored) is int and stored == int(value)
    if kind == fl.KIND_INTEGER:
        return type(stored) is int and stored == value
    if kind == fl.KIND_REAL:
        return type(stored) is float and stored == value
    return type(stored) is str and stored == value


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(_documents)
def test_written_document_reads_back_as_flattened(doc: dict[str, Any]) -> None:
    folder = tempfile.mkdtemp(prefix="deon-flat-")
    try:
        db = Path(folder) / "c.sqlite"
        flat = fl.flatten(doc)
        with open_catalog(str(db)) as catalog:
            catalog.write([_row("doc.h5", doc)])
            cols = catalog.columns()
        name_of = {c.path: c.name for c in cols}
        assert set(name_of) == set(flat)
        assert len(set(name_of.values())) == len(name_of)
        row = _read(db, "doc.h5")
        assert set(row) == {c.name for c in objects_columns()} | set(name_of.values())
        for path, (value, kind) in flat.items():
            stored = row[name_of[path]]
            assert _same(stored, value, kind), (path, value, kind, stored)
            if kind == fl.KIND_REAL:
                assert not math.isnan(stored)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def objects_columns() -> list[sa.Column[Any]]:
    from deon.catalog.models import objects

    return list(objects.columns)
