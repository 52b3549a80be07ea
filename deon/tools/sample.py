"""Synthetic RoboNet-like trajectories, for the demo, the benchmark and the tests.

Each file holds camera frames (uint8, (T, ncam, H, W, 3)), robot states and actions,
and `attrs['metadata']`: a JSON document with the keys RoboNet's metadata carries
(robot, camera_configuration, action_space, object_classes, traj_ok, ...).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

ROBOTS = {
    "sawyer": {"gripper": "default", "adim": 4, "sdim": 5, "camera_configuration": "sudri0"},
    "franka": {"gripper": "franka", "adim": 4, "sdim": 7, "camera_configuration": "multiview3"},
    "widowx": {"gripper": "widowx", "adim": 4, "sdim": 5, "camera_configuration": "widowx1"},
    "baxter": {"gripper": "baxter", "adim": 4, "sdim": 5, "camera_configuration": "left_front"},
}
OBJECTS = ["cup", "bowl", "marker", "sponge", "block", "spoon", "towel", "stuffed_toy"]
COLOURS = {
    "sawyer": (180, 40, 40),
    "franka": (60, 60, 180),
    "widowx": (40, 150, 60),
    "baxter": (170, 140, 40),
}


def metadata_for(
    robot: str, index: int, rng: random.Random, *, ncam: int = 2, T: int = 30
) -> dict[str, Any]:
    """A realistic RoboNet-style metadata document (27 top-level keys, some nested)."""
    spec = ROBOTS[robot]
    return {
        "robot": robot,
        "camera_configuration": spec["camera_configuration"],
        "action_space": rng.choice(["x,y,z,theta,gripper", "x,y,z,gripper"]),
        "object_classes": sorted(rng.sample(OBJECTS, rng.randint(1, 3))),
        "traj_ok": rng.random() > 0.15,
        "contains_annotation": rng.random() > 0.7,
        "policy_desc": rng.choice(["random", "scripted_grasp", "teleop"]),
        "primitives": rng.choice(["random", "pick", "push"]),
        "bin_type": rng.choice(["metal_bin", "table", "fabric_bin"]),
        "bin_insert": rng.choice(["none", "foam", "felt"]),
        "gripper": {"type": spec["gripper"], "max_width": round(rng.uniform(0.05, 0.1), 3)},
        "camera_type": "Logitech C920",
        "ncam": ncam,
        "img_T": T,
        "state_T": T,
        "action_T": T - 1,
        "term_t": T - 1,
        "adim": spec["adim"],
        "sdim": spec["sdim"],
        "frame_dim": [48, 64],
        "image_format": "RGB",
        "img_encoding": "raw",
        "low_bound": [round(rng.uniform(-0.3, -0.1), 3), round(rng.uniform(-0.3, -0.1), 3)],
        "high_bound": [round(rng.uniform(0.1, 0.3), 3), round(rng.uniform(0.1, 0.3), 3)],
        "environment_size": [0.6, 0.6, 0.3],
        "file_version": "0.2.0",
        "collected": f"2026-11-{1 + index % 28:02d}T{8 + index % 10:02d}:00:00Z",
    }


def frames_for(robot: str, rng: random.Random, *, ncam: int = 2, T: int = 30) -> Any:
    """A little scene per camera: the robot's colour as background, an object sliding
    across and a gripper coming down to meet it."""
    import numpy as np

    H, W = 48, 64
    frames = np.empty((T, ncam, H, W, 3), dtype=np.uint8)
    base = np.array(COLOURS[robot], dtype=np.uint8)
    ox, oy = rng.randint(5, 40), rng.randint(20, 38)
    for t in range(T):
        for c in range(ncam):
            img = frames[t, c]
            img[:] = base // (c + 1)
            img[H - 6 :, :] = (90, 90, 90)  # table edge
            x = (ox + t + 7 * c) % (W - 8)
            img[oy : oy + 8, x : x + 8] = (240, 220, 60)  # the object
            gy = min(oy - 6, 2 + t)
            img[gy : gy + 4, x + 2 : x + 6] = (20, 20, 20)  # the gripper
    return frames


def write_trajectory(
    path: Path, robot: str, index: int, seed: int, *, ncam: int = 2, T: int = 30
) -> dict[str, Any]:
    """Write one RoboNet-like HDF5 trajectory; returns its metadata document."""
    import h5py
    import numpy as np

    rng = random.Random(seed)
    doc = metadata_for(robot, index, rng, ncam=ncam, T=T)
    nprng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("env/frames", data=frames_for(robot, rng, ncam=ncam, T=T))
        f.create_dataset("env/state", data=nprng.normal(size=(T, doc["sdim"])).astype("float32"))
        f.create_dataset(
            "policy/actions", data=nprng.normal(size=(T - 1, doc["adim"])).astype("float32")
        )
        f.attrs["metadata"] = json.dumps(doc)
    return doc


def write_collection(folder: Path, robot: str, count: int, seed: int) -> list[Path]:
    """`count` trajectories of one robot, named traj_0000.h5, traj_0001.h5, ..."""
    paths = []
    for i in range(count):
        path = folder / f"traj_{i:04d}.h5"
        write_trajectory(path, robot, i, seed * 10_000 + i)
        paths.append(path)
    return paths
