"""Decode and sample video frames with PyAV: upright, resized to a pixel budget, with real timestamps.

`read_video` is the one way rbft turns a video file into frames. It first demuxes the
file's packets (cheap: no decoding) to learn every frame's true timestamp, its
keyframes and where the data really ends; that is what catches a file cut short,
which ffmpeg itself plays back silently as a shorter video. It then decodes only
the frames it needs, seeking to the keyframe before each one when that skips work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from rbft.data.probe import REENCODE, PacketIndex, check_file, open_container, scan_packets
from rbft.errors import VideoError
from rbft.sampling import FrameSampling

av.logging.set_level(av.logging.PANIC)  # ffmpeg's own chatter; rbft reports problems itself


@dataclass(frozen=True)
class VideoInfo:
    """What a video is, as a person would see it played: `width` x `height` of the upright
    picture at its display aspect ratio, before any resizing; `duration_s` measured from
    the packets actually present, not from the header."""

    width: int
    height: int
    duration_s: float
    rotation: int  # degrees clockwise that were applied to make the picture upright
    codec: str
    container: str
    frame_count: int


@dataclass
class Clip:
    """Sampled frames: `frames` is (T, H, W, 3) uint8 RGB, `timestamps` (T,) seconds from the
    video's first frame."""

    frames: np.ndarray
    timestamps: np.ndarray
    info: VideoInfo


def read_video(path: str | Path, sampling: FrameSampling = FrameSampling()) -> Clip:
    """Sample frames from `path`. Raises VideoError (with its `kind`) for an unusable file;
    never returns fewer frames than the sampling asks for."""
    path = Path(path)
    check_file(path)
    container, stream = open_container(path)
    with container:
        index = scan_packets(path, container, stream)
        codec, container_name = stream.codec_context.name, container.format.name
    container, stream = open_container(path)  # a fresh demuxer for decoding
    targets = _target_times(index.first, index.end, index.time_base, sampling)
    chosen, picks, geometry = _decode_targets(path, container, stream, index, targets, sampling)
    info = VideoInfo(
        width=geometry.upright_w, height=geometry.upright_h, duration_s=index.duration_s,
        rotation=geometry.rotation, codec=codec, container=container_name, frame_count=index.frame_count,
    )
    frames = np.stack([picks[pts] for pts in chosen])
    stamps = np.array([(pts - index.first) * index.time_base for pts in chosen], dtype=np.float64)
    return Clip(frames, stamps, info)


def _target_times(first: int, end: int, time_base: float, sampling: FrameSampling) -> list[float]:
    """Times (stream time-base units) at which to show a frame: segment centres over [first, end)."""
    span = end - first
    if sampling.fps is not None and span > 0:
        # per-segment centres keep fps sampling symmetric, as uniform sampling is
        n = sampling.fps * span * time_base
        count = min(max(1, math.ceil(n - 1e-9)), sampling.max_frames)
    else:
        count = sampling.num_frames or 1
    return [first + (i + 0.5) * span / count for i in range(count)]


