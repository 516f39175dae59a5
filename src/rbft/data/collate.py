"""From (video, prompt, target) examples to a model batch: the model's own chat template and processor.

The loss is on the assistant's reply only. Rendering the same conversation without
the reply (with the generation prompt) gives a prefix of the full text (or, for templates
whose generation prompt differs from the rendered turn, the reply is the target's last
occurrence); what follows (the reply and the template's end of turn) holds no video
placeholder, so the tokenizer alone gives its length, and the reply is that many tokens
at the end of each row. The videos go through the processor once. Padding follows the processor's
tokenizer (left or right).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from rbft.data.conversation import Example, messages
from rbft.modeling import frame_times, temporal_patch

IGNORE = -100


class VideoChatCollator:
    """Callable that turns a list of `Example`s into tensors with `labels` masked outside the replies.

    `frames(path)` returns a clip's sampled frames as (T, H, W, 3) uint8, from the frame cache
    or from memory; T is rounded down to the processor's temporal patch size.
    """

    def __init__(self, processor, frames: Callable[[Path], np.ndarray]):
        self.processor = processor
        self.frames = frames
        self.temporal = temporal_patch(processor)

    def videos(self, examples: Sequence[Example]) -> tuple[list[np.ndarray], list | None]:
        """Each example's frames (a multiple of the temporal patch), and their timing when known.

        `frames(path)` may return a `Clip` (frames with real timestamps) or bare frames; with
        clips, processors that print frame times (Qwen3-VL, SmolVLM) get the true ones.
        """
        clips, timing = [], []
        for example in examples:
            got = self.frames(example.video)
            frames = getattr(got, "frames", got)
            keep = max(self.temporal, len(frames) - len(frames) % self.temporal)
            rows = np.arange(keep) % len(frames)  # a clip too short for one temporal patch repeats
            clips.append(frames[rows])
            stamps = getattr(got, "timestamps", None)
            timing.append(None if stamps is None else frame_times(got.info, stamps[rows]))
        return clips, (timing if all(t is not None for t in timing) else None)

    def encode(self, texts: list[str], videos: tuple[list[np.ndarray], list | None]) -> dict:
        clips, timing = videos
        kwargs = {"do_sample_frames": False, **({"video_metadata": timing} if timing else {})}
        return self.processor(text=texts, videos=clips, padding=True, return_tensors="pt", videos_kwargs=kwargs)

    def prefix(self, example: Example) -> str:
        """The conversation's text up to and including the generation prompt."""
        return self.processor.apply_chat_template(messages(example, False), add_generation_prompt=True, tokenize=False)

    def _reply(self, text: str, example: Example) -> str:
        """The tail of the rendered conversation that is the reply (and the template's end of turn)."""
        prefix = self.prefix(example)
        if text.startswith(prefix):
            return text[len(prefix):]
        # templates whose generation prompt differs from the rendered assistant turn (LLaVA-OneVision's
        # `<|im_start|>assistant ` + newline): the reply is the last occurrence of the target
        start = text.rfind(example.target)
        assert example.target and start >= 0, "the chat template drops the reply"
        return text[start:]

    def context(self, example: Example) -> str:
        """The conversation's text up to where its reply starts, as training renders it (what a reply is scored
        after). The generation prompt in most templates; not in LLaVA-OneVision's, whose assistant turn opens
        with `assistant ` + newline where its generation prompt has `assistant` + newline."""
        probe = example if example.target else replace(example, target="<label>")
        text = self.processor.apply_chat_template(messages(probe), tokenize=False)
        return text[:len(text) - len(self._reply(text, probe))]

    def prompts(self, examples: Sequence[Example], scoring: bool = False) -> dict:
        """The batch up to and including the generation prompt (for generation), or up to where the reply starts
        in training (`scoring`)."""
        return self.encode([self.context(e) if scoring else self.prefix(e) for e in examples], self.videos(examples))

    def prompt_batches(self, examples: Sequence[Example], batch_size: int,
                       scoring: bool = False) -> Iterator[tuple[list[int], dict]]:
        """(indices into `examples`, their prompts batch, as `prompts`) by prompt length, so little goes to
        padding, and left-padded, so every row's reply starts at the last column."""
        tokenizer = self.processor.tokenizer
        texts = [self.context(e) if scoring else self.prefix(e) for e in examples]
        lengths = [len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts]
        order = sorted(range(len(examples)), key=lengths.__getitem__)
        for start in range(0, len(order), batch_size):
            rows, side = order[start:start + batch_size], tokenizer.padding_side
            tokenizer.padding_side = "left"
            try:
                batch = self.encode([texts[i] for i in rows], self.videos([examples[i] for i in rows]))
            finally:
                tokenizer.padding_side = side
            yield rows, batch

    def reply_ids(self, example: Example, text: str | None = None) -> list[int]:
        """The token ids of the example's reply and the template's end of turn."""
        text = self.processor.apply_chat_template(messages(example), tokenize=False) if text is None else text
        return self.processor.tokenizer(self._reply(text, example), add_special_tokens=False)["input_ids"]

    def __call__(self, examples: Sequence[Example]) -> dict:
        full = [self.processor.apply_chat_template(messages(e), tokenize=False) for e in examples]
        batch = self.encode(full, self.videos(examples))
        labels = torch.full_like(batch["input_ids"], IGNORE)
        for row, (text, example) in enumerate(zip(full, examples)):
            reply = self.reply_ids(example, text)
            mask = batch["attention_mask"][row]
            end = int(mask.nonzero()[0]) + int(mask.sum())  # after left padding, if any
            begin = end - len(reply)
            assert batch["input_ids"][row, begin:end].tolist() == list(reply), "the reply tokenizes differently"
            labels[row, begin:end] = batch["input_ids"][row, begin:end]
        batch["labels"] = labels
        return dict(batch)
