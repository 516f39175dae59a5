"""The prompts of RB-FT: the persona, the rationale prompt (P_rationale) and the label prompt (P_label).

Every prompt is a pure function of the task, so its sha256 versions it.
"""

from __future__ import annotations

import hashlib

from rbft.config import TaskConfig

DIMENSIONS = ("subjects", "attributes", "actions", "scenes")


def system_prompt(task: TaskConfig) -> str:
    """The expert persona, as the system turn."""
    persona = task.persona.strip().rstrip(".")
    article = "an" if persona[:1].lower() in "aeiou" else "a"
    return f"You are {article} {persona}."


def label_target(label: str) -> str:
    """What the model answers in Stage II and is scored on: the label in angle brackets, as in the paper."""
    return f"<{label}>"


def label_prompt(task: TaskConfig) -> str:
    """P_label: the question, what each label means, and the answer format."""
    guide = "\n".join(f"- {label_target(name)}: {meaning}" for name, meaning in task.labels.items())
    options = ", ".join(label_target(name) for name in task.labels)
    return f"{task.question}\n{guide}\nAnswer with one of {options}."


def rationale_prompt(task: TaskConfig) -> str:
    """P_rationale without a label hint: describe along the four dimensions, then what matters for the task."""
    return (f"Describe the video by its subjects, attributes, actions and scenes. "
            f"Then explain what matters for this question: {task.question}")


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
