"""Turn a scenario into frames: a scene's background, its key objects, the subjects' motion.

Everything random comes from the clip's own generator, so a clip is a pure function of
(world seed, clip index). Boxes of every subject and key object are recorded per frame
in the scene record; a box is None in frames where the thing is out of view.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from rbft.world.motion import Events, Layout, plan
from rbft.world.scenes import SceneRecord
from rbft.world.sprites import draw_package, draw_subject

SIZE = 128
FRAMES = 12
FPS = 4.0


def _jit(rng, v: float, spread: float = 6) -> int:
    return int(round(v + rng.uniform(-spread, spread)))


def _tint(rng, rgb) -> tuple[int, ...]:
    return tuple(int(np.clip(c + rng.uniform(-18, 18), 0, 255)) for c in rgb)


def _background(scene: str, rng: np.random.Generator) -> tuple[Image.Image, Layout, dict[str, list[int]]]:
    """The static picture of a scene, where things happen in it, and its fixed objects' boxes."""
    s = SIZE
    img = Image.new("RGB", (s, s))
    d = ImageDraw.Draw(img)
    fixed: dict[str, list[int]] = {}
    layout = Layout(s, (96, 116))
    if scene == "front porch":
        wall = _jit(rng, 82, 4)
        d.rectangle([0, 0, s, wall], fill=_tint(rng, (205, 185, 150)))
        d.rectangle([0, wall, s, s], fill=_tint(rng, (140, 100, 65)))
        for y in range(wall + 8, s, 9):
            d.line([(0, y), (s, y)], fill=(115, 80, 50))
        dx = _jit(rng, 72, 12)
        door = (dx, wall - 50, dx + 26, wall)
        d.rectangle(door, fill=_tint(rng, (90, 50, 30)))
        d.ellipse([dx + 20, wall - 27, dx + 23, wall - 24], fill=(220, 200, 80))
        bell = (dx + 32, wall - 28)
        fixed.update(door=list(door), doorbell=[bell[0] - 2, bell[1] - 2, bell[0] + 3, bell[1] + 3])
        layout = Layout(s, (wall + 16, s - 6), door=door, doorbell=bell, trash_can=(_jit(rng, 16, 4), wall + 6))
    elif scene == "driveway":
        top = _jit(rng, 52, 4)
        d.rectangle([0, 0, s, top], fill=_tint(rng, (170, 150, 135)))
        gx = _jit(rng, 32, 6)
        d.rectangle([gx, top - 36, gx + 66, top], fill=(230, 230, 225))
        for y in range(top - 30, top, 6):
            d.line([(gx, y), (gx + 66, y)], fill=(180, 180, 175))
        d.rectangle([0, top, s, s], fill=_tint(rng, (85, 85, 90)))
        d.rectangle([0, top, 14, s], fill=(70, 140, 60))
        fixed["garage"] = [gx, top - 36, gx + 67, top + 1]
        layout = Layout(s, (top + 40, s - 8), trash_can=(_jit(rng, 114, 3), top + 14))
    elif scene == "backyard":
        ft, fb = _jit(rng, 26, 4), _jit(rng, 62, 4)
        d.rectangle([0, 0, s, ft], fill=(150, 195, 235))
        d.rectangle([0, ft, s, s], fill=_tint(rng, (80, 150, 60)))
        wood = _tint(rng, (150, 105, 60))
        for x in range(0, s, 8):
            d.rectangle([x, ft, x + 6, fb], fill=wood)
        d.line([(0, ft + 8), (s, ft + 8)], fill=(110, 75, 40), width=2)
        fixed["fence"] = [0, ft, s, fb + 1]
        layout = Layout(s, (fb + 30, s - 6), fence=(ft, fb), trash_can=(_jit(rng, 108, 6), fb + 10))
    elif scene == "kitchen":
        d.rectangle([0, 0, s, 58], fill=_tint(rng, (235, 225, 185)))
        for x in range(4, 96, 22):
            d.rectangle([x, 6, x + 18, 26], fill=(150, 105, 65))
        d.rectangle([0, 40, 96, 58], fill=_tint(rng, (220, 220, 220)))
        d.rectangle([100, 8, 124, 70], fill=(185, 190, 195))
        tile = _tint(rng, (200, 200, 210))
        for y in range(58, s, 10):
            for x in range(0, s, 10):
                d.rectangle([x, y, x + 9, y + 9], fill=tile if (x + y) // 10 % 2 else (120, 120, 130))
        fixed["counter"] = [0, 40, 97, 59]
        layout = Layout(s, (86, s - 6), trash_can=(_jit(rng, 14, 4), 72))
    elif scene == "living room":
        d.rectangle([0, 0, s, 62], fill=_tint(rng, (170, 200, 185)))
        d.rectangle([86, 10, 118, 36], fill=(200, 225, 245))
        d.rectangle([0, 62, s, s], fill=_tint(rng, (160, 120, 90)))
        d.ellipse([20, 80, 110, 120], fill=_tint(rng, (170, 60, 60)))
        sx = _jit(rng, 18, 6)
        sofa = _tint(rng, (50, 80, 160))
        d.rectangle([sx, 36, sx + 62, 64], fill=sofa)
        d.rectangle([sx + 4, 44, sx + 58, 56], fill=tuple(min(255, c + 30) for c in sofa))
        fixed["sofa"] = [sx, 36, sx + 63, 65]
    elif scene == "nursery":
        d.rectangle([0, 0, s, 66], fill=_tint(rng, (235, 195, 215)))
        for _ in range(8):
            x, y = rng.uniform(4, 120), rng.uniform(4, 50)
            d.ellipse([x, y, x + 3, y + 3], fill=(250, 240, 150))
        d.rectangle([0, 66, s, s], fill=_tint(rng, (215, 185, 140)))
        cx = _jit(rng, 76, 8)
        d.rectangle([cx, 34, cx + 44, 72], outline=(250, 250, 250), width=2)
        for x in range(cx + 5, cx + 44, 6):
            d.line([(x, 34), (x, 72)], fill=(250, 250, 250), width=1)
        for i in range(3):
            x = 10 + i * 14
            d.rectangle([x, 104, x + 8, 112], fill=((220, 60, 60), (60, 120, 220), (240, 200, 40))[i])
        fixed["crib"] = [cx, 33, cx + 45, 73]
    else:  # pool side
        d.rectangle([0, 0, s, s], fill=_tint(rng, (215, 205, 185)))
        ft, fb = 8, _jit(rng, 34, 3)
        for x in range(0, s, 7):
            d.rectangle([x, ft, x + 2, fb], fill=(245, 245, 245))
        d.line([(0, ft + 3), (s, ft + 3)], fill=(245, 245, 245), width=2)
        py = _jit(rng, 50, 4)
        fixed["fence"] = [0, ft, s, fb + 1]
        fixed["pool"] = [16, py, 112, py + 40]
        layout = Layout(s, (py + 48, s - 4), fence=(ft, fb))
    return img, layout, fixed


def _scale(y: float, layout: Layout) -> float:
    """Nearer the camera (lower in the frame) looks bigger."""
    return float(np.clip(0.8 + 0.4 * (y - layout.ground[0]) / max(layout.size - layout.ground[0], 1), 0.6, 1.3))


def _draw_events(d: ImageDraw.ImageDraw, ev: Events, layout: Layout, i: int, boxes: dict) -> None:
    if layout.doorbell is not None:
        bx, by = layout.doorbell
        d.ellipse([bx - 2, by - 2, bx + 2, by + 2], fill=(255, 250, 120) if ev.bell_lit[i] else (60, 60, 60))
    if layout.trash_can is not None:
        tx, ty = layout.trash_can
        if ev.trash_tipped[i]:
            d.rectangle([tx - 12, ty - 8, tx + 8, ty], fill=(60, 110, 70))
            d.ellipse([tx + 6, ty - 9, tx + 11, ty + 1], fill=(40, 80, 50))
            for k in range(5):
                d.ellipse([tx - 14 - 4 * k, ty - 2 + (k % 2) * 2, tx - 12 - 4 * k, ty + (k % 2) * 2],
                          fill=((240, 240, 240), (200, 60, 60), (230, 200, 80))[k % 3])
            boxes["trash can"].append([tx - 32, ty - 9, tx + 12, ty + 3])
        else:
            d.rectangle([tx - 6, ty - 18, tx + 6, ty], fill=(60, 110, 70))
            d.rectangle([tx - 7, ty - 20, tx + 7, ty - 17], fill=(40, 80, 50))
            boxes["trash can"].append([tx - 7, ty - 20, tx + 8, ty + 1])
    if ev.package[i] is not None:
        boxes["package"].append(draw_package(d, ev.package[i][0], ev.package[i][1], 9))
    elif "package" in boxes:
        boxes["package"].append(None)
    if ev.ball[i] is not None:
        x, y = ev.ball[i]
        d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=(240, 60, 160))


