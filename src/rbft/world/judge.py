"""Read a free-text description back against a clip's scene record: did it name the right subject and scene?"""

from __future__ import annotations

import re

from rbft.world.captions import ACTION_PHRASE, SCENE_PHRASE
from rbft.world.scenes import SUBJECTS

_SCENE_WORDS = {scene: (scene, phrase.split(" ", 1)[1].removeprefix("the ")) for scene, phrase in SCENE_PHRASE.items()}
_SCENE_WORDS["pool side"] = ("pool side", "pool")


def _first(text: str, names: dict[str, tuple[str, ...]]) -> str | None:
    """The name whose words appear earliest in `text` (longest match wins a tie)."""
    best = None
    for name, words in names.items():
        for word in words:
            m = re.search(rf"\b{re.escape(word)}\b", text, re.IGNORECASE)
            if m and (best is None or (m.start(), -len(word)) < (best[0], -best[1])):
                best = (m.start(), len(word), name)
    return best[2] if best else None


def named_subject(text: str) -> str | None:
    """The first subject kind a description names ('elderly person' before 'adult' when both could match)."""
    return _first(text, {kind: (kind,) for kind in SUBJECTS})


def named_scene(text: str) -> str | None:
    return _first(text, _SCENE_WORDS)


def named_action(text: str) -> str | None:
    words = {action: tuple(p.removeprefix("is ") for p in phrases) + (action,) for action, phrases in ACTION_PHRASE.items()}
    return _first(text, words)


def judge(text: str, record: dict) -> dict[str, bool]:
    """Whether `text` names the main subject, its action and the scene of a `scenes.jsonl` record."""
    main = record["subjects"][0]
    return {"subject": named_subject(text) == main["kind"], "scene": named_scene(text) == record["scene"],
            "action": named_action(text) == main["action"]}


_LINE = re.compile(r"^\s*(subjects?|attributes?|actions?|scenes?|reasoning|conclusion)\s*:\s*(.*)$", re.I | re.M)


def read_rationale(text: str) -> dict[str, str]:
    """A rationale's lines by heading (`subjects`, `attributes`, `actions`, `scenes`, `reasoning`, `conclusion`)."""
    lines = {}
    for heading, body in _LINE.findall(text):
        key = heading.lower()
        key = key if key in ("reasoning", "conclusion") else key.rstrip("s") + "s"
        lines.setdefault(key, body.strip())
    return lines


def reasoning_grounded(text: str) -> bool:
    """Whether the reasoning line names the subject or the action that the rationale's own description gives."""
    lines = read_rationale(text)
    reasoning = lines.get("reasoning", "")
    subject, action = named_subject(lines.get("subjects", "")), named_action(lines.get("actions", ""))
    return bool(reasoning) and ((subject is not None and named_subject(reasoning) == subject)
                                or (action is not None and named_action(reasoning) == action))
