"""Export rbft's training conversations for other trainers: LLaMA-Factory, or plain ShareGPT.

The conversations are exactly those rbft trains on: the persona as the system turn, the
video and P_label -> `<label>` (Stage II / direct SFT), or the video and the label-free
P_rationale -> the kept rationale (Stage I). Video paths are absolute.

- `llamafactory`: LLaMA-Factory's multimodal sharegpt layout ({"messages": [...],
  "videos": [...]}, with `<video>` in the user turn) and a `dataset_info.json` beside it.
- `sharegpt`: {"system": ..., "conversations": [{"from": "human"|"gpt", "value": ...}], "videos": [...]}.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from rbft.config import ExperimentConfig
from rbft.data.manifest import VideoRecord
from rbft.prompts import label_prompt, label_target, rationale_prompt, system_prompt

FORMATS = ("llamafactory", "sharegpt")


def conversations(config: ExperimentConfig, videos: Sequence[VideoRecord], rationales: dict[str, dict] | None = None
                  ) -> list[tuple[str, str, str, str]]:
    """(video, system, prompt, reply) per example: labels, or kept rationales when `rationales` is given."""
    system = system_prompt(config.task)
    if rationales is None:
        return [(str(v.video), system, label_prompt(config.task), label_target(v.label)) for v in videos if v.label]
    prompt = rationale_prompt(config.task)
    return [(str(v.video), system, prompt, rationales[v.id]["rationale"]) for v in videos
            if v.id in rationales and not rationales[v.id].get("rejected")]


def export(config: ExperimentConfig, videos: Sequence[VideoRecord], out: Path, fmt: str,
           rationales: dict[str, dict] | None = None) -> int:
    """Write the conversations to `out` (a JSON file) in `fmt`; returns how many."""
    rows = conversations(config, videos, rationales)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "llamafactory":
        data = [{"messages": [{"role": "system", "content": system}, {"role": "user", "content": "<video>" + prompt},
                              {"role": "assistant", "content": reply}], "videos": [video]}
                for video, system, prompt, reply in rows]
        info = {out.stem: {"file_name": out.name, "formatting": "sharegpt",
                           "columns": {"messages": "messages", "videos": "videos"},
                           "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                                    "assistant_tag": "assistant", "system_tag": "system"}}}
        info_path = out.parent / "dataset_info.json"
        known = json.loads(info_path.read_text()) if info_path.exists() else {}
        info_path.write_text(json.dumps({**known, **info}, indent=2) + "\n")
    elif fmt == "sharegpt":
        data = [{"system": system, "conversations": [{"from": "human", "value": "<video>" + prompt},
                                                     {"from": "gpt", "value": reply}], "videos": [video]}
                for video, system, prompt, reply in rows]
    else:
        raise ValueError(fmt)
    out.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n")
    return len(data)
