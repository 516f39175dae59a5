"""How each subject looks: simple shapes drawn with PIL, distinct at 128x128 by day and night."""

from __future__ import annotations

from PIL import ImageDraw

from rbft.world.motion import Pose
from rbft.world.scenes import Subject

RGB = {
    "red": (200, 40, 40), "blue": (40, 70, 200), "green": (40, 150, 60), "yellow": (230, 200, 40),
    "white": (235, 235, 235), "black": (25, 25, 30), "purple": (130, 50, 160), "orange": (235, 130, 30),
    "brown": (120, 75, 35), "golden": (215, 165, 70), "grey": (130, 130, 135), "silver": (180, 185, 195),
}
SKIN = (225, 180, 140)
DARK = (35, 30, 30)

# unscaled height (people) or length (animals, cars) in pixels, by kind and size
HEIGHT = {("adult", "medium"): 54, ("adult", "large"): 61, ("elderly person", "medium"): 51,
          ("child", "small"): 36, ("courier", "medium"): 55}
BODY = {("dog", "small"): (24, 14), ("dog", "large"): (36, 21), ("cat", "small"): (21, 12),
        ("bear", "large"): (56, 38), ("raccoon", "small"): (26, 14), ("car", "large"): (72, 31)}


def _shade(rgb: tuple[int, int, int], f: float) -> tuple[int, int, int]:
    return tuple(max(0, min(255, int(c * f))) for c in rgb)


def draw_subject(draw: ImageDraw.ImageDraw, subject: Subject, pose: Pose, scale: float) -> None:
    """Draw `subject` in `pose` (its box is that of the pixels drawn, see `render.render`)."""
    if subject.kind == "car":
        _car(draw, subject, pose, scale)
    elif subject.kind in ("dog", "cat", "bear", "raccoon"):
        _animal(draw, subject, pose, scale)
    else:
        _person(draw, subject, pose, scale)


def _person(draw, subject: Subject, p: Pose, scale: float) -> None:
    h = HEIGHT[(subject.kind, subject.size)] * scale
    cloth = RGB[subject.colour]
    head_r = h * (0.15 if subject.kind == "child" else 0.11)
    if p.pose == "fallen":  # lying on the ground along the facing direction
        x0, x1 = p.x - h * 0.5, p.x + h * 0.5
        top = p.y - h * 0.22
        hx = x1 - head_r if p.facing > 0 else x0 + head_r
        body = [x0, top, x1 - head_r * 2, p.y] if p.facing > 0 else [x0 + head_r * 2, top, x1, p.y]
        draw.rectangle(body, fill=cloth)
        draw.ellipse([hx - head_r, p.y - head_r * 2, hx + head_r, p.y], fill=SKIN)
        return
    lean = h * 0.08 * p.facing if subject.kind == "elderly person" else 0.0
    hx, hy = p.x + lean, p.y - h + head_r
    shoulder, hip = p.y - h + head_r * 2.2, p.y - h * 0.42
    half_w = h * 0.17
    stride = {"walk0": 0.13, "walk1": -0.13}.get(p.pose, 0.03) * h
    if p.pose == "climb":
        stride = 0.08 * h
    leg = DARK if subject.clothing != "dress" else SKIN
    width = max(1, int(h * 0.08))
    draw.line([(p.x, hip), (p.x + stride, p.y)], fill=leg, width=width)
    draw.line([(p.x, hip), (p.x - stride, p.y - (h * 0.1 if p.pose == "climb" else 0))], fill=leg, width=width)
    bottom = hip + (h * 0.2 if subject.clothing in ("dress", "coat") else 0)
    shape = [(p.x - half_w + lean, shoulder), (p.x + half_w + lean, shoulder)]
    flare = half_w * (1.5 if subject.clothing == "dress" else 1.0)
    draw.polygon(shape + [(p.x + flare, bottom), (p.x - flare, bottom)], fill=cloth)
    if subject.clothing == "coat":
        draw.line([(p.x + lean * 0.5, shoulder), (p.x, bottom)], fill=_shade(cloth, 0.5), width=1)
    arm_y = shoulder + 2
    reach_up = p.pose in ("reach", "climb")
    hand = (p.x + p.facing * h * 0.3, shoulder - h * 0.2) if reach_up else (p.x + p.facing * h * 0.15, hip)
    draw.line([(p.x + lean, arm_y), hand], fill=_shade(cloth, 0.8), width=width)
    if p.pose == "climb":
        draw.line([(p.x + lean, arm_y), (p.x - p.facing * h * 0.2, shoulder - h * 0.2)], fill=_shade(cloth, 0.8),
                  width=width)
    head = [hx - head_r, hy - head_r, hx + head_r, hy + head_r]
    if subject.clothing == "hoodie":  # the hood hides most of the face
        draw.ellipse([head[0] - 1, head[1] - 1, head[2] + 1, head[3] + 1], fill=_shade(cloth, 0.8))
        draw.ellipse([hx - head_r * 0.4 + p.facing, hy - head_r * 0.2, hx + head_r * 0.6 + p.facing, hy + head_r * 0.8],
                     fill=_shade(SKIN, 0.6))
    else:
        draw.ellipse(head, fill=SKIN)
        hair = (230, 230, 230) if subject.kind == "elderly person" else (70, 45, 25)
        draw.chord(head, 180, 360, fill=hair)
    if subject.kind == "courier":  # cap with a visor
        draw.rectangle([hx - head_r, hy - head_r - 1, hx + head_r, hy - head_r * 0.3], fill=(80, 50, 20))
        draw.line([(hx, hy - head_r * 0.3), (hx + p.facing * head_r * 1.7, hy - head_r * 0.3)], fill=(80, 50, 20),
                  width=2)
    if subject.kind == "elderly person":  # walking stick
        draw.line([(p.x + p.facing * h * 0.22, hip - 2), (p.x + p.facing * h * 0.3, p.y)], fill=(90, 60, 30),
                  width=max(1, width - 1))
    if p.holding:
        bw = max(5, h * 0.24)
        bx = p.x + p.facing * h * 0.2
        draw_package(draw, bx, shoulder + bw * 1.1, bw)


