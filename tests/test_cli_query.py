"""`deon query`, `query | pull`, `metadata load` and the Python catalog API."""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import subprocess
import sys

import pytest

import deon
from tests.conftest import DEON_CMD, Lab, assert_no_traceback, run_deon

ROBOTS = ["sawyer", "franka", "widowx"]


@pytest.fixture
def mirrored(lab: Lab) -> Lab:
    """Twelve objects with RoboNet-like metadata, mirrored into the catalog."""
    for i in range(12):
        doc = {
            "robot": ROBOTS[i % 3],
            "traj_ok": i % 4 != 0,
            "object_classes": ["cup", "bowl"] if i % 2 else ["marker"],
            "gripper": {"type": "default", "max_width": 0.08},
            "img_T": 30,
        }
        body = json.dumps({"i": i}).encode()
        lab.put_doc(f"lab/t{i:02d}.h5", body, doc)
    assert run_deon("metadata", "down", "s3://lab/lab").returncode == 0
    lab.proxy.reset()
    return lab


def expected(pred) -> list[str]:
    return [f"s3://lab/lab/t{i:02d}.h5" for i in range(12) if pred(i)]


def test_query_prints_one_uri_per_line(mirrored: Lab) -> None:
    r = run_deon("query", "robot = 'sawyer' AND traj_ok")

    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == expected(lambda i: i % 3 == 0 and i % 4 != 0)
    assert r.stderr == ""
    assert mirrored.proxy.count("LIST", "HEAD", "GET") == 0  # offline


def test_query_without_condition_lists_everything_in_order(mirrored: Lab) -> None:
    r = run_deon("query")

    assert r.stdout.splitlines() == expected(lambda i: True)


def test_query_output_formats(mirrored: Lab) -> None:
    keys = run_deon("query", "robot = 'franka'", "--format", "key").stdout.split()
    assert keys == [f"lab/t{i:02d}.h5" for i in range(12) if i % 3 == 1]

    lines = run_deon("query", "robot = 'franka'", "-f", "json").stdout.splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["uri"] for r in records] == expected(lambda i: i % 3 == 1)
    assert records[0]["metadata"]["gripper"] == {"type": "default", "max_width": 0.08}
    assert records[0]["gripper_max_width"] == 0.08

    out = run_deon(
        "query", "--sql", "SELECT uri, robot, object_classes FROM objects ORDER BY uri", "-f", "csv"
    )
    table = list(csv.reader(io.StringIO(out.stdout)))
    assert table[0] == ["uri", "robot", "object_classes"]
    assert table[2] == ["s3://lab/lab/t01.h5", "franka", '["cup","bowl"]']

    t = run_deon(
        "query", "--sql", "SELECT robot, count(*) AS n FROM objects GROUP BY robot", "-f", "table"
    ).stdout.splitlines()
    assert t[0].split() == ["robot", "n"] and set(t[1]) <= {"-", " "}
    assert sorted(line.split() for line in t[2:]) == [
        ["franka", "4"],
        ["sawyer", "4"],
        ["widowx", "4"],
    ]


def test_limit_and_count(mirrored: Lab) -> None:
    assert run_deon("query", "--limit", "3").stdout.splitlines() == expected(lambda i: i < 3)
    assert run_deon("query", "--count", "traj_ok").stdout.strip() == "9"
    assert run_deon("query", "--count").stdout.strip() == "12"
    r = run_deon("query", "--count", "--sql", "SELECT DISTINCT robot FROM objects")
    assert r.stdout.strip() == "3"


def test_lists_are_json_text_that_sql_can_search(mirrored: Lab) -> None:
    r = run_deon("query", "EXISTS (SELECT 1 FROM json_each(object_classes) WHERE value = 'cup')")

    assert r.stdout.splitlines() == expected(lambda i: i % 2 == 1)


def test_columns_lists_kinds_keys_and_examples(mirrored: Lab) -> None:
    r = run_deon("query", "--columns")

    assert r.returncode == 0, r.stderr
    lines = {line.split()[0]: line for line in r.stdout.splitlines()[2:]}
    assert "boolean" in lines["traj_ok"]
    assert (
        "gripper.max_width" in lines["gripper_max_width"] and "real" in lines["gripper_max_width"]
    )
    assert "'sawyer'" in lines["robot"] and "12" in lines["robot"].split()
    assert "json" in lines["object_classes"]
    assert run_deon("query", "--columns", "robot = 'x'").returncode == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["robt = 'sawyer'"], "unknown column 'robt'; did you mean robot"),
        (["traj_okk"], "did you mean traj_ok"),
        (["robot = 'sawyer' AND"], "bad query"),
        (["robot ="], "bad query"),
        (["x", "--sql", "SELECT 1"], "not both"),
    ],
)
def test_bad_queries_exit_2_with_a_named_problem(
    mirrored: Lab, args: list[str], message: str
) -> None:
    r = run_deon("query", *args)

    assert r.returncode == 2
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert_no_traceback(r.stderr)


