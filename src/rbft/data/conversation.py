"""A conversation about a video: what every stage trains on, scores or generates from.

It is plain data, so the prompts that make conversations (`rbft.prompts`) need none of the
heavy machinery that turns them into tensors (`rbft.data.collate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Example:
    """One training or scoring conversation: system persona, the video and a prompt, the reply."""

    id: str
    video: Path
    prompt: str
    target: str = ""
    system: str | None = None


def messages(example: Example, with_target: bool = True) -> list[dict]:
    """The conversation in the Hugging Face chat format, video before the prompt as the paper's code does."""
    turns = [] if example.system is None else [{"role": "system", "content": [{"type": "text", "text": example.system}]}]
    turns.append({"role": "user", "content": [{"type": "video"}, {"type": "text", "text": example.prompt}]})
    if with_target:
        turns.append({"role": "assistant", "content": [{"type": "text", "text": example.target}]})
    return turns
