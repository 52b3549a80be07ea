"""Which sources a `metadata down` refreshes, and from which endpoint.

Rows are keyed by bucket and key, not by server: a bucket of the same name on another
endpoint is another bucket, and mirroring it would replace the rows. So the catalog
never decides where requests go (it may be shared, or someone else's): a source is
refreshed only from the endpoint in use now.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from deon.errors import DeonWarning, WarningCode
from deon.s3.client import safe_url
from deon.uri import S3Address


def endpoint_id(url: str | None) -> str:
    """An endpoint URL compared as a server: scheme and host case-insensitive, no
    trailing slash, no user:password ("" for AWS)."""
    u = urlsplit(safe_url(url))
    return f"{u.scheme.lower()}://{u.netloc.lower()}{u.path.rstrip('/')}" if u.netloc else ""


@dataclass
class Plan:
    """What to mirror now, what is refused (uri, why) and what to warn about."""

    addresses: list[S3Address] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def plan(targets: Sequence[S3Address], sources: Sequence[Any], endpoint: str | None) -> Plan:
    """Decide which addresses to mirror from `endpoint` (shown without credentials; None:
    AWS), given the catalog's sources. No targets: every source.

    A source mirrored from another endpoint is refused with the --endpoint-url to use;
    named again by its own address from a new endpoint (the server moved), it follows,
    with a warning; an address overlapping a source of another endpoint is refused, since
    one catalog cannot hold both.
    """
    given = endpoint_id(endpoint)  # "" when none is given: AWS
    shown = endpoint or "AWS"
    out = Plan()

    def elsewhere(t: S3Address) -> list[Any]:
        """Sources from another endpoint whose rows the address would touch."""
        return [
            src
            for src in sources
            if src.bucket == t.bucket
            and endpoint_id(src.endpoint_url) != given
            and (src.prefix.startswith(t.prefix) or t.prefix.startswith(src.prefix))
        ]

    for t in targets or [S3Address(src.bucket, src.prefix) for src in sources]:
        uri = f"s3://{t.bucket}/{t.prefix}"
        clashes = elsewhere(t)
        if not clashes:
            out.addresses.append(t)
            continue
        first, where = clashes[0], clashes[0].endpoint_url or "AWS"
        if targets and len(clashes) == 1 and first.prefix == t.prefix:
            out.warnings.append(
                DeonWarning(
                    WarningCode.ENDPOINT_MOVED,
                    f"{uri}: mirrored from {where} until now, from {shown} from now on",
                )
            )
            out.addresses.append(t)
        elif first.prefix == t.prefix:
            hint = (
                f"pass --endpoint-url {where}"
                if first.endpoint_url
                else "run without --endpoint-url and AWS_ENDPOINT_URL"
            )
            out.refused.append((uri, f"mirrored from {where}, not {shown}: {hint}"))
        else:
            out.refused.append(
                (
                    uri,
                    f"overlaps source {first.uri}, mirrored from {where}, not {shown}; one "
                    "catalog cannot hold both (use another --catalog, or `deon metadata "
                    f"forget {first.uri}`)",
                )
            )
    return out
