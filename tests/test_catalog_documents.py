"""Each metadata document kept once (revision 0004): `object_rows.metadata` holds `{}`
where the flattened columns reproduce the document, and the view `objects` gives every
reader the document as it was: key order, types, NaN as null, big integers, lone
surrogates, nesting, lists. Old catalogs upgrade in place and answer alike."""

from __future__ import annotations

import datetime as dt
import json
import random
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deon.catalog import flatten as fl
from deon.catalog.db import ObjectRow, open_catalog
from deon.catalog.models import SCHEMA_REVISION
from deon.tools.sample import metadata_for

ODD: dict[str, Any] = {
    "nan": {"robot": "x", "v": float("nan")},
    "inf": {"robot": "x", "v": float("inf")},
    "big": {"robot": "x", "n": 2**70},
    "surrogate": {"robot": "\ud800", "ok": True},
    "null": {"robot": "x", "gone": None},
    "deep": {"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}},
    "lists": {"robot": "x", "l": [1, [2, {"q": None}], "s"], "e": {}, "f": []},
    "float": {"robot": "x", "w": 0.1 + 0.2, "z": -0.0, "i": 5.0},
    "order": {"ok": False, "robot": "y"},
    "bools": {"robot": "x", "ok": 1},
    "list_doc": [1, 2],
    "scalar_doc": "just text",
    "empty": {},
}


def _text(doc: Any) -> str:
    return fl.valid_json(json.dumps(doc))


def _row(key: str, doc: Any) -> ObjectRow:
    return ObjectRow(
        "lab",
        key,
        10,
        "e",
        dt.datetime(2026, 1, 1),
        metadata=_text(doc),
        flat=fl.flatten(doc),
    )


def _docs() -> dict[str, Any]:
    rng = random.Random(3)
    docs = {f"r/{i}.h5": metadata_for("sawyer" if i % 2 else "franka", i, rng) for i in range(6)}
    docs.update({f"odd/{k}.h5": v for k, v in ODD.items()})
    return docs


def _read(path: Path, sql: str) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(path)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def _same_json(a: Any, b: Any) -> bool:
    """Equal as JSON, key order included."""
    return json.dumps(a) == json.dumps(b)


def test_every_document_reads_back_as_it_was_from_a_plain_sqlite_client(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    docs = _docs()
    with open_catalog(str(path)) as catalog:
        catalog.write([_row(k, d) for k, d in docs.items()])
    got = dict(_read(path, "SELECT key, metadata FROM objects"))
    for key, doc in docs.items():
        assert _same_json(json.loads(got[key]), json.loads(_text(doc))), key
    # json_extract on the view works as on the table of revision 0003
    assert {
        k
        for (k,) in _read(
            path,
            "SELECT key FROM objects WHERE json_extract(metadata, '$.gripper.type') = 'default'",
        )
    } == {
        k
        for k, d in docs.items()
        if isinstance(d, dict) and d.get("gripper", {}).get("type") == "default"
    }


def test_robonet_documents_are_kept_only_in_their_columns(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    docs = _docs()
    with open_catalog(str(path)) as catalog:
        catalog.write([_row(k, d) for k, d in docs.items()])
    stored = dict(_read(path, "SELECT key, metadata FROM object_rows"))
    assert all(stored[k] == "{}" for k in docs if k.startswith("r/"))
    # what the columns cannot give back exactly keeps its text
    for odd in (
        "nan",
        "inf",
        "big",
        "surrogate",
        "null",
        "deep",
        "float",
        "order",
        "list_doc",
        "scalar_doc",
    ):
        assert stored[f"odd/{odd}.h5"] != "{}", odd
    assert stored["odd/empty.h5"] == "{}" and stored["odd/lists.h5"] == "{}"


def test_a_key_changing_type_keeps_the_documents_written_before(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    with open_catalog(str(path)) as catalog:
        catalog.write([_row("a.h5", {"ok": True, "tags": ["x"]})])
        assert _read(path, "SELECT metadata FROM object_rows") == [("{}",)]
        catalog.write(
            [_row("b.h5", {"ok": 2, "tags": "plain"})]
        )  # boolean -> integer, json -> text
    got = dict(_read(path, "SELECT key, metadata FROM objects"))
    assert json.loads(got["a.h5"]) == {"ok": True, "tags": ["x"]}
    assert json.loads(got["b.h5"]) == {"ok": 2, "tags": "plain"}


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.dictionaries(st.sampled_from(["a", "b", "A", "a_b", "size"]), json_values, max_size=4),
        min_size=1,
        max_size=4,
    )
)
def test_any_documents_read_back_as_their_text_says(documents: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.sqlite"
        with open_catalog(str(path)) as catalog:
            for i, doc in enumerate(documents):  # one batch each: kinds widen between them
                catalog.write([_row(f"{i}.h5", doc)])
        got = dict(_read(path, "SELECT key, metadata FROM objects"))
    for i, doc in enumerate(documents):
        assert json.loads(got[f"{i}.h5"]) == json.loads(_text(doc))


def _config(conn: Any) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "deon:migrations")
    cfg.attributes["connection"] = conn
    return cfg


def test_a_catalog_made_at_0003_upgrades_and_answers_alike(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    docs = _docs()
    with open_catalog(str(path)) as catalog:
        catalog.write([_row(k, d) for k, d in docs.items()])
        catalog.index_columns()
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        command.downgrade(_config(conn), "0003")
    engine.dispose()
    queries = [
        "SELECT key, metadata, robot, gripper_type, traj_ok FROM objects ORDER BY key",
        "SELECT key FROM objects WHERE robot = 'sawyer' ORDER BY key",
        "SELECT count(*) FROM objects WHERE json_extract(metadata, '$.traj_ok')",
    ]
    tables = {n for (n,) in _read(path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "objects" in tables and "object_rows" not in tables
    before = [_read(path, q) for q in queries]
    assert all(m is not None and (m != "{}" or k == "odd/empty.h5") for k, m, *_ in before[0])

    with open_catalog(str(path)) as catalog:
        assert catalog.revision() == SCHEMA_REVISION
    after = [_read(path, q) for q in queries]
    assert [r[0] for r in after[0]] == [r[0] for r in before[0]]
    for (k, m0, *rest0), (_, m1, *rest1) in zip(before[0], after[0], strict=True):
        assert rest0 == rest1, k
        assert _same_json(json.loads(m1), json.loads(m0)), k
    assert after[1:] == before[1:]
    stored = dict(_read(path, "SELECT key, metadata FROM object_rows"))
    assert all(stored[k] == "{}" for k in docs if k.startswith("r/"))

    # and back: 0003's table holds every document's text again
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        command.downgrade(_config(conn), "0003")
    engine.dispose()
    again = [_read(path, q) for q in queries]
    assert again[1:] == before[1:]
    for (k, m0, *_), (_, m1, *_) in zip(before[0], again[0], strict=True):
        assert (m1 != "{}" or k == "odd/empty.h5") and _same_json(json.loads(m1), json.loads(m0)), k


def test_keys_named_true_or_false_get_columns_a_view_can_show(tmp_path: Path) -> None:
    # SQLite names a view's column "true" `columnN` (its boolean keyword), quoted or not:
    # found by hypothesis with {"TRUE": null}.
    path = tmp_path / "c.sqlite"
    docs = {"a.h5": {"TRUE": 1, "false": "no", "robot": "sawyer"}, "b.h5": {"TRUE": None}}
    with open_catalog(str(path)) as catalog:
        catalog.write([_row(k, d) for k, d in docs.items()])
    db = sqlite3.connect(path)
    cur = db.execute("SELECT key, meta_true, meta_false, robot, metadata FROM objects ORDER BY key")
    names = {d[0] for d in db.execute("SELECT * FROM objects").description}
    rows = cur.fetchall()
    db.close()
    assert {"meta_true", "meta_false", "robot"} <= names
    assert not [n for n in names if n.startswith("column")]
    assert rows[0][:4] == ("a.h5", 1, "no", "sawyer")
    assert [json.loads(r[4]) for r in rows] == [docs["a.h5"], docs["b.h5"]]