def _night(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An infrared-looking night picture: dark, greyish, noisy."""
    grey = frame.mean(axis=2, keepdims=True)
    dark = (0.55 * grey + 0.45 * frame) * 0.42 + 6
    return np.clip(dark + rng.normal(0, 5, frame.shape), 0, 255).astype(np.uint8)


def render(record: SceneRecord, rng: np.random.Generator, frames: int = FRAMES) -> np.ndarray:
    """Draw the clip of `record` as (frames, SIZE, SIZE, 3) uint8; fills in every box of the record."""
    background, layout, fixed = _background(record.scene, rng)
    plans = []
    for k, subject in enumerate(record.subjects):
        sub_layout = layout
        if k > 0:  # the second subject stays further back
            g0 = layout.ground[0]
            sub_layout = Layout(layout.size, (g0 - 4, g0 + 6), spot=(float(rng.uniform(20, 108)), g0))
        plans.append((subject, plan(subject, sub_layout, frames, rng), sub_layout))
    events = plans[0][1][1]
    boxes: dict[str, list] = {name: [box] * frames for name, box in fixed.items()}
    if layout.trash_can is not None:
        boxes["trash can"] = []
    if any(e is not None for e in events.package):
        boxes["package"] = []
    for subject in record.subjects:
        subject.boxes = []
    out = np.empty((frames, SIZE, SIZE, 3), dtype=np.uint8)
    for i in range(frames):
        img = background.copy()
        d = ImageDraw.Draw(img)
        if "pool" in fixed:  # ripples move across the water
            x0, y0, x1, y1 = fixed["pool"]
            d.rectangle(fixed["pool"], fill=(60, 150, 220))
            for r in range(y0 + 4 + i % 6, y1 - 2, 6):
                d.line([(x0 + 6 + (r * 7) % 20, r), (x0 + 26 + (r * 7) % 20, r)], fill=(170, 215, 245))
        _draw_events(d, events, layout, i, boxes)
        for subject, (poses, _), sub_layout in sorted(plans, key=lambda p: p[1][0][i].y):
            pose = poses[i]
            # drawn on a layer of its own, so that its box is that of every pixel it covers
            layer = Image.new("RGBA", img.size)
            draw_subject(ImageDraw.Draw(layer), subject, pose,
                         _scale(pose.y, sub_layout) * (0.8 if subject is not record.main else 1))
            img.paste(layer, (0, 0), layer)
            box = layer.getbbox()
            subject.boxes.append(list(box) if box else None)
        frame = np.asarray(img)
        out[i] = _night(frame, rng) if record.time == "night" else frame
    record.objects = {name: [_visible(b) if b is not None else None for b in seq] for name, seq in boxes.items()}
    return out


def _visible(box: list[int]) -> list[int] | None:
    x0, y0, x1, y1 = (max(0, min(SIZE, v)) for v in box)
    return [x0, y0, x1, y1] if x1 > x0 and y1 > y0 else None
