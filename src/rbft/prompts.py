"""The prompts of RB-FT: the persona, the rationale prompt (P_rationale) and the label prompt (P_label),
and the conversations (video, prompt, reply) made of them.

Every prompt is a pure function of the task (and, for a label-conditioned rationale, of the
video's label), so the sha256 of the text a model was given versions it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from rbft.config import TaskConfig
from rbft.data.conversation import Example
from rbft.data.manifest import VideoRecord

DIMENSIONS = ("subjects", "attributes", "actions", "scenes")
# the layout a rationale is asked to follow: one line per dimension, then the reasoning and a verdict
LAYOUT = ("Subjects: who or what appears.\n"
          "Attributes: what each looks like (size, colour, clothing, what it carries).\n"
          "Actions: what each does, in order.\n"
          "Scenes: where and when it happens.\n"
          "Reasoning: what in the video matters for the question, and why.\n"
          "Conclusion: {options}")
CONCLUSION = "Conclusion:"


def system_prompt(task: TaskConfig) -> str:
    """The expert persona, as the system turn."""
    persona = task.persona.strip().rstrip(".")
    article = "an" if persona[:1].lower() in "aeiou" else "a"
    return f"You are {article} {persona}."


def label_target(label: str) -> str:
    """What the model answers in Stage II and is scored on: the label in angle brackets, as in the paper."""
    return f"<{label}>"


def parse_label(text: str, labels: Sequence[str]) -> str | None:
    """The label a free-form reply gives, or None (a parse failure).

    In order: the first label in angle brackets (`<abnormal>`, the trained format); else the
    label named on the last `Conclusion:` / `Answer:` / `Classification:` line; else the one
    label named as a word when exactly one is (`abnormal` never counts as `normal`).
    """
    found = [(m.start(), x) for x in labels for m in [re.search(rf"<\s*{re.escape(x)}\s*>", text, re.I)] if m]
    if found:
        return min(found)[1]
    verdicts = re.findall(r"^\W*(?:conclusion|answer|classification|label)\W*:(.*)$", text, re.I | re.M)
    for line in verdicts[-1:]:
        named = [(m.start(), x) for x in labels for m in [re.search(rf"\b{re.escape(x)}\b", line, re.I)] if m]
        if named:
            return min(named)[1]
    named = [x for x in labels if re.search(rf"(?<![-\w]){re.escape(x)}(?![-\w])", text, re.I)]
    return named[0] if len(named) == 1 else None


def _options(task: TaskConfig) -> str:
    return ", ".join(label_target(name) for name in task.labels)


def label_prompt(task: TaskConfig) -> str:
    """P_label: the question, what each label means, and the answer format."""
    guide = "\n".join(f"- {label_target(name)}: {meaning}" for name, meaning in task.labels.items())
    return f"{task.question}\n{guide}\nAnswer with one of {_options(task)}."


def rationale_prompt(task: TaskConfig, label: str | None = None) -> str:
    """P_rationale: describe the video along the paper's four dimensions, reason about the task, conclude.

    With `label` (label-conditioned, as the authors' own Stage I data was made) the prompt
    states the video's ground-truth label and asks for the reasoning that leads to it;
    without it (label-free) the model judges on its own.
    """
    if label is not None and label not in task.labels:
        raise ValueError(f"label {label!r} is not one of the task's labels {list(task.labels)}")
    text = ("Describe the video by its subjects, attributes, actions and scenes. "
            f"Then explain what matters for this question: {task.question}\n")
    if label is not None:
        text += (f"The label of this video is {label_target(label)} ({task.labels[label]}); it is given to "
                 "help you. Explain what in the video leads to it, as if you had found it yourself.\n")
    # told the label, the layout's conclusion line names it alone: a prompt that also lists the other labels
    # there has every label in it, and a small model then concludes with whichever it attends to
    verdict = label_target(label) if label is not None else f"one of {_options(task)}"
    return text + "Answer in this layout:\n" + LAYOUT.format(options=verdict)


def label_examples(task: TaskConfig, videos: Sequence[VideoRecord]) -> list[Example]:
    """(video, P_label) -> `<label>` with the persona; a video without a label (scoring only) gets no target."""
    prompt, system = label_prompt(task), system_prompt(task)
    return [Example(v.id, v.video, prompt, label_target(v.label) if v.label else "", system) for v in videos]


def rationale_examples(task: TaskConfig, videos: Sequence[VideoRecord], hint: bool) -> list[Example]:
    """(video, P_rationale) per video, with the video's label stated when `hint` is on."""
    return [Example(v.id, v.video, rationale_prompt(task, v.label if hint else None), system=system_prompt(task))
            for v in videos]


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
