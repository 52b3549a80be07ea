"""The tree shows the architecture: no module imports from a layer above it, only
deon/s3/ talks to boto3/botocore/HTTP, only deon/cli/ imports click, no import cycles,
and `import deon` / `deon --help` stay quick (ARCHITECTURE.md)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

DEON = Path(__file__).resolve().parent.parent / "deon"

#: Each layer may import from layers of lower rank, and from itself.
RANK = {
    "errors": 0,
    "config": 1,
    "uri": 1,
    "results": 1,
    "s3": 2,
    "metadata": 2,
    "catalog": 2,
    "output": 3,
    "transfer": 4,
    "mirror": 5,
    "manifest": 5,  # freeze (catalog), pull exact bytes (transfer), diff
    "tools": 6,
    "api": 7,
    "deon": 8,  # the package's own __init__: lazy re-exports of the API
    "cli": 9,
    "__main__": 10,
}
#: Layers everyone may use: the shared modules.
SHARED = {"errors", "config", "uri", "results"}


def modules() -> dict[str, Path]:
    out = {}
    for path in DEON.rglob("*.py"):
        rel = path.relative_to(DEON.parent).with_suffix("")
        if "migrations" in rel.parts:
            continue
        name = ".".join(rel.parts)
        out[name.removesuffix(".__init__")] = path
    return out


def imports(path: Path) -> set[str]:
    """Every module an import statement names, function-level ones included."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                full = f"{node.module}.{a.name}"
                # `from deon import config` imports deon.config, not deon itself
                out.add(full if full in MODULES else node.module)
    return out


MODULES: dict[str, Path] = {}


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "deon"


MODULES.update(modules())


def deon_targets(path: Path) -> set[str]:
    found = set()
    for name in imports(path):
        while name and name not in MODULES and "." in name:
            name = name.rsplit(".", 1)[0]
        if name in MODULES:
            found.add(name)
    return found


def test_every_module_has_a_layer() -> None:
    assert {layer(m) for m in MODULES} <= set(RANK)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_from_a_layer_above_it(module: str) -> None:
    mine = layer(module)
    upward = [
        t
        for t in deon_targets(MODULES[module])
        if layer(t) != mine and RANK[layer(t)] >= RANK[mine] and layer(t) not in SHARED
    ]
    assert upward == [], f"{module} imports {upward} (rank {RANK[mine]})"


def test_the_walk_sees_upward_imports() -> None:
    """The check above is not vacuous: its own machinery finds a known downward edge."""
    assert "deon.api" in deon_targets(MODULES["deon.cli.transfer"]) or any(
        "deon.api" in imports(p) for p in (DEON / "cli").glob("*.py")
    )
    assert "deon.catalog.db" in deon_targets(MODULES["deon.mirror.refresh"])


@pytest.mark.parametrize("module", sorted(MODULES))
def test_only_the_s3_layer_talks_to_boto_and_http(module: str) -> None:
    if layer(module) == "s3":
        return
    libs = ("boto3", "botocore", "urllib3", "http.client", "s3transfer")
    bad = [i for i in imports(MODULES[module]) if i.split(".")[0] in libs or i == "http.client"]
    assert bad == [], f"{module} imports {bad}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_only_the_cli_imports_click(module: str) -> None:
    if layer(module) == "cli":
        return
    assert not [i for i in imports(MODULES[module]) if i.split(".")[0] == "click"], module


def test_the_catalog_is_database_only() -> None:
    for module, path in MODULES.items():
        if layer(module) == "catalog":
            assert {layer(t) for t in deon_targets(path)} <= {"catalog", "errors"}, module


def test_no_import_cycles() -> None:
    """Package facades (an __init__ that only re-exports) are left out, as they add no
    code of their own."""
    graph = {m: deon_targets(p) - {m} for m, p in MODULES.items()}
    facades = {
        m
        for m, p in MODULES.items()
        if p.name == "__init__.py"
        and not any(
            isinstance(n, (ast.FunctionDef, ast.ClassDef)) for n in ast.parse(p.read_text()).body
        )
    }
    seen: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(m: str, path: list[str]) -> None:
        seen[m] = 1
        for t in sorted(graph[m] - facades):
            if seen.get(t) == 1:
                cycle = path[path.index(t) :] + [t]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if t not in seen:
                visit(t, [*path, t])
        seen[m] = 2

    for m in sorted(set(graph) - facades):
        if m not in seen:
            visit(m, [m])


@pytest.mark.parametrize(
    "code",
    [
        "import deon",
        "from deon.cli import cli",
        "import sys; sys.argv = ['deon', '--help']\nfrom deon.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass",
    ],
    ids=["import deon", "import the cli", "deon --help"],
)
def test_start_up_imports_nothing_heavy(code: str) -> None:
    """`import deon` and `deon --help` start fast: none of the heavy libraries loads."""
    probe = (
        f"{code}\nimport sys\n"
        "heavy = [m for m in ('boto3', 'botocore', 'h5py', 'pandas', 'sqlalchemy', 'numpy', "
        "'alembic', 'urllib3', 'tqdm') if m in sys.modules]\n"
        "sys.stderr.write(repr(heavy))"
    )
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert r.stderr.strip().endswith("[]"), r.stderr
