"""Generic descriptions of world clips: who is there, how they look, what they do, where.

These are what the base model is pretrained on. They describe; they never judge: no
task's label appears in them (a test checks), so the model starts with the paper's
"rationale gap": it can say what happens in a clip but not what that means for a task.
"""

from __future__ import annotations

import numpy as np

from rbft.world.scenes import SceneRecord, Subject

SCENE_PHRASE = {
    "front porch": "on the front porch", "driveway": "in the driveway", "backyard": "in the backyard",
    "kitchen": "in the kitchen", "living room": "in the living room", "nursery": "in the nursery",
    "pool side": "by the pool",
}
ACTION_PHRASE = {
    "walking past": ("is walking past", "walks past", "passes by"),
    "approaching the door": ("is approaching the door", "walks up to the door", "comes to the door"),
    "ringing the bell": ("is ringing the bell", "rings the doorbell", "presses the doorbell"),
    "leaving a package": ("is leaving a package", "drops off a package at the door", "leaves a package by the door"),
    "taking a package": ("is taking a package", "picks up a package from the door", "takes a package away"),
    "knocking over a trash can": ("is knocking over a trash can", "knocks over a trash can", "tips over a trash can"),
    "climbing a fence": ("is climbing a fence", "climbs over a fence", "climbs the fence"),
    "falling down": ("is falling down", "falls down", "falls to the ground"),
    "playing": ("is playing", "plays around", "is playing with a ball"),
    "lingering": ("is lingering", "stays in one place", "lingers around"),
    "driving in": ("is driving in", "drives in", "pulls into the driveway"),
}
# the prompts the base model learns to answer; the first is the four-dimension layout
DESCRIBE = "Describe the video by its subjects, attributes, actions and scenes."
PROMPTS = {
    "structured": (DESCRIBE, "Describe what you see along four dimensions: subjects, attributes, actions, scenes.",
                   "Analyze the video: list the subjects, their attributes, their actions and the scene."),
    "caption": ("Describe the video.", "What happens in this video?", "Write a caption for this clip.",
                "Summarize the video in one sentence."),
    "who": ("Who or what is in the video?", "Which subjects appear in the video?"),
    "where": ("Where was this video recorded?", "What is the scene?"),
    "action": ("What is the main subject doing?", "What action happens in the video?"),
    "time": ("Is it day or night in the video?",),
}


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def noun(subject: Subject) -> str:
    """The subject with its look: 'a tall adult', 'a small brown dog', 'a silver car'."""
    if subject.kind == "adult":
        return _article("tall adult" if subject.size == "large" else "adult")
    if subject.kind in ("dog",):
        return _article(f"{subject.size} {subject.colour} dog")
    if subject.kind in ("cat", "bear", "raccoon", "car"):
        return _article(f"{subject.colour} {subject.kind}")
    return _article(subject.kind)


def attributes(subject: Subject) -> str:
    """Attributes beyond the noun: clothing and what it carries."""
    parts = []
    if subject.clothing == "uniform":
        parts.append(f"in a {subject.colour} uniform")
    elif subject.clothing:
        parts.append(f"wearing {_article(subject.colour + ' ' + subject.clothing)}")
    if subject.carrying:
        parts.append(f"carrying {subject.carrying}")
    return " and ".join(parts)


def _full(subject: Subject) -> str:
    extra = attributes(subject)
    return f"{noun(subject)} {extra}".strip()


def _when(record: SceneRecord) -> str:
    return "at night" if record.time == "night" else "during the day"


def structured(record: SceneRecord) -> str:
    """The four-dimension description, one line per dimension, main subject first."""
    subjects = " and ".join(_article(s.kind) for s in record.subjects)
    attrs = "; ".join(f"the {s.kind} is {_look(s)}" for s in record.subjects)
    actions = "; ".join(f"the {s.kind} {ACTION_PHRASE[s.action][0]}" for s in record.subjects)
    return (f"Subjects: {subjects}.\nAttributes: {attrs}.\nActions: {actions}.\n"
            f"Scene: {SCENE_PHRASE[record.scene]} {_when(record)}.")


def _look(subject: Subject) -> str:
    if subject.clothing is None:
        return f"{subject.size} and {subject.colour}"
    return ("tall, " if subject.size == "large" else "") + attributes(subject)


def caption(record: SceneRecord, rng: np.random.Generator) -> str:
    """One free-form sentence or two, in one of several phrasings."""
    main = record.main
    act = ACTION_PHRASE[main.action][int(rng.integers(3))]
    where, when = SCENE_PHRASE[record.scene], _when(record)
    style = int(rng.integers(4))
    if style == 0:
        text = f"{_full(main)} {act} {where} {when}."
    elif style == 1:
        text = f"{where} {when}, {_full(main)} {act}."
    elif style == 2:
        text = f"A home camera {where} shows {_full(main)} that {act.removeprefix('is ')} {when}."
    else:
        text = f"{when.capitalize()} {where}: {_full(main)} {act}."
    for other in record.subjects[1:]:
        text += f" In the background, {noun(other)} {ACTION_PHRASE[other.action][0]}."
    return text[0].upper() + text[1:]


def answer(record: SceneRecord, kind: str, rng: np.random.Generator) -> str:
    """The answer to one of `PROMPTS[kind]`."""
    if kind == "structured":
        return structured(record)
    if kind == "caption":
        return caption(record, rng)
    if kind == "who":
        return " and ".join(_full(s) for s in record.subjects).capitalize() + "."
    if kind == "where":
        return f"{SCENE_PHRASE[record.scene]} {_when(record)}.".capitalize()
    if kind == "action":
        return f"The {record.main.kind} {ACTION_PHRASE[record.main.action][0]}."
    return "Night." if record.time == "night" else "Day."
