"""RoboNet's native layout: the metadata RoboNet's own loader derives from a file.

RoboNet's files (written by visual_foresight's `save_hdf5`) carry no `attrs['metadata']`
JSON. Their metadata is what `robonet/datasets/util/metadata_helper.py:load_metadata_dict`
computes from the file's structure, and this module computes the same keys by the same
rules, in the same order:

| key | from |
| --- | --- |
| `file_version` | the root dataset `file_version` (bytes decoded as UTF-8 text) |
| `sdim`, `state_T` | `env/state`'s shape: (state_T, sdim) |
| `adim`, `action_T` | `policy/actions`' shape: (action_T, adim) |
| `ncam` | `env.attrs['n_cams']`, only when it is non-zero; then, from camera 0: |
| `frame_dim` | `attrs['shape'][:2]` of `env/cam0_video/frames` (mp4) or of `.../frame0` (jpeg) |
| `img_T` | `attrs['T']` of the mp4 dataset, or the number of datasets in `env/cam0_video` |
| `img_encoding` | `"mp4"` when `env.attrs['cam_encoding'] == "mp4"`, else `"jpg"` |
| `image_format` | `attrs['image_format']` of that dataset (`"RGB"` or `"BGR"`) |
| every dataset under `misc/` | its value (`traj_ok`, `term_t`, ...) |
| every attribute of the `metadata` group | its value (`robot`, `object_classes`, ...) |
| `low_bound`, `high_bound` | the first row of `env/low_bound` / `env/high_bound`, unless set |

The one departure: `load_metadata_dict` also stores the file's sha256 as a key; deon
keeps that in its own `sha256` column (the same hash of the same bytes), so the document
has no `sha256` key and no second `meta_sha256` column appears. Values become JSON as
numpy would print them: numpy scalars as numbers and booleans, arrays as lists, bytes
as UTF-8 text. Where `load_metadata_dict` would fail (a missing dataset, a key both in
`misc/` and the `metadata` group, which it asserts against) deon names why and the file
goes up without metadata.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

NAME = "robonet"


class LayoutError(ValueError):
    """The file looks like RoboNet's layout but load_metadata_dict's rules fail on it."""


def claims(f: Any) -> bool:
    """Whether a file is in RoboNet's layout: an `env` group and a `metadata` group
    (visual_foresight's `save_hdf5` always writes both; deon's own files have neither
    a `metadata` group nor, usually, anything else RoboNet's loader needs)."""
    import h5py

    return isinstance(_get(f, "metadata"), h5py.Group) and isinstance(_get(f, "env"), h5py.Group)


def _get(f: Any, path: str) -> Any:
    """The object at `path`, or None (also when a part of the path is not a group)."""
    try:
        return f.get(path)
    except (KeyError, TypeError, ValueError, OSError):
        return None


def jsonable(value: Any, where: str = "") -> Any:
    """An h5py value as JSON: numpy scalars as Python numbers and booleans, arrays as
    (nested) lists, bytes as UTF-8 text.

    Raises:
        LayoutError: a value JSON cannot hold (complex numbers, opaque bytes, ...).
    """
    import numpy as np

    if isinstance(value, (bytes, np.bytes_)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise LayoutError(f"{where or 'a value'} holds bytes that are not UTF-8 text") from None
    if isinstance(value, (str, bool, int)) or value is None:
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biuf" and value.ndim > 0:
            return value.tolist()  # fast path: numbers only
        if value.ndim == 0:
            return jsonable(value.item(), where)
        return [jsonable(v, where) for v in value]
    if isinstance(value, (list, tuple)):
        return [jsonable(v, where) for v in value]
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, where) for k, v in value.items()}
    raise LayoutError(f"{where or 'a value'} is a {type(value).__name__}, which JSON cannot hold")


def _dataset(f: Any, path: str) -> Any:
    import h5py

    obj = _get(f, path)
    if not isinstance(obj, h5py.Dataset):
        raise LayoutError(f"no {path} dataset, which RoboNet's layout requires")
    return obj


