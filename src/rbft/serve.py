"""`rbft serve`: any rbft model behind an OpenAI-compatible chat-completions endpoint.

POST /v1/chat/completions takes the OpenAI message format (with `stream: true`, the reply comes as
server-sent events; every response says its `usage` in tokens); the image_url parts of the
user's message (base64 data URLs only: the server never fetches a URL) are one video's
frames, in order, and its text parts are the prompt. GET /v1/models and GET /health
answer too. Requests that arrive together are generated together, in batches of up to
`batch_size`, through the same batched generation as the in-process backend.

A classifier that rbft trained (its folder holds `rbft_task.json`) also answers POST
/v1/classify: the same messages (one video's frames as image_url parts; text is ignored, the
classifier's own task prompt is used), judged as `rbft predict` judges a video: each label's
score, the raw argmax and the decision with the classifier's calibration.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import queue
import threading
import time
import uuid
from concurrent.futures import Future
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image, UnidentifiedImageError

from rbft.calibration import Calibration
from rbft.config import TaskConfig
from rbft.data.collate import VideoChatCollator
from rbft.data.conversation import Example
from rbft.data.manifest import VideoRecord
from rbft.generation import Decoding, generate_batches
from rbft.prompts import label_examples, label_target
from rbft.scoring import label_logprobs


class BadRequest(ValueError):
    pass


def parse_request(body: dict) -> tuple[Example, np.ndarray, Decoding]:
    """The example, frames and decoding settings of one chat-completions request body."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("`messages` must be a non-empty list")
    system, texts, frames = None, [], []
    for message in messages:
        role, content = message.get("role"), message.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        if role == "system":
            system = " ".join(p.get("text", "") for p in parts if p.get("type") == "text")
        elif role == "user":
            for part in parts:
                if part.get("type") == "text":
                    texts.append(part.get("text", ""))
                elif part.get("type") == "image_url":
                    frames.append(_image((part.get("image_url") or {}).get("url", "")))
        elif role == "assistant":
            raise BadRequest("rbft serve answers one user turn; earlier assistant turns are not supported")
    if not frames:
        raise BadRequest("no frames: send the video's frames as image_url parts (base64 data URLs) in the user turn")
    size = frames[0].size
    clip = np.stack([np.asarray(f.resize(size) if f.size != size else f) for f in frames])
    temperature = float(body.get("temperature", 1.0) or 0.0)
    decoding = Decoding(max_new_tokens=int(body.get("max_tokens") or body.get("max_completion_tokens") or 256),
                        do_sample=temperature > 0, temperature=temperature or 1.0,
                        top_p=float(body.get("top_p", 1.0)), seed=int(body.get("seed") or 0))
    return Example(uuid.uuid4().hex, None, "\n".join(texts), system=system), clip, decoding


def _image(url: str) -> Image.Image:
    if not url.startswith("data:image/") or ";base64," not in url:
        raise BadRequest("image_url must be a base64 data URL (data:image/...;base64,...); "
                         "rbft serve does not fetch URLs")
    try:
        return Image.open(io.BytesIO(base64.b64decode(url.split(";base64,", 1)[1], validate=True))).convert("RGB")
    except (binascii.Error, UnidentifiedImageError, OSError) as e:
        raise BadRequest(f"an image_url does not hold a readable image ({type(e).__name__})") from None


class Batcher:
    """One thread that owns the model: takes queued requests and generates them in batches."""

    def __init__(self, model, processor, batch_size: int = 8, wait_s: float = 0.02):
        self.model, self.batch_size, self.wait_s = model, batch_size, wait_s
        self.frames: dict[str, np.ndarray] = {}
        self.collator = VideoChatCollator(processor, lambda key: self.frames[key])
        self.queue: queue.Queue = queue.Queue()
        self.lock = threading.Lock()  # one forward at a time: generation's batches and classifications
        threading.Thread(target=self._loop, daemon=True).start()

    def classify(self, task: TaskConfig, calibration: Calibration, clip: np.ndarray) -> dict:
        """One video's label scores, raw argmax and calibrated decision, as `rbft predict` gives them."""
        key, labels = f"classify-{uuid.uuid4().hex}", list(task.labels)
        with self.lock:
            self.frames[key] = clip
            try:
                example = label_examples(task, [VideoRecord(key, key, None, "test")])
                scores = label_logprobs(self.model, self.collator, example, [label_target(x) for x in labels], 1)
            finally:
                self.frames.pop(key, None)
        return {"label": labels[int(calibration.decide(scores)[0])], "raw_label": labels[int(scores[0].argmax())],
                "scores": {x: float(v) for x, v in zip(labels, scores[0])}, "tau": calibration.tau}

    def submit(self, example: Example, clip: np.ndarray, decoding: Decoding) -> Future:
        future: Future = Future()
        self.queue.put((example, clip, decoding, future))
        return future

    def _loop(self) -> None:
        while True:
            jobs = [self.queue.get()]
            deadline = time.monotonic() + self.wait_s
            while len(jobs) < self.batch_size and (left := deadline - time.monotonic()) > 0:
                try:
                    jobs.append(self.queue.get(timeout=left))
                except queue.Empty:
                    break
            for decoding in {j[2] for j in jobs}:  # one generate call per decoding setting
                self._run([j for j in jobs if j[2] == decoding], decoding)

    def _run(self, jobs, decoding: Decoding) -> None:
        examples = [Example(j[0].id, j[0].id, j[0].prompt, system=j[0].system) for j in jobs]
        self.frames.update({j[0].id: j[1] for j in jobs})
        try:
            with self.lock:
                for batch in generate_batches(self.model, self.collator, examples, decoding, self.batch_size,
                                              usage=True):
                    for i, text, usage in batch:
                        jobs[i][3].set_result((text, usage))
        except Exception as e:  # the request fails, the server stays up
            for j in jobs:
                if not j[3].done():
                    j[3].set_exception(e)
        finally:
            for j in jobs:
                self.frames.pop(j[0].id, None)