def draw_package(draw, cx: float, bottom: float, w: float) -> list[int]:
    """A cardboard box with a tape stripe, standing on `bottom`."""
    box = [cx - w / 2, bottom - w * 0.8, cx + w / 2, bottom]
    draw.rectangle(box, fill=(185, 140, 80), outline=(120, 85, 40))
    draw.line([(cx, box[1]), (cx, bottom)], fill=(235, 215, 160), width=1)
    return [int(v) for v in box]


def _animal(draw, subject: Subject, p: Pose, scale: float) -> None:
    length, height = (v * scale for v in BODY[(subject.kind, subject.size)])
    colour = RGB[subject.colour]
    f = p.facing
    legs = height * 0.45
    top = p.y - height
    body = [p.x - length / 2, top + height * 0.1, p.x + length / 2, p.y - legs]
    stride = {"walk0": 0.18, "walk1": -0.18}.get(p.pose, 0.0) * length
    width = max(1, int(height * 0.15))
    for lx, s in ((body[0] + length * 0.15, stride), (body[2] - length * 0.15, -stride)):
        draw.line([(lx, p.y - legs), (lx + s * 0.5, p.y)], fill=_shade(colour, 0.7), width=width)
        draw.line([(lx + 2, p.y - legs), (lx + 2 - s * 0.5, p.y)], fill=_shade(colour, 0.6), width=width)
    tail_base = (body[0] if f > 0 else body[2], body[1] + height * 0.15)
    tail_end = (tail_base[0] - f * length * 0.35, tail_base[1] - height * (0.5 if subject.kind == "cat" else 0.2))
    if subject.kind != "bear":
        draw.line([tail_base, tail_end], fill=colour, width=max(1, int(height * (0.3 if subject.kind == "raccoon" else 0.15))))
    if subject.kind == "raccoon":  # ringed tail
        mid = ((tail_base[0] + tail_end[0]) / 2, (tail_base[1] + tail_end[1]) / 2)
        draw.line([mid, tail_end], fill=(20, 20, 20), width=max(1, int(height * 0.3)))
    draw.ellipse(body, fill=colour)
    if subject.kind == "bear":  # shoulder hump
        draw.ellipse([p.x + f * length * 0.05 - length * 0.2, top, p.x + f * length * 0.05 + length * 0.2,
                      top + height * 0.4], fill=colour)
    head_r = height * (0.32 if subject.kind != "bear" else 0.27)
    hx, hy = (body[2] if f > 0 else body[0]) + f * head_r * 0.3, body[1] + head_r * 0.2
    if subject.kind == "cat":  # pointed ears
        for dx in (-0.6, 0.4):
            ex = hx + dx * head_r
            draw.polygon([(ex, hy - head_r * 0.4), (ex + head_r * 0.5, hy - head_r * 0.4), (ex + head_r * 0.2, hy - head_r * 1.5)],
                         fill=colour)
    else:
        ear = head_r * (0.45 if subject.kind == "dog" else 0.35)
        draw.ellipse([hx - f * head_r * 0.5 - ear, hy - head_r - ear * 0.6, hx - f * head_r * 0.5 + ear, hy - head_r + ear * 1.2],
                     fill=_shade(colour, 0.75))
    draw.ellipse([hx - head_r, hy - head_r, hx + head_r, hy + head_r], fill=colour)
    if subject.kind == "raccoon":  # black mask across the eyes
        draw.rectangle([hx - head_r, hy - head_r * 0.35, hx + head_r, hy + head_r * 0.2], fill=(15, 15, 15))
    snout = hx + f * head_r * 0.9
    draw.ellipse([snout - 1.5, hy - 1, snout + 1.5, hy + 2], fill=DARK)


def _car(draw, subject: Subject, p: Pose, scale: float) -> None:
    length, height = (v * scale for v in BODY[("car", "large")])
    colour = RGB[subject.colour]
    x0, x1 = p.x - length / 2, p.x + length / 2
    wheel = height * 0.22
    body = [x0, p.y - height * 0.62, x1, p.y - wheel]
    cab = [(x0 + length * 0.22, body[1]), (x0 + length * 0.32, p.y - height), (x1 - length * 0.28, p.y - height),
           (x1 - length * 0.15, body[1])]
    draw.polygon(cab, fill=_shade(colour, 0.85))
    draw.polygon([(c[0] + (2 if i in (0, 1) else -2), c[1] + (2 if i in (1, 2) else 0)) for i, c in enumerate(cab)],
                 fill=(150, 190, 220))
    draw.rectangle(body, fill=colour)
    for wx in (x0 + length * 0.22, x1 - length * 0.22):
        draw.ellipse([wx - wheel, p.y - 2 * wheel, wx + wheel, p.y], fill=(20, 20, 20))
        draw.ellipse([wx - wheel * 0.4, p.y - wheel * 1.4, wx + wheel * 0.4, p.y - wheel * 0.6], fill=(150, 150, 150))
    front = x1 if p.facing > 0 else x0
    draw.rectangle([front - 2, body[1] + 2, front + 1, body[1] + 5], fill=(255, 240, 150))
