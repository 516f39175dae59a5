"""The OpenAI-compatible backend against real servers: `rbft serve`, and a proxy that injects faults."""

import base64
import io

import httpx
import numpy as np
import pytest
from PIL import Image

from rbft.data.collate import Example, VideoChatCollator
from rbft.data.video import read_video
from rbft.generation import ChatClient, Decoding, GenerationFailed, frame_url, generate
from rbft.modeling import load_model, load_processor
from rbft.basemodel.recipe import SAMPLING

from .faults import FaultProxy

PROMPT = "Describe the video by its subjects, attributes, actions and scenes."


@pytest.fixture(scope="module")
def clip(world_dir):
    return read_video(world_dir / "videos" / "clip_00001.mp4", SAMPLING).frames


def test_serve_answers_like_the_model_in_process(server, clip):
    example = Example("x", "x", PROMPT, system="You are a Smart Home Security Expert.")
    client = ChatClient(server, "rbft-world-base", timeout_s=60, retries=0)
    text = client.complete(example, clip, Decoding(max_new_tokens=40))
    # the server sees the frames after a JPEG round trip; so does this reference
    seen = np.stack([np.asarray(Image.open(io.BytesIO(base64.b64decode(frame_url(f).split(",", 1)[1]))))
                     for f in clip])
    collator = VideoChatCollator(load_processor("rbft-world-base"), lambda _: seen)
    model = load_model("rbft-world-base", dtype="float32")
    assert text == generate(model, collator, [example], max_new_tokens=40)[0]
    assert text.startswith("Subjects:")
    models = httpx.get(server + "/models").json()
    assert models["data"][0]["id"] == "rbft-world-base"


def test_serve_refuses_bad_requests_with_a_reason(server, clip):
    no_frames = httpx.post(server + "/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
    assert no_frames.status_code == 400 and "image_url" in no_frames.json()["error"]["message"]
    remote = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://example.com/a.jpg"}}]}
    fetched = httpx.post(server + "/chat/completions", json={"messages": [remote]})
    assert fetched.status_code == 400 and "does not fetch" in fetched.json()["error"]["message"]
    not_json = httpx.post(server + "/chat/completions", content=b"{nope", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400
    # a request the server will never accept is not retried
    client = ChatClient(server, "rbft-world-base", retries=3, backoff_s=0.01)
    with pytest.raises(GenerationFailed) as failed:
        client.complete(Example("x", "x", PROMPT), clip[:0], Decoding(max_new_tokens=8))
    assert failed.value.attempts == 1 and "HTTP 400" in failed.value.reason


@pytest.mark.parametrize("fault", ["500", "malformed", "truncated", "timeout"])
def test_a_fault_is_retried(server, clip, fault):
    proxy = FaultProxy(server, lambda n, body: fault if n == 0 else None, slow_s=5.0)
    try:
        client = ChatClient(proxy.url, "rbft-world-base", timeout_s=4.0, retries=2, backoff_s=0.05)
        text = client.complete(Example("x", "x", PROMPT), clip, Decoding(max_new_tokens=24))
        assert text.startswith("Subjects:") and proxy.calls == 2
    finally:
        proxy.close()


def test_a_lasting_fault_becomes_a_failure_with_its_reason(server, clip):
    proxy = FaultProxy(server, lambda n, body: "500")
    try:
        client = ChatClient(proxy.url, "rbft-world-base", retries=2, backoff_s=0.01)
        examples = [Example(str(i), "v", PROMPT) for i in range(3)]
        results = list(client.complete_all(examples, lambda _: clip, Decoding(max_new_tokens=8)))
        assert sorted(i for i, _, _ in results) == [0, 1, 2]
        assert all(text is None and "HTTP 500" in f.reason and f.attempts == 3 for _, text, f in results)
        assert proxy.calls == 9
    finally:
        proxy.close()


def test_the_openai_client_itself_reads_replies_streams_and_usage(server, clip):
    from openai import OpenAI

    client = OpenAI(base_url=server, api_key="unused", max_retries=0, timeout=120)
    assert [m.id for m in client.models.list()] == ["rbft-world-base"]
    content = [{"type": "image_url", "image_url": {"url": frame_url(f)}} for f in clip]
    messages = [{"role": "system", "content": "You are a Smart Home Security Expert."},
                {"role": "user", "content": [*content, {"type": "text", "text": PROMPT}]}]
    reply = client.chat.completions.create(model="rbft-world-base", messages=messages, max_tokens=40, temperature=0)
    text = reply.choices[0].message.content
    assert text.startswith("Subjects:")
    usage = reply.usage
    seen = np.stack([np.asarray(Image.open(io.BytesIO(base64.b64decode(frame_url(f).split(",", 1)[1])))) for f in clip])
    collator = VideoChatCollator(load_processor("rbft-world-base"), lambda _: seen)
    example = Example("x", "x", PROMPT, system="You are a Smart Home Security Expert.")
    assert usage.prompt_tokens == int(collator.prompts([example])["attention_mask"].sum())
    assert 0 < usage.completion_tokens <= 40
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert reply.choices[0].finish_reason == ("length" if usage.completion_tokens == 40 else "stop")
    # streamed: server-sent events the client reads, the same text, usage at the end when asked for
    chunks = list(client.chat.completions.create(model="rbft-world-base", messages=messages, max_tokens=40,
                                                 temperature=0, stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == reply.choices[0].finish_reason
    assert chunks[-1].usage.total_tokens == usage.total_tokens
    # ended by the budget: a shorter one runs out of tokens
    short = client.chat.completions.create(model="rbft-world-base", messages=messages, max_tokens=3, temperature=0)
    assert short.usage.completion_tokens == 3 and short.choices[0].finish_reason == "length"


def test_serve_classifies_as_predict_does_with_the_classifier_calibration(finished_run):
    from rbft.config import load_config
    from rbft.data.cache import FrameCache
    from rbft.predict import classify

    from .conftest import serving
    from .test_rationales import lines

    config_path, out = finished_run
    config = load_config(config_path)
    model = out / "models" / "direct_sft" / "seed0"
    rows = lines(out / "predictions" / "direct_sft-seed0.jsonl")[:3]
    videos = [config.data.manifest.parent / "videos" / f"{r['id']}.mp4" for r in rows]
    expected = classify(model, videos)
    cache = FrameCache()

    def png(frame) -> dict:  # lossless: the server sees the frames rbft predict decodes
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format="PNG")
        return {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(
            buffer.getvalue()).decode()}}

    with serving(model) as url:
        for video, want, row in zip(videos, expected, rows):
            frames = cache.load(video, config.data.sampling()).frames
            body = {"messages": [{"role": "user", "content": [png(f) for f in frames]}]}
            got = httpx.post(url + "/classify", json=body, timeout=120).json()
            assert got["label"] == want["predicted"] == row["predicted"]
            assert got["raw_label"] == want["raw_predicted"] and got["tau"] == row["tau"]
            assert got["scores"] == pytest.approx(want["scores"], abs=1e-4)
    # a model that is not a classifier rbft trained has no /v1/classify
    with serving("rbft-world-base") as url:
        refused = httpx.post(url + "/classify", json={"messages": []}, timeout=60)
        assert refused.status_code == 404 and "rbft_task.json" in refused.json()["error"]["message"]
