"""Pretraining conversations that teach the base model to reason toward a verdict, and what it knows.

An instruction-tuned VLM, given a clip, a question and a verdict with its meaning, writes
why the clip earns that verdict, and with no verdict given it judges on its own. RB-FT's
Stage I data depends on that. The tiny base model learns it here, on made-up quizzes
about world clips, never on a task:

- a quiz is a question about a general property of a situation (could anyone get hurt,
  is someone arriving, can one tell what the subject wants, is anything damaged, ...),
  each answer with its meaning, and a rule over the clip's scene record;
- the verdict words are drawn afresh for each conversation: a synonym of the answer
  (`risky`, `arriving`), a random word, or a made-up one (`<beaormick>`), so the model
  learns to reason toward whatever verdict a prompt names, not a vocabulary. No task's
  label word is ever one of them (`_forbidden`; a test checks every conversation);
- the prompt is rbft's own rationale prompt (`rbft.prompts.rationale_prompt`) for a
  made-up task built from the quiz, with the verdict stated (and its meaning) or not;
- the answer is the clip's four-dimension description, a reasoning line (what the main
  subject does where, what anyone knows about it from `rbft.world.knowledge`, and the
  verdict, as the prompt states it) and a conclusion that names the verdict.

`knowledge_answer` is the plain knowledge conversation: what one should know about a clip.
`copy_drill` is a short text-only quiz (the clip told in words). The shipped recipe has
none (`Recipe.drills` is 0): they taught a model without in-context copying to copy in
their own format only; the recipe's copy phases (`rbft.basemodel.copying`) teach the
copying itself, and the quizzes carry the stated verdict into the answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rbft.config import TaskConfig
from rbft.prompts import CONCLUSION, label_target, rationale_prompt, system_prompt
from rbft.world.captions import ACTION_PHRASE, SCENE_PHRASE, structured
from rbft.world.knowledge import every_fact, facts
from rbft.world.scenes import OUTDOOR, PEOPLE, SceneRecord
from rbft.world.tasks import TASKS

KNOWLEDGE_PROMPTS = ("What should one know about what happens in this video?",
                     "What do you know about the situation in this clip?",
                     "Explain the situation in this video.")


@dataclass(frozen=True)
class Answer:
    meaning: str
    synonyms: tuple[str, ...]


@dataclass(frozen=True)
class Quiz:
    """A made-up question about a situation, its answers, and the rule giving (answer, the fact that decides it)."""

    questions: tuple[str, ...]
    answers: dict[str, Answer]
    rule: Callable[[SceneRecord], tuple[str, str]]


def _harm(r: SceneRecord) -> tuple[str, str]:
    if any(s.kind == "bear" for s in r.subjects):
        return "risk", "subject"
    if r.main.action == "falling down":
        return "risk", "action"
    if r.main.kind == "child" and r.scene == "pool side":
        return "risk", "scene"
    return "none", "action"


def _purpose(r: SceneRecord) -> tuple[str, str]:
    if r.main.action in ("lingering", "taking a package", "climbing a fence"):
        return "unclear", "action"
    if r.main.clothing == "hoodie" and r.time == "night":
        return "unclear", "clothing"
    return "clear", "action"


def _help(r: SceneRecord) -> tuple[str, str]:
    if r.main.action == "falling down":
        return "needed", "action"
    if r.main.kind == "child" and r.scene == "pool side":
        return "needed", "scene"
    return "not needed", "subject"


QUIZZES = (
    Quiz(("Could anyone get hurt in this clip?", "Is someone or something in danger here?",
          "Does this clip show a risk to people, animals or the house?"),
         {"risk": Answer("someone could get hurt or the house be damaged", ("risky", "unsafe", "hazard", "at_risk")),
          "none": Answer("nobody is at risk of harm", ("safe", "harmless", "no_risk", "secure"))}, _harm),
    Quiz(("Is somebody arriving at the house?", "Does the clip show an arrival?"),
         {"arrival": Answer("someone or something is arriving at the house", ("arriving", "arrival", "incoming")),
          "passing": Answer("nobody is arriving at the house", ("not_arriving", "no_arrival", "passing"))},
         lambda r: ("arrival" if r.main.action in ("approaching the door", "ringing the bell", "leaving a package",
                                                  "driving in") else "passing", "action")),
    Quiz(("Can you tell from the clip what the main subject wants?", "Is the purpose of what happens plain?"),
         {"clear": Answer("what it wants is plain from what it does", ("clear", "plain", "obvious")),
          "unclear": Answer("what it wants cannot be told from the clip alone", ("unclear", "unknown", "open"))},
         _purpose),
    Quiz(("Is anything being damaged or messed up?", "Does the clip leave a mess behind?"),
         {"mess": Answer("something is knocked over or damaged", ("mess", "messy", "damage")),
          "tidy": Answer("nothing is knocked over or damaged", ("tidy", "intact", "clean"))},
         lambda r: ("mess" if r.main.action == "knocking over a trash can" else "tidy", "action")),
    Quiz(("Does someone need help right now?", "Should a person step in to help?"),
         {"needed": Answer("someone needs help now", ("help", "urgent", "needs_help")),
          "not needed": Answer("nobody needs help", ("no_help", "fine", "ok"))}, _help),
    Quiz(("What kind of thing is the main subject?", "Is the main subject a person, an animal or a vehicle?"),
         {"person": Answer("the main subject is a person", ("person", "human", "people")),
          "animal": Answer("the main subject is an animal", ("fauna", "creature", "beast")),
          "vehicle": Answer("the main subject is a vehicle", ("vehicle", "car", "machine"))},
         lambda r: ("person" if r.main.kind in PEOPLE else "vehicle" if r.main.kind == "car" else "animal", "subject")),
    Quiz(("Does this happen inside the house?", "Indoors or outdoors?"),
         {"out": Answer("it happens outside the house", ("outdoors", "outside", "yard")),
          "in": Answer("it happens inside the house", ("indoors", "inside", "room"))},
         lambda r: ("out" if r.scene in OUTDOOR else "in", "scene")),
    Quiz(("Was this filmed in the dark?", "Is it hard to see in this clip?"),
         {"dark": Answer("it was filmed at night", ("dark", "night", "nighttime")),
          "light": Answer("it was filmed in daylight", ("light", "day", "daytime"))},
         lambda r: ("dark" if r.time == "night" else "light", "time")),
)
PERSONAS = ("Home Camera Expert", "Safety Inspector", "Neighbourhood Watch Volunteer", "Pet Care Expert",
            "Child Safety Expert", "Building Manager", "Video Analyst", "Insurance Assessor")
WORDS = ("amber", "basalt", "cobalt", "delta", "ember", "fable", "granite", "harbor", "indigo", "jasper", "kettle",
         "lantern", "marble", "nectar", "orbit", "pepper", "quartz", "ripple", "saffron", "timber", "umber", "velvet",
         "willow", "yonder", "zenith", "alpha", "beta", "gamma", "first", "second", "third", "yes", "nope", "maybe",
         "high", "low", "medium", "red", "green", "blue", "class_a", "class_b", "class_c", "type_1", "type_2",
         "level_one", "level_two", "keep", "drop", "flag", "pass", "hold", "check", "skip", "watch", "ignore")


def _forbidden() -> set[str]:
    """Every word of every task's labels: never a verdict in pretraining."""
    return {w for task in TASKS.values() for name in task.labels for w in [name, *re.split(r"[_\s]", name)]}


