"""Decoding speed, measured side by side in one run.

seek_speedup  = (PyAV decoding every frame of a 60 s, 30 fps, 640x480 H.264 clip, keeping 8)
                / (rbft sampling the same 8 frames)                         goal >= 3
cache_speedup = (rbft's first decode, cache cold) / (a cached read of the same frames)  goal >= 10

The clip has moving texture and camera noise so the decoder does real work. The last
line printed is one JSON object with every figure.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from rbft.data.cache import FrameCache
from rbft.data.video import FrameSampling, read_video

SECONDS, FPS, WIDTH, HEIGHT, KEEP = 60, 30, 640, 480, 8
REPEATS = 3


def write_clip(path: Path) -> Path:
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (HEIGHT * 2, WIDTH * 2, 3), dtype=np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("h264", rate=FPS, options={"preset": "veryfast", "crf": "23"})
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.codec_context.gop_size = 2 * FPS  # a keyframe every 2 s, as IP cameras do
        for i in range(SECONDS * FPS):
            x, y = (3 * i) % WIDTH, (2 * i) % HEIGHT  # a slow pan
            frame = texture[y : y + HEIGHT, x : x + WIDTH].copy()
            frame = np.clip(frame.astype(np.int16) + rng.integers(-8, 9, frame.shape, dtype=np.int16), 0, 255)
            video_frame = av.VideoFrame.from_ndarray(frame.astype(np.uint8), format="rgb24")
            video_frame.pts = i
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode(None))
    return path


def decode_everything_keep_8(path: Path) -> np.ndarray:
    """The naive way: decode every frame in order, keep 8 spread uniformly."""
    total = SECONDS * FPS
    keep = {int((k + 0.5) * total / KEEP) for k in range(KEEP)}
    kept = []
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i in keep:
                kept.append(frame.to_ndarray(format="rgb24"))
    return np.stack(kept)


def timed(fn, repeats=REPEATS) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    sampling = FrameSampling(num_frames=KEEP, max_pixels=None)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        clip_path = write_clip(tmp / "clip.mp4")
        print(f"wrote {SECONDS} s {WIDTH}x{HEIGHT} clip in {time.perf_counter() - start:.1f} s", file=sys.stderr)

        full_s, naive = timed(lambda: decode_everything_keep_8(clip_path))
        rbft_s, clip = timed(lambda: read_video(clip_path, sampling))
        # both pick the frame shown at each segment centre: the same 8 pictures
        assert naive.shape == clip.frames.shape
        same_frames = bool(np.array_equal(naive, clip.frames))

        cold = []
        for r in range(REPEATS):
            cache = FrameCache(tmp / f"cache-{r}")  # cold: nothing hashed, nothing stored
            start = time.perf_counter()
            cache.load(clip_path, sampling)
            cold.append(time.perf_counter() - start)
        cached_s, hit = timed(lambda: FrameCache(tmp / "cache-0").load(clip_path, sampling), repeats=10)
        assert np.array_equal(hit.frames, clip.frames)

    figures = {
        "benchmark": "decode",
        "clip": f"{SECONDS}s {FPS}fps {WIDTH}x{HEIGHT} h264 gop={2 * FPS}",
        "frames_kept": KEEP,
        "full_decode_s": round(full_s, 4),
        "rbft_sample_s": round(rbft_s, 4),
        "seek_speedup": round(full_s / rbft_s, 2),
        "same_frames_as_full_decode": same_frames,
        "first_decode_s": round(statistics.median(cold), 4),
        "cached_read_s": round(cached_s, 5),
        "cache_speedup": round(statistics.median(cold) / cached_s, 2),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "pyav": av.__version__,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
