"""`deon demo`: the whole job, end to end, with no AWS account and no network.

Starts a local S3 server (moto) on 127.0.0.1, makes RoboNet-like trajectories for two
lab members, and runs the real `deon` commands against it, printing each command and
what came out. The server is stopped and the scratch folder removed at the end.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deon.errors import UsageError

BUCKET = "lab-data"


@dataclass
class Step:
    """One deon command of the demo; `pipe_from` (deon arguments) feeds it the output of
    another deon command, as in `deon query ... | deon pull`."""

    args: list[str]
    note: str
    pipe_from: list[str] | None = None
    stdin: str | None = None


def steps(work: Path, per_member: int) -> list[Step]:
    wanted = "robot = 'sawyer' AND traj_ok"
    return [
        Step(["buckets"], "the buckets these (fake) credentials can see"),
        Step(
            ["up", f"s3://{BUCKET}/alice", f"{work}/alice"],
            "alice uploads her sawyer trajectories; metadata goes into the object headers",
        ),
        Step(["up", f"s3://{BUCKET}/bob", f"{work}/bob"], "bob uploads his franka trajectories"),
        Step(
            ["up", f"s3://{BUCKET}/alice", f"{work}/alice"],
            "uploading again sends nothing: every file is unchanged",
        ),
        Step(
            ["metadata", "down", f"s3://{BUCKET}"],
            "anyone mirrors everyone's metadata into the local catalog (LIST + HEAD)",
        ),
        Step(["metadata", "down"], "refreshing costs one LIST and no HEAD when nothing changed"),
        Step(
            [
                "query",
                "--sql",
                "SELECT robot, count(*) AS n, sum(traj_ok) AS ok FROM objects GROUP BY robot",
                "--format",
                "table",
            ],
            "ask questions offline, in SQL",
        ),
        Step(["query", wanted], "which trajectories match? one s3:// URI per line"),
        Step(["pull"], "download only what matched", pipe_from=["query", wanted]),
        Step(["pull"], "pulling again downloads nothing", pipe_from=["query", wanted]),
        Step(["down", f"s3://{BUCKET}/bob"], "or mirror a whole prefix"),
        Step(
            ["show", f"{work}/data/{BUCKET}/bob/traj_0000.h5", "--png", f"{work}/traj.png"],
            "look inside a trajectory; --png writes a contact sheet of its frames",
        ),
        Step(
            ["metadata", "load"],
            "the catalog as a pandas DataFrame (interactive without a pipe)",
            stdin='print(df.groupby("robot").traj_ok.mean())\n',
        ),
    ]


def run_demo(
    workdir: Path | None = None,
    keep: bool = False,
    per_member: int = 6,
    echo: Callable[[str], None] = print,
) -> int:
    """Run the demo; returns the exit status (0 when every step succeeded).

    Raises:
        UsageError: the local S3 server (the `demo` extra) is not installed.
    """
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as e:
        raise UsageError(
            "deon demo needs a local S3 server: pip install 'deon[demo]' (moto[server])"
        ) from e
    from deon.tools.sample import write_collection

    if workdir is not None and Path(workdir).exists() and any(Path(workdir).iterdir()):
        # The demo deletes its scratch folder afterwards; never someone's own files.
        raise UsageError(f"--workdir {workdir} is not empty: give a new or empty folder")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the server's request log
    work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="deon-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        env = demo_env(work, f"http://{host}:{port}")
        _make_bucket(env)
        echo(f"# local S3 server at http://{host}:{port}, scratch folder {work}")
        write_collection(work / "alice", "sawyer", per_member, seed=1)
        write_collection(work / "bob", "franka", per_member, seed=2)
        echo(
            f"# made {per_member} sawyer trajectories for alice and {per_member} franka "
            "trajectories for bob"
        )
        for step in steps(work, per_member):
            if not _run_step(step, env, echo):
                return 1
        echo("\n# all steps succeeded")
        return 0
    finally:
        server.stop()
        if keep:
            echo(f"# kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def demo_env(work: Path, endpoint: str) -> dict[str, str]:
    """The environment of every demo command: the local server, fake credentials, and
    data, catalog and config inside the scratch folder (the user's own are untouched)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DEON_"))}
    env.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="demo",
        AWS_SECRET_ACCESS_KEY="demo",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=str(work / "aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(work / "aws-credentials"),
        DEON_DATA_DIR=str(work / "data"),
        DEON_CATALOG=str(work / "catalog.sqlite"),
        DEON_CONFIG_DIR=str(work / "config"),
        XDG_DATA_HOME=str(work / "state"),
    )
    return env


def _make_bucket(env: dict[str, str]) -> None:
    from deon.s3.client import Storage

    saved = {k: os.environ.get(k) for k in env if k.startswith("AWS_")}
    os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
    try:  # the demo's fake credentials and region, as every demo command sees them
        Storage(endpoint_url=env["AWS_ENDPOINT_URL"]).create_bucket(BUCKET)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _run_step(step: Step, env: dict[str, str], echo: Callable[[str], None]) -> bool:
    shown = "deon " + " ".join(_quote(a) for a in step.args)
    stdin = step.stdin
    if stdin is not None:
        shown = f"echo {_quote(stdin.strip())} | {shown}"
    if step.pipe_from is not None:
        first = _deon(step.pipe_from, env)
        stdin = first.stdout
        shown = "deon " + " ".join(_quote(a) for a in step.pipe_from) + " | " + shown
    echo(f"\n# {step.note}\n$ {shown}")
    r = _deon(step.args, env, stdin)
    for line in (r.stdout + r.stderr).splitlines():
        echo("  " + line)
    if r.returncode != 0:
        echo(f"# step failed with exit status {r.returncode}")
        return False
    return True


def _quote(arg: str) -> str:
    """Shell quoting as a person would write it: "robot = 'sawyer'" rather than
    'robot = '"'"'sawyer'"'"''."""
    if "'" in arg and not any(c in arg for c in '"$`\\!'):
        return f'"{arg}"'
    return shlex.quote(arg)


def _deon(args: list[str], env: dict[str, str], stdin: str | None = None) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "deon", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
