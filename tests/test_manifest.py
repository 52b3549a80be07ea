"""Manifests: `deon freeze`, `deon pull --manifest`, `deon diff`, publishing (issue 16).

The scene of most tests: three objects are mirrored and frozen; then one is replaced,
one deleted and one added, and the catalog mirrored again.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

import deon
from tests.conftest import BUCKET, Lab, assert_no_traceback, run_deon

FROZEN = {
    "t/keep.h5": b"keep, as frozen",
    "t/replace.h5": b"replace, as frozen",
    "t/delete.h5": b"delete",
}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _put(lab: Lab, key: str, body: bytes, sha: bool = True) -> None:
    lab.put(key, body, {"deon-sha256": _sha(body)} if sha else None)


def _freeze_then_change(lab: Lab, *, versioned: bool, forget_versions: bool = False) -> Path:
    """Mirror and freeze FROZEN, then replace, delete and add one object each and
    mirror again. Returns the manifest."""
    if versioned:
        lab.client.put_bucket_versioning(
            Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"}
        )
    for key, body in FROZEN.items():
        _put(lab, key, body)
    r = run_deon("metadata", "down", "s3://lab/t/")
    assert r.returncode == 0, r.stderr
    if forget_versions:  # as rows mirrored before deon recorded VersionIds
        db = sqlite3.connect(lab.catalog)
        db.execute("UPDATE object_rows SET version_id = NULL")
        db.commit()
        db.close()
    manifest = lab.tmp / "frozen.manifest.jsonl"
    r = run_deon("freeze", "-o", str(manifest))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(manifest)
    _put(lab, "t/replace.h5", b"replace, the new bytes")
    lab.client.delete_object(Bucket=BUCKET, Key="t/delete.h5")
    _put(lab, "t/add.h5", b"added later")
    r = run_deon("metadata", "down")
    assert r.returncode == 0, r.stderr
    return manifest


def _local(lab: Lab, key: str) -> Path:
    return lab.data_dir / BUCKET / key


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_bytes().split(b"\n") if line]


# -- pull --manifest ----------------------------------------------------------------------


def test_a_versioned_bucket_gives_back_the_frozen_bytes_of_every_object(lab: Lab) -> None:
    manifest = _freeze_then_change(lab, versioned=True)
    lab.catalog.unlink()  # a colleague with only the manifest and read access
    gets: list[str] = []
    lab.proxy.rules.before = lambda method, key, query: (
        gets.append(query) if method == "GET" else None
    )

    r = run_deon("pull", "--manifest", str(manifest))

    assert r.returncode == 0, r.stderr
    for key, body in FROZEN.items():
        assert _local(lab, key).read_bytes() == body
    assert not _local(lab, "t/add.h5").exists()
    assert sorted(r.stdout.splitlines()) == sorted(str(_local(lab, k)) for k in FROZEN)
    assert not lab.catalog.exists()  # no catalog was needed, none was made
    # every object was asked for by its version, the replaced and the deleted ones too
    assert len(gets) == 3 and all("versionId=" in q for q in gets)


def test_files_present_and_matching_cost_no_request(lab: Lab) -> None:
    manifest = _freeze_then_change(lab, versioned=True)
    assert run_deon("pull", "--manifest", str(manifest)).returncode == 0
    lab.proxy.reset()

    r = run_deon("pull", "--manifest", str(manifest))

    assert r.returncode == 0, r.stderr
    assert "3 unchanged" in r.stderr
    assert sum(lab.proxy.counts.values()) == 0


def test_an_unversioned_bucket_refuses_the_replaced_and_deleted_by_name(lab: Lab) -> None:
    manifest = _freeze_then_change(lab, versioned=False)

    r = run_deon("pull", "--manifest", str(manifest))

    assert r.returncode == 1
    assert (
        "error: s3://lab/t/replace.h5: replaced since the manifest was frozen, and the "
        "bucket keeps no version with the frozen bytes: refused (never other bytes)"
    ) in r.stderr
    assert "error: s3://lab/t/delete.h5: deleted since the manifest was frozen" in r.stderr
    assert _local(lab, "t/keep.h5").read_bytes() == FROZEN["t/keep.h5"]
    assert not _local(lab, "t/replace.h5").exists()  # never the new bytes
    assert not _local(lab, "t/delete.h5").exists()
    assert r.stdout.splitlines() == [str(_local(lab, "t/keep.h5"))]
    assert_no_traceback(r.stderr)


def test_a_replaced_object_never_overwrites_a_local_file_with_new_bytes(lab: Lab) -> None:
    manifest = _freeze_then_change(lab, versioned=False)
    stale = _local(lab, "t/replace.h5")
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"something local")

    r = run_deon("pull", "--manifest", str(manifest))

    assert r.returncode == 1
    assert stale.read_bytes() == b"something local"


def test_versions_are_found_for_a_catalog_that_recorded_none(lab: Lab) -> None:
    # Rows mirrored before revision 0002 have no VersionId: the frozen bytes are looked
    # for among the object's versions (by ETag and size) and still come back.
    manifest = _freeze_then_change(lab, versioned=True, forget_versions=True)
    assert not any("version_id" in e for e in _lines(manifest)[1:])

    r = run_deon("pull", "--manifest", str(manifest))

    assert r.returncode == 0, r.stderr
    for key, body in FROZEN.items():
        assert _local(lab, key).read_bytes() == body


def test_pull_from_a_published_manifest(lab: Lab) -> None:
    for key, body in FROZEN.items():
        _put(lab, key, body)
    assert run_deon("metadata", "down", "s3://lab/t/").returncode == 0
    uri = "s3://lab/.deon/manifests/sawyer-2027-03"

    r = run_deon("freeze", "--publish", uri, "-o", "-")
    again = run_deon("freeze", "--publish", uri, "-o", "-")

    assert r.returncode == 0, r.stderr
    assert lab.get(".deon/manifests/sawyer-2027-03") == r.stdout.encode()
    assert again.returncode == 0 and "already holds this very manifest" in again.stderr
    lab.catalog.unlink()
    pulled = run_deon("pull", "--manifest", uri)
    assert pulled.returncode == 0, pulled.stderr
    assert _local(lab, "t/keep.h5").read_bytes() == FROZEN["t/keep.h5"]
    piped = run_deon("pull", "--manifest", "-", input=r.stdout)  # freeze -o - | pull
    assert piped.returncode == 0 and "3 unchanged" in piped.stderr


def test_publishing_never_replaces_another_manifest(lab: Lab) -> None:
    for key, body in FROZEN.items():
        _put(lab, key, body)
    assert run_deon("metadata", "down", "s3://lab/t/").returncode == 0

    def someone_else_publishes_first(method: str, key: str, query: str) -> None:
        # ... just as deon's PUT arrives: only a conditional write leaves theirs alone
        if method == "PUT" and key == "manifests/sawyer":
            lab.put("manifests/sawyer", b"someone else's manifest\n")

    lab.proxy.rules.before = someone_else_publishes_first

    r = run_deon("freeze", "--publish", "s3://lab/manifests/sawyer")
    again = run_deon("freeze", "--publish", "s3://lab/manifests/sawyer")

    assert r.returncode == 1
    assert "s3://lab/manifests/sawyer already holds another manifest" in r.stderr
    assert again.returncode == 1
    assert lab.get("manifests/sawyer") == b"someone else's manifest\n"


# -- tampering -------------------------------------------------------------------------------


def _frozen(lab: Lab) -> Path:
    for key, body in FROZEN.items():
        _put(lab, key, body)
    assert run_deon("metadata", "down", "s3://lab/t/").returncode == 0
    manifest = lab.tmp / "m.manifest.jsonl"
    assert run_deon("freeze", "-o", str(manifest)).returncode == 0
    return manifest


def _rewrite(manifest: Path, edit, *, fix_digest: bool) -> None:
    head, *entries = manifest.read_bytes().split(b"\n")[:-1]
    entries = edit(entries)
    body = b"".join(e + b"\n" for e in entries)
    header = json.loads(head)
    if fix_digest:
        header["digest"] = "sha256:" + hashlib.sha256(body).hexdigest()
    manifest.write_bytes(json.dumps(header, separators=(",", ":")).encode() + b"\n" + body)


def _with_sha(line: bytes, sha: str) -> bytes:
    doc = json.loads(line)
    doc["sha256"] = sha
    return json.dumps(doc, separators=(",", ":")).encode()


def test_an_edited_sha256_under_the_old_digest_is_refused_before_any_request(lab: Lab) -> None:
    manifest = _frozen(lab)
    _rewrite(manifest, lambda es: [_with_sha(es[0], "0" * 64), *es[1:]], fix_digest=False)
    lab.proxy.reset()

    r = run_deon("pull", "--manifest", str(manifest))
    d = run_deon("diff", str(manifest))

    assert r.returncode == 2
    assert "refused: its entries hash to sha256:" in r.stderr
    assert "edited or damaged since it was frozen" in r.stderr
    assert lab.proxy.count("GET", "HEAD") == 0
    assert not (lab.data_dir / BUCKET).exists()
    assert d.returncode == 2 and "edited or damaged" in d.stderr


def test_an_edited_sha256_with_a_recomputed_digest_gets_no_bytes_but_the_frozen(lab: Lab) -> None:
    manifest = _frozen(lab)
    # entries are sorted: delete.h5, keep.h5, replace.h5
    _rewrite(manifest, lambda es: [es[0], _with_sha(es[1], "0" * 64), es[2]], fix_digest=True)

    r = run_deon("pull", "--manifest", str(manifest))

    assert r.returncode == 1
    assert "error: s3://lab/t/keep.h5: sha256 " in r.stderr
    assert "is not the 000000000000… the manifest names; refused" in r.stderr
    assert not _local(lab, "t/keep.h5").exists()
    assert _local(lab, "t/replace.h5").read_bytes() == FROZEN["t/replace.h5"]


@pytest.mark.parametrize(
    "edit, why",
    [
        # a second "sha256" field: parsers disagree on which one counts
        (
            lambda es: [es[0][:-1] + b',"sha256":"' + b"0" * 64 + b'"}', *es[1:]],
            "field 'sha256' appears twice",
        ),
        (lambda es: [es[1], es[0], es[2]], "out of order or repeated"),
        (lambda es: [es[0], es[0], es[1], es[2]], "out of order or repeated"),
        (lambda es: es[:2], "the header counts 3 entries, it has 2"),
    ],
    ids=["duplicate-field", "reordered", "repeated", "dropped"],
)
def test_edited_entries_under_a_recomputed_digest_are_refused(lab: Lab, edit, why) -> None:
    manifest = _frozen(lab)
    _rewrite(manifest, edit, fix_digest=True)

    r = run_deon("pull", "--manifest", str(manifest))

    assert r.returncode == 2, r.stderr
    assert why in r.stderr
    assert not (lab.data_dir / BUCKET).exists()


def test_not_a_manifest_is_refused_in_one_line(lab: Lab) -> None:
    other = lab.tmp / "uris.txt"
    other.write_text("s3://lab/t/keep.h5\n")

    r = run_deon("pull", "--manifest", str(other))

    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "not a deon manifest" in r.stderr


# -- diff -----------------------------------------------------------------------------------


def test_diff_shows_exactly_the_three_changes(lab: Lab) -> None:
    before = _freeze_then_change(lab, versioned=False)
    after = lab.tmp / "after.manifest.jsonl"
    assert run_deon("freeze", "-o", str(after)).returncode == 0
    expected = ["+ s3://lab/t/add.h5", "- s3://lab/t/delete.h5", "* s3://lab/t/replace.h5"]

    with_catalog = run_deon("diff", str(before))
    two = run_deon("diff", str(before), str(after))
    same = run_deon("diff", str(after), str(after))

    for r in (with_catalog, two):
        assert r.returncode == 1, r.stderr
        assert r.stdout.splitlines() == expected
        assert "diff: 1 added, 1 removed, 1 changed, 1 unchanged" in r.stderr
    assert same.returncode == 0 and same.stdout == ""


def test_the_same_bytes_under_a_new_version_are_no_change(lab: Lab) -> None:
    lab.client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    _put(lab, "t/a.h5", b"same")
    assert run_deon("metadata", "down", "s3://lab/t/").returncode == 0
    before = lab.tmp / "a.manifest.jsonl"
    assert run_deon("freeze", "-o", str(before)).returncode == 0
    _put(lab, "t/a.h5", b"same")  # a new version, the same bytes
    assert run_deon("metadata", "down").returncode == 0

    r = run_deon("diff", str(before))

    assert r.returncode == 0, r.stdout
    assert "0 changed, 1 unchanged" in r.stderr


# -- the format ----------------------------------------------------------------------------


def test_two_freezes_of_one_catalog_are_byte_identical(lab: Lab) -> None:
    lab.client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    for key, body in FROZEN.items():
        _put(lab, key, body)
    assert run_deon("metadata", "down", "s3://lab/t/").returncode == 0

    first = run_deon("freeze", "-o", "-")
    assert run_deon("metadata", "down").returncode == 0  # a refresh that changes nothing
    second = run_deon("freeze", "-o", "-")
    as_query = run_deon("query", "--format", "manifest")

    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout == as_query.stdout


def test_the_manifest_says_what_boto3_says_of_each_object(lab: Lab) -> None:
    # Differential: each entry against boto3's own LIST and HEAD of the object.
    lab.client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    for key, body in FROZEN.items():
        _put(lab, key, body)
    _put(lab, "t/no-sha.h5", b"uploaded by another tool", sha=False)
    assert run_deon("metadata", "down", "s3://lab/t/").returncode == 0

    r = run_deon("freeze", "size > 0", "-o", "-")

    data = r.stdout.encode()
    head, *entries = [json.loads(line) for line in data.split(b"\n") if line]
    listed = {
        o["Key"]: o for o in lab.client.list_objects_v2(Bucket=BUCKET, Prefix="t/")["Contents"]
    }
    assert [e["key"] for e in entries] == sorted(listed)
    for e in entries:
        boto = lab.head(e["key"])
        assert e["bucket"] == BUCKET
        assert e["size"] == listed[e["key"]]["Size"] == boto["ContentLength"]
        assert e["etag"] == listed[e["key"]]["ETag"].strip('"')
        assert e["version_id"] == boto["VersionId"]
        lm = listed[e["key"]]["LastModified"]
        assert (
            e["last_modified"]
            == lm.strftime("%Y-%m-%dT%H:%M:%S.") + f"{lm.microsecond // 1000:03d}Z"
        )
        body = lab.get(e["key"])
        assert e["sha256"] == (None if e["key"] == "t/no-sha.h5" else _sha(body))
    assert head["format"] == "deon-manifest" and head["version"] == 1
    assert head["query"] == {"where": "size > 0"}
    assert head["sources"] == [{"uri": "s3://lab/t/", "endpoint": lab.endpoint}]
    assert head["count"] == 4 and head["bytes"] == sum(e["size"] for e in entries)
    # the digest is the sha256 of everything after the header line
    assert head["digest"] == "sha256:" + _sha(data.split(b"\n", 1)[1])


def test_a_manifest_pulls_by_etag_when_there_is_no_sha256(lab: Lab) -> None:
    _put(lab, "t/no-sha.h5", b"uploaded by another tool", sha=False)
    assert run_deon("metadata", "down", "s3://lab/t/").returncode == 0
    manifest = lab.tmp / "m.manifest.jsonl"
    assert run_deon("freeze", "-o", str(manifest)).returncode == 0
    lab.proxy.rules.corrupt["t/no-sha.h5"] = b"uploaded by ANOTHER tool"

    r = run_deon("pull", "--manifest", str(manifest))

    assert r.returncode == 1
    assert "corrupt" in r.stderr
    assert not _local(lab, "t/no-sha.h5").exists()


def test_freeze_with_sql_takes_the_objects_it_names(lab: Lab) -> None:
    for key, body in FROZEN.items():
        _put(lab, key, body)
    assert run_deon("metadata", "down", "s3://lab/t/").returncode == 0

    r = run_deon("freeze", "--sql", "SELECT bucket, key FROM objects WHERE size < 10", "-o", "-")
    bad = run_deon("freeze", "--sql", "SELECT size FROM objects", "-o", "-")

    assert r.returncode == 0, r.stderr
    assert [e["key"] for e in map(json.loads, r.stdout.splitlines()[1:])] == ["t/delete.h5"]
    assert bad.returncode == 2 and "must select a uri column" in bad.stderr


# -- the Python API ---------------------------------------------------------------------


def test_python_api_loads_pulls_and_joins_the_catalog(lab: Lab) -> None:
    import h5py  # noqa: F401  (make_h5 needs it)

    from tests.conftest import make_h5

    make_h5(lab.tmp / "up" / "a.h5", {"robot": "sawyer", "traj_ok": True})
    make_h5(lab.tmp / "up" / "b.h5", {"robot": "baxter", "traj_ok": False}, seed=1)
    assert run_deon("up", "s3://lab/t/", str(lab.tmp / "up")).returncode == 0
    assert run_deon("metadata", "down", "s3://lab/t/").returncode == 0
    frozen = deon.freeze("robot = 'sawyer'", out=lab.tmp / "s.manifest.jsonl")

    m = deon.load_manifest(lab.tmp / "s.manifest.jsonl")
    result = deon.pull(manifest=m)
    df = deon.manifest_frame(lab.tmp / "s.manifest.jsonl")

    assert [e.key for e in m.entries] == ["t/a.h5"] and m.digest == frozen.manifest.digest
    assert result.ok and _local(lab, "t/a.h5").read_bytes() == (lab.tmp / "up/a.h5").read_bytes()
    assert list(df.index) == ["s3://lab/t/a.h5"]
    assert df.loc["s3://lab/t/a.h5", "robot"] == "sawyer"
    assert bool(df.loc["s3://lab/t/a.h5", "in_catalog"])
    assert df.loc["s3://lab/t/a.h5", "path"] == str(_local(lab, "t/a.h5"))
    with pytest.raises(deon.DeonError, match="not both"):
        deon.pull(["s3://lab/t/a.h5"], manifest=m)


# -- the catalog ---------------------------------------------------------------------------


def test_a_0001_catalog_upgrades_and_a_version_id_metadata_key_moves_aside(tmp_path: Path) -> None:
    import sqlalchemy as sa
    from alembic import command

    from tests.test_catalog_migrations import _config

    path = tmp_path / "old.sqlite"
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        command.upgrade(_config(conn), "0001")
        conn.exec_driver_sql("ALTER TABLE objects ADD COLUMN version_id")  # a metadata key
        conn.exec_driver_sql(
            "INSERT INTO meta_columns (name, path, kind, added_at, indexed) "
            "VALUES ('version_id', '[\"version_id\"]', 'text', '2026-01-01 00:00:00', 0)"
        )
        conn.exec_driver_sql(
            "INSERT INTO objects (bucket, key, uri, size, etag, last_modified, sha256, metadata, "
            "mirrored_at, version_id) VALUES ('lab', 'a.h5', 's3://lab/a.h5', 3, 'e', "
            "'2026-01-01 00:00:00', NULL, '{\"version_id\": \"v7\"}', '2026-01-02 00:00:00', 'v7')"
        )
    engine.dispose()

    deon.open_catalog(str(path)).close()

    db = sqlite3.connect(path)
    row = db.execute("SELECT version_id, meta_version_id FROM objects").fetchone()
    names = [r[0] for r in db.execute("SELECT name FROM meta_columns")]
    db.close()
    assert row == (None, "v7")
    assert names == ["meta_version_id"]
    r = run_deon("--catalog", str(path), "freeze", "-o", "-")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[1]) == {
        "bucket": "lab", "key": "a.h5", "size": 3, "etag": "e", "sha256": None,
        "last_modified": "2026-01-01T00:00:00.000Z",
    }  # fmt: skip
    assert json.loads(r.stdout.splitlines()[0])["created"] == "2026-01-02T00:00:00.000Z"


def test_a_large_replaced_object_comes_back_by_version_in_ranges(lab: Lab) -> None:
    import os

    lab.client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    frozen, later = os.urandom(17 * 1024 * 1024), os.urandom(17 * 1024 * 1024)
    _put(lab, "t/big.h5", frozen)
    assert run_deon("metadata", "down", "s3://lab/t/").returncode == 0
    manifest = lab.tmp / "big.manifest.jsonl"
    assert run_deon("freeze", "-o", str(manifest)).returncode == 0
    _put(lab, "t/big.h5", later)
    ranges: list[str] = []
    lab.proxy.rules.before = lambda m, k, q: ranges.append(q) if m == "GET" else None

    r = run_deon("pull", "--manifest", str(manifest))

    assert r.returncode == 0, r.stderr
    assert _local(lab, "t/big.h5").read_bytes() == frozen
    assert len(ranges) >= 3 and all("versionId=" in q for q in ranges)  # ranged, by version


def test_a_published_snapshot_carries_version_ids_to_a_colleague(lab: Lab) -> None:
    lab.client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    for key, body in FROZEN.items():
        _put(lab, key, body)
    assert run_deon("metadata", "publish", "s3://lab/t/").returncode == 0
    colleague = lab.tmp / "colleague.sqlite"
    lab.proxy.reset()

    r = run_deon("--catalog", str(colleague), "metadata", "down", "s3://lab/t/")

    assert r.returncode == 0, r.stderr
    db = sqlite3.connect(colleague)
    got = dict(db.execute("SELECT key, version_id FROM objects"))
    db.close()
    assert got == {k: lab.head(k)["VersionId"] for k in FROZEN}
    assert lab.proxy.count("HEAD") == 3  # the spot checks; the rows came from the snapshot


def test_requests_go_to_the_endpoint_in_use_never_the_manifests(lab: Lab) -> None:
    from deon.errors import WarningCode

    manifest = _frozen(lab)
    head, rest = manifest.read_bytes().split(b"\n", 1)
    doc = json.loads(head)
    doc["sources"] = [{"uri": "s3://lab/t/", "endpoint": "https://elsewhere.invalid"}]
    lab.proxy.reset()

    result = deon.pull(manifest=json.dumps(doc).encode() + b"\n" + rest)

    assert result.ok, result.failed
    assert [w.code for w in result.warnings] == [WarningCode.MANIFEST_ENDPOINT]
    assert (
        "frozen from https://elsewhere.invalid; pulling from " + lab.endpoint in result.warnings[0]
    )
    assert lab.proxy.count("GET") == 3
