"""Objects the original deoncli uploaded over 8 MiB (boto3's multipart: 8 MiB parts, a
`MD5-N` ETag, no sha256 header) are verified by that ETag when downloaded, are found up
to date without a download, and count as verifiable for `deon verify`."""

from __future__ import annotations

import hashlib
import io
import json
import os

import pytest

from deon.transfer.digest import EtagHasher, candidate_part_sizes, etag_part_count
from tests.conftest import Lab, assert_no_traceback, run_deon

MiB = 1024 * 1024


def deoncli_put(lab: Lab, key: str, body: bytes) -> str:
    """Upload as the original deoncli did: boto3's upload_fileobj with its defaults
    (multipart above 8 MiB, 8 MiB parts), the metadata JSON in `metajson`."""
    from boto3.s3.transfer import TransferConfig

    lab.client.upload_fileobj(
        io.BytesIO(body),
        lab.bucket,
        key,
        ExtraArgs={"Metadata": {"metajson": json.dumps({"robot": "sawyer"})}},
        Config=TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB),
    )
    etag = str(lab.head(key)["ETag"]).strip('"')
    assert etag_part_count(etag) == -(-len(body) // (8 * MiB))  # multipart, as deoncli's
    return etag


@pytest.mark.parametrize("size", [10 * MiB + 5, 20 * MiB + 3])  # whole and ranged downloads
def test_corrupted_bytes_fail_the_multipart_etag_check(lab: Lab, size: int) -> None:
    body = os.urandom(size)
    deoncli_put(lab, "o/big.hdf5", body)
    lab.proxy.rules.corrupt["o/big.hdf5"] = b"\x00\x01" * 8  # flipped in transit

    r = run_deon("down", "s3://lab/o", str(lab.tmp / "dest"))

    assert r.returncode == 1
    assert "s3://lab/o/big.hdf5: corrupt: the bytes do not give its multipart ETag" in r.stderr
    assert list((lab.tmp / "dest").glob("*.hdf5")) == []  # never took the final name
    assert_no_traceback(r.stderr)

    lab.proxy.rules.corrupt.clear()
    ok = run_deon("down", "s3://lab/o", str(lab.tmp / "dest"))
    assert ok.returncode == 0, ok.stderr
    assert (lab.tmp / "dest" / "big.hdf5").read_bytes() == body


def test_an_intact_copy_is_up_to_date_and_verifiable(lab: Lab) -> None:
    body = os.urandom(10 * MiB + 5)  # under deon's own 16 MiB threshold
    deoncli_put(lab, "o/big.hdf5", body)
    dest = lab.data_dir / "lab" / "o" / "big.hdf5"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(body)  # put there by another tool: deon never saw it
    assert run_deon("metadata", "down", "s3://lab/o").returncode == 0
    lab.proxy.reset()

    again = run_deon("down", "s3://lab/o")
    v = run_deon("verify", "s3://lab/o", "--all")
    data = bytearray(body)
    data[9 * MiB] ^= 1
    dest.write_bytes(bytes(data))
    bad = run_deon("verify", "s3://lab/o")

    assert again.returncode == 0, again.stderr
    assert "1 unchanged" in again.stderr and lab.proxy.count("GET") == 0
    assert v.returncode == 0 and v.stdout.split("\t")[0] == "ok", v.stdout
    assert bad.returncode == 1 and bad.stdout.split("\t")[0] == "changed", bad.stdout


def test_the_part_size_is_inferred_as_tools_choose_it() -> None:
    size = 100 * MiB + 1
    assert candidate_part_sizes(size, 13)[0] == 8 * MiB  # boto3, the AWS CLI, deon
    assert 5 * MiB in candidate_part_sizes(21 * MiB, 5)  # rclone's 5 MiB chunks
    assert candidate_part_sizes(6 * MiB, 3) == []  # parts under 5 MiB: not S3's
    body = os.urandom(11 * MiB)
    parts = [hashlib.md5(body[i : i + 5 * MiB]).digest() for i in range(0, len(body), 5 * MiB)]
    etag = f"{hashlib.md5(b''.join(parts)).hexdigest()}-{len(parts)}"
    hasher = EtagHasher(len(body), etag)
    for i in range(0, len(body), 777_777):  # chunks that straddle part boundaries
        hasher.update(body[i : i + 777_777])
    assert hasher.matches() is True
    hasher.reset()
    hasher.update(body[:-1] + b"\x00")
    assert hasher.matches() is False
