"""Image frames in HDF5 files, for `deon show --png`: raw arrays, mp4 video, JPEG frames.

Three ways of storing a camera's frames are recognised, whatever the datasets are named:

- raw arrays: uint8 datasets shaped (T, H, W, 3), or (T, ncam, H, W, 3) (a row per camera);
- mp4: a 1-D uint8 dataset holding an mp4 file's bytes (an ISO-BMFF `ftyp` box at byte
  4), as RoboNet stores each camera in `env/camN_video/frames`; decoded with PyAV;
- JPEG: 1-D uint8 datasets holding JPEG bytes (FF D8 FF), as RoboNet's jpeg encoding
  stores each frame in `env/camN_video/frameT`; the `frameT` datasets of one group are
  one stream, in the order of T. Decoded with Pillow.

A dataset whose `image_format` attribute is "BGR" has its channels swapped, as
RoboNet's loader does, so that colours come out right.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from deon.errors import FrameError

if TYPE_CHECKING:
    import numpy as np

ARRAY = "array"
MP4 = "mp4"
JPEG = "jpeg"
_FRAME_NAME = re.compile(r"frame(\d+)")
#: bytes read from a 1-D dataset to tell what it holds
_SNIFF = 12


@dataclass
class Stream:
    """One camera's frames in a file."""

    name: str  # what messages call it: the dataset, or `GROUP/frame*` for JPEG frames
    kind: str
    datasets: list[str] = field(default_factory=list)  # JPEG: one per frame, in order
    camera: int | None = None  # a camera of a (T, ncam, H, W, 3) array
    bgr: bool = False


def _is_image_stack(shape: tuple[int, ...], dtype: Any) -> bool:
    """uint8 frames shaped (T, H, W, 3) or (T, ncam, H, W, 3)."""
    return str(dtype) == "uint8" and len(shape) in (4, 5) and shape[-1] == 3 and shape[0] > 0


def _bgr(ds: Any) -> bool:
    try:
        value = ds.attrs.get("image_format")
    except (OSError, TypeError, ValueError):
        return False
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return isinstance(value, str) and value.upper() == "BGR"


def sniff(head: bytes) -> str | None:
    """What encoded bytes are: MP4 (an `ftyp` box first), JPEG (SOI marker), or None."""
    if len(head) >= 8 and head[4:8] == b"ftyp":
        return MP4
    if head[:3] == b"\xff\xd8\xff":
        return JPEG
    return None


def find_streams(f: Any) -> list[Stream]:
    """Every stream of frames in an open file, in the file's order (camera 0 first)."""
    import h5py

    streams: list[Stream] = []
    jpeg_groups: dict[str, Stream] = {}
    jpeg_frames: dict[str, list[tuple[int, str]]] = {}

    def visit(name: str, obj: Any) -> None:
        if not isinstance(obj, h5py.Dataset):
            return
        shape = tuple(obj.shape or ())
        path = "/" + name
        if _is_image_stack(shape, obj.dtype):
            if len(shape) == 4:
                streams.append(Stream(path, ARRAY, bgr=_bgr(obj)))
            else:
                for cam in range(shape[1]):
                    streams.append(Stream(f"{path}[:, {cam}]", ARRAY, [path], cam, _bgr(obj)))
            return
        if len(shape) != 1 or str(obj.dtype) not in ("uint8", "int8") or shape[0] < _SNIFF:
            return
        try:
            kind = sniff(bytes(obj[:_SNIFF].tobytes()))
        except (OSError, TypeError, ValueError):
            return
        if kind == MP4:
            streams.append(Stream(path, MP4, [path], bgr=_bgr(obj)))
        elif kind == JPEG:
            parent, _, leaf = path.rpartition("/")
            m = _FRAME_NAME.fullmatch(leaf)
            if m is None:
                streams.append(Stream(path, JPEG, [path], bgr=_bgr(obj)))
                return
            if parent not in jpeg_groups:
                jpeg_groups[parent] = Stream(f"{parent}/frame*", JPEG, bgr=_bgr(obj))
                jpeg_frames[parent] = []
                streams.append(jpeg_groups[parent])
            jpeg_frames[parent].append((int(m.group(1)), path))

    f.visititems(visit)
    for parent, stream in jpeg_groups.items():
        stream.datasets = [p for _, p in sorted(jpeg_frames[parent])]
    return streams


def describe(stream: Stream) -> str:
    """How `deon show` lists a stream."""
    if stream.kind == ARRAY:
        return stream.datasets[0] if stream.datasets else stream.name
    if stream.kind == MP4:
        return f"{stream.name} (mp4)"
    return f"{stream.name} (jpeg, {len(stream.datasets)} frames)"


def _steps(t: int, n: int) -> list[int]:
    """`n` evenly spaced time steps of `t`, first and last included."""
    n = min(n, t)
    return sorted({round(i * (t - 1) / max(n - 1, 1)) for i in range(n)})


def frames(f: Any, stream: Stream, n: int) -> list[np.ndarray]:
    """`n` evenly spaced frames of a stream, as (H, W, 3) uint8 RGB arrays.

    Raises:
        FrameError: the stream cannot be decoded (names the dataset and why).
    """
    import numpy as np

    if stream.kind == ARRAY:
        ds = f[stream.datasets[0] if stream.datasets else stream.name]
        picked = np.asarray(ds[_steps(ds.shape[0], n)])  # one read of just these frames
        if stream.camera is not None:
            picked = picked[:, stream.camera]
        out = list(picked)
    elif stream.kind == MP4:
        out = _steps_of(_decode_mp4(f, stream.datasets[0]), n)
    else:
        out = [_decode_jpeg(f, stream.datasets[i]) for i in _steps(len(stream.datasets), n)]
    if stream.bgr:
        out = [np.ascontiguousarray(frame[..., ::-1]) for frame in out]
    return out


def _steps_of(decoded: list[np.ndarray], n: int) -> list[np.ndarray]:
    return [decoded[i] for i in _steps(len(decoded), n)]


def _decode_mp4(f: Any, path: str) -> list[np.ndarray]:
    """Every frame of an mp4 file held in a dataset, RGB."""
    import av

    data = f[path][()].tobytes()
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.video:
                raise FrameError(f"{path}: cannot decode mp4 video: it has no video stream")
            decoded = [fr.to_ndarray(format="rgb24") for fr in container.decode(video=0)]
    except FrameError:
        raise
    except Exception as e:  # PyAV raises many kinds (InvalidDataError, EOFError, ...)
        raise FrameError(f"{path}: cannot decode mp4 video: {_why(e)}") from e
    if not decoded:
        raise FrameError(f"{path}: cannot decode mp4 video: no frame in it")
    return decoded


def _decode_jpeg(f: Any, path: str) -> np.ndarray:
    import numpy as np
    from PIL import Image

    try:
        with Image.open(io.BytesIO(f[path][()].tobytes())) as img:
            img.load()
            return np.asarray(img.convert("RGB"))
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, ...
        raise FrameError(f"{path}: cannot decode JPEG frame: {_why(e)}") from e


def _why(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 200 else text[:199] + "…"
