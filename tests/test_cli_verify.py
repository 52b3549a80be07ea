"""`deon verify`: local files under DATA_DIR re-hashed against the catalog's sha256
(or plain-MD5 ETag), each difference named on stdout, a summary on stderr."""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

import deon
from deon.transfer.state import State, state_path
from tests.conftest import DEON_CMD, Lab, assert_no_traceback, run_deon

BODIES = {
    "p/a.h5": b"alpha " * 200,
    "p/sub/b.h5": b"bravo " * 300,
    "p/c.h5": b"charlie " * 100,
    "p/d.h5": b"delta " * 150,
}
#: Mirrored, never downloaded: outside every target the tests verify.
ELSEWHERE = {"p2/near.h5": b"a sibling prefix", "q/far.h5": b"another prefix"}


def sha(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def local(lab: Lab, key: str) -> Path:
    return lab.data_dir / "lab" / key


def uri(key: str) -> str:
    return f"s3://lab/{key}"


def line(lab: Lab, status: str, key: str) -> tuple[str, str, str]:
    return (status, uri(key), str(local(lab, key)))


def findings(stdout: str) -> list[tuple[str, str, str]]:
    """stdout's lines as (status, URI, local path), sorted."""
    out = []
    for text in stdout.splitlines():
        status, u, path = text.split("\t")
        out.append((status, u, path))
    return sorted(out)


def summary(stderr: str) -> dict[str, int]:
    """The counts of the `verify: N ok, N missing, ...` line (exactly one such line)."""
    lines = [x for x in stderr.splitlines() if x.startswith("verify: ")]
    assert len(lines) == 1, stderr
    return {name: int(n) for n, name in re.findall(r"(\d+) (\w+)", lines[0])}


def counts(**nonzero: int) -> dict[str, int]:
    """The summary's counts: ok, missing, changed and corrupt always appear, the rest
    only when there are some."""
    return {"ok": 0, "missing": 0, "changed": 0, "corrupt": 0, **nonzero}


def verify(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    r: subprocess.CompletedProcess[str] = run_deon("verify", *args, **kw)
    assert_no_traceback(r.stderr)
    assert "unexpected" not in r.stderr, r.stderr
    return r


def publish(lab: Lab, bodies: dict[str, bytes], *, with_sha: bool = True) -> None:
    for key, body in bodies.items():
        lab.put(key, body, {"deon-sha256": sha(body)} if with_sha else None)


def mirror_and_download(lab: Lab, prefix: str = "s3://lab/p") -> None:
    r = run_deon("metadata", "down", prefix)
    assert r.returncode == 0, r.stderr
    r = run_deon("down", prefix)
    assert r.returncode == 0, r.stderr


@pytest.fixture
def downloaded(lab: Lab) -> Lab:
    """BODIES (with deon-sha256) mirrored and downloaded by `deon down`; ELSEWHERE
    mirrored too, not downloaded."""
    publish(lab, {**BODIES, **ELSEWHERE})
    for prefix in ("s3://lab/p2", "s3://lab/q"):
        assert run_deon("metadata", "down", prefix).returncode == 0
    mirror_and_download(lab)
    for key, body in BODIES.items():
        assert local(lab, key).read_bytes() == body
    return lab


def rewrite_same_size(path: Path) -> None:
    """A user's edit in place: same size, one byte different."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def forge_cache(lab: Lab, path: Path, sha256: str, *, md5: str | None, etag: str) -> None:
    """Make the hash cache claim deon verified the file as it is now, with these hashes:
    what decayed bytes under an untouched identity would look like."""
    db = state_path()
    assert lab.tmp in db.parents  # XDG_DATA_HOME is the test's own
    state = State(db)
    try:
        state.remember(path, os.stat(path), sha256, md5=md5, etag=etag)
        state.flush()  # close() alone loses it: see test_state_close_keeps_what_was_remembered
    finally:
        state.close()


def etag_of(lab: Lab, key: str) -> str:
    return str(lab.head(key)["ETag"]).strip('"')


def multipart_put(lab: Lab, key: str, parts: list[bytes]) -> None:
    """An object uploaded in parts straight to moto: its ETag is `MD5-N`, no sha256."""
    c = lab.client
    upload = c.create_multipart_upload(Bucket=lab.bucket, Key=key)["UploadId"]
    done = []
    for n, body in enumerate(parts, 1):
        etag = c.upload_part(Bucket=lab.bucket, Key=key, UploadId=upload, PartNumber=n, Body=body)[
            "ETag"
        ]
        done.append({"ETag": etag, "PartNumber": n})
    c.complete_multipart_upload(
        Bucket=lab.bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": done}
    )


# -- everything fine ---------------------------------------------------------------------


def test_intact_files_exit_0_and_print_nothing(downloaded: Lab) -> None:
    r = verify("s3://lab/p")

    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    assert summary(r.stderr) == counts(ok=4)
    assert r.stderr.splitlines() == ["verify: 4 ok, 0 missing, 0 changed, 0 corrupt"]


def test_all_lists_one_ok_line_per_object(downloaded: Lab) -> None:
    r = verify("s3://lab/p", "--all")

    assert r.returncode == 0, r.stderr
    assert findings(r.stdout) == sorted(line(downloaded, "ok", key) for key in BODIES)
    assert summary(r.stderr) == counts(ok=4)


def test_verify_reads_no_bucket(downloaded: Lab) -> None:
    downloaded.proxy.reset()

    r = verify("s3://lab/p")

    assert r.returncode == 0, r.stderr
    assert downloaded.proxy.count("LIST", "HEAD", "GET", "PUT") == 0  # the catalog only


# -- missing, changed ----------------------------------------------------------------------


def test_a_deleted_file_is_missing(downloaded: Lab) -> None:
    local(downloaded, "p/sub/b.h5").unlink()

    r = verify("s3://lab/p")

    assert r.returncode == 1
    assert findings(r.stdout) == [line(downloaded, "missing", "p/sub/b.h5")]
    assert summary(r.stderr) == counts(ok=3, missing=1)


def test_files_modified_by_the_user_are_changed(downloaded: Lab) -> None:
    rewrite_same_size(local(downloaded, "p/a.h5"))
    with local(downloaded, "p/c.h5").open("ab") as f:
        f.write(b"appended")
    replacement = local(downloaded, "p/d.h5").with_name("d.new")
    replacement.write_bytes(b"something else entirely")
    replacement.replace(local(downloaded, "p/d.h5"))  # replaced, not edited: a new inode

    r = verify("s3://lab/p", "--all")

    assert r.returncode == 1
    assert findings(r.stdout) == sorted(
        [
            line(downloaded, "changed", "p/a.h5"),
            line(downloaded, "changed", "p/c.h5"),
            line(downloaded, "changed", "p/d.h5"),
            line(downloaded, "ok", "p/sub/b.h5"),
        ]
    )
    assert summary(r.stderr) == counts(ok=1, changed=3)


def test_a_changed_file_whose_bytes_are_restored_is_ok_again(downloaded: Lab) -> None:
    path = local(downloaded, "p/a.h5")
    rewrite_same_size(path)
    assert verify("s3://lab/p").returncode == 1

    path.write_bytes(BODIES["p/a.h5"])
    r = verify("s3://lab/p")

    assert r.returncode == 0, r.stdout
    assert r.stdout == ""


# -- corrupt: the very file deon verified, with other bytes ---------------------------------


def test_bytes_that_changed_under_deons_recorded_identity_are_corrupt(downloaded: Lab) -> None:
    lab = downloaded
    path = local(lab, "p/a.h5")
    old = BODIES["p/a.h5"]
    rewrite_same_size(path)
    forge_cache(lab, path, sha(old), md5=hashlib.md5(old).hexdigest(), etag=etag_of(lab, "p/a.h5"))

    r = verify("s3://lab/p")

    assert r.returncode == 1
    assert findings(r.stdout) == [line(lab, "corrupt", "p/a.h5")]
    assert summary(r.stderr) == counts(ok=3, corrupt=1)


def test_verify_rehashes_and_never_trusts_the_hash_cache(lab: Lab) -> None:
    """The hash cache claims the file's current identity holds the OLD bytes (for an
    object checked by sha256, and one checked by its MD5 ETag): verify reads the file."""
    with_sha = {"p/s.h5": b"by sha256 " * 50}
    by_md5 = {"p/m.h5": b"by md5 etag " * 50}
    publish(lab, with_sha)
    publish(lab, by_md5, with_sha=False)
    mirror_and_download(lab)
    assert verify("s3://lab/p").returncode == 0  # verify itself records both as fine

    for key, old in {**with_sha, **by_md5}.items():
        path = local(lab, key)
        if key == "p/s.h5":
            rewrite_same_size(path)
        else:
            path.write_bytes(old + b"grown")
        forge_cache(lab, path, sha(old), md5=hashlib.md5(old).hexdigest(), etag=etag_of(lab, key))

    first = verify("s3://lab/p", "--all")
    second = verify("s3://lab/p", "--all")  # and verify did not bless them meanwhile

    for r in (first, second):
        assert r.returncode == 1
        assert findings(r.stdout) == [
            line(lab, "corrupt", "p/m.h5"),
            line(lab, "corrupt", "p/s.h5"),
        ]
        assert summary(r.stderr) == counts(corrupt=2)


# -- unknown --------------------------------------------------------------------------------


def test_a_local_file_without_a_catalog_row_is_unknown_when_verifying_a_folder(
    downloaded: Lab,
) -> None:
    lab = downloaded
    (lab.data_dir / "lab" / "p" / "sub" / "extra.h5").write_bytes(b"mine")
    # deon's own files are not the user's: never reported
    (lab.data_dir / "lab" / "p" / ".deon-tmp-123-0123456789ab").write_bytes(b"partial")
    (lab.data_dir / "lab" / "p" / ".deon").mkdir()
    (lab.data_dir / "lab" / "p" / ".deon" / "snapshot.jsonl.gz").write_bytes(b"x")

    r = verify(str(lab.data_dir / "lab" / "p"))

    assert r.returncode == 0, r.stdout
    assert findings(r.stdout) == [line(lab, "unknown", "p/sub/extra.h5")]
    assert summary(r.stderr) == counts(ok=4, unknown=1)
    assert "verify: 4 ok, 0 missing, 0 changed, 0 corrupt, 1 unknown" in r.stderr

    # the s3:// address looks only at the catalog's objects
    by_address = verify("s3://lab/p")
    assert by_address.returncode == 0 and by_address.stdout == ""


def test_unknown_files_do_not_hide_a_problem(downloaded: Lab) -> None:
    lab = downloaded
    (lab.data_dir / "lab" / "p" / "extra.h5").write_bytes(b"mine")
    local(lab, "p/c.h5").unlink()

    r = verify(str(lab.data_dir / "lab" / "p"))

    assert r.returncode == 1
    assert findings(r.stdout) == sorted(
        [line(lab, "missing", "p/c.h5"), line(lab, "unknown", "p/extra.h5")]
    )


# -- objects without a sha256 ------------------------------------------------------------


def test_an_object_without_sha256_is_verified_by_its_md5_etag(lab: Lab) -> None:
    bodies = {"p/plain1.h5": b"no sha256 header " * 40, "p/plain2.h5": b"nor here " * 40}
    publish(lab, bodies, with_sha=False)
    mirror_and_download(lab)

    intact = verify("s3://lab/p", "--all")
    rewrite_same_size(local(lab, "p/plain1.h5"))
    local(lab, "p/plain2.h5").write_bytes(b"shorter")
    modified = verify("s3://lab/p", "--all")

    assert intact.returncode == 0, intact.stdout
    assert findings(intact.stdout) == [
        line(lab, "ok", "p/plain1.h5"),
        line(lab, "ok", "p/plain2.h5"),
    ]
    assert modified.returncode == 1
    assert findings(modified.stdout) == [
        line(lab, "changed", "p/plain1.h5"),
        line(lab, "changed", "p/plain2.h5"),
    ]


def test_a_multipart_object_without_sha256_is_verified_by_its_etag(lab: Lab) -> None:
    """Another tool's multipart ETag (5 MiB parts, as rclone's) is checked with its part
    size inferred; one whose part size no tool would use stays unverifiable."""
    multipart_put(lab, "p/multi.h5", [b"m" * (5 * 1024 * 1024), b"tail"])
    publish(lab, {"p/ok.h5": b"fine"})
    mirror_and_download(lab)
    assert "-" in etag_of(lab, "p/multi.h5")  # not an MD5 of the bytes

    r = verify("s3://lab/p", "--all")
    rewrite_same_size(local(lab, "p/multi.h5"))
    modified = verify("s3://lab/p")

    assert r.returncode == 0, r.stdout
    assert findings(r.stdout) == [line(lab, "ok", "p/multi.h5"), line(lab, "ok", "p/ok.h5")]
    assert summary(r.stderr) == counts(ok=2)
    assert modified.returncode == 1
    assert findings(modified.stdout) == [line(lab, "changed", "p/multi.h5")]
    # ...and a deleted one is missing
    local(lab, "p/multi.h5").unlink()
    gone = verify("s3://lab/p")
    assert gone.returncode == 1
    assert findings(gone.stdout) == [line(lab, "missing", "p/multi.h5")]


# -- what TARGET covers --------------------------------------------------------------------


def test_target_forms_verify_the_right_set(downloaded: Lab) -> None:
    lab = downloaded
    (lab.data_dir / "lab" / "p" / "sub" / "extra.h5").write_bytes(b"mine")
    all_p = sorted(line(lab, "ok", key) for key in BODIES)

    by_address = verify("s3://lab/p", "--all")
    by_bucket_form = verify("lab/p/", "--all")
    by_folder = verify(str(lab.data_dir / "lab" / "p"), "--all")
    by_subfolder = verify(str(lab.data_dir / "lab" / "p" / "sub"), "--all")
    by_file = verify(str(local(lab, "p/c.h5")), "--all")
    by_unknown_file = verify(str(lab.data_dir / "lab" / "p" / "sub" / "extra.h5"), "--all")
    by_relative_folder = verify("lab/p/sub", "--all", cwd=lab.data_dir)

    # never the sibling prefix p2/ nor q/, which were not downloaded
    assert (by_address.returncode, findings(by_address.stdout)) == (0, all_p)
    assert (by_bucket_form.returncode, findings(by_bucket_form.stdout)) == (0, all_p)
    assert by_folder.returncode == 0
    assert findings(by_folder.stdout) == sorted([*all_p, line(lab, "unknown", "p/sub/extra.h5")])
    sub = [line(lab, "ok", "p/sub/b.h5"), line(lab, "unknown", "p/sub/extra.h5")]
    assert (by_subfolder.returncode, findings(by_subfolder.stdout)) == (0, sub)
    assert (by_file.returncode, findings(by_file.stdout)) == (0, [line(lab, "ok", "p/c.h5")])
    assert summary(by_file.stderr) == counts(ok=1)
    assert findings(by_unknown_file.stdout) == [line(lab, "unknown", "p/sub/extra.h5")]
    assert by_unknown_file.returncode == 0
    assert (by_relative_folder.returncode, findings(by_relative_folder.stdout)) == (0, sub)


def test_a_single_file_target_ignores_its_neighbours_problems(downloaded: Lab) -> None:
    lab = downloaded
    # a sibling key that extends the file's name: a prefix match, not the file
    publish(lab, {"p/c.h5.bak": b"backup"})
    assert run_deon("metadata", "down", "s3://lab/p").returncode == 0
    local(lab, "p/a.h5").unlink()
    rewrite_same_size(local(lab, "p/d.h5"))

    one = verify(str(local(lab, "p/c.h5")))
    broken = verify(str(local(lab, "p/d.h5")))
    whole = verify("s3://lab/p")

    assert (one.returncode, one.stdout) == (0, "")
    assert summary(one.stderr) == counts(ok=1)
    assert (broken.returncode, findings(broken.stdout)) == (1, [line(lab, "changed", "p/d.h5")])
    assert whole.returncode == 1
    assert findings(whole.stdout) == sorted(
        [
            line(lab, "missing", "p/a.h5"),
            line(lab, "missing", "p/c.h5.bak"),
            line(lab, "changed", "p/d.h5"),
        ]
    )


def test_the_whole_bucket_folder_includes_every_mirrored_prefix(downloaded: Lab) -> None:
    lab = downloaded

    r = verify(str(lab.data_dir / "lab"))

    assert r.returncode == 1  # p2/ and q/ are in the catalog but were never downloaded
    assert findings(r.stdout) == sorted(line(lab, "missing", key) for key in ELSEWHERE)
    assert summary(r.stderr) == counts(ok=4, missing=2)


# -- usage errors --------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["outside", "data_dir_itself"])
def test_a_target_outside_a_bucket_folder_exits_2_with_one_line(
    downloaded: Lab, where: str
) -> None:
    lab = downloaded
    outside = lab.tmp / "elsewhere"
    outside.mkdir()
    (outside / "t.h5").write_bytes(b"x")
    target = outside if where == "outside" else lab.data_dir

    r = verify(str(target))

    assert r.returncode == 2
    assert r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    if where == "outside":
        assert str(outside) in r.stderr and "data folder" in r.stderr
    # a single file outside too
    f = verify(str(outside / "t.h5"))
    assert f.returncode == 2 and f.stdout == "" and len(f.stderr.strip().splitlines()) == 1


def test_without_a_catalog_exits_2_and_says_to_mirror_first(lab: Lab) -> None:
    catalog = lab.tmp / "catalog.sqlite"
    assert not catalog.exists()

    r = verify("s3://lab/p")

    assert r.returncode == 2
    assert r.stdout == ""
    assert "deon metadata down" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not catalog.exists()  # not created by verify


def test_a_malformed_address_exits_2(downloaded: Lab) -> None:
    r = verify("http://lab/p")

    assert r.returncode == 2
    assert "not an S3 address" in r.stderr


# -- repair ---------------------------------------------------------------------------------


def repair_pipe() -> subprocess.CompletedProcess[str]:
    """`deon verify s3://lab/p | cut -f2 | deon pull --force`, run by a shell as a user would."""
    deon_cmd = " ".join(shlex.quote(c) for c in DEON_CMD)
    return subprocess.run(
        ["sh", "-c", f"{deon_cmd} verify s3://lab/p | cut -f2 | {deon_cmd} pull --force"],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_verify_piped_through_cut_into_pull_force_repairs_everything(downloaded: Lab) -> None:
    lab = downloaded
    local(lab, "p/a.h5").unlink()
    rewrite_same_size(local(lab, "p/sub/b.h5"))
    local(lab, "p/c.h5").write_bytes(b"truncated")
    path = local(lab, "p/d.h5")
    old = BODIES["p/d.h5"]
    rewrite_same_size(path)
    forge_cache(lab, path, sha(old), md5=hashlib.md5(old).hexdigest(), etag=etag_of(lab, "p/d.h5"))
    lab.proxy.reset()

    r = repair_pipe()

    assert r.returncode == 0, r.stderr
    assert_no_traceback(r.stderr)
    assert "verify: 0 ok, 1 missing, 2 changed, 1 corrupt" in r.stderr
    assert sorted(r.stdout.splitlines()) == sorted(str(local(lab, k)) for k in BODIES)
    assert lab.proxy.count("GET") == 4
    for key, body in BODIES.items():
        assert local(lab, key).read_bytes() == body
    again = verify("s3://lab/p")
    assert (again.returncode, again.stdout) == (0, "")
    assert summary(again.stderr) == counts(ok=4)


def test_the_repair_pipe_only_fetches_what_is_broken(downloaded: Lab) -> None:
    lab = downloaded
    local(lab, "p/c.h5").unlink()
    lab.proxy.reset()

    r = repair_pipe()

    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [str(local(lab, "p/c.h5"))]
    assert lab.proxy.count("GET") == 1
    assert verify("s3://lab/p").returncode == 0


# -- the Python API ------------------------------------------------------------------------


def test_python_api_verify(downloaded: Lab) -> None:
    lab = downloaded
    local(lab, "p/a.h5").unlink()
    seen: list[Any] = []

    result = deon.verify("s3://lab/p", on_finding=seen.append)

    assert not result.ok
    assert result.count("missing") == 1 and result.count("ok") == 3
    assert sorted((f.status, f.uri, f.path) for f in seen) == sorted(
        (f.status, f.uri, f.path) for f in result.findings
    )
    assert ("missing", uri("p/a.h5"), local(lab, "p/a.h5")) in [
        (f.status, f.uri, f.path) for f in result.findings
    ]


# -- bugs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["symlink", "relative"])
def test_a_local_folder_target_when_data_dir_is_a_symlink_or_relative(lab: Lab, how: str) -> None:
    publish(lab, BODIES)
    if how == "symlink":
        real = lab.tmp / "big-disk" / "deon-data"
        real.mkdir(parents=True)
        os.symlink(real, lab.tmp / "deon-data")
        env = {**os.environ, "DEON_DATA_DIR": str(lab.tmp / "deon-data")}
        target = str(lab.tmp / "deon-data" / "lab" / "p")
    else:
        env = {**os.environ, "DEON_DATA_DIR": "deon-data"}
        target = "deon-data/lab/p"
    assert run_deon("metadata", "down", "s3://lab/p", env=env).returncode == 0
    assert run_deon("down", "s3://lab/p", env=env, cwd=lab.tmp).returncode == 0

    r = run_deon("verify", target, env=env, cwd=lab.tmp)

    assert_no_traceback(r.stderr)
    assert "unexpected" not in r.stderr, r.stderr
    assert (r.returncode, r.stdout) == (0, "")
    assert summary(r.stderr) == counts(ok=4)


@pytest.mark.parametrize("which", ["absolute_file", "absolute_folder", "relative_folder"])
def test_a_deleted_local_target_is_reported_missing(downloaded: Lab, which: str) -> None:
    lab = downloaded
    if which == "absolute_file":
        local(lab, "p/c.h5").unlink()
        target, cwd, gone = str(local(lab, "p/c.h5")), None, ["p/c.h5"]
    else:
        shutil.rmtree(lab.data_dir / "lab" / "p" / "sub")
        rel = "data/lab/p/sub"
        target = rel if which == "relative_folder" else str(lab.tmp / rel)
        cwd, gone = lab.tmp, ["p/sub/b.h5"]

    r = run_deon("verify", target, cwd=cwd)

    assert_no_traceback(r.stderr)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert findings(r.stdout) == [line(lab, "missing", k) for k in gone]


def test_a_symlink_with_wrong_bytes_at_an_objects_path_is_reported(downloaded: Lab) -> None:
    lab = downloaded
    path = local(lab, "p/a.h5")
    wrong = lab.tmp / "wrong.h5"
    wrong.write_bytes(b"not the object's bytes")
    path.unlink()
    os.symlink(wrong, path)

    r = verify("s3://lab/p")

    assert uri("p/a.h5") in r.stdout, (r.stdout, r.stderr)
    assert r.returncode == 1


@pytest.mark.parametrize("how", ["state_api", "pull", "pull_force", "down_force"])
def test_state_close_keeps_what_was_remembered(lab: Lab, how: str) -> None:
    path = local(lab, "p/a.h5")
    body = BODIES["p/a.h5"]
    if how == "state_api":
        path.parent.mkdir(parents=True)
        path.write_bytes(body)
        state = State()
        state.remember(path, os.stat(path), sha(body))
        state.close()
    else:
        publish(lab, {"p/a.h5": body})
        assert run_deon("metadata", "down", "s3://lab/p").returncode == 0
        args = {
            "pull": ["pull", uri("p/a.h5")],
            "pull_force": ["pull", "--force", uri("p/a.h5")],
            "down_force": ["down", "--force", "s3://lab/p"],
        }[how]
        r = run_deon(*args)
        assert r.returncode == 0, r.stderr
        assert path.read_bytes() == body

    state = State()
    try:
        cached = state.lookup(path, os.stat(path))
    finally:
        state.close()
    assert cached is not None and cached.sha256 == sha(body)
