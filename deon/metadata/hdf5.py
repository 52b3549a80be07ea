"""HDF5 files: the `metadata` attribute, the structure `deon show` prints, contact sheets.

h5py and numpy are imported inside the functions so that `deon --help` stays quick.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deon.errors import FrameError, LocalPathError, NotHDF5Error
from deon.metadata import frames
from deon.metadata.readers import METADATA_ATTR, MetadataRead, Reader
from deon.metadata.readers import read_metadata as _read

if TYPE_CHECKING:
    import numpy as np

SIGNATURE = b"\x89HDF\r\n\x1a\n"


def is_hdf5(path: Path) -> bool:
    """Whether the file carries the HDF5 signature.

    The signature sits at offset 0 or, after a user block, at 512, 1024, 2048, ...
    (HDF5 File Format Specification, "Format Signature").
    """
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            offset = 0
            while offset + len(SIGNATURE) <= size:
                f.seek(offset)
                if f.read(len(SIGNATURE)) == SIGNATURE:
                    return True
                offset = 512 if offset == 0 else offset * 2
    except OSError:
        return False
    return False


def read_metadata(path: Path, readers: Sequence[Reader] | None = None) -> MetadataRead:
    """A file's metadata, from the first of `readers` (default: the configured order,
    see deon.metadata.readers) that recognises it; never raises for bad content."""
    return _read(path, readers)


@dataclass
class Node:
    """A group or dataset in an HDF5 file."""

    path: str
    kind: str  # "group" or "dataset"
    shape: tuple[int, ...] | None = None
    dtype: str | None = None
    attrs: dict[str, str] = field(default_factory=dict)


@dataclass
class Description:
    """The structure of an HDF5 file, as `deon show` prints it."""

    path: Path
    size: int
    nodes: list[Node]
    metadata: MetadataRead
    images: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "size": self.size,
            "nodes": [
                {
                    "path": n.path,
                    "kind": n.kind,
                    "shape": list(n.shape) if n.shape is not None else None,
                    "dtype": n.dtype,
                    "attrs": n.attrs,
                }
                for n in self.nodes
            ],
            "metadata": self.metadata.document if self.metadata.status == "ok" else None,
            "metadata_status": self.metadata.status,
            "metadata_reader": self.metadata.reader,
            "images": self.images,
        }


def _short(value: Any, limit: int = 60) -> str:
    import numpy as np

    if isinstance(value, np.ndarray) and value.size > 8:
        return f"array {value.shape} {value.dtype}"
    if isinstance(value, (bytes, np.bytes_)):
        value = bytes(value).decode("utf-8", errors="replace")
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _open(path: Path) -> Any:
    import h5py

    if not path.exists():
        raise LocalPathError(f"no such file: {path}")
    if path.is_dir():
        raise LocalPathError(f"{path} is a folder, not an HDF5 file")
    if not is_hdf5(path):
        raise NotHDF5Error(f"not an HDF5 file: {path}")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise NotHDF5Error(f"cannot read HDF5 file {path}: {e}") from e


def describe(path: Path, readers: Sequence[Reader] | None = None) -> Description:
    """Walk an HDF5 file: every group and dataset with shape, dtype and attributes.

    Raises:
        LocalPathError: no such file.
        NotHDF5Error: not an HDF5 file, or too damaged to open.
    """
    import h5py

    nodes: list[Node] = []
    images: list[str] = []
    with _open(path) as f:

        def attrs_of(obj: Any) -> dict[str, str]:
            out = {}
            for name in obj.attrs:
                if obj.name == "/" and name == METADATA_ATTR:
                    out[name] = "(JSON, shown below)"
                    continue
                try:
                    out[name] = _short(obj.attrs[name])
                except (OSError, TypeError, ValueError) as e:
                    out[name] = f"<unreadable: {e}>"
            return out

        nodes.append(Node("/", "group", attrs=attrs_of(f)))

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset):
                nodes.append(
                    Node(
                        "/" + name, "dataset", tuple(obj.shape or ()), str(obj.dtype), attrs_of(obj)
                    )
                )
            else:
                nodes.append(Node("/" + name, "group", attrs=attrs_of(obj)))

        try:
            f.visititems(visit)
            images = list(dict.fromkeys(frames.describe(s) for s in frames.find_streams(f)))
        except (OSError, RuntimeError, KeyError) as e:
            raise NotHDF5Error(f"HDF5 file {path} is damaged: {e}") from e
    return Description(path, path.stat().st_size, nodes, read_metadata(path, readers), images)


def contact_sheet(path: Path, out: Path, frames: int = 8, max_width: int = 160) -> int:
    """Write a PNG grid of the image frames found in the file (raw arrays, mp4 video,
    JPEG frames; see deon.metadata.frames): one row per camera stream, `frames` evenly
    spaced time steps per row. Returns the number of rows.

    Raises:
        NotHDF5Error: no image frames in the file.
        FrameError: a stream cannot be decoded; the sheet of the others is written
            first, and the message names the dataset (and how many more failed).
    """
    from PIL import Image

    from deon.metadata import frames as fr

    rows: list[list[Any]] = []
    failures: list[FrameError] = []
    with _open(path) as f:
        streams = fr.find_streams(f)
        for stream in streams:
            try:
                rows.append(fr.frames(f, stream, frames))
            except FrameError as e:
                failures.append(e)
    if not streams:
        raise NotHDF5Error(
            f"no image frames in {path} (looked for uint8 arrays shaped (T, H, W, 3) or "
            "(T, ncam, H, W, 3), and for mp4 or JPEG bytes in 1-D uint8 datasets)"
        )
    if rows:
        tiles = [[_thumb(frame, max_width) for frame in row] for row in rows]
        cell_w = max(t.width for row in tiles for t in row)
        cell_h = max(t.height for row in tiles for t in row)
        ncols = max(len(row) for row in tiles)
        pad = 2
        sheet = Image.new("RGB", (ncols * (cell_w + pad) + pad, len(tiles) * (cell_h + pad) + pad))
        for r, row in enumerate(tiles):
            for c, tile in enumerate(row):
                sheet.paste(tile, (pad + c * (cell_w + pad), pad + r * (cell_h + pad)))
        out.parent.mkdir(parents=True, exist_ok=True)
        sheet.save(out, format="PNG")
    if failures:
        more = f" (and {len(failures) - 1} more stream(s))" if len(failures) > 1 else ""
        shown = f"; {out} shows the other {len(rows)}" if rows else "; no contact sheet written"
        raise FrameError(f"{failures[0]}{more}{shown}")
    return len(rows)


def _thumb(frame: np.ndarray, max_width: int) -> Any:
    from PIL import Image

    img = Image.fromarray(frame, "RGB")
    if img.width > max_width:
        img = img.resize((max_width, max(1, img.height * max_width // img.width)))
    elif img.width < max_width // 2:
        # RoboNet frames are tiny (64 x 48); enlarge them so a person can see them.
        scale = max_width // img.width
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    return img
