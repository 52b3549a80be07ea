"""RoboNet-layout HDF5 files, written the way RoboNet's writer writes them.

The writer is visual_foresight's `visual_mpc/utils/file_2_hdf5.py:save_hdf5` (RoboNet's
files come from it); this module follows it step by step without importing it:

- a root dataset `file_version` = "0.1.0" (a variable-length string);
- groups `env` and `misc` from the env observations and the agent data, each key a
  dataset, except `images` (T, ncam, H, W, 3): then `env.attrs['n_cams']`,
  `env.attrs['cam_encoding']` ("mp4" or "jpeg") and a group `camN_video` per camera
  holding either one dataset `frames` (the bytes of an mp4 file, 1-D uint8, with attrs
  `shape` = (H, W, 3), `T`, `image_format` = "RGB") or datasets `frame0`…`frameT-1`
  (JPEG bytes, attrs `shape` and `image_format`);
- a group `policy` with the per-step policy outputs stacked (`actions`);
- a group `metadata` whose attributes are the trajectory's metadata.

Frames are solid colours that change from frame to frame, so that a test can tell that
the right frame, of the right camera, came out with the right colours.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

T = 6
H, W = 48, 64
NCAM = 2
SDIM, ADIM = 5, 4


def colour(cam: int, t: int) -> tuple[int, int, int]:
    """The solid RGB colour of camera `cam` at time `t`: camera 0 red, camera 1 blue,
    brighter at every step."""
    level = 90 + 30 * t
    return (level, 20, 40) if cam == 0 else (30, 40, level)


def images(t: int = T, ncam: int = NCAM) -> np.ndarray:
    out = np.zeros((t, ncam, H, W, 3), np.uint8)
    for i in range(t):
        for c in range(ncam):
            out[i, c] = colour(c, i)
    return out


def mp4_bytes(frames: np.ndarray) -> np.ndarray:
    """An mp4 file of (T, H, W, 3) RGB frames, as 1-D uint8 (what `serialize_video`
    returns: imageio's ffmpeg writer, H.264 in yuv420p)."""
    import av

    buf = io.BytesIO()
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return np.frombuffer(buf.getvalue(), np.uint8)


def jpeg_bytes(img: np.ndarray) -> np.ndarray:
    """One frame as JPEG bytes, 1-D uint8 (what `serialize_image` returns)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img, "RGB").save(buf, format="JPEG", quality=95)
    return np.frombuffer(buf.getvalue(), np.uint8)


def default_metadata(**extra: Any) -> dict[str, Any]:
    """The trajectory metadata RoboNet's converter passes (its MANDATORY_KEYS, and more)."""
    meta: dict[str, Any] = {
        "camera_configuration": "multiview_3",
        "policy_desc": "random",
        "bin_type": "metal",
        "bin_insert": "none",
        "contains_annotation": False,
        "robot": "sawyer",
        "gripper": "default",
        "background": "lab",
        "action_space": "x,y,z,theta,gripper",
        "object_classes": ["cup", "toy"],
        "primitives": "autograsp",
        "camera_type": "Logitech C920",
        "object_batch": "batch7",
        "term_t": T - 1,
        "environment_size": np.array([0.5, 0.25, 0.1]),
    }
    meta.update(extra)
    return meta


def write(
    path: Path,
    *,
    encoding: str = "mp4",
    traj_ok: bool = True,
    metadata: dict[str, Any] | None = None,
    seed: int = 0,
    t: int = T,
    ncam: int = NCAM,
) -> Path:
    """A RoboNet file at `path`, written as `save_hdf5` writes one."""
    import h5py

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    env_obs: dict[str, Any] = {
        "images": images(t, ncam),
        "state": rng.random((t, SDIM)),
        "low_bound": np.tile(np.array([-0.3, -0.2, 0.0, -3.14, -1.0]), (t, 1)),
        "high_bound": np.tile(np.array([0.3, 0.2, 0.3, 3.14, 1.0]), (t, 1)),
    }
    agent_data: dict[str, Any] = {
        "traj_ok": np.bool_(traj_ok),
        "obj_start_state": rng.random(3),
    }
    policy_out = [{"actions": rng.random(ADIM)} for _ in range(t - 1)]
    meta = default_metadata() if metadata is None else dict(metadata)

    with h5py.File(path, "w") as f:
        f.create_dataset("file_version", data="0.1.0")
        for data, name in ((env_obs, "env"), (agent_data, "misc")):
            _save_dict(data, f.create_group(name), encoding)
        policy = {
            k: np.concatenate([p[k][None] for p in policy_out], axis=0) for k in policy_out[0]
        }
        _save_dict(policy, f.create_group("policy"), encoding)
        group = f.create_group("metadata")
        for k, v in meta.items():
            group.attrs[k] = v
    return path


def _save_dict(data: dict[str, Any], group: Any, encoding: str) -> None:
    for k, d in data.items():
        if k == "images":
            n_cams = d.shape[1]
            group.attrs["n_cams"] = n_cams
            for n in range(n_cams):
                group.attrs["cam_encoding"] = encoding
                cam = group.create_group(f"cam{n}_video")
                if encoding == "mp4":
                    ds = cam.create_dataset("frames", data=mp4_bytes(d[:, n]))
                    ds.attrs["shape"] = d[0, n].shape
                    ds.attrs["T"] = d.shape[0]
                    ds.attrs["image_format"] = "RGB"
                elif encoding == "jpeg":
                    for t in range(d.shape[0]):
                        ds = cam.create_dataset(f"frame{t}", data=jpeg_bytes(d[t, n]))
                        ds.attrs["shape"] = d[t, n].shape
                        ds.attrs["image_format"] = "RGB"
                else:
                    raise ValueError(encoding)
        else:
            group.create_dataset(k, data=d)


def expected_metadata(path: Path, encoding: str = "mp4", **overrides: Any) -> dict[str, Any]:
    """What `load_metadata_dict` gives for a file `write` made, as JSON, written out from
    its rules (robonet/datasets/util/metadata_helper.py), minus its `sha256` key: the
    derived keys first, in its order, then `misc/`, the `metadata` attributes, bounds."""
    import h5py

    with h5py.File(path, "r") as f:
        state = f["env/state"].shape
        actions = f["policy/actions"].shape
        misc = {k: f["misc"][k][()] for k in f["misc"]}
        attrs = dict(f["metadata"].attrs)
        low, high = f["env/low_bound"][0], f["env/high_bound"][0]
        ncam = int(f["env"].attrs["n_cams"])
        t = (
            len(f["env/cam0_video"])
            if encoding != "mp4"
            else int(f["env/cam0_video/frames"].attrs["T"])
        )
    doc: dict[str, Any] = {
        "file_version": "0.1.0",  # h5py 3 reads the string dataset back as b"0.1.0"
        "sdim": state[1],
        "state_T": state[0],
        "adim": actions[1],
        "action_T": actions[0],
        "ncam": ncam,
    }
    if encoding == "mp4":
        doc.update(frame_dim=[H, W], img_T=t, img_encoding="mp4", image_format="RGB")
    else:
        doc.update(frame_dim=[H, W], image_format="RGB", img_encoding="jpg", img_T=t)
    doc["obj_start_state"] = [float(x) for x in misc["obj_start_state"]]  # misc/ by name
    doc["traj_ok"] = bool(misc["traj_ok"])
    for k in sorted(attrs):  # h5py lists attributes by name
        v = attrs[k]
        doc[k] = v.tolist() if isinstance(v, np.ndarray) else v.item() if hasattr(v, "item") else v
    doc["low_bound"] = [float(x) for x in low]
    doc["high_bound"] = [float(x) for x in high]
    doc.update(overrides)
    return doc
