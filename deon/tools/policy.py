"""Bucket policies that share a bucket with an AWS organization or with single accounts.

deon's statements carry Sids starting with "Deon", so applying a policy again replaces
them and leaves every other statement of the bucket's policy as it was.
"""

from __future__ import annotations

import difflib
import json
import re
from typing import Any

from deon.errors import UsageError

SID_PREFIX = "Deon"
_ORG_ID = re.compile(r"o-[a-z0-9]{10,32}")
_ACCOUNT_ID = re.compile(r"\d{12}")

LIST_ACTIONS = ["s3:ListBucket", "s3:GetBucketLocation"]
READ_ACTIONS = ["s3:GetObject"]
WRITE_ACTIONS = ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]


def check_org(org: str) -> str:
    if not _ORG_ID.fullmatch(org):
        raise UsageError(
            f"not an AWS organization id: {org!r} (expected o- and 10 to 32 lower-case "
            "letters or digits, as `aws organizations describe-organization` shows)"
        )
    return org


def check_account(account: str) -> str:
    if not _ACCOUNT_ID.fullmatch(account):
        raise UsageError(f"not an AWS account id: {account!r} (expected 12 digits)")
    return account


def statements(
    bucket: str,
    *,
    org: str | None = None,
    accounts: list[str] | tuple[str, ...] = (),
    read_only: bool = False,
    partition: str = "aws",
) -> list[dict[str, Any]]:
    """deon's statements: list and read (and, unless read_only, write) the bucket, for
    members of an organization (aws:PrincipalOrgID) and/or for whole accounts."""
    if org is None and not accounts:
        raise UsageError("give --org o-XXXXXXXXXX and/or --account ID")
    bucket_arn = f"arn:{partition}:s3:::{bucket}"
    groups: list[tuple[str, Any, dict[str, Any] | None]] = []
    if org is not None:
        groups.append(("Org", "*", {"StringEquals": {"aws:PrincipalOrgID": check_org(org)}}))
    if accounts:
        roots = [f"arn:{partition}:iam::{check_account(a)}:root" for a in accounts]
        groups.append(("Accounts", {"AWS": roots if len(roots) > 1 else roots[0]}, None))
    out = []
    for name, principal, condition in groups:
        parts = [("List", LIST_ACTIONS, bucket_arn), ("Read", READ_ACTIONS, f"{bucket_arn}/*")]
        if not read_only:
            parts.append(("Write", WRITE_ACTIONS, f"{bucket_arn}/*"))
        for what, actions, resource in parts:
            statement: dict[str, Any] = {
                "Sid": f"{SID_PREFIX}{name}{what}",
                "Effect": "Allow",
                "Principal": principal,
                "Action": actions,
                "Resource": resource,
            }
            if condition is not None:
                statement["Condition"] = condition
            out.append(statement)
    return out


def merge(existing: dict[str, Any] | None, ours: list[dict[str, Any]]) -> dict[str, Any]:
    """The bucket's policy with deon's statements replaced by `ours`; others kept."""
    policy = dict(existing or {"Version": "2012-10-17"})
    policy.setdefault("Version", "2012-10-17")
    kept = policy.get("Statement", [])
    if isinstance(kept, dict):
        kept = [kept]
    kept = [s for s in kept if not str(s.get("Sid", "")).startswith(SID_PREFIX)]
    policy["Statement"] = kept + ours
    return policy


def render(policy: dict[str, Any] | None) -> str:
    return "" if policy is None else json.dumps(policy, indent=2) + "\n"


def diff(before: dict[str, Any] | None, after: dict[str, Any], bucket: str) -> str:
    """A unified diff of the policy text, for a person to approve."""
    return "".join(
        difflib.unified_diff(
            render(before).splitlines(keepends=True),
            render(after).splitlines(keepends=True),
            fromfile=f"s3://{bucket} policy now",
            tofile=f"s3://{bucket} policy after",
        )
    )
