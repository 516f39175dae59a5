"""What anyone knows about the world's situations, in words: the base model's general knowledge.

A real VLM knows, before any task, that a bear near a house can hurt people, that a fall
can injure an older person, that a child must not be alone by a pool, that a hood hides a
face. RB-FT relies on that knowledge: told a video's label, the model explains it with what
it knows. These are the tiny base model's facts, one per subject, action, scene, time of day
and clothing, written about the situations themselves and apart from the tasks: no task's
label, question or rule (the rules in `rbft.world.tasks` combine facts in ways no sentence
here states, and their reasoning lines are never pretraining text). A test checks that the
home-security labels' words appear nowhere in the pretraining text; the facts do say what
a real VLM knows and the tasks build on: that bears and raccoons are wild animals, that a
fall or a pool can hurt.
"""

from __future__ import annotations

from rbft.world.scenes import SceneRecord

SUBJECT = {
    "adult": "An adult can be a resident, a visitor or a stranger; the clip shows which only by what they do.",
    "elderly person": "An elderly person is frail and slow to get up, and is badly hurt by a fall.",
    "child": "A child does not see danger coming and needs an adult close by.",
    "courier": "A courier in uniform brings parcels to houses as a job, every day.",
    "dog": "A dog lives with its family and plays in and around the house every day.",
    "cat": "A cat lives with its family and roams the house and the garden every day.",
    "bear": "A bear is a large wild animal; near a house it can hurt people and pets and break in.",
    "raccoon": "A raccoon is a small wild animal that lives near towns and raids trash cans for food.",
    "car": "A car pulling into a driveway is how residents come home and visitors arrive.",
}
ACTION = {
    "walking past": "Walking past is ordinary movement that does not stop at the house.",
    "approaching the door": "Coming up to the door is what visitors, couriers and residents do.",
    "ringing the bell": "Ringing the bell is how a visitor openly asks to be let in.",
    "leaving a package": "Leaving a package at the door is a delivery, made every day.",
    "taking a package": "Taking a package from the door is what a resident does with a parcel, and what a thief does.",
    "knocking over a trash can": "Knocking over a trash can makes a mess; animals do it looking for food.",
    "climbing a fence": "Climbing a fence instead of using the gate is a way in without being let in.",
    "falling down": "A fall can injure a person, who may not get up without help.",
    "playing": "Playing is what children and pets do every day.",
    "lingering": "Staying in one place with no clear purpose may be waiting, or watching the house.",
    "driving in": "Driving in is a car arriving home or a visitor arriving.",
}
SCENE = {
    "front porch": "The front porch is where visitors ring and deliveries are left.",
    "driveway": "The driveway is where cars park and people walk up to the house.",
    "backyard": "The backyard is private ground behind the house, closed by a fence.",
    "kitchen": "The kitchen is inside the house, where only the family and its pets belong.",
    "living room": "The living room is inside the house, where the family spends its day.",
    "nursery": "The nursery is a small child's room inside the house.",
    "pool side": "A pool can drown a small child in moments if no adult is watching.",
}
TIME = {
    "night": "At night few people are about and it is hard to see who someone is or what they want.",
    "day": "In daylight people come and go and it is easy to see what they do.",
}
CLOTHING = {"hoodie": "A raised hood can hide a person's face from the camera."}


def facts(record: SceneRecord) -> dict[str, str]:
    """The facts that bear on a clip's main subject, by what they are about (subject, action, scene, time, clothing)."""
    main = record.main
    out = {"subject": SUBJECT[main.kind], "action": ACTION[main.action], "scene": SCENE[record.scene],
           "time": TIME[record.time]}
    if main.clothing in CLOTHING:
        out["clothing"] = CLOTHING[main.clothing]
    return out


def every_fact() -> list[str]:
    """Every sentence of this module's knowledge (for the tokenizer's corpus and the label-word test)."""
    return [*SUBJECT.values(), *ACTION.values(), *SCENE.values(), *TIME.values(), *CLOTHING.values()]
