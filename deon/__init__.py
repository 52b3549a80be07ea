"""deon: share HDF5 datasets through S3.

Upload trajectories with their metadata (`up`), mirror every object's metadata into a
local SQLite catalog, query it offline, and download only what matches (`pull`).

The public API is imported lazily so that `import deon` (and `deon --help`) stay quick.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "buckets": "deon.api",
    "up": "deon.api",
    "up_watch": "deon.api",
    "repeat": "deon.api",
    "down": "deon.api",
    "pull": "deon.api",
    "show": "deon.api",
    "verify": "deon.api",
    "mirror": "deon.api",
    "publish": "deon.api",
    "query": "deon.api",
    "export": "deon.api",
    "freeze": "deon.api",
    "diff": "deon.api",
    "load_manifest": "deon.api",
    "manifest_frame": "deon.api",
    "open_catalog": "deon.api",
    "Settings": "deon.config",
    "load_settings": "deon.config",
    "DeonError": "deon.errors",
    "Progress": "deon.results",
    "SyncResult": "deon.results",
    "Outcome": "deon.results",
    "Status": "deon.results",
}

__all__ = [
    "DeonError",
    "Outcome",
    "Progress",
    "Settings",
    "Status",
    "SyncResult",
    "__version__",
    "buckets",
    "diff",
    "down",
    "export",
    "freeze",
    "load_manifest",
    "load_settings",
    "manifest_frame",
    "mirror",
    "open_catalog",
    "publish",
    "pull",
    "query",
    "show",
    "repeat",
    "up",
    "up_watch",
    "verify",
]

if TYPE_CHECKING:
    from deon.api import (
        buckets,
        diff,
        down,
        export,
        freeze,
        load_manifest,
        manifest_frame,
        mirror,
        open_catalog,
        publish,
        pull,
        query,
        repeat,
        show,
        up,
        up_watch,
        verify,
    )
    from deon.config import Settings, load_settings
    from deon.errors import DeonError
    from deon.results import Outcome, Progress, Status, SyncResult


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'deon' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
