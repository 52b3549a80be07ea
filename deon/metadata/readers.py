"""Metadata readers: how `deon up` and `deon show` find the metadata of an HDF5 file.

A reader is a function of an open `h5py.File` that returns the file's metadata document
(a dict; the `attrs` reader may return any JSON value), or None when the file is not in
its format. It raises (any exception) when the file is in its format but broken: then
that file goes up without metadata and a warning names the reader and the reason. The
readers are tried in order and the first that recognises the file decides:

1. `attrs`: the JSON text in `attrs['metadata']`, the format deon writes;
2. `robonet`: RoboNet's native layout, derived as RoboNet's `load_metadata_dict` does
   (see deon/metadata/robonet.py);
3. then every reader installed as an entry point in the group `deon.metadata_readers`
   (a lab's package declares `[project.entry-points."deon.metadata_readers"]
   mylab = "mylab.deon:read"`), in the order of their names.

`metadata_readers` in the config file (or `DEON_METADATA_READERS`, comma-separated)
replaces that order: a list of names, each a built-in (`attrs`, `robonet`), an entry
point's name, or a Python function named `package.module:function` (or
`package.module.function`). Values a reader returns are made JSON (numpy scalars as
numbers, arrays as lists, bytes as UTF-8 text).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deon.errors import ConfigError
from deon.metadata import robonet

ENTRY_POINT_GROUP = "deon.metadata_readers"
METADATA_ATTR = "metadata"
ATTRS = "attrs"
#: the built-in readers, in the order they are tried
BUILTIN_ORDER = (ATTRS, robonet.NAME)

ReadFunction = Callable[[Any], Any]


@dataclass(frozen=True)
class MetadataRead:
    """What a file's metadata reader found (see deon.metadata.readers).

    status is "ok" (document is the metadata), "missing" (no reader recognised the
    file), "invalid" (the reader that recognised it failed: detail says why) or
    "unreadable" (the HDF5 file itself cannot be read). reader names the reader that
    recognised the file (`attrs`, `robonet`, or a lab's).
    """

    status: str
    document: Any = None
    detail: str = ""
    reader: str | None = None


def attr_text(value: Any) -> str | None:
    """The attribute as text, whatever way h5py hands it back (str, bytes, 1-element array)."""
    import numpy as np

    if isinstance(value, np.ndarray):
        if value.size != 1:
            return None
        value = value.reshape(-1)[0]
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8")
    if isinstance(value, str):
        return value
    return None


class ReaderError(ValueError):
    """The file is in the reader's format, but its metadata cannot be read."""


@dataclass(frozen=True)
class Reader:
    """A metadata reader and the name `deon show` reports it by."""

    name: str
    read: ReadFunction


def read_attrs(f: Any) -> Any:
    """The reader `attrs`: `attrs['metadata']` parsed as JSON; None without the attribute.

    Raises:
        ReaderError: the attribute is not UTF-8 text, or not valid JSON.
    """
    if METADATA_ATTR not in f.attrs:
        return None
    raw = f.attrs[METADATA_ATTR]
    try:
        text = attr_text(raw)
    except UnicodeDecodeError:
        raise ReaderError("'metadata' attribute is not UTF-8 text") from None
    if text is None:
        raise ReaderError("'metadata' attribute is not a string")
    try:
        text.encode("utf-8")  # h5py hands back undecodable bytes as lone surrogates
    except UnicodeEncodeError:
        raise ReaderError("'metadata' attribute is not UTF-8 text") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise ReaderError("'metadata' attribute nests too deeply") from None
    except ValueError as e:
        raise ReaderError(f"'metadata' attribute is not valid JSON ({e})") from None


_BUILTIN: dict[str, ReadFunction] = {ATTRS: read_attrs, robonet.NAME: robonet.read}


def _entry_points() -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _import(spec: str, setting: str) -> ReadFunction:
    """A function named `package.module:function` or `package.module.function`."""
    module_name, sep, attr = spec.partition(":")
    if not sep:
        module_name, _, attr = spec.rpartition(".")
    if not module_name or not attr:
        raise ConfigError(
            f"metadata reader {spec!r} ({setting}): not a built-in reader ("
            f"{', '.join(BUILTIN_ORDER)}), an entry point of {ENTRY_POINT_GROUP}, or a "
            "function named package.module:function"
        )
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as e:  # a lab's module may fail in any way while importing
        raise ConfigError(
            f"metadata reader {spec!r} ({setting}) cannot be loaded: {type(e).__name__}: {e}"
        ) from e
    if not callable(obj):
        raise ConfigError(f"metadata reader {spec!r} ({setting}) is not a function")
    return obj  # type: ignore[no-any-return]


def resolve(names: Sequence[str] | None = None, setting: str = "metadata_readers") -> list[Reader]:
    """The readers to try, in order: `names` (see the module doc), or by default the
    built-ins then every installed entry point by name.

    Raises:
        ConfigError: a name that is neither built in, nor an entry point, nor importable.
    """
    points = _entry_points()
    if names is None:
        names = [*BUILTIN_ORDER, *sorted(n for n in points if n not in _BUILTIN)]
    out: list[Reader] = []
    for name in names:
        name = name.strip()
        if name in _BUILTIN:
            out.append(Reader(name, _BUILTIN[name]))
        elif name in points:
            try:
                fn = points[name].load()
            except Exception as e:  # a lab's package may fail in any way while importing
                raise ConfigError(
                    f"metadata reader {name!r} (entry point {points[name].value} of "
                    f"{ENTRY_POINT_GROUP}) cannot be loaded: {type(e).__name__}: {e}"
                ) from e
            out.append(Reader(name, fn))
        else:
            out.append(Reader(name, _import(name, setting)))
    return out


def _document(reader: Reader, value: Any) -> Any:
    """What a reader returned, as a JSON document."""
    if reader.name == ATTRS:
        return value  # parsed JSON already
    if not isinstance(value, Mapping):
        raise ReaderError(f"returned a {type(value).__name__}, not a dict")
    return robonet.jsonable(value)


def read_metadata(path: Path, readers: Sequence[Reader] | None = None) -> MetadataRead:
    """The metadata of an HDF5 file, from the first reader that recognises it; never
    raises for bad content (see MetadataRead for the statuses)."""
    import h5py

    chosen = list(readers) if readers is not None else resolve()
    try:
        f = h5py.File(path, "r")
    except (OSError, KeyError, RuntimeError, ValueError) as e:
        return MetadataRead("unreadable", detail=f"cannot read HDF5 file: {e}")
    with f:
        for reader in chosen:
            try:
                value = reader.read(f)
                if value is None:
                    continue
                return MetadataRead("ok", _document(reader, value), reader=reader.name)
            except Exception as e:  # a lab's reader may fail in any way: name it, go on
                detail = (
                    str(e)
                    if isinstance(e, ReaderError) and reader.name == ATTRS
                    else (
                        f"reader {reader.name}: {e}"
                        if isinstance(e, (ReaderError, robonet.LayoutError))
                        else f"reader {reader.name}: {type(e).__name__}: {e}"
                    )
                )
                return MetadataRead("invalid", detail=detail, reader=reader.name)
    tried = ", ".join(r.name for r in chosen) or "none"
    first = "no 'metadata' attribute, and " if any(r.name == ATTRS for r in chosen) else ""
    return MetadataRead(
        "missing", detail=f"{first}no metadata reader recognised the file (tried {tried})"
    )