@pytest.mark.parametrize(
    "attack",
    [
        ["--sql", "DELETE FROM objects"],
        ["--sql", "UPDATE objects SET robot = 'x'"],
        ["--sql", "DROP TABLE objects"],
        ["--sql", "ATTACH DATABASE 'ATTACHED' AS evil"],
        ["--sql", "PRAGMA journal_mode = DELETE"],
        ["--sql", "CREATE TABLE t (x)"],
        ["1 = 1; DELETE FROM objects"],
        ["robot = 'x' UNION SELECT 1; DROP TABLE objects; --"],
        ["--sql", "WITH x AS (SELECT 1) DELETE FROM objects"],
        ["--sql", "VACUUM INTO 'ATTACHED'"],
    ],
)
def test_nothing_passed_to_query_can_change_the_catalog(mirrored: Lab, attack: list[str]) -> None:
    target = str(mirrored.tmp / "evil.sqlite")
    attack = [a.replace("ATTACHED", target) for a in attack]
    before = (mirrored.tmp / "catalog.sqlite").read_bytes()

    r = run_deon("query", *attack)

    assert r.returncode == 2
    assert_no_traceback(r.stderr)
    db = sqlite3.connect(mirrored.tmp / "catalog.sqlite")
    assert db.execute("SELECT count(*), count(DISTINCT robot) FROM objects").fetchone() == (12, 3)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    assert not os.path.exists(target)
    assert (mirrored.tmp / "catalog.sqlite").read_bytes() == before


def test_query_without_a_catalog_says_what_to_do(isolated_env) -> None:
    r = run_deon("query", "robot = 'x'")

    assert r.returncode == 2
    assert "no catalog" in r.stderr and "deon metadata down" in r.stderr
    assert not (isolated_env / "catalog.sqlite").exists()


def test_query_piped_into_pull_downloads_exactly_the_matches(mirrored: Lab) -> None:
    query = subprocess.Popen(
        [*DEON_CMD, "query", "robot = 'widowx' AND traj_ok"], stdout=subprocess.PIPE
    )
    pull = subprocess.run([*DEON_CMD, "pull"], stdin=query.stdout, capture_output=True, text=True)
    query.wait()

    assert (query.returncode, pull.returncode) == (0, 0), pull.stderr
    want = [i for i in range(12) if i % 3 == 2 and i % 4 != 0]
    root = mirrored.data_dir / "lab" / "lab"
    assert sorted(p.name for p in root.iterdir()) == [f"t{i:02d}.h5" for i in want]
    for i in want:
        assert json.loads((root / f"t{i:02d}.h5").read_bytes()) == {"i": i}
    assert sorted(pull.stdout.split()) == sorted(str(root / f"t{i:02d}.h5") for i in want)
    # the catalog told pull each object's size and ETag: no HEAD before the GETs
    assert mirrored.proxy.count("HEAD") == 0 and mirrored.proxy.count("GET") == len(want)


def test_query_into_head_exits_quietly(mirrored: Lab) -> None:
    # More than a pipe holds (64 KiB), so that deon really writes into a closed pipe.
    for i in range(400):
        mirrored.put(f"many/{i:05d}-" + "x" * 200, b"")
    assert run_deon("metadata", "down", "s3://lab/many").returncode == 0

    r = subprocess.run(
        f"{' '.join(DEON_CMD)} query | head -n 1", shell=True, capture_output=True, text=True
    )

    assert r.stdout.splitlines() == ["s3://lab/lab/t00.h5"]
    assert r.stderr == ""


def test_metadata_load_runs_piped_commands_with_df_and_pull(mirrored: Lab) -> None:
    script = (
        "print(len(df), df.index.name)\n"
        "print(sorted(df.robot.unique()))\n"
        "print(df.traj_ok.dtype, df.img_T.dtype, df['gripper.max_width'].dtype)\n"
        "print(df.loc['s3://lab/lab/t01.h5', 'object_classes'])\n"
        "paths = pull(df[(df.robot == 'sawyer') & df.traj_ok])\n"
        "print(len(paths))\n"
    )

    r = run_deon("metadata", "load", input=script)

    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "12 uri",
        "['franka', 'sawyer', 'widowx']",
        "boolean Int64 float64",
        "['cup', 'bowl']",
        "3",
    ]


