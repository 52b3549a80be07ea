"""Security: no credential leaks, private files, read-only queries, no shell."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from deon.metadata import wire as meta
from tests.conftest import DEON_CMD, Lab, assert_no_traceback, make_h5, run_deon

MiB = 1024 * 1024
KEY_ID = "AKIADEONLEAKCHECK7Q2Z"
SECRET = "deonS3cretKey/Never+Leak/0123456789abcdefXYZ"
DEON_ROOT = Path(__file__).resolve().parent.parent / "deon"


def every_file(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def assert_absent(needles: list[str], texts: list[str], files: list[Path]) -> None:
    for needle in needles:
        for text in texts:
            assert needle not in text, f"{needle!r} printed:\n{text}"
        for path in files:
            assert needle.encode() not in path.read_bytes(), f"{needle!r} stored in {path}"


def unreachable(port: int = 9) -> str:
    return f"http://127.0.0.1:{port}"


# -- credentials ---------------------------------------------------------------------------------


def test_credentials_never_appear_in_output_logs_or_local_files(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("DEON_DEBUG", "1")
    src = lab.tmp / "src"
    make_h5(src / "a.h5", {"robot": "sawyer", "traj_ok": True})
    make_h5(src / "b.h5", {"robot": "franka", "blob": [f"{i:064x}" for i in range(200)]})
    (src / "notes.txt").write_text("plain")
    outputs: list[str] = []

    def deon(*args: str, ok: bool = True, **env: str) -> Any:
        r = run_deon(*args, env={**os.environ, **env} if env else None)
        outputs.extend([r.stdout, r.stderr])
        if ok:
            assert r.returncode == 0, (args, r.stderr)
        else:
            assert r.returncode != 0, (args, r.stdout, r.stderr)
        return r

    # everything going well
    deon("up", "s3://lab/s", str(src))
    deon("metadata", "down", "s3://lab/s")
    deon("metadata", "publish", "s3://lab/s")
    deon("down", "s3://lab/s", str(lab.tmp / "dest"))
    deon("pull", "s3://lab/s/a.h5")
    deon("query")
    deon("query", "--format", "json")
    deon("query", "--columns")
    deon("buckets")
    # and going wrong: 500s for one object, a missing bucket, no server at all
    lab.put("s/locked.h5", b"locked")
    lab.proxy.rules.fail_keys.add("s/locked.h5")
    deon("metadata", "down", "s3://lab/s", ok=False, AWS_MAX_ATTEMPTS="1")
    deon("down", "s3://lab/s", str(lab.tmp / "dest2"), ok=False, AWS_MAX_ATTEMPTS="1")
    deon("pull", "s3://lab/s/locked.h5", ok=False, AWS_MAX_ATTEMPTS="1")
    missing = deon("down", "s3://no-such-bucket/x", str(lab.tmp / "d3"), ok=False)
    assert "Traceback" in missing.stderr  # DEON_DEBUG=1 shows what is behind an error
    deon("up", "s3://no-such-bucket/x", str(src), ok=False)
    deon("metadata", "down", "s3://no-such-bucket", ok=False)
    for args in (["buckets"], ["down", "s3://lab/s", str(lab.tmp / "d4")]):
        deon("--endpoint-url", unreachable(), *args, ok=False, AWS_MAX_ATTEMPTS="1")
    deon("query", "no_such_column = 1", ok=False)

    # the commands did talk to the server with these credentials
    assert lab.proxy.count("PUT") >= 3 and lab.proxy.count("HEAD") >= 3
    catalog = lab.tmp / "catalog.sqlite"
    state = lab.tmp / "xdg-data" / "deon" / "state.sqlite"
    assert catalog.exists() and state.exists()
    files = every_file(lab.tmp)
    assert catalog in files and state in files
    assert_absent([KEY_ID, SECRET], outputs, files)
    # nor anything in the bucket, sidecars and the published snapshot included
    for key in lab.list_keys():
        body, head = lab.get(key), json.dumps(lab.head(key)["Metadata"])
        for needle in (KEY_ID, SECRET):
            assert needle.encode() not in body and needle not in head, key


def test_a_password_in_the_endpoint_url_is_never_printed_or_stored(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = int(lab.endpoint.rsplit(":", 1)[1])
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://deonuser:hunter2@127.0.0.1:{port}")
    src = lab.tmp / "src"
    make_h5(src / "a.h5", {"robot": "sawyer"})
    outputs: list[str] = []

    def deon(*args: str, ok: bool = True, **env: str) -> Any:
        r = run_deon(*args, env={**os.environ, **env} if env else None)
        outputs.extend([r.stdout, r.stderr])
        assert (r.returncode == 0) == ok, (args, r.returncode, r.stderr)
        assert_no_traceback(r.stderr) if "DEON_DEBUG" not in env else None
        return r

    assert deon("buckets").stdout.split() == ["lab"]
    assert deon("up", "s3://lab/p", str(src)).stdout.split() == ["s3://lab/p/a.h5"]
    deon("metadata", "down", "s3://lab/p")
    deon("down", "s3://lab/p", str(lab.tmp / "dest"))
    assert (lab.tmp / "dest" / "a.h5").read_bytes() == (src / "a.h5").read_bytes()
    r = deon("query", "--sql", "SELECT endpoint_url FROM sources", "--format", "json")
    assert [json.loads(line) for line in r.stdout.splitlines()] == [
        {"endpoint_url": f"http://127.0.0.1:{port}"}
    ]
    # failures name the endpoint without its password (`buckets`: see the test below)
    bad = "http://deonuser:hunter2@127.0.0.1:9"
    for debug in ("0", "1"):
        for args in (
            ["down", "s3://lab/p", str(lab.tmp / "d2")],
            ["metadata", "down", "s3://lab/p"],
            ["up", "s3://lab/p", str(src)],
        ):
            r = deon("--endpoint-url", bad, *args, ok=False, AWS_MAX_ATTEMPTS="1", DEON_DEBUG=debug)
            assert "127.0.0.1:9" in r.stderr
    deon("metadata", "down", "s3://no-such-bucket", ok=False)
    deon("metadata", "down", "s3://no-such-bucket", ok=False, DEON_DEBUG="1")

    assert_absent(["hunter2"], outputs, every_file(lab.tmp))


def test_an_unreachable_endpoint_with_a_password_is_named_without_it(isolated_env: Path) -> None:
    r = run_deon(
        "--endpoint-url",
        "http://deonuser:hunter2@127.0.0.1:9",
        "buckets",
        env={**os.environ, "AWS_MAX_ATTEMPTS": "1"},
    )

    assert r.returncode == 1
    assert_no_traceback(r.stderr)
    assert "cannot reach S3 at http://127.0.0.1:9" in r.stderr
    assert "hunter2" not in r.stderr + r.stdout


# -- file modes ----------------------------------------------------------------------------------


def _with_umask(mask: int) -> Any:
    return lambda: os.umask(mask)


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_catalog_and_state_are_private_whatever_the_umask(lab: Lab) -> None:
    src = lab.tmp / "src"
    make_h5(src / "a.h5", {"robot": "sawyer"})

    for args in (["up", "s3://lab/p", str(src)], ["metadata", "down", "s3://lab/p"]):
        r = run_deon(*args, preexec_fn=_with_umask(0))
        assert r.returncode == 0, r.stderr

    catalog = lab.tmp / "catalog.sqlite"
    state = lab.tmp / "xdg-data" / "deon" / "state.sqlite"
    private = [catalog, state]
    private += [Path(f"{p}{suffix}") for p in private for suffix in ("-wal", "-shm")]
    private = [p for p in private if p.exists()]
    assert catalog in private and state in private
    for path in private:
        assert mode(path) == 0o600, (path, oct(mode(path)))


def test_downloads_are_private_until_finished_then_follow_the_umask(lab: Lab) -> None:
    small = b"small object" * 100
    lab.put("m/small.h5", small, {meta.SHA256_KEY: hashlib.sha256(small).hexdigest()})
    big = os.urandom(24 * MiB)  # three 8 MiB ranges: a resumable download
    lab.put("m/big.h5", big, {meta.SHA256_KEY: hashlib.sha256(big).hexdigest()})
    dest = lab.tmp / "dest"
    proc: subprocess.Popen[bytes] | None = None
    seen: dict[str, int] = {}
    big_gets: list[int] = []

    def watch(method: str, key: str, query: str) -> None:
        if method != "GET" or not key.startswith("m/"):
            return
        for p in dest.glob(".deon-tmp-*"):  # what is on disk while the bytes arrive
            seen[p.name] = mode(p)
        if key == "m/big.h5":
            big_gets.append(1)
            if len(big_gets) == 2 and proc is not None:
                proc.send_signal(signal.SIGKILL)
                time.sleep(0.5)

    lab.proxy.rules.before = watch
    proc = subprocess.Popen(
        [*DEON_CMD, "-j", "1", "down", "s3://lab/m", str(dest)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=_with_umask(0),  # the most permissive umask: 0o666 unless deon says 0o600
    )
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL

    partial = sorted(dest.glob(".deon-tmp-*"))
    assert len(partial) == 2  # the resumable file and its journal
    assert any(p.name.endswith(".parts") for p in partial)
    for p in partial:
        assert mode(p) == 0o600, (p.name, oct(mode(p)))
    assert seen and all(m == 0o600 for m in seen.values()), seen
    lab.proxy.rules.before = None

    r = run_deon("down", "s3://lab/m", str(dest), preexec_fn=_with_umask(0o022))
    assert r.returncode == 0, r.stderr
    assert (dest / "big.h5").read_bytes() == big and (dest / "small.h5").read_bytes() == small
    assert mode(dest / "big.h5") == 0o644 and mode(dest / "small.h5") == 0o644
    assert list(dest.glob(".deon-tmp-*")) == []

    r = run_deon("down", "--force", "s3://lab/m", str(dest), preexec_fn=_with_umask(0o002))
    assert r.returncode == 0, r.stderr
    assert mode(dest / "big.h5") == 0o664 and mode(dest / "small.h5") == 0o664


# -- queries cannot write ------------------------------------------------------------------------


@pytest.fixture
def mirrored(isolated_env: Path) -> Path:
    """A catalog of twelve objects, written through deon's own catalog API (queries
    need no S3)."""
    from deon.catalog.db import ObjectRow, open_catalog
    from deon.catalog.flatten import flatten

    path = isolated_env / "catalog.sqlite"
    with open_catalog(str(path)) as catalog:
        rows = []
        for i in range(12):
            doc = {"robot": ["sawyer", "franka", "widowx"][i % 3], "i": i}
            when = dt.datetime(2026, 1, 1, 12, 0, i)
            row = ObjectRow("lab", f"q/t{i:02d}.h5", 1, f"etag{i}", when, "ab" * 32)
            row.metadata, row.flat = json.dumps(doc), flatten(doc)
            rows.append(row)
        catalog.write(rows)
        catalog.index_columns()
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0
    return path


@pytest.mark.parametrize(
    "attack",
    [
        ["--sql", "SELECT load_extension('x')"],
        ["load_extension('./evil') IS NULL"],
        ["--sql", "SELECT load_extension('/nonexistent/evil', 'sqlite3_evil_init')"],
        ["--sql", "PRAGMA writable_schema = 1"],
        ["--sql", "PRAGMA query_only = 0"],
        ["--sql", "PRAGMA user_version = 7"],
        ["--sql", "SELECT * FROM objects; DELETE FROM objects"],
        ["--sql", "SELECT 1 -- a comment\n; DELETE FROM objects"],
        ["1 = 1); DELETE FROM objects; SELECT (1"],
        ["--sql", "REPLACE INTO objects (bucket, key) VALUES ('lab', 'q/t00.h5')"],
        ["--sql", "INSERT INTO meta_columns (name, path) VALUES ('x', '[]')"],
        ["--sql", "DROP INDEX ix_objects_m_robot"],
        ["--sql", "CREATE TEMP TABLE t AS SELECT 1"],
        ["--sql", "ALTER TABLE objects ADD COLUMN evil"],
        ["--sql", "ANALYZE"],
        ["--sql", "VACUUM"],
        ["--sql", "REINDEX"],
        ["--count", "1 = 1) FROM objects; DELETE FROM objects; SELECT (1"],
    ],
)
def test_nothing_given_to_query_can_write(mirrored: Path, attack: list[str]) -> None:
    catalog = mirrored
    before = catalog.read_bytes()
    files_before = sorted(p.name for p in catalog.parent.iterdir())

    r = run_deon("query", *attack)

    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert_no_traceback(r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    db = sqlite3.connect(catalog)
    try:
        assert db.execute("SELECT count(*) FROM objects").fetchone()[0] == 12
        assert db.execute("PRAGMA user_version").fetchone()[0] == 0
        assert "ix_objects_m_robot" in {r[1] for r in db.execute("PRAGMA index_list(object_rows)")}
    finally:
        db.close()
    assert catalog.read_bytes() == before
    assert sorted(p.name for p in catalog.parent.iterdir()) == files_before


@pytest.mark.parametrize(
    "args",
    [
        [
            "key IN (WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 11) "
            "SELECT printf('q/t%02d.h5', i) FROM n WHERE i % 2 = 0)"
        ],
        [
            "--sql",
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 11) "
            "SELECT o.uri FROM n JOIN objects AS o ON o.key = printf('q/t%02d.h5', n.i) "
            "WHERE n.i % 2 = 0 ORDER BY o.uri",
        ],
    ],
)
def test_a_read_only_recursive_query_works(mirrored: Path, args: list[str]) -> None:
    before = mirrored.read_bytes()

    r = run_deon("query", *args)

    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"s3://lab/q/t{i:02d}.h5" for i in range(0, 12, 2)]
    assert mirrored.read_bytes() == before


# -- no shell ------------------------------------------------------------------------------------

SHELL_PATTERNS = {
    "shell=True": re.compile(r"shell\s*=\s*True"),
    "os.system(": re.compile(r"\bos\s*\.\s*system\s*\("),
    "os.popen(": re.compile(r"\bos\s*\.\s*popen\s*\("),
    "subprocess.getoutput": re.compile(r"\bgetoutput\b"),
    "subprocess.getstatusoutput": re.compile(r"\bgetstatusoutput\b"),
    "from os import system/popen": re.compile(r"from\s+os\s+import\s+[^\n]*\b(system|popen)\b"),
}


def shell_uses(text: str) -> list[str]:
    return [name for name, pattern in SHELL_PATTERNS.items() if pattern.search(text)]


def test_no_code_in_deon_can_hand_input_to_a_shell() -> None:
    sources = sorted(DEON_ROOT.rglob("*.py"))
    assert DEON_ROOT / "cli" / "__init__.py" in sources
    assert DEON_ROOT / "catalog" / "query.py" in sources
    # the scanner itself finds each form
    for sample in (
        "subprocess.run(cmd, shell = True)",
        "os.system('x')",
        "os.popen(cmd)",
        "subprocess.getoutput(c)",
        "subprocess.getstatusoutput(c)",
        "from os import popen",
    ):
        assert shell_uses(sample), sample
    found = {
        str(path.relative_to(DEON_ROOT)): uses
        for path in sources
        if (uses := shell_uses(path.read_text(encoding="utf-8")))
    }
    assert found == {}


def test_shell_syntax_in_keys_and_metadata_is_only_data(lab: Lab) -> None:
    work = lab.tmp / "cwd"
    work.mkdir()
    here_before = set(os.listdir(os.getcwd()))
    src = lab.tmp / "src"
    payloads = [
        "$(touch PWNED)",
        ";touch PWNED2",
        "`touch PWNED3`",
        "|touch PWNED4",
        "&touch PWNED5",
    ]
    for n, name in enumerate(payloads):
        make_h5(
            src / f"{name}.h5",
            {"robot": f"`touch PWNED{n}B`", "note": f"$(touch PWNED{n}C); touch PWNED{n}D"},
            seed=n,
        )

    def deon(*args: str, ok: bool = True, input: str | None = None) -> Any:
        r = run_deon(*args, input=input, cwd=work)
        assert (r.returncode == 0) == ok, (args, r.returncode, r.stderr)
        assert_no_traceback(r.stderr)
        return r

    up = deon("up", "s3://lab/sh", str(src))
    uris = sorted(f"s3://lab/sh/{name}.h5" for name in payloads)
    assert sorted(up.stdout.splitlines()) == uris
    assert lab.list_keys("sh/") == sorted(f"sh/{name}.h5" for name in payloads)
    deon("metadata", "down", "s3://lab/sh")
    r = deon("query", "robot LIKE '`touch%' AND note LIKE '$(touch%'")
    assert sorted(r.stdout.splitlines()) == uris
    r = deon("query", "robot = '`touch PWNED0B`'", "--format", "json")
    assert [json.loads(line)["key"] for line in r.stdout.splitlines()] == ["sh/$(touch PWNED).h5"]
    deon("query", "robot = `touch PWNED6`", ok=False)  # backticks quote a column name in SQL
    deon("down", "s3://lab/sh", str(lab.tmp / "dest"))
    for name in payloads:
        assert (lab.tmp / "dest" / f"{name}.h5").read_bytes() == (src / f"{name}.h5").read_bytes()
    pulled = deon("pull", input="\n".join(uris) + "\n")
    assert len(pulled.stdout.splitlines()) == len(payloads)
    for path in pulled.stdout.splitlines():
        r = deon("show", path)
        assert "touch PWNED" in r.stdout  # the metadata, shown as text
        deon("show", "--json", path)

    pwned = [p for root in (lab.tmp, Path(os.getcwd())) for p in root.rglob("PWNED*")]
    assert pwned == []
    assert set(os.listdir(os.getcwd())) == here_before
    assert os.listdir(work) == []
