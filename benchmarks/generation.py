"""Rationale generation throughput with the shipped base model, every backend side by side in one run.

On world clips with the label-conditioned rationale prompt (greedy, 96 new tokens):

one_by_one     in process, batch size 1
batched        in process, batches of 16 by length (left padding)
http_serial    through `rbft serve` (started in this process on 127.0.0.1), one request at a time
http_parallel  the same server, 8 requests in flight (the server batches what arrives together)

Ratios: batched_speedup = batched / one_by_one; http_speedup = http_parallel / http_serial;
http_vs_in_process = http_parallel / batched. `same_text` is the share of clips whose batched
reply equals the one-by-one reply (padding may change a float's last bits, rarely a token).
The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import threading
import time
from pathlib import Path

from rbft.data.collate import Example, VideoChatCollator
from rbft.data.video import read_video
from rbft.generation import ChatClient, Decoding, generate
from rbft.modeling import load_model, load_processor
from rbft.prompts import rationale_prompt, system_prompt
from rbft.serve import make_server
from rbft.world.generate import Splits, generate_world
from rbft.basemodel.recipe import SAMPLING
from rbft.world.tasks import TASKS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    args = parser.parse_args()
    task = TASKS["home-security"]
    with tempfile.TemporaryDirectory() as tmp:
        generate_world(tmp, seed=11, splits=Splits(train=args.clips, val=0, test=0))
        rows = [json.loads(line) for line in (Path(tmp) / "home-security.jsonl").read_text().splitlines()]
        frames = {Path(tmp) / r["video"]: read_video(Path(tmp) / r["video"], SAMPLING).frames for r in rows}
    examples = [Example(r["id"], Path(tmp) / r["video"], rationale_prompt(task, r["label"]), system=system_prompt(task))
                for r in rows]
    processor, model = load_processor("rbft-world-base"), load_model("rbft-world-base", dtype="float32")
    collator = VideoChatCollator(processor, frames.__getitem__)
    n, figures = len(examples), {}

    def timed(name, fn):
        start = time.perf_counter()
        result = fn()
        figures[name] = round(n / (time.perf_counter() - start), 2)
        return result

    one = timed("one_by_one", lambda: generate(model, collator, examples, args.max_new_tokens, batch_size=1))
    batched = timed("batched", lambda: generate(model, collator, examples, args.max_new_tokens, batch_size=16))
    server = make_server(model, processor, "rbft-world-base", port=0, batch_size=8)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    decoding = Decoding(max_new_tokens=args.max_new_tokens)
    url = f"http://127.0.0.1:{server.server_port}/v1"
    for name, concurrency in (("http_serial", 1), ("http_parallel", 8)):
        client = ChatClient(url, "rbft-world-base", concurrency=concurrency, timeout_s=600)
        timed(name, lambda: list(client.complete_all(examples, lambda p: frames[p], decoding)))
        client.close()
    server.shutdown()
    result = {"clips": n, "max_new_tokens": args.max_new_tokens, "samples_per_s": figures,
              "batched_speedup": round(figures["batched"] / figures["one_by_one"], 2),
              "http_speedup": round(figures["http_parallel"] / figures["http_serial"], 2),
              "http_vs_in_process": round(figures["http_parallel"] / figures["batched"], 2),
              "same_text": round(sum(a == b for a, b in zip(one, batched)) / n, 3),
              "machine": f"{platform.machine()} {platform.python_version()}"}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