FORBIDDEN = _forbidden()


def _source_words() -> tuple[str, ...]:
    """The words of the pretraining text's knowledge, quizzes and verdict list: made-up words are cut from them."""
    text = " ".join([*every_fact(), *WORDS, *PERSONAS, *(q for quiz in QUIZZES for q in quiz.questions),
                     *(a.meaning for quiz in QUIZZES for a in quiz.answers.values())])
    return tuple(sorted({w for w in re.findall(r"[a-z]+", text.lower()) if len(w) >= 3}))


_SOURCE_WORDS = _source_words()


def _made_up(rng: np.random.Generator) -> str:
    """A word nobody taught it: letters drawn at random (3 to 10), or two or three pieces cut from words of the
    pretraining text (`bea` + `orm` + `ick`), sometimes two such parts joined by `_`. Every piece of it must be
    copied from the prompt, none can be guessed, and the pieces are those the tokenizer splits real words into,
    so the copying holds for a task's label words too (random letters alone taught it to copy single letters:
    told `<normal>`, it wrote `<nnal>`). Made of a few fixed syllables, made-up words taught a prior instead:
    the model answered `<ninizo>` when told `<normal>`."""
    if rng.random() < 0.4:
        word = "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), int(rng.integers(3, 11))))
    else:
        pieces = []
        for source in rng.choice(_SOURCE_WORDS, int(rng.integers(2, 4))):
            size = int(rng.integers(2, min(5, len(source)) + 1))
            start = int(rng.integers(0, len(source) - size + 1))
            pieces.append(source[start:start + size])
        word = "".join(pieces)
    return word + "_" + _made_up(rng) if rng.random() < 0.15 else word


