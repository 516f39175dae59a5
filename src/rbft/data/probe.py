"""Find out whether a file is a usable video, and where its frames really are.

Every problem is raised as a VideoError whose `kind` a person can act on. The packet
scan is what tells a file that was cut short (its data ends well before the duration
its header declares) from a whole one: ffmpeg plays both without complaint.
"""

from __future__ import annotations

import bisect
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import av

from rbft.errors import VideoError

REENCODE = "Re-encode it (e.g. `ffmpeg -i IN -c:v libx264 -pix_fmt yuv420p OUT.mp4`) or drop it from the manifest."
_RECOPY = "Copy it again from its source, or drop it from the manifest."


def check_file(path: Path) -> None:
    """Raise `missing`, `not_a_video` (a folder) or `empty` before ffmpeg sees the path."""
    if not path.exists():
        raise VideoError(
            "missing", path,
            "file not found. Check the manifest's `video` path (relative paths resolve "
            "against the manifest's folder) or drop the line.",
        )
    if not path.is_file():
        raise VideoError("not_a_video", path, "is a folder, not a video file. Point `video` at a file inside it.")
    if path.stat().st_size == 0:
        raise VideoError("empty", path, "the file is empty (0 bytes). " + _RECOPY)
    if not os.access(path, os.R_OK):
        raise VideoError("missing", path, "the file exists but cannot be read (permission denied). Fix its permissions.")


def open_container(path: Path):
    """Open with PyAV and return (container, video stream); classify what goes wrong."""
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.error.FFmpegError as e:
        raise _unopenable(path, e) from e
    videos = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if videos and videos[0].codec_context.name not in (None, "", "none"):
        return container, videos[0]
    has_audio = bool(container.streams.audio)
    container.close()
    if videos:
        raise VideoError("decode_error", path, "its video codec is unknown to ffmpeg. " + REENCODE)
    if has_audio:
        raise VideoError(
            "no_video_stream", path, "has audio but no video stream. Use the video file, or drop it from the manifest."
        )
    raise VideoError(
        "not_a_video", path,
        "ffmpeg finds no audio or video in it: it is not a media file. Check that the path points to the video.",
    )


def _unopenable(path: Path, error: Exception) -> VideoError:
    with open(path, "rb") as f:
        head = f.read(16)
    if len(head) >= 8 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
        cut = _mp4_box_past_end(path)
        if cut:
            return VideoError("truncated", path, f"the file is cut short: {cut}. " + _RECOPY)
        return VideoError("decode_error", path, f"an MP4/QuickTime file ffmpeg cannot read ({error}). " + REENCODE)
    for magic, name in ((b"\x1a\x45\xdf\xa3", "Matroska/WebM"), (b"RIFF", "AVI"), (b"FLV", "FLV"), (b"\x47", "MPEG-TS")):
        if head.startswith(magic) and (name != "MPEG-TS" or _looks_like_ts(path)):
            return VideoError("decode_error", path, f"a {name} file ffmpeg cannot read ({error}). " + REENCODE)
    return VideoError(
        "not_a_video", path,
        "not a video file ffmpeg recognises. Check that the path points to the video (not a text file or a download page).",
    )


def _mp4_box_past_end(path: Path) -> str | None:
    """Walk the top-level boxes of an ISO media file; describe the first that runs past the end."""
    size = path.stat().st_size
    offset = 0
    with open(path, "rb") as f:
        while offset + 8 <= size:
            f.seek(offset)
            box_size, box_type = struct.unpack(">I4s", f.read(8))
            if box_size == 1:
                box_size = struct.unpack(">Q", f.read(8))[0]
            elif box_size == 0:
                return None  # runs to the end of the file by definition
            if box_size < 8:
                return None
            if offset + box_size > size:
                name = box_type.decode("latin-1")
                return f"its '{name}' box needs {offset + box_size} bytes but the file has {size}"
            offset += box_size
    return None


def _looks_like_ts(path: Path) -> bool:
    with open(path, "rb") as f:
        data = f.read(188 * 3)
    return len(data) > 376 and data[188] == 0x47 and data[376] == 0x47


@dataclass
class PacketIndex:
    """The video stream's frames as the demuxer finds them, in stream time-base units."""

    frame_pts: list[int]  # sorted presentation timestamps
    key_pts: list[int]  # sorted keyframe timestamps
    first: int
    end: int  # presentation end of the last frame
    time_base: float
    seekable: bool = True

    @property
    def duration_s(self) -> float:
        return (self.end - self.first) * self.time_base

    @property
    def frame_count(self) -> int:
        return len(self.frame_pts)

    def keyframe_before(self, pts: float) -> int:
        i = bisect.bisect_right(self.key_pts, pts) - 1
        return self.key_pts[max(i, 0)]


def scan_packets(path: Path, container, stream) -> PacketIndex:
    """Demux every packet (no decoding) to find the video's frames and its true end.

    Raises `truncated` when the data ends well before the duration the header declares,
    `decode_error` when the demuxer fails inside the file.
    """
    tb = stream.time_base
    frame_pts: list[int] = []
    key_pts: list[int] = []
    video_end = None
    any_end = 0.0  # seconds, over all streams
    failure = None
    try:
        for packet in container.demux():
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is None:
                continue
            end = ts + (packet.duration or 0)
            any_end = max(any_end, float(end * packet.time_base))
            if packet.stream.index == stream.index:
                frame_pts.append(ts)
                if packet.is_keyframe:
                    key_pts.append(ts)
                video_end = end if video_end is None else max(video_end, end)
    except av.error.FFmpegError as e:
        failure = e
    if not frame_pts:
        if failure is not None:
            raise VideoError("truncated", path, f"no video data could be read ({failure}). " + _RECOPY)
        raise VideoError("decode_error", path, "it has a video stream but no video data. " + REENCODE)
    frame_pts.sort()
    video_end = max(video_end, frame_pts[-1] + _frame_interval(frame_pts, stream))
    any_end = max(any_end, float(video_end * tb))
    key_pts = sorted(key_pts) or [frame_pts[0]]
    index = PacketIndex(frame_pts, key_pts, frame_pts[0], video_end, float(tb), seekable=key_pts[0] <= frame_pts[0])
    _check_declared_end(path, container, stream, index, any_end, failure)
    return index


def _frame_interval(frame_pts: list[int], stream) -> int:
    """One frame's duration in time-base units, for the last frame when its packet has none."""
    if len(frame_pts) >= 2:
        gaps = sorted(b - a for a, b in zip(frame_pts, frame_pts[1:]) if b > a)
        if gaps:
            return gaps[len(gaps) // 2]
    rate = stream.average_rate or stream.guessed_rate
    return max(1, int(1 / (float(rate) * stream.time_base))) if rate else 1


def _check_declared_end(path, container, stream, index: PacketIndex, any_end: float, failure) -> None:
    tb = index.time_base
    if stream.duration:
        declared = ((stream.start_time or 0) + stream.duration) * tb
        measured = index.end * tb
    elif container.duration:
        # the container's duration spans all its streams, so compare with all of them
        declared = ((container.start_time or 0) + container.duration) / av.time_base
        measured = any_end
    else:
        declared = measured = None
    if declared is not None:
        span = declared - index.first * tb
        if declared - measured > max(0.25, 0.05 * span):
            raise VideoError(
                "truncated", path,
                f"the file is cut short: its data ends at {measured - index.first * tb:.2f} s but it "
                f"declares {span:.2f} s. " + _RECOPY,
            )
    if failure is not None:
        raise VideoError("decode_error", path, f"the demuxer fails inside the file ({failure}). " + REENCODE)
