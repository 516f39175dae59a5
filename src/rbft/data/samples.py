"""Write real video files with PyAV: every container and codec rbft reads, and broken ones.

Used by the tests, the benchmarks and the demo, so that none of them depends on files
a user's clone lacks. Each frame is drawn so it can be checked after lossy coding:
a red block marks the upright picture's top-left corner, and the grey level of the
right-hand band encodes the frame's number (see `frame_number`).
"""

from __future__ import annotations

import fractions
import json
from pathlib import Path

import av
import numpy as np

# codec -> (container suffix, pixel format) that ffmpeg muxes and plays everywhere
FORMATS = {
    "h264": (".mp4", "yuv420p"),
    "hevc": (".mp4", "yuv420p"),
    "vp8": (".webm", "yuv420p"),
    "vp9": (".webm", "yuv420p"),
    "mpeg4": (".avi", "yuv420p"),
    "mjpeg": (".avi", "yuvj420p"),
}
_LEVEL_STEP = 12  # grey levels between consecutive frame numbers: survives lossy coding


def draw_frame(number: int, width: int, height: int) -> np.ndarray:
    """The upright picture of frame `number`: (height, width, 3) uint8 RGB."""
    image = np.full((height, width, 3), 40, dtype=np.uint8)
    image[: height // 3, : width // 3] = (220, 30, 30)  # top-left marker
    band = width - width // 4
    image[:, band:] = 16 + _LEVEL_STEP * (number % 20)
    x = int((width // 2) * (number % 20) / 20)  # a square that moves right over time
    image[height // 2 : height // 2 + height // 6, x : x + width // 6] = (30, 200, 60)
    return image


def frame_number(rgb: np.ndarray) -> int:
    """Read back the frame number drawn by `draw_frame` (modulo 20)."""
    height, width = rgb.shape[:2]
    band = rgb[height // 8 : height - height // 8, width - width // 4 + 2 : width - 2]
    return int(round((float(band.mean()) - 16) / _LEVEL_STEP))


def write_video(
    path: str | Path,
    *,
    codec: str = "h264",
    width: int = 96,
    height: int = 64,
    frames: int = 16,
    fps: float = 8.0,
    rotation: int = 0,
    times: list[float] | None = None,
    options: dict | None = None,
    with_audio: bool = False,
    keyframe_every: int | None = None,
) -> Path:
    """Write a clip of `frames` frames whose upright picture is `width` x `height`.

    `rotation` (0/90/180/270, clockwise) is how a player must turn the stored picture to
    show it upright, written as the container's display matrix the way phones do.
    `times` (seconds) gives each frame its own timestamp: variable frame rate.
    `keyframe_every` sets the GOP length (the encoder's default otherwise).
    """
    path = Path(path)
    pix_fmt = FORMATS.get(codec, (None, "yuv420p"))[1]
    stored_w, stored_h = (height, width) if rotation in (90, 270) else (width, height)
    time_base = fractions.Fraction(1, 1000) if times is not None else fractions.Fraction(1, round(fps * 1000))
    with av.open(str(path), mode="w", options=options or {}) as container:
        stream = container.add_stream(codec, rate=fractions.Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = stored_w, stored_h, pix_fmt
        stream.time_base = stream.codec_context.time_base = time_base  # exact per-frame times
        if keyframe_every:
            stream.codec_context.gop_size = keyframe_every
        if codec == "hevc":
            stream.codec_context.options = {"x265-params": "log-level=error"}
        if rotation:
            stream.set_display_rotation(-rotation)  # PyAV takes counter-clockwise degrees
        audio = _add_audio(container) if with_audio else None
        for i in range(frames):
            upright = draw_frame(i, width, height)
            stored = np.ascontiguousarray(np.rot90(upright, k=rotation // 90))  # undone by the player
            frame = av.VideoFrame.from_ndarray(stored, format="rgb24")
            seconds = times[i] if times is not None else i / fps
            frame.pts = round(seconds / time_base)
            frame.time_base = time_base
            container.mux(stream.encode(frame))
            if audio is not None:
                _mux_audio(container, audio, seconds, 1 / fps)
        container.mux(stream.encode(None))
        if audio is not None:
            container.mux(audio.encode(None))
    return path


def write_audio_only(path: str | Path, seconds: float = 1.0) -> Path:
    """An .m4a file with an AAC track and no video."""
    with av.open(str(path), mode="w") as container:
        audio = _add_audio(container)
        _mux_audio(container, audio, 0.0, seconds)
        container.mux(audio.encode(None))
    return Path(path)


def _add_audio(container):
    return container.add_stream("aac", rate=16000, layout="mono")


def _mux_audio(container, stream, start: float, seconds: float) -> None:
    samples = int(16000 * seconds)
    t = start + np.arange(samples) / 16000
    tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
    frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
    frame.sample_rate = 16000
    frame.pts = int(start * 16000)
    container.mux(stream.encode(frame))


def truncate(src: str | Path, dst: str | Path, fraction: float = 0.5) -> Path:
    """Copy the first `fraction` of a file's bytes, as an interrupted copy or recording would."""
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: int(len(data) * fraction)])
    return Path(dst)


def write_sample_set(out: str | Path) -> Path:
    """A small dataset in `out`: clips in every supported container and codec, a rotated
    phone clip, a variable-frame-rate clip, and the broken files rbft must report.
    Returns the manifest's path."""
    out = Path(out)
    videos = out / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    rows = []

    def add(name: str, path: Path, label: str) -> None:
        rows.append({"id": name, "video": str(path.relative_to(out)), "label": label, "split": "train"})

    for codec, (suffix, _) in FORMATS.items():
        add(f"{codec}{suffix.replace('.', '_')}", write_video(videos / f"{codec}{suffix}", codec=codec), "normal")
    add("h264_mkv", write_video(videos / "h264.mkv", codec="h264"), "normal")
    add("h264_mov", write_video(videos / "h264.mov", codec="h264", with_audio=True), "normal")
    add("h264_ts", write_video(videos / "h264.ts", codec="h264"), "normal")
    portrait = write_video(videos / "phone portrait é.mp4", codec="h264", width=64, height=96, rotation=90)
    add("phone_portrait", portrait, "abnormal")
    vfr = [0.0, 0.05, 0.1, 0.6, 0.65, 1.5, 1.55, 1.6]
    add("variable_rate", write_video(videos / "vfr.mkv", codec="h264", frames=len(vfr), times=vfr), "abnormal")
    whole = write_video(out / "whole.mp4", codec="h264", frames=48, options={"movflags": "faststart"})
    add("cut_short", truncate(whole, videos / "cut_short.mp4", 0.4), "abnormal")
    whole.unlink()
    (videos / "empty.mp4").write_bytes(b"")
    add("empty", videos / "empty.mp4", "normal")
    (videos / "notes.mp4").write_text("Meeting notes, not a video.\n")
    add("text_named_mp4", videos / "notes.mp4", "normal")
    add("audio_only", write_audio_only(videos / "voice.m4a"), "normal")
    rows.append({"id": "missing", "video": "videos/gone.mp4", "label": "normal", "split": "train"})
    manifest = out / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return manifest