def _shape2(f: Any, path: str) -> tuple[int, int]:
    shape = _dataset(f, path).shape
    if shape is None or len(shape) < 2:
        raise LayoutError(f"{path} is shaped {shape}, not (T, dim)")
    return int(shape[0]), int(shape[1])


def _attr(obj: Any, name: str, where: str) -> Any:
    if name not in obj.attrs:
        raise LayoutError(f"{where} has no {name!r} attribute, which RoboNet's layout requires")
    return obj.attrs[name]


def derive(f: Any) -> dict[str, Any]:
    """The metadata of an open RoboNet file, by `load_metadata_dict`'s rules (see the
    module doc), without its `sha256` key.

    Raises:
        LayoutError: a rule fails (missing dataset or attribute, duplicate key).
    """
    import h5py

    doc: dict[str, Any] = {
        "file_version": jsonable(_dataset(f, "file_version")[()], "file_version")
    }
    doc["state_T"], doc["sdim"] = _shape2(f, "env/state")
    doc["action_T"], doc["adim"] = _shape2(f, "policy/actions")
    # load_metadata_dict's key order: file_version, sdim, state_T, adim, action_T, ...
    doc = {k: doc[k] for k in ("file_version", "sdim", "state_T", "adim", "action_T")}

    env = f["env"]
    n_cams = jsonable(env.attrs.get("n_cams", 0), "env n_cams")
    if n_cams:  # "assumes all cameras have same attributes": camera 0 speaks for all
        doc["ncam"] = n_cams
        if jsonable(_attr(env, "cam_encoding", "/env"), "cam_encoding") == "mp4":
            ds = _dataset(f, "env/cam0_video/frames")
            where = "/env/cam0_video/frames"
            doc["frame_dim"] = jsonable(_attr(ds, "shape", where)[:2], "frame_dim")
            doc["img_T"] = jsonable(_attr(ds, "T", where), "img_T")
            doc["img_encoding"] = "mp4"
            doc["image_format"] = jsonable(_attr(ds, "image_format", where), "image_format")
        else:
            ds = _dataset(f, "env/cam0_video/frame0")
            where = "/env/cam0_video/frame0"
            doc["frame_dim"] = jsonable(_attr(ds, "shape", where)[:2], "frame_dim")
            doc["image_format"] = jsonable(_attr(ds, "image_format", where), "image_format")
            doc["img_encoding"] = "jpg"
            doc["img_T"] = len(f["env/cam0_video"])

    misc = _get(f, "misc")
    if not isinstance(misc, h5py.Group):
        raise LayoutError("no misc group, which RoboNet's layout requires")
    for k in misc:
        if k in doc:  # load_metadata_dict asserts: "key {} already present!"
            raise LayoutError(f"key {k!r} of misc/ is also derived from the file's structure")
        item = misc[k]
        if not isinstance(item, h5py.Dataset):
            raise LayoutError(f"misc/{k} is a group, not a dataset")
        doc[k] = jsonable(item[()], f"misc/{k}")

    group = f["metadata"]
    for k in group.attrs:
        if k in doc:
            raise LayoutError(
                f"attribute {k!r} of the metadata group is also in misc/ or derived from the "
                "file's structure"
            )
        doc[k] = jsonable(group.attrs[k], f"metadata attribute {k!r}")

    for bound in ("low_bound", "high_bound"):
        if bound not in doc and bound in env:
            ds = env[bound]
            if not isinstance(ds, h5py.Dataset) or not ds.shape:
                raise LayoutError(f"env/{bound} is not an array")
            doc[bound] = jsonable(ds[0], f"env/{bound}")
    return doc


def read(f: Any) -> dict[str, Any] | None:
    """The metadata reader `robonet`: the derived document, or None when the file is not
    in RoboNet's layout.

    Raises:
        LayoutError: the file is in RoboNet's layout but a rule fails on it.
    """
    if not claims(f):
        return None
    return derive(f)