def make_server(model, processor, model_name: str, host: str = "127.0.0.1", port: int = 8000,
                batch_size: int = 8, classifier: dict | None = None) -> ThreadingHTTPServer:
    """An HTTP server (not yet serving: call `serve_forever`) for `model` under the name `model_name`;
    `classifier`: a trained classifier's `rbft_task.json` (its task and calibration), for /v1/classify."""
    batcher = Batcher(model, processor, batch_size)
    task = TaskConfig(**classifier["task"]) if classifier else None
    calibration = Calibration.from_json(classifier.get("calibration"), len(task.labels)) if classifier else None

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet; errors go back to the client
            pass

        def _send(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str, kind: str) -> None:
            self._send(status, {"error": {"message": message, "type": kind, "code": status}})

        def do_GET(self) -> None:
            if self.path.rstrip("/") in ("/v1/models", "/models"):
                self._send(200, {"object": "list", "data": [{"id": model_name, "object": "model", "owned_by": "rbft"}]})
            elif self.path.rstrip("/") == "/health":
                self._send(200, {"status": "ok"})
            else:
                self._error(404, f"no such path {self.path}", "not_found")

        def do_POST(self) -> None:
            path = self.path.rstrip("/")
            if path not in ("/v1/chat/completions", "/chat/completions", "/v1/classify"):
                return self._error(404, f"no such path {self.path}; use /v1/chat/completions", "not_found")
            if path == "/v1/classify" and task is None:
                return self._error(404, f"{model_name} is not a classifier rbft trained (no rbft_task.json): "
                                   "/v1/classify needs one; use /v1/chat/completions", "not_found")
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                example, clip, decoding = parse_request(body)
            except (json.JSONDecodeError, BadRequest, TypeError, ValueError, AttributeError) as e:
                return self._error(400, str(e), "invalid_request_error")
            if path == "/v1/classify":
                try:
                    return self._send(200, {"model": model_name, **batcher.classify(task, calibration, clip)})
                except Exception as e:
                    return self._error(500, f"classification failed: {type(e).__name__}: {e}", "server_error")
            try:
                text, usage = batcher.submit(example, clip, decoding).result()
            except Exception as e:
                return self._error(500, f"generation failed: {type(e).__name__}: {e}", "server_error")
            head = {"id": f"chatcmpl-{example.id}", "created": int(time.time()), "model": model_name}
            tokens = {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                      "total_tokens": usage.prompt_tokens + usage.completion_tokens}
            if body.get("stream"):
                return self._stream(head, text, usage.finish_reason,
                                    tokens if (body.get("stream_options") or {}).get("include_usage") else None)
            self._send(200, {**head, "object": "chat.completion", "usage": tokens, "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": usage.finish_reason}]})

        def _stream(self, head: dict, text: str, finish_reason: str, tokens: dict | None) -> None:
            """The reply as server-sent events, as OpenAI's streaming clients read them. Requests are generated in
            batches, so the text comes as one chunk once its batch is done, then the end (and usage, if asked)."""
            chunk = {**head, "object": "chat.completion.chunk"}
            events = [{**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": text},
                                             "finish_reason": None}]},
                      {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": finish_reason}]}]
            if tokens is not None:
                events.append({**chunk, "choices": [], "usage": tokens})
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")  # the stream ends when the connection does
            self.end_headers()
            self.close_connection = True
            for event in events:
                self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()

    return ThreadingHTTPServer((host, port), Handler)
