"""What can happen in the synthetic smart-home world, and the ground-truth record of one clip.

A clip is drawn in two steps: `sample_scenario` picks a scene, a time of day, a main
subject with its attributes and action (and sometimes a second subject in the
background), all from one seeded `numpy.random.Generator`; the renderer then turns
that scenario into frames and per-frame boxes. The weights below make the world look
like a home camera's footage: most clips are routine, wildlife and falls are rare.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SCENES = ("front porch", "driveway", "backyard", "kitchen", "living room", "nursery", "pool side")
SUBJECTS = ("adult", "elderly person", "child", "courier", "dog", "cat", "bear", "raccoon", "car")
ACTIONS = (
    "walking past",
    "approaching the door",
    "ringing the bell",
    "leaving a package",
    "taking a package",
    "knocking over a trash can",
    "climbing a fence",
    "falling down",
    "playing",
    "lingering",
    "driving in",
)
PEOPLE = ("adult", "elderly person", "child", "courier")
ANIMALS = ("dog", "cat", "bear", "raccoon")
OUTDOOR = ("front porch", "driveway", "backyard", "pool side")

# scene -> (weight, the key objects drawn in it)
SCENE_WEIGHTS = {
    "front porch": (0.24, ("door", "doorbell", "trash can")),
    "driveway": (0.16, ("garage", "trash can")),
    "backyard": (0.16, ("fence", "trash can")),
    "kitchen": (0.12, ("counter", "trash can")),
    "living room": (0.13, ("sofa",)),
    "nursery": (0.08, ("crib",)),
    "pool side": (0.11, ("pool", "fence")),
}

# subject -> scene -> weight; absent means the subject never appears there
SUBJECT_WEIGHTS = {
    "adult": {s: 1.0 for s in SCENES},
    "elderly person": {"front porch": 0.4, "driveway": 0.3, "backyard": 0.4, "kitchen": 0.6, "living room": 0.6,
                       "pool side": 0.3},
    "child": {"front porch": 0.2, "backyard": 0.5, "kitchen": 0.3, "living room": 0.6, "nursery": 1.2,
              "pool side": 0.35},
    "courier": {"front porch": 0.9, "driveway": 0.2},
    "dog": {"front porch": 0.3, "driveway": 0.2, "backyard": 0.6, "kitchen": 0.3, "living room": 0.5,
            "pool side": 0.2},
    "cat": {"front porch": 0.2, "backyard": 0.3, "kitchen": 0.3, "living room": 0.5, "nursery": 0.2},
    "bear": {"front porch": 0.35, "driveway": 0.3, "backyard": 0.45, "pool side": 0.18},
    "raccoon": {"front porch": 0.25, "driveway": 0.3, "backyard": 0.35, "kitchen": 0.12, "pool side": 0.1},
    "car": {"driveway": 1.3},
}

# subject -> action -> weight
ACTION_WEIGHTS = {
    "adult": {"walking past": 1.0, "approaching the door": 0.6, "ringing the bell": 0.4, "taking a package": 0.8,
              "leaving a package": 0.15, "climbing a fence": 0.6, "falling down": 0.15, "lingering": 1.0,
              "playing": 0.15},
    "elderly person": {"walking past": 1.0, "approaching the door": 0.4, "ringing the bell": 0.2,
                       "falling down": 0.3, "lingering": 0.4},
    "child": {"walking past": 0.6, "playing": 1.4, "falling down": 0.12, "approaching the door": 0.2,
              "climbing a fence": 0.15, "lingering": 0.2},
    "courier": {"leaving a package": 1.2, "ringing the bell": 0.5, "approaching the door": 0.4,
                "walking past": 0.3, "taking a package": 0.15},
    "dog": {"walking past": 0.8, "playing": 1.0, "lingering": 0.5, "knocking over a trash can": 0.25,
            "approaching the door": 0.2},
    "cat": {"walking past": 0.8, "playing": 0.8, "lingering": 0.6, "knocking over a trash can": 0.15},
    "bear": {"walking past": 0.6, "knocking over a trash can": 0.8, "lingering": 0.4, "approaching the door": 0.3},
    "raccoon": {"walking past": 0.7, "knocking over a trash can": 0.8, "lingering": 0.3, "climbing a fence": 0.3},
    "car": {"driving in": 1.0},
}

# actions that need a key object in the scene
NEEDS = {
    "approaching the door": "door",
    "ringing the bell": "doorbell",
    "leaving a package": "door",
    "taking a package": "door",
    "knocking over a trash can": "trash can",
    "climbing a fence": "fence",
}

# each kind has its own palette, so that a model small enough to pretrain on a CPU can
# tell the kinds apart from the first steps; shapes and sizes differ as well
COLOURS = {
    "adult": ("red", "blue", "green", "purple"),
    "elderly person": ("white", "grey"),
    "child": ("yellow", "orange"),
    "courier": ("brown",),
    "dog": ("golden", "brown"),
    "cat": ("black", "white"),
    "car": ("red", "blue", "silver", "white"),
}
CLOTHING = ("t-shirt", "coat", "hoodie", "dress")


@dataclass
class Subject:
    """One subject of a clip: what it is, how it looks, what it does, and where it is in each frame."""

    kind: str
    action: str
    colour: str
    size: str  # small / medium / large
    clothing: str | None = None  # people only
    carrying: str | None = None  # "a package" when it holds one at the start
    boxes: list[list[int]] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"kind": self.kind, "action": self.action, "colour": self.colour, "size": self.size,
                "clothing": self.clothing, "carrying": self.carrying, "boxes": self.boxes}


@dataclass
class SceneRecord:
    """The ground truth of one clip; `subjects[0]` is the main subject."""

    id: str
    scene: str
    time: str  # day / night
    subjects: list[Subject]
    objects: dict[str, list[list[int]]] = field(default_factory=dict)  # key object -> per-frame boxes

    @property
    def main(self) -> Subject:
        return self.subjects[0]

    def to_json(self) -> dict:
        return {"id": self.id, "scene": self.scene, "time": self.time,
                "subjects": [s.to_json() for s in self.subjects], "objects": self.objects}


def _pick(rng: np.random.Generator, weights: dict[str, float]) -> str:
    names = list(weights)
    p = np.array([weights[n] for n in names], dtype=float)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _allowed_actions(kind: str, scene: str) -> dict[str, float]:
    objects = SCENE_WEIGHTS[scene][1]
    return {a: w for a, w in ACTION_WEIGHTS[kind].items() if NEEDS.get(a) in (None, *objects)}


def _subject(rng: np.random.Generator, kind: str, action: str) -> Subject:
    if kind in PEOPLE:
        colour = str(rng.choice(COLOURS[kind]))
        clothing = "uniform" if kind == "courier" else str(rng.choice(CLOTHING, p=[0.3, 0.25, 0.3, 0.15]))
        size = {"child": "small", "adult": str(rng.choice(["medium", "large"]))}.get(kind, "medium")
        carrying = "a package" if action == "leaving a package" else None
        return Subject(kind, action, colour, size, clothing, carrying)
    if kind in ("dog", "cat", "car"):
        size = str(rng.choice(["small", "large"])) if kind == "dog" else {"cat": "small", "car": "large"}[kind]
        return Subject(kind, action, str(rng.choice(COLOURS[kind])), size)
    colour = {"bear": str(rng.choice(["brown", "black"])), "raccoon": "grey"}[kind]
    return Subject(kind, action, colour, "large" if kind == "bear" else "small")


def sample_scenario(rng: np.random.Generator, clip_id: str) -> SceneRecord:
    """A random scene, time of day and subjects (boxes are filled in by the renderer)."""
    scene = _pick(rng, {s: w for s, (w, _) in SCENE_WEIGHTS.items()})
    time = "night" if rng.random() < (0.4 if scene in OUTDOOR else 0.2) else "day"
    kind = _pick(rng, {k: w[scene] for k, w in SUBJECT_WEIGHTS.items() if scene in w})
    subjects = [_subject(rng, kind, _pick(rng, _allowed_actions(kind, scene)))]
    if kind != "car" and rng.random() < 0.2:  # someone or something else in the background
        second = _pick(rng, {k: w[scene] for k, w in SUBJECT_WEIGHTS.items()
                             if scene in w and k not in ("car", "bear", kind)})
        subjects.append(_subject(rng, second, _pick(rng, {"walking past": 1.0, "lingering": 0.6})))
    return SceneRecord(clip_id, scene, time, subjects)


def scene_record(row: dict) -> SceneRecord:
    """A SceneRecord back from its `scenes.jsonl` line."""
    subjects = [Subject(**s) for s in row["subjects"]]
    return SceneRecord(row["id"], row["scene"], row["time"], subjects, row.get("objects", {}))