def _decode_targets(path, container, stream, index: PacketIndex, targets: list[float], sampling):
    """Decode the frame shown at each target time: the last frame with pts <= target.

    Returns (pts chosen per target, {pts: rgb array}, geometry). Seeks to the keyframe
    before a target when that keyframe lies past what was already decoded; otherwise
    decodes on, so dense sampling never seeks and sparse sampling never decodes a GOP twice.
    A seek that misbehaves (lands past the target, or yields nothing) switches the file
    to decoding in order from the start.
    """
    chosen: list[int] = []
    picks: dict[int, np.ndarray] = {}
    geometry = None
    prev = None  # the last decoded frame: the one shown until the next frame's pts
    frames, sought = None, False
    try:
        while len(chosen) < len(targets):
            key = index.keyframe_before(targets[len(chosen)])
            if frames is None or (index.seekable and key > _pts(prev)):
                sought = index.seekable and (frames is not None or key > index.key_pts[0])
                frames, prev = _frames_from(container, stream, key if sought else None), None
            for frame in frames:
                geometry = geometry or _Geometry.of(frame, stream, sampling)
                if prev is None and sought and _pts(frame) > targets[len(chosen)]:
                    break  # the seek landed past the target
                while len(chosen) < len(targets) and _pts(frame) > targets[len(chosen)]:
                    chosen.append(_keep(picks, prev if prev is not None else frame, geometry))
                prev = frame
                if len(chosen) == len(targets):
                    break
                if index.seekable and index.keyframe_before(targets[len(chosen)]) > _pts(frame):
                    break  # a later keyframe gets to the next target faster
            else:
                if prev is not None or not sought:
                    _fill_to_end(path, chosen, picks, prev, geometry, targets, index)
            if prev is None and sought and len(chosen) < len(targets):
                index.seekable, sought, frames = False, False, None
                container.close()
                container, stream = open_container(path)
    except av.error.FFmpegError as e:
        raise VideoError("decode_error", path, f"ffmpeg cannot decode it ({e}). " + REENCODE) from e
    finally:
        container.close()
    return chosen, picks, geometry


def _fill_to_end(path, chosen, picks, last, geometry, targets, index: PacketIndex) -> None:
    """The stream ended: targets left show the last frame, if that frame is close to them."""
    if last is None:
        raise VideoError("decode_error", path, "no frame could be decoded. " + REENCODE)
    gap = (targets[-1] - _pts(last)) * index.time_base
    if gap > max(1.0, 0.1 * index.duration_s):
        decoded_to = (_pts(last) - index.first) * index.time_base
        raise VideoError(
            "decode_error", path,
            f"decoding stops at {decoded_to:.2f} s of {index.duration_s:.2f} s: the data after it is "
            "unreadable. " + REENCODE,
        )
    while len(chosen) < len(targets):
        chosen.append(_keep(picks, last, geometry))


def _frames_from(container, stream, key_pts):
    """Decoded frames from the keyframe at or before `key_pts` (None: from where the demuxer is)."""
    if key_pts is not None:
        container.seek(key_pts, stream=stream, backward=True, any_frame=False)
    for packet in container.demux(stream):
        for frame in packet.decode():
            if _pts(frame) is not None:
                yield frame


def _pts(frame) -> int | None:
    return frame.pts if frame.pts is not None else frame.dts


def _keep(picks: dict, frame, geometry: "_Geometry") -> int:
    pts = _pts(frame)
    if pts not in picks:
        picks[pts] = geometry.to_rgb(frame)
    return pts


@dataclass(frozen=True)
class _Geometry:
    """Output size and rotation, fixed from the first decoded frame."""

    out_w: int
    out_h: int
    rotation: int
    upright_w: int
    upright_h: int

    @classmethod
    def of(cls, frame, stream, sampling: FrameSampling) -> "_Geometry":
        sar = stream.sample_aspect_ratio or stream.codec_context.sample_aspect_ratio
        display_w = max(1, round(frame.width * float(sar))) if sar and sar > 0 else frame.width
        w, h = display_w, frame.height
        # frame.rotation is the display matrix's angle, counter-clockwise; make it clockwise 0..270
        rotation = (-int(round((frame.rotation or 0) / 90.0)) * 90) % 360
        scale = 1.0
        if sampling.max_pixels is not None and w * h > sampling.max_pixels:
            scale = math.sqrt(sampling.max_pixels / (w * h))
        out_w, out_h = max(1, int(w * scale)), max(1, int(h * scale))
        upright = (h, w) if rotation in (90, 270) else (w, h)
        return cls(out_w, out_h, rotation, *upright)

    def to_rgb(self, frame) -> np.ndarray:
        rgb = frame.reformat(width=self.out_w, height=self.out_h, format="rgb24", interpolation="AREA")
        array = rgb.to_ndarray()
        if self.rotation:
            array = np.ascontiguousarray(np.rot90(array, k=-self.rotation // 90))
        return array

