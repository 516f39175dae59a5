"""Generation backends: a Hugging Face model in this process, or an OpenAI-compatible server.

In process, prompts are left-padded so every row's reply starts at the same position,
and batched by length (length bucketing) so little compute goes to padding. Over HTTP
(vLLM, SGLang, a hosted teacher, or `rbft serve`), a video travels as its sampled frames,
one image each, in the user's message; requests run `concurrency` at a time, each with a
timeout, retried with exponential backoff on timeouts, connection errors, HTTP 429/5xx
and malformed replies, and reported as a failure with its reason once retries run out.
"""

from __future__ import annotations

import base64
import io
import json
import random
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass

import httpx
import numpy as np
import torch
from PIL import Image

from rbft.data.conversation import Example


@dataclass(frozen=True)
class Decoding:
    """How replies are decoded; recorded with every rationale as its `generation`."""

    max_new_tokens: int = 96
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0

    def to_json(self) -> dict:
        return asdict(self) if self.do_sample else {"max_new_tokens": self.max_new_tokens, "do_sample": False}


@dataclass(frozen=True)
class Usage:
    """What one reply cost in tokens, and whether it ended by itself (`stop`) or ran out of tokens (`length`)."""

    prompt_tokens: int
    completion_tokens: int
    finish_reason: str


@torch.no_grad()
def generate_batches(model, collator, examples: Sequence[Example], decoding: Decoding = Decoding(),
                     batch_size: int = 8, usage: bool = False) -> Iterator[list[tuple]]:
    """Yield each batch's (index into `examples`, reply) pairs as soon as the batch is done; with `usage`,
    (index, reply, Usage) triples."""
    model.eval()
    tokenizer = collator.processor.tokenizer
    settings = {"do_sample": decoding.do_sample, "max_new_tokens": decoding.max_new_tokens,
                "pad_token_id": tokenizer.pad_token_id}
    if decoding.do_sample:
        settings.update(temperature=decoding.temperature, top_p=decoding.top_p)
    ends = model.generation_config.eos_token_id
    ends = torch.tensor([] if ends is None else [ends] if isinstance(ends, int) else list(ends))
    for rows, batch in collator.prompt_batches(examples, batch_size):
        if decoding.do_sample:  # a batch's draws depend on the seed and its first row, not on what ran before
            torch.manual_seed(decoding.seed * 1_000_003 + rows[0])
        batch = batch.to(model.device)
        new = model.generate(**batch, **settings)[:, batch["input_ids"].shape[1]:]
        texts = tokenizer.batch_decode(new, skip_special_tokens=True)
        if not usage:
            yield [(i, text.strip()) for i, text in zip(rows, texts)]
            continue
        ended = torch.isin(new.cpu(), ends)
        lengths = torch.where(ended.any(1), ended.int().argmax(1) + 1, new.shape[1]).tolist()
        prompts = batch["attention_mask"].sum(1).tolist()
        yield [(i, text.strip(), Usage(int(p), int(n), "stop" if stop else "length"))
               for i, text, p, n, stop in zip(rows, texts, prompts, lengths, ended.any(1).tolist())]


def generate(model, collator, examples: Sequence[Example], max_new_tokens: int = 96, batch_size: int = 8,
             do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0) -> list[str]:
    """The model's reply to each example's video and prompt, in the examples' order."""
    replies = [""] * len(examples)
    decoding = Decoding(max_new_tokens, do_sample, temperature, top_p)
    for batch in generate_batches(model, collator, examples, decoding, batch_size):
        for i, text in batch:
            replies[i] = text
    return replies


class GenerationFailed(Exception):
    """A request that still failed after every retry; `reason` says how."""

    def __init__(self, reason: str, attempts: int):
        self.reason, self.attempts = reason, attempts
        super().__init__(f"{reason} (after {attempts} attempt(s))")


class _Retry(Exception):
    pass


def frame_url(frame: np.ndarray, quality: int = 95) -> str:
    """One frame as a base64 JPEG data URL, the form every OpenAI-compatible server accepts."""
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def chat_messages(example: Example, frames: np.ndarray) -> list[dict]:
    """The conversation as OpenAI chat messages: the persona, then the frames and the prompt."""
    content = [{"type": "image_url", "image_url": {"url": frame_url(f)}} for f in getattr(frames, "frames", frames)]
    content.append({"type": "text", "text": example.prompt})
    turns = [] if example.system is None else [{"role": "system", "content": example.system}]
    return turns + [{"role": "user", "content": content}]


class ChatClient:
    """An OpenAI-compatible chat-completions client for video prompts (frames as images)."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, concurrency: int = 4,
                 timeout_s: float = 120.0, retries: int = 3, backoff_s: float = 0.5):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.concurrency, self.retries, self.backoff_s = model, concurrency, retries, backoff_s
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(timeout=timeout_s, headers=headers)

    def close(self) -> None:
        self.http.close()

    def complete(self, example: Example, frames: np.ndarray, decoding: Decoding = Decoding()) -> str:
        """The server's reply to one video and prompt; raises GenerationFailed once retries run out."""
        body = {"model": self.model, "messages": chat_messages(example, frames),
                "max_tokens": decoding.max_new_tokens, "temperature": decoding.temperature if decoding.do_sample else 0.0,
                "top_p": decoding.top_p if decoding.do_sample else 1.0}
        if decoding.do_sample:
            body["seed"] = decoding.seed
        reason = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1) * random.uniform(0.5, 1.5))
            try:
                return self._post(body)
            except _Retry as e:
                reason = str(e)
            except GenerationFailed as e:
                raise GenerationFailed(e.reason, attempt + 1) from None
        raise GenerationFailed(reason, self.retries + 1)

    def _post(self, body: dict) -> str:
        try:
            response = self.http.post(self.url, json=body)
        except httpx.TimeoutException:
            raise _Retry(f"timed out after {self.http.timeout.read} s") from None
        except httpx.TransportError as e:
            raise _Retry(f"connection failed: {type(e).__name__}: {e}") from None
        if response.status_code == 429 or response.status_code >= 500:
            raise _Retry(f"HTTP {response.status_code}: {response.text[:200]}")
        if response.status_code != 200:  # a request the server will never accept: do not retry
            raise GenerationFailed(f"HTTP {response.status_code}: {response.text[:300]}", 1)
        try:
            text = response.json()["choices"][0]["message"]["content"]
        except (json.JSONDecodeError, KeyError, IndexError, TypeError) as e:
            raise _Retry(f"malformed reply ({type(e).__name__}): {response.text[:200]!r}") from None
        if not isinstance(text, str):
            raise _Retry(f"malformed reply: content is {type(text).__name__}, not text")
        return text.strip()

    def complete_all(self, examples: Sequence[Example], frames: Callable, decoding: Decoding = Decoding()
                     ) -> Iterator[tuple[int, str | None, GenerationFailed | None]]:
        """Yield (index, reply, None) or (index, None, failure) for each example, as each finishes."""

        def one(i: int) -> str:
            return self.complete(examples[i], frames(examples[i].video), decoding)

        with ThreadPoolExecutor(self.concurrency) as pool:
            futures = {pool.submit(one, i): i for i in range(len(examples))}
            for future in as_completed(futures):
                try:
                    yield futures[future], future.result(), None
                except GenerationFailed as failure:
                    yield futures[future], None, failure
