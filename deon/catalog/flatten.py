"""Flattening a metadata document into catalog columns.

Rules (also in the README):

- Nested objects are flattened with `_`: `{"gripper": {"type": "x"}}` -> `gripper_type`.
- Lists, empty objects and anything nested deeper than MAX_DEPTH are kept as JSON text.
- Numbers stay numbers and booleans become 0/1 (SQLite) or BOOLEAN (elsewhere); integers
  beyond 64 bits are kept as text.
- Column names are lower-case, with every character outside `[a-z0-9_]` replaced by `_`
  and a leading digit prefixed with `_`, so that plain SQL works:
  `SELECT uri FROM objects WHERE robot = 'sawyer'`.
- A name that collides with a fixed column (`size`, `key`, ...) becomes `meta_<name>`.
  When several metadata paths flatten to one name (say `{"a_b": 1}` and
  `{"a": {"b": 2}}`, or `Robot` and `robot`), the one of highest `rank` gets it and the
  others get `<name>__<6 hex>`, the hex being the start of the sha1 of their path. The
  rank depends only on the paths, so every catalog names every path alike whatever
  order it met them in; a path that arrives later and outranks the holder takes the name
  and the holder's column is renamed (with a warning). Nothing is dropped or
  overwritten. `deon query --columns` shows which metadata path each column holds.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Container
from typing import Any

#: Nesting below this depth is stored as JSON text in the column of the level above.
MAX_DEPTH = 8
#: Longest column name (PostgreSQL truncates identifiers at 63 bytes).
MAX_NAME = 63

KIND_BOOLEAN = "boolean"
KIND_INTEGER = "integer"
KIND_REAL = "real"
KIND_TEXT = "text"
KIND_JSON = "json"
KINDS = (KIND_BOOLEAN, KIND_INTEGER, KIND_REAL, KIND_TEXT, KIND_JSON)

_INT64 = (-(2**63), 2**63 - 1)
_BAD = re.compile(r"[^a-z0-9_]")

Path = tuple[str, ...]


# One encoder for every call: json.dumps with options builds a new one each time.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=True)


def _json_text(value: Any) -> str:
    return _ENCODER.encode(value)


def _clean_text(text: str) -> str:
    """Text a database accepts: lone surrogates (from "\\ud800" escapes) become U+FFFD."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)


#: A JSON string, or one of the non-finite numbers Python's json writes and reads.
_NON_FINITE = re.compile(r'"(?:[^"\\]|\\.)*"|-?Infinity|NaN')


def valid_json(text: str) -> str:
    """JSON text with `NaN`, `Infinity` and `-Infinity` (which Python's json writes but
    JSON has not) written `null`, everything else exactly as it was: the `metadata`
    column holds standard JSON, so that `json_extract`, DuckDB and jq read it. The
    typed column of such a key keeps the number where the database can hold it
    (±Infinity as REAL; SQLite stores NaN as NULL)."""
    if "NaN" not in text and "Infinity" not in text:
        return text
    return _NON_FINITE.sub(lambda m: m.group() if m.group()[0] == '"' else "null", text)