def _allowed(word: str) -> bool:
    """No task's label, nor one of its words (of three letters or more) anywhere inside."""
    return word not in FORBIDDEN and not any(f in word for f in FORBIDDEN if len(f) >= 3)


def verdicts(quiz: Quiz, rng: np.random.Generator, any_word: bool = True) -> dict[str, str]:
    """A verdict word for each of the quiz's answers, drawn afresh, all distinct: a synonym of the answer, or
    (with `any_word`, for prompts that state the verdict and its meaning) more often a random or made-up word."""
    style = int(rng.choice(3, p=[0.2, 0.2, 0.6])) if any_word else 0
    while True:
        if style == 0:
            words = [str(rng.choice(a.synonyms)) for a in quiz.answers.values()]
        elif style == 1:
            words = [str(w) for w in rng.choice(WORDS, len(quiz.answers), replace=False)]
        else:
            words = [_made_up(rng) for _ in quiz.answers]
        if len(set(words)) == len(words) and all(_allowed(w) for w in words):
            return dict(zip(quiz.answers, words))


def _situation(r: SceneRecord) -> str:
    main = r.main
    when = "at night" if r.time == "night" else "during the day"
    return f"The {main.kind} {ACTION_PHRASE[main.action][0]} {SCENE_PHRASE[r.scene]} {when}."


def knowledge_answer(r: SceneRecord, rng: np.random.Generator) -> str:
    """What happens, then what anyone knows about it: the subject, the action and one more fact."""
    known = facts(r)
    extra = [k for k in ("scene", "time", "clothing") if k in known]
    return " ".join([_situation(r), known["subject"], known["action"], known[str(rng.choice(extra))]])


def reasoning_example(r: SceneRecord, rng: np.random.Generator, hint_share: float = 0.6) -> tuple[str, str, str]:
    """(system, prompt, answer) of one made-up quiz about clip `r`: rbft's rationale layout, reasoning, conclusion."""
    quiz = QUIZZES[int(rng.integers(len(QUIZZES)))]
    hinted = rng.random() < hint_share
    # without the verdict's meaning in the prompt only a word that means the answer can be reasoned toward
    words = verdicts(quiz, rng, any_word=hinted)
    order = list(quiz.answers)
    rng.shuffle(order)
    task = TaskConfig(name="quiz", persona=str(rng.choice(PERSONAS)), question=str(rng.choice(quiz.questions)),
                      labels={words[a]: quiz.answers[a].meaning for a in order})
    truth, about = quiz.rule(r)
    verdict = words[truth]
    prompt = rationale_prompt(task, verdict if hinted else None)
    # the verdict as the prompt states it ("The label of this video is <v> (...)"), without its meaning: the
    # quizzes' meanings are few and the model learns them by heart, so told a task's meaning it recalled one of
    # those instead and garbled or looped (`<normal> (routine a house it can hurt people ...`: 0.78 of 64 demo
    # clips kept by the filter); a short pass of quizzes without the meaning took the model that wrote that to
    # 64 of 64, and one with made-up meanings to copy to 0.70
    reasoning = f"{_situation(r)} {facts(r).get(about, facts(r)['action'])} So the label is {label_target(verdict)}."
    answer = f"{structured(r)}\nReasoning: {reasoning}\n{CONCLUSION} {label_target(verdict)}"
    return system_prompt(task), prompt, answer


def copy_drill(r: SceneRecord, rng: np.random.Generator) -> tuple[str, str, str]:
    """(system, prompt, answer) without a video: a clip told in words, a made-up quiz with its verdict stated as
    rbft's label-hinted rationale prompt states it, and the answer's last two lines. Short and cheap, these teach
    the model to carry a stated verdict into its answer far faster than the video quizzes alone."""
    quiz = QUIZZES[int(rng.integers(len(QUIZZES)))]
    words = verdicts(quiz, rng)
    truth, _ = quiz.rule(r)
    verdict, meaning = label_target(words[truth]), quiz.answers[truth].meaning
    prompt = (f"{_situation(r)} {str(rng.choice(quiz.questions))}\nThe label of this video is {verdict} ({meaning}).\n"
              f"Answer in this layout:\nReasoning: what matters for the question, and why.\n{CONCLUSION} {verdict}")
    answer = f"Reasoning: {_situation(r)} So the label is {verdict} ({meaning}).\n{CONCLUSION} {verdict}"
    return f"You are a {rng.choice(PERSONAS)}.", prompt, answer
