"""Maps the fake-AWS host names to 127.0.0.1 inside a process (tests only).

Imported by Python at start-up when this folder is on PYTHONPATH (the `fakeaws`
fixture puts it there for the deon subprocesses it runs) and when FAKEAWS_RESOLVE holds
the map; tests/fakeaws.py installs the same patch in the test process itself.

FAKEAWS_RESOLVE is JSON: {"names": [...], "suffixes": [...], "ports": {"443": N, "80": M}}.
A name that is one of `names` or ends with one of `suffixes` resolves to 127.0.0.1, its
port 443 to N and 80 to M (any other port is kept), so `https://lab.s3.amazonaws.com`
reaches the fake's TLS listener while the Host header and SNI stay as AWS sees them.
Every other name resolves as usual.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any

_real_getaddrinfo = socket.getaddrinfo


def owns(mapping: dict[str, Any], host: str) -> bool:
    """Whether `host` is one of the fake's names."""
    name = host.lower().rstrip(".")
    if name in mapping.get("names", ()):
        return True
    return any(name.endswith(s) or name == s.lstrip(".") for s in mapping.get("suffixes", ()))


def patched(mapping: Any) -> Any:
    """A getaddrinfo for the fake's map (a dict, or a function returning the current one)."""

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        current = mapping() if callable(mapping) else mapping
        ports = {int(k): int(v) for k, v in current.get("ports", {}).items()}
        if isinstance(host, bytes):
            host = host.decode("idna")
        if isinstance(host, str) and owns(current, host):
            try:
                number = int(port) if port is not None else 0
            except (TypeError, ValueError):
                number = {"https": 443, "http": 80}.get(str(port), 0)
            target = ports.get(number, number)
            return [
                (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", target))
            ]
        return _real_getaddrinfo(host, port, *args, **kwargs)

    return getaddrinfo


def install(mapping: Any) -> None:
    """Patch socket.getaddrinfo so that the fake's names reach 127.0.0.1."""
    socket.getaddrinfo = patched(mapping)  # type: ignore[assignment]


_env = os.environ.get("FAKEAWS_RESOLVE")
if _env:
    install(json.loads(_env))
