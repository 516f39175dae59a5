"""Errors a user can cause. Each says what is wrong and what to do about it."""

from __future__ import annotations


class RbftError(Exception):
    """Base of every error rbft raises on purpose; the CLI prints these without a traceback."""


class ConfigError(RbftError):
    """The experiment config cannot be used (bad YAML, unknown key, bad value)."""


class RationalesRefused(ConfigError):
    """Stage I will not train on these rationales: too few pass the filter (`rationales.min_kept_share`)."""


class ManifestError(RbftError):
    """The manifest cannot be used. `problems` lists every one found, with line numbers."""

    def __init__(self, path: object, problems: list[str]):
        self.path = str(path)
        self.problems = problems
        shown = "\n".join(f"  - {p}" for p in problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(f"manifest {self.path} has {len(problems)} problem(s):\n{shown}{more}")


VIDEO_ERROR_KINDS = ("missing", "empty", "not_a_video", "no_video_stream", "truncated", "decode_error")


class VideoError(RbftError):
    """A video that cannot be used. `kind` is one of VIDEO_ERROR_KINDS."""

    def __init__(self, kind: str, path: object, message: str):
        assert kind in VIDEO_ERROR_KINDS, kind
        self.kind = kind
        self.path = str(path)
        self.message = message
        super().__init__(f"{kind}: {self.path}: {message}")


class DataError(RbftError):
    """A dataset's annotation files cannot be read as their format says."""
