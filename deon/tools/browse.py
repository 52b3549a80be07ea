"""`deon browse`: the catalog in a web page, served by datasette on 127.0.0.1.

datasette (the `browse` extra) does the serving, filtering and faceting; deon chooses
the facets from what the catalog holds (robot, camera_configuration, ... : text and
boolean metadata columns with few distinct values) and hides its bookkeeping tables.
The catalog is opened read-only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from deon.errors import DeonError, UsageError

#: Metadata keys a robot-learning lab filters on, preferred as facets when present.
PREFERRED = (
    "robot",
    "camera_configuration",
    "action_space",
    "traj_ok",
    "policy_desc",
    "object_classes",
    "primitives",
    "bin_type",
    "gripper_type",
)
MAX_FACETS = 6
MAX_DISTINCT = 40


def choose_facets(catalog: str) -> list[str]:
    """Facet columns: preferred keys first, then other text or boolean metadata columns
    with at most MAX_DISTINCT values (among a sample)."""
    from deon.catalog.access import open_reader

    with open_reader(catalog) as reader:
        kinds = {name: kind for name, _, kind in reader.meta_columns()}
        candidates = [c for c in PREFERRED if c in kinds]
        candidates += sorted(
            c for c, k in kinds.items() if k in ("text", "boolean", "json") and c not in candidates
        )
        facets = []
        for column in candidates:
            q = '"' + column.replace('"', '""') + '"'
            distinct = reader.scalar(
                f"SELECT count(DISTINCT {q}) FROM (SELECT {q} FROM objects LIMIT 20000) AS s"
            )
            if distinct and 1 < int(distinct) <= MAX_DISTINCT:
                facets.append(column)
            if len(facets) >= MAX_FACETS:
                break
    return facets


def datasette_metadata(database: str, facets: list[str]) -> dict[str, Any]:
    return {
        "title": "deon catalog",
        "description": "One row per object. Filter with the facets or the column menus; "
        "copy the uri column into `deon pull`, or run `deon query` with the same "
        "condition.",
        "databases": {
            database: {
                "tables": {
                    "objects": {
                        "facets": facets,
                        "label_column": "uri",
                        "sort": "key",
                    },
                    "meta_columns": {"hidden": True},
                    "sources": {"hidden": True},
                    "alembic_version": {"hidden": True},
                }
            }
        },
    }


def command(catalog: str, port: int, host: str, metadata_file: Path) -> list[str]:
    """The datasette command that serves a SQLite catalog.

    Raises:
        UsageError: not a SQLite catalog, no catalog yet, or datasette missing.
    """
    from deon.catalog.db import resolve_url, sqlite_path
    from deon.catalog.location import no_catalog

    path = sqlite_path(resolve_url(catalog))
    if path is None:
        raise UsageError(
            "deon browse serves SQLite catalogs; for others, deon export one to "
            "Parquet or point datasette-like tools at the database itself"
        )
    if not path.exists():
        raise no_catalog(path)
    try:
        import datasette  # noqa: F401
    except ImportError as e:
        raise UsageError("deon browse needs datasette: pip install 'deon[browse]'") from e
    facets = choose_facets(catalog)
    metadata_file.write_text(json.dumps(datasette_metadata(path.stem, facets), indent=2))
    return [
        sys.executable,
        "-m",
        "datasette",
        "serve",
        str(path),
        "--host",
        host,
        "--port",
        str(port),
        "--metadata",
        str(metadata_file),
        "--setting",
        "default_page_size",
        "50",
        "--setting",
        "sql_time_limit_ms",
        "5000",
    ]


def serve(catalog: str, port: int, host: str = "127.0.0.1", on_ready: Any = None) -> None:
    """Run datasette on `catalog` until it stops or deon is interrupted; it never
    outlives deon.

    Raises:
        UsageError: see `command`.
        DeonError: datasette did not start.
    """
    import signal
    import socket
    import subprocess
    import tempfile
    import time

    if port == 0:
        with socket.socket() as probe:
            probe.bind((host, 0))
            port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="deon-browse-") as tmp:
        cmd = command(catalog, port, host, Path(tmp) / "metadata.json")
        database = Path(cmd[cmd.index("serve") + 1]).stem
        url = f"http://{host}:{port}/{database}/objects"
        server = subprocess.Popen(cmd)

        def stop(signum: int, frame: Any) -> None:
            # Python's default SIGTERM/SIGHUP end deon without `finally`: the server
            # would outlive it, orphaned, still serving the catalog.
            raise SystemExit(128 + signum)

        handlers = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and server.poll() is None:
                with socket.socket() as s:
                    if s.connect_ex((host, port)) == 0:
                        break
                time.sleep(0.1)
            if server.poll() is not None:
                raise DeonError("datasette did not start (see its message above)")
            if on_ready is not None:
                on_ready(url)
            server.wait()
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            if server.poll() is None:
                server.terminate()
                try:
                    server.wait(10)
                except subprocess.TimeoutExpired:
                    server.kill()
