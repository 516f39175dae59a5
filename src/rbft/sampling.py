"""How frames are taken from a video: a value the config builds (`DataConfig.sampling`) and the video layer reads.

It lives apart from both, so neither imports the other: the config's YAML schema checks what
a user wrote (key by key, with messages that name it), and the decoder only reads the result.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FrameSampling:
    """`num_frames` spread uniformly over the true duration, or `fps` frames per second (at most
    `max_frames`, spread uniformly when there would be more). Frames are shrunk, keeping their
    aspect ratio, to at most `max_pixels` pixels (None keeps the original size)."""

    num_frames: int | None = 8
    fps: float | None = None
    max_frames: int = 32
    max_pixels: int | None = 360 * 420

    def __post_init__(self) -> None:
        if (self.num_frames is None) == (self.fps is None):
            raise ValueError("set exactly one of num_frames and fps")

    def key(self) -> str:
        """A stable text form, part of the frame-cache key."""
        return f"n={self.num_frames},fps={self.fps},max={self.max_frames},px={self.max_pixels}"