def test_metadata_load_with_an_address_selects_that_prefix(mirrored: Lab) -> None:
    mirrored.put("other/x.h5", b"x")
    assert run_deon("metadata", "down", "s3://lab/other").returncode == 0

    r = run_deon("metadata", "load", "s3://lab/other", input="print(list(df.index))\n")

    assert r.stdout.strip() == "['s3://lab/other/x.h5']"


def test_python_api_open_catalog_and_to_pandas(mirrored: Lab) -> None:
    catalog = deon.open_catalog()
    df = catalog.to_pandas("robot = 'sawyer'")

    assert list(df.index) == expected(lambda i: i % 3 == 0)
    assert df.index.name == "uri"
    assert str(df.traj_ok.dtype) == "boolean" and str(df["size"].dtype) == "Int64"
    assert df.object_classes.iloc[0] == ["marker"]
    assert str(df.last_modified.dtype).startswith("datetime64")
    columns, rows = deon.query("traj_ok", limit=2)
    assert "uri" in columns and len(list(rows)) == 2
    catalog.close()


def test_to_pandas_keeps_a_missing_value_missing(mirrored: Lab) -> None:
    """An object without metadata has NULL in every metadata column: in pandas that is
    <NA>, so df[df.traj_ok] never picks it (NaN read as a boolean would be True)."""
    mirrored.put("lab/u_plain.h5", b"no metadata")
    assert run_deon("metadata", "down", "s3://lab/lab").returncode == 0
    catalog = deon.open_catalog()
    df = catalog.to_pandas()
    catalog.close()

    plain = "s3://lab/lab/u_plain.h5"
    assert df.traj_ok.isna().tolist() == [uri == plain for uri in df.index]
    assert pd_index(df[df.traj_ok.fillna(False)]) == expected(lambda i: i % 4 != 0)
    assert df.img_T.isna().sum() == 1 and str(df.img_T.dtype) == "Int64"


def pd_index(df) -> list[str]:
    return sorted(df.index)


def test_metadata_load_is_interactive_on_a_terminal(mirrored: Lab) -> None:
    """On a terminal: a banner with rows, columns and an example filter, then a prompt
    where df and pull are ready."""
    import pty
    import select

    pid, fd = pty.fork()
    if pid == 0:  # the child: deon on a pseudo-terminal, without IPython's colours
        os.environ["TERM"] = "dumb"
        os.execvp(DEON_CMD[0], [*DEON_CMD, "metadata", "load"])
    out = b""

    def read_until(marker: bytes, timeout: float = 60) -> None:
        nonlocal out
        import time

        end = time.monotonic() + timeout
        while marker not in out and time.monotonic() < end:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    out += os.read(fd, 65536)
                except OSError:
                    return

    read_until(b"example:")
    read_until(b"]:" if b"IPython" in out else b">>>", 10)
    os.write(fd, b"print('rows', len(df))\n")
    read_until(b"rows 12")
    os.write(fd, b"exit()\n")
    read_until(b"\x00", 5)
    _, status = os.waitpid(pid, 0)
    text = out.decode(errors="replace")
    assert "12 objects x" in text and "pull(df[df.robot == '" in text
    assert "rows 12" in text
    assert os.WEXITSTATUS(status) == 0


# -- what the reviewer found --------------------------------------------------------------


@pytest.mark.parametrize("comment", ["-- note", "-- note;", "/* note */"])
def test_a_condition_ending_in_a_comment_keeps_limit_and_order(mirrored: Lab, comment: str) -> None:
    r = run_deon("query", "-n", "2", f"robot='sawyer' {comment}")

    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == expected(lambda i: i % 3 == 0)[:2]
    assert r.stderr == ""


@pytest.mark.parametrize(
    "args", [["robot='sawyer' /* note"], ["--sql", "SELECT uri FROM objects /* note"]]
)
def test_an_unterminated_comment_is_a_syntax_error(mirrored: Lab, args: list[str]) -> None:
    r = run_deon("query", "-n", "1", *args)

    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr.startswith("Error: bad query: incomplete input")
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("where", ["robot='sawyer';", "robot='sawyer' ; ;\n", "robot='sawyer';\t"])
def test_a_condition_may_end_with_a_semicolon(mirrored: Lab, where: str) -> None:
    r = run_deon("query", where)

    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == expected(lambda i: i % 3 == 0)
    assert run_deon("query", "--count", where).stdout == "4\n"


def test_a_second_statement_after_a_condition_is_still_refused(mirrored: Lab) -> None:
    before = mirrored.catalog.read_bytes()

    r = run_deon("query", "robot='sawyer'; DROP TABLE objects;")

    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr.startswith("Error: bad query:") and len(r.stderr.splitlines()) == 1
    assert mirrored.catalog.read_bytes() == before
    assert len(mirrored.rows()) == 12