def finite(value: Any) -> Any:
    """A parsed JSON value with non-finite floats as None (null), for JSON output."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def flatten(document: Any) -> dict[Path, tuple[Any, str | None]]:
    """Flatten a metadata document into {path: (value, kind)}; kind is None for null.

    A document that is not a JSON object has no columns: it is kept whole in the
    `metadata` column.
    """
    out: dict[Path, tuple[Any, str | None]] = {}
    if isinstance(document, dict):
        _walk(document, (), out)
    return out


def _walk(obj: dict[str, Any], prefix: Path, out: dict[Path, tuple[Any, str | None]]) -> None:
    for key, value in obj.items():
        path = (*prefix, str(key))
        if isinstance(value, dict) and value and len(path) < MAX_DEPTH:
            _walk(value, path, out)
        else:
            out[path] = scalar(value)


def scalar(value: Any) -> tuple[Any, str | None]:
    """A JSON value as a database scalar (None, bool, int, float or str) and its kind."""
    if value is None:
        return None, None
    if isinstance(value, bool):
        return value, KIND_BOOLEAN
    if isinstance(value, int):
        if _INT64[0] <= value <= _INT64[1]:
            return value, KIND_INTEGER
        return str(value), KIND_TEXT
    if isinstance(value, float):
        return (None, None) if math.isnan(value) else (value, KIND_REAL)
    if isinstance(value, str):
        return _clean_text(value), KIND_TEXT
    return _clean_text(_json_text(value)), KIND_JSON


NUMBER_KINDS = (KIND_BOOLEAN, KIND_INTEGER, KIND_REAL)


def as_number(kind: str | None, value: Any) -> Any:
    """A value of a boolean, integer or real column as that Python type; other kinds'
    values, and None, as they are."""
    if value is None:
        return None
    if kind == KIND_BOOLEAN:
        return bool(value)
    if kind == KIND_INTEGER:
        return int(value)
    if kind == KIND_REAL:
        return float(value)
    return value


def unscalar(kind: str | None, value: Any) -> Any:
    """A value read from a column of `kind` as the JSON value it was (the inverse of
    `scalar`): 0/1 of a boolean column as False/True, the JSON text of lists and
    objects parsed. NULL (and pandas' NaN in a boolean column) is None; values of
    other kinds, and values a kind does not cover (a column of a --sql result that
    merely shares the name), come back as they are."""
    if value is None:
        return None
    if kind == KIND_BOOLEAN:
        if isinstance(value, float) and math.isnan(value):
            return None
        return bool(value) if isinstance(value, (int, float)) and value in (0, 1) else value
    if kind == KIND_JSON and isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def widen(a: str | None, b: str | None) -> str | None:
    """The kind that holds values of both kinds (None: no value seen yet).

    Numbers form a chain, boolean < integer < real; text holds everything; JSON joined
    with anything but JSON is text. Being a join, the result does not depend on the
    order in which values are seen.
    """
    if a is None or a == b:
        return b
    if b is None:
        return a
    chain = (KIND_BOOLEAN, KIND_INTEGER, KIND_REAL)
    if a in chain and b in chain:
        return max(a, b, key=chain.index)
    return KIND_TEXT


def base_name(path: Path) -> str:
    """The column name a path would like: joined with `_`, lower-case, SQL-safe."""
    name = _BAD.sub("_", "_".join(path).lower())
    if not name or name[0].isdigit():
        name = "_" + name
    if len(name) > MAX_NAME:
        name = name[: MAX_NAME - 8] + "__" + path_hash(path)
    return name


def path_hash(path: Path) -> str:
    return hashlib.sha1(path_key(path).encode("ascii")).hexdigest()[:6]


#: Names no column may have: SQLite (3.40) reads a view's column `true` or `false` as
#: its boolean keyword, whatever the quoting, and names it `columnN`.
KEYWORD_NAMES = frozenset({"true", "false"})


def wished_name(path: Path, fixed: set[str] | frozenset[str]) -> str:
    """The name a path gets unless a path of higher rank wants it too: its base name, or
    `meta_<name>` when that is a fixed column (or `true`, `false`)."""
    name = base_name(path)
    return f"meta_{name}"[:MAX_NAME] if name in fixed or name in KEYWORD_NAMES else name


def rank(path: Path, fixed: set[str] | frozenset[str]) -> tuple[int, int, str]:
    """Which of several paths wishing the same name gets it: the shortest (a top-level
    key before a nested one), then the one spelled exactly as the name (`robot` before
    `Robot`, a key `meta_size` before `size`), then the first by its JSON text. The
    winner depends only on the paths, never on which object came first."""
    return (len(path), 0 if "_".join(path) == wished_name(path, fixed) else 1, path_key(path))


def suffixed_name(path: Path, taken: Container[str], fixed: set[str] | frozenset[str]) -> str:
    """The name of a path whose wished name went to a path of higher rank:
    `<name>__<first 6 hex of the sha1 of its path>` (`path_hash`)."""
    name = wished_name(path, fixed)
    short = path_hash(path)
    candidate = f"{name[: MAX_NAME - 8]}__{short}"
    n = 1
    while candidate in taken or candidate in fixed:  # only a key made to look like ours
        candidate = f"{name[: MAX_NAME - 8 - len(str(n))]}__{short}{n}"
        n += 1
    return candidate


def shown(path: Path) -> str:
    """A path as people read it, `gripper.type`; as a JSON list when a key holds a dot or
    is empty, so that `{"a.b": 1}` and `{"a": {"b": 2}}` never look alike."""
    if all(part and "." not in part for part in path):
        return ".".join(path)
    return json.dumps(list(path), ensure_ascii=False)


def path_key(path: Path) -> str:
    """How a path is stored in the catalog's column registry: a JSON list, ASCII-escaped.

    This text, not the tuple, is a path's identity: a surrogate pair and the character
    it encodes are the same key in JSON and must be the same column.
    """
    return json.dumps(list(path), ensure_ascii=True)


def path_from_key(text: str) -> Path:
    return tuple(json.loads(text))
