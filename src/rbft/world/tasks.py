"""Domain tasks over the world: labels given by rules over a clip's scene record.

The rules use only what the video shows (who, how they look, what they do, where,
day or night), so a model that looks at the right things can learn them; the base
model is never shown them. `home-security` mirrors SmartHome-Bench: mostly normal,
abnormal and vague rarer, and rare sub-types (falls, a child in danger) inside abnormal.
"""

from __future__ import annotations

from rbft.config import TaskConfig
from rbft.world.scenes import OUTDOOR, PEOPLE, SceneRecord

TASKS = {
    "home-security": TaskConfig(
        name="home-security",
        persona="Smart Home Security Expert",
        question="Is the activity in this video normal, abnormal or vague?",
        labels={
            "normal": "routine activity of residents, visitors, deliveries and pets",
            "abnormal": "intrusion, theft, wildlife at the house, a fall, or danger to a child",
            "vague": "could be harmless or not; cannot be judged from the video alone",
        },
    ),
    "wildlife-and-pets": TaskConfig(
        name="wildlife-and-pets",
        persona="Wildlife and Pet Monitoring Expert",
        question="Which kind of animal, if any, appears in this video?",
        labels={
            "no_animal": "only people or vehicles, no animal",
            "pet": "a dog or a cat",
            "small_wildlife": "a small wild animal such as a raccoon",
            "large_wildlife": "a large wild animal such as a bear",
        },
    ),
}


def home_security(record: SceneRecord) -> tuple[str, str]:
    """(label, sub-type) of a clip for `home-security`."""
    outdoor = record.scene in OUTDOOR
    night = record.time == "night"
    for s in record.subjects:
        if s.kind == "bear":
            return "abnormal", "wildlife"
        if s.kind == "raccoon" and (not outdoor or s.action in ("knocking over a trash can", "climbing a fence")):
            return "abnormal", "wildlife"
    main = record.main
    if main.kind in PEOPLE:
        if main.kind == "child" and record.scene == "pool side":
            return "abnormal", "child_danger"
        if main.action == "falling down" and main.kind != "child":
            return "abnormal", "fall"
        if main.action == "taking a package" and main.clothing == "hoodie":
            return "abnormal", "theft"
        if main.action == "climbing a fence" and main.kind != "child":
            return "abnormal", "intrusion"
        if main.action == "taking a package" and night:
            return "vague", "package_at_night"
        if main.action == "lingering" and outdoor and (night or main.clothing == "hoodie"):
            return "vague", "loitering"
        if main.kind == "child" and main.action in ("climbing a fence", "falling down"):
            return "vague", "child_mishap"
    if main.kind in ("dog", "cat") and main.action == "knocking over a trash can":
        return "vague", "pet_mischief"
    if any(s.kind == "raccoon" for s in record.subjects):
        return "vague", "wildlife_passing"
    return "normal", "routine"


def wildlife_and_pets(record: SceneRecord) -> tuple[str, str]:
    """(label, the animal that decided it) of a clip for `wildlife-and-pets`."""
    kinds = {s.kind for s in record.subjects}
    for label, animals in (("large_wildlife", ("bear",)), ("small_wildlife", ("raccoon",)), ("pet", ("dog", "cat"))):
        found = sorted(kinds.intersection(animals))
        if found:
            return label, found[0]
    return "no_animal", "none"


RULES = {"home-security": home_security, "wildlife-and-pets": wildlife_and_pets}


def label(task: str, record: SceneRecord) -> tuple[str, str]:
    """The ground-truth (label, sub-type) of `record` for `task`."""
    return RULES[task](record)


_WHY = {
    "wildlife": "A {kind} at a home is a wild animal where people live: a danger to them and to property.",
    "child_danger": "A child alone by the pool is at risk of drowning.",
    "fall": "A person who falls down may be hurt and need help.",
    "theft": "Someone in a hoodie takes a package left at the house, which looks like theft.",
    "intrusion": "Someone climbs the fence instead of using the door, which is how intruders come in.",
    "package_at_night": "A package is taken at night: a resident or a thief, the video alone cannot tell.",
    "loitering": "Someone lingers outside with no clear purpose; it may be innocent, the video alone cannot tell.",
    "child_mishap": "A child climbing or falling may be play or an accident; the video alone cannot tell.",
    "pet_mischief": "A pet knocks over a trash can: a mess, probably harmless, but not plainly routine.",
    "wildlife_passing": "A raccoon passes by: common wildlife, not plainly a threat nor plainly routine.",
    "routine": "What happens is routine: residents, visitors or pets going about ordinary activity.",
}


def explain(task: str, record: SceneRecord) -> str:
    """Why the rules give `record` its label: the reasoning line of a ground-truth rationale."""
    name, subtype = label(task, record)
    if task == "home-security":
        return _WHY[subtype].format(kind=next((s.kind for s in record.subjects if s.kind in ("bear", "raccoon")), ""))
    return f"A {subtype} is in view." if subtype != "none" else "No animal is in view, only people or a car."
