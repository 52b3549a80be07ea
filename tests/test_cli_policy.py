"""`deon policy`: the bucket policy that shares a bucket with an organization."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import deon.cli._env
from deon.cli import cli
from tests.conftest import Lab, assert_no_traceback, run_deon

ORG = "o-a1b2c3d4e5"


def test_policy_prints_organization_statements(lab: Lab) -> None:
    r = run_deon("policy", "lab", "--org", ORG)

    assert r.returncode == 0, r.stderr
    policy = json.loads(r.stdout)
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert set(by_sid) == {"DeonOrgList", "DeonOrgRead", "DeonOrgWrite"}
    assert by_sid["DeonOrgList"]["Resource"] == "arn:aws:s3:::lab"
    assert "s3:ListBucket" in by_sid["DeonOrgList"]["Action"]
    assert by_sid["DeonOrgRead"]["Action"] == ["s3:GetObject"]
    assert "s3:PutObject" in by_sid["DeonOrgWrite"]["Action"]
    for s in by_sid.values():
        assert s["Condition"] == {"StringEquals": {"aws:PrincipalOrgID": ORG}}
        assert s["Principal"] == "*" and s["Effect"] == "Allow"
    assert lab.proxy.count("PUT") == 0  # printing changes nothing


def test_read_only_and_accounts(lab: Lab) -> None:
    r = run_deon(
        "policy", "lab", "--read-only", "--account", "123456789012", "--account", "210987654321"
    )

    policy = json.loads(r.stdout)
    sids = [s["Sid"] for s in policy["Statement"]]
    assert sids == ["DeonAccountsList", "DeonAccountsRead"]
    assert policy["Statement"][0]["Principal"] == {
        "AWS": ["arn:aws:iam::123456789012:root", "arn:aws:iam::210987654321:root"]
    }
    assert "Condition" not in policy["Statement"][0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--org", "o-short"], "not an AWS organization id"),
        (["--org", "O-A1B2C3D4E5"], "not an AWS organization id"),
        (["--account", "12345"], "not an AWS account id"),
        ([], "give --org"),
    ],
)
def test_bad_ids_exit_2(lab: Lab, args: list[str], message: str) -> None:
    r = run_deon("policy", "lab", *args)

    assert r.returncode == 2
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert_no_traceback(r.stderr)


def test_apply_merges_with_the_existing_policy_and_replaces_its_own(lab: Lab) -> None:
    theirs = {
        "Sid": "LabAdmins",
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
        "Action": "s3:*",
        "Resource": ["arn:aws:s3:::lab", "arn:aws:s3:::lab/*"],
    }
    lab.client.put_bucket_policy(
        Bucket="lab", Policy=json.dumps({"Version": "2012-10-17", "Statement": [theirs]})
    )

    r = run_deon("policy", "lab", "--org", ORG, "--apply", "--yes")

    assert r.returncode == 0, r.stderr
    assert "+++ s3://lab policy after" in r.stderr and '+      "Sid": "DeonOrgWrite"' in r.stderr
    stored = json.loads(lab.client.get_bucket_policy(Bucket="lab")["Policy"])
    assert [s["Sid"] for s in stored["Statement"]] == [
        "LabAdmins",
        "DeonOrgList",
        "DeonOrgRead",
        "DeonOrgWrite",
    ]
    assert stored["Statement"][0] == theirs

    r = run_deon("policy", "lab", "--org", ORG, "--read-only", "--apply", "--yes")

    assert r.returncode == 0, r.stderr
    stored = json.loads(lab.client.get_bucket_policy(Bucket="lab")["Policy"])
    assert [s["Sid"] for s in stored["Statement"]] == ["LabAdmins", "DeonOrgList", "DeonOrgRead"]

    r = run_deon("policy", "lab", "--org", ORG, "--read-only", "--apply", "--yes")
    assert r.returncode == 0 and "already holds" in r.stderr


def test_apply_on_a_bucket_without_a_policy(lab: Lab) -> None:
    r = run_deon("policy", "lab", "--org", ORG, "--apply", "--yes")

    assert r.returncode == 0, r.stderr
    stored = json.loads(lab.client.get_bucket_policy(Bucket="lab")["Policy"])
    assert len(stored["Statement"]) == 3


def test_apply_asks_first(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deon.cli._env, "stdin_is_tty", lambda: True)

    no = CliRunner().invoke(cli, ["policy", "lab", "--org", ORG, "--apply"], input="n\n")
    assert no.exit_code == 1 and "policy not changed" in no.stderr
    with pytest.raises(lab.client.exceptions.ClientError):
        lab.client.get_bucket_policy(Bucket="lab")

    yes = CliRunner().invoke(cli, ["policy", "lab", "--org", ORG, "--apply"], input="y\n")
    assert yes.exit_code == 0, yes.output
    assert len(json.loads(lab.client.get_bucket_policy(Bucket="lab")["Policy"])["Statement"]) == 3


def test_apply_without_a_terminal_needs_yes(lab: Lab) -> None:
    r = run_deon("policy", "lab", "--org", ORG, "--apply", input="")

    assert r.returncode == 2
    assert "pass --yes" in r.stderr


def test_unknown_bucket_exits_2(lab: Lab) -> None:
    r = run_deon("policy", "no-such-bucket", "--org", ORG, "--apply", "--yes")

    assert r.returncode == 2
    assert "no such bucket" in r.stderr
