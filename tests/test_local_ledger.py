"""The upload ledger and the hash cache are keyed by where a file went (endpoint, bucket,
key), never carried across destinations (issue 13, case 1)."""

from __future__ import annotations

import sqlite3

from tests.conftest import Lab, make_h5, run_deon


def test_ledger_is_per_destination_another_buckets_objects_get_the_warning(lab: Lab) -> None:
    """Promise: what `up` knows of one destination says nothing of another. After
    uploading a folder to one bucket, the same folder going to another bucket whose keys
    hold another tool's objects (same bytes, no deon headers) gets the documented
    warning, and `--overwrite` gives them metadata, exactly as with a fresh state."""
    lab.client.create_bucket(Bucket="new-bucket")
    src = lab.tmp / "data"
    f = make_h5(src / "t.h5", {"robot": "sawyer"})
    lab.put("mini/t.h5", f.read_bytes())  # another tool's object: no deon headers
    assert run_deon("up", "s3://new-bucket/x", str(src)).returncode == 0

    r = run_deon("up", "s3://lab/mini", str(src))

    assert r.returncode == 0, r.stderr
    assert (
        f"warning: s3://lab/mini/t.h5 holds the bytes of {f} but no deon metadata; left as "
        "it is (--overwrite gives it this file's metadata)" in r.stderr
    )
    r = run_deon("up", "--overwrite", "s3://lab/mini", str(src))
    assert r.returncode == 0, r.stderr
    assert "0 uploaded, 1 given metadata" in r.stderr
    assert lab.head("mini/t.h5")["Metadata"]


def test_an_old_state_file_keeps_working_without_lending_its_etags(lab: Lab) -> None:
    """Promise: a state file written by an earlier deon (tables `files` and `uploads`,
    keyed by local path and by bucket and key alone) is upgraded in place: its hashes are
    kept, its ETags and ledger rows (whose endpoint nobody knows) are not trusted, so the
    other tool's object still gets the warning."""
    src = lab.tmp / "data"
    f = make_h5(src / "t.h5", {"robot": "sawyer"})
    lab.put("mini/t.h5", f.read_bytes())
    etag = str(lab.head("mini/t.h5")["ETag"]).strip('"')
    state = lab.tmp / "xdg-data" / "deon" / "state.sqlite"
    state.parent.mkdir(parents=True)
    db = sqlite3.connect(state)
    db.executescript(
        "CREATE TABLE files (path TEXT PRIMARY KEY, dev INTEGER NOT NULL, ino INTEGER NOT "
        "NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL, "
        "sha256 TEXT NOT NULL, md5 TEXT, etag TEXT);"
        "CREATE TABLE uploads (bucket TEXT NOT NULL, key TEXT NOT NULL, etag TEXT NOT NULL, "
        "sha256 TEXT NOT NULL, uploaded_at REAL NOT NULL, PRIMARY KEY (bucket, key));"
    )
    st = f.stat()
    sha = __import__("hashlib").sha256(f.read_bytes()).hexdigest()
    db.execute(
        "INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (str(f), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, sha, etag, etag),
    )
    db.execute("INSERT INTO uploads VALUES ('lab', 'mini/t.h5', ?, ?, 0)", (etag, sha))
    db.commit()
    db.close()

    r = run_deon("up", "s3://lab/mini", str(src))

    assert r.returncode == 0, r.stderr
    assert "but no deon metadata; left as it is" in r.stderr
    db = sqlite3.connect(state)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 2
    assert db.execute("SELECT sha256, etag FROM hashes WHERE path = ?", (str(f),)).fetchall() == [
        (sha, None)
    ]
    db.close()
