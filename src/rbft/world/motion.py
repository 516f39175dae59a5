"""Where a subject is in each frame of a clip, and what the action does to the scene.

An action is a path over time, so it cannot be read from one frame: approaching the
door and walking away differ only in direction, leaving and taking a package only in
whether the package appears or disappears half-way, falling down only in the pose
changing part-way through.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rbft.world.scenes import Subject


@dataclass
class Layout:
    """Positions of a scene's key objects in one clip (pixels in a square frame)."""

    size: int
    ground: tuple[int, int]  # range of feet heights where subjects walk
    door: tuple[int, int, int, int] | None = None
    doorbell: tuple[int, int] | None = None
    trash_can: tuple[int, int] | None = None  # bottom centre
    fence: tuple[int, int] | None = None  # top and bottom rows
    spot: tuple[int, int] = (64, 100)  # where subjects stop when nothing else draws them


@dataclass
class Pose:
    x: float
    y: float  # feet row
    facing: int  # +1 right, -1 left
    pose: str  # walk0, walk1, stand, reach, climb, fallen
    holding: bool = False  # holding a package


@dataclass
class Events:
    """What the action changes in the scene, per frame."""

    package: list[tuple[float, float] | None] = field(default_factory=list)  # package on the ground
    trash_tipped: list[bool] = field(default_factory=list)
    bell_lit: list[bool] = field(default_factory=list)
    ball: list[tuple[float, float] | None] = field(default_factory=list)


def _walk(frame: int, moving: bool) -> str:
    return ("walk0", "walk1")[frame % 2] if moving else "stand"


def _path(a: tuple[float, float], b: tuple[float, float], n: int) -> list[tuple[float, float]]:
    return [(a[0] + (b[0] - a[0]) * i / max(n - 1, 1), a[1] + (b[1] - a[1]) * i / max(n - 1, 1)) for i in range(n)]


def _door_spot(layout: Layout) -> tuple[float, float]:
    if layout.door is None:
        return layout.spot
    x0, _, x1, y1 = layout.door
    return ((x0 + x1) / 2, y1 + 6)


def plan(subject: Subject, layout: Layout, n: int, rng: np.random.Generator) -> tuple[list[Pose], Events]:
    """Poses of `subject` over `n` frames, and the events its action causes."""
    s, (g0, g1) = layout.size, layout.ground
    ev = Events([None] * n, [False] * n, [False] * n, [None] * n)
    side = 1 if rng.random() < 0.5 else -1  # which edge it comes from
    edge_x = s * (0.08 if side > 0 else 0.92)
    y = float(rng.uniform(g0, g1))
    act = subject.action
    half = n // 2

    if act in ("walking past", "driving in"):
        end_x = s * (0.92 if side > 0 else 0.08) if act == "walking past" else s * rng.uniform(0.4, 0.6)
        if act == "driving in":
            edge_x = -0.25 * s if side > 0 else 1.25 * s
            # slows down as it pulls in
            xs = [edge_x + (end_x - edge_x) * (1 - (1 - i / (n - 1)) ** 2) for i in range(n)]
            return [Pose(x, y, side, "stand") for x in xs], ev
        pts = _path((edge_x, y), (end_x, y + rng.uniform(-6, 6)), n)
        return [Pose(x, yy, side, _walk(i, True)) for i, (x, yy) in enumerate(pts)], ev

    if act in ("approaching the door", "ringing the bell", "leaving a package", "taking a package"):
        door = _door_spot(layout)
        start = (door[0] - side * s * 0.38, min(g1 + 8, s - 4))
        arrive = half + 1 if act == "approaching the door" else half
        poses = [Pose(x, yy, side, _walk(i, True)) for i, (x, yy) in enumerate(_path(start, door, arrive))]
        if act == "approaching the door":
            poses += [Pose(door[0], door[1], side, "stand") for _ in range(n - arrive)]
        elif act == "ringing the bell":
            poses += [Pose(door[0], door[1], side, "reach") for _ in range(n - arrive)]
            ev.bell_lit = [i >= arrive + 1 for i in range(n)]
        else:
            back = _path(door, start, n - arrive)
            poses += [Pose(x, yy, -side, _walk(i, True)) for i, (x, yy) in enumerate(back)]
            drop = (door[0] + side * 7, door[1] - 1)
            leaving = act == "leaving a package"
            for i, p in enumerate(poses):
                p.holding = (i < arrive) == leaving
                ev.package[i] = drop if (i >= arrive) == leaving else None
        return poses, ev

    if act == "knocking over a trash can":
        tx, ty = layout.trash_can
        target = (tx - side * 10, ty + 3)
        poses = [Pose(x, yy, side, _walk(i, True)) for i, (x, yy) in enumerate(_path((edge_x, y), target, half))]
        poses += [Pose(target[0] + side * (i % 2), target[1], side, "stand") for i in range(n - half)]
        ev.trash_tipped = [i >= half for i in range(n)]
        return poses, ev

    if act == "climbing a fence":
        top, bottom = layout.fence
        x = float(rng.uniform(0.25, 0.75) * s)
        base = (x, min(bottom + 24, s - 4))
        up = [(x, base[1] + (top + 2 - base[1]) * i / (n - 3)) for i in range(n - 2)]
        poses = [Pose(px, py, side, "walk0" if i < 2 else "climb") for i, (px, py) in enumerate(up)]
        poses += [Pose(x + side * 4 * (i + 1), top + 2, side, "climb") for i in range(2)]
        return poses, ev

    if act == "falling down":
        fall = int(rng.integers(n // 3, n // 2 + 1))
        pts = _path((edge_x, y), (edge_x + side * s * 0.3, y), fall)
        poses = [Pose(x, yy, side, _walk(i, True)) for i, (x, yy) in enumerate(pts)]
        poses += [Pose(pts[-1][0] + side * 6, y, side, "fallen") for _ in range(n - fall)]
        return poses, ev

    if act == "playing":
        cx = float(rng.uniform(0.3, 0.7) * s)
        phase = rng.uniform(0, np.pi)
        poses = []
        for i in range(n):
            x = cx + 18 * np.sin(phase + i * 1.3)
            hop = abs(np.sin(phase + i * 1.9)) * 8
            facing = 1 if np.cos(phase + i * 1.3) >= 0 else -1
            poses.append(Pose(x, y - hop, facing, _walk(i, True)))
            ev.ball[i] = (cx + 26 * np.sin(phase + i * 1.3 + 1.6), y - 3 - abs(np.cos(i * 1.7)) * 14)
        return poses, ev

    # lingering: stays around one spot, shifting weight and looking both ways
    spot = _door_spot(layout) if layout.door is not None and rng.random() < 0.6 else (float(rng.uniform(0.3, 0.7) * s), y)
    return [Pose(spot[0] + rng.uniform(-1.5, 1.5), spot[1], side if (i // 3) % 2 == 0 else -side, "stand")
            for i in range(n)], ev