@pytest.mark.parametrize(
    ("args", "printed"),
    [
        (["traj_ok", "--limit", "2"], "2"),
        (["traj_ok", "--limit", "100"], "9"),
        (["--limit", "0"], "0"),
        (["--sql", "SELECT DISTINCT robot FROM objects", "-n", "2"], "2"),
    ],
)
def test_count_counts_what_the_query_would_print(
    mirrored: Lab, args: list[str], printed: str
) -> None:
    r = run_deon("query", "--count", *args)

    assert r.returncode == 0, r.stderr
    assert r.stdout == printed + "\n"
    rows = run_deon("query", *args, "-f", "json").stdout.splitlines()
    assert len(rows) == int(printed)


def test_json_lines_are_typed_by_the_kinds_the_catalog_records(mirrored: Lab) -> None:
    mirrored.put("lab/u_plain.h5", b"no metadata")
    assert run_deon("metadata", "down", "s3://lab/lab").returncode == 0

    r = run_deon("query", "-f", "json", "key IN ('lab/t00.h5', 'lab/t01.h5', 'lab/u_plain.h5')")

    assert r.returncode == 0, r.stderr
    t00, t01, plain = (json.loads(line) for line in r.stdout.splitlines())
    assert t00["traj_ok"] is False and t01["traj_ok"] is True
    assert t00["object_classes"] == ["marker"] and t01["object_classes"] == ["cup", "bowl"]
    assert t01["metadata"]["object_classes"] == ["cup", "bowl"]
    assert t01["img_t"] == 30 and t01["gripper_max_width"] == 0.08 and t01["robot"] == "franka"
    assert plain["traj_ok"] is None and plain["object_classes"] is None
    assert plain["metadata"] is None
    # a whole SELECT may give a catalog column's name to other values: printed as they are
    r = run_deon(
        "query",
        "-f",
        "json",
        "--sql",
        "SELECT size AS traj_ok, '[1,2]' AS object_classes FROM objects WHERE key = 'lab/t01.h5'",
    )
    assert [json.loads(line) for line in r.stdout.splitlines()] == [
        {"traj_ok": len(json.dumps({"i": 1})), "object_classes": "[1,2]"}
    ]
    # CSV keeps what the catalog stores
    r = run_deon(
        "query", "-f", "csv", "--sql", "SELECT traj_ok FROM objects WHERE key = 'lab/t01.h5'"
    )
    assert r.stdout.splitlines() == ["traj_ok", "1"]


def test_query_on_a_sqlite_catalog_imports_neither_sqlalchemy_nor_pandas(mirrored: Lab) -> None:
    code = (
        "import sys; from deon.cli import main\n"
        "sys.argv = ['deon', 'query', '-f', 'json', 'traj_ok']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "print([m for m in ('sqlalchemy', 'pandas', 'alembic') if m in sys.modules], "
        "file=sys.stderr)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)

    assert len(r.stdout.splitlines()) == 9
    assert r.stderr == "[]\n"


def test_an_error_in_piped_load_commands_is_shown_as_python_shows_it(mirrored: Lab) -> None:
    script = "print('before')\ndef f(d):\n    return d['nope']\nf({})\nprint('after')\n"

    r = run_deon("metadata", "load", input=script)

    assert r.returncode == 1
    assert r.stdout == "before\n"
    assert r.stderr.splitlines() == [
        "Traceback (most recent call last):",
        '  File "<stdin>", line 4, in <module>',
        "    f({})",
        '  File "<stdin>", line 3, in f',
        "    return d['nope']",
        "           ~^^^^^^^^",
        "KeyError: 'nope'",
    ]


@pytest.mark.parametrize(
    ("script", "status", "last_line"),
    [
        ("1/0\n", 1, "ZeroDivisionError: division by zero"),
        ("print(\n", 1, "SyntaxError: '(' was never closed"),
        ("import sys\nsys.exit(3)\n", 3, None),
        ("raise SystemExit('bye')\n", 1, "bye"),
        ("print(len(df))\n", 0, None),
    ],
)
def test_piped_load_commands_exit_as_python_does(
    mirrored: Lab, script: str, status: int, last_line: str | None
) -> None:
    r = run_deon("metadata", "load", input=script)
    python = subprocess.run(
        [sys.executable, "-"], input=script.replace("len(df)", "12"), capture_output=True, text=True
    )

    assert r.returncode == python.returncode == status
    assert (r.stderr.splitlines()[-1] if r.stderr else None) == last_line
    assert "unexpected" not in r.stderr and "deon/" not in r.stderr
