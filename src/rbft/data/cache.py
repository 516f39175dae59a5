"""The decoded-frame cache: sampled frames keyed by the video's content and the sampling.

Entries are safetensors files (frames, timestamps, and the video's info as metadata,
with a checksum of the data). Writes go to a temporary file and are renamed into
place, so concurrent workers and a kill never leave a half-written entry; an entry
that fails its checksum is deleted and decoded again. The cache stays under
`max_bytes` by deleting the least recently used entries.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save

from rbft.data.probe import check_file
from rbft.data.video import Clip, VideoInfo, read_video
from rbft.sampling import FrameSampling

FORMAT_VERSION = "1"  # bump when decoding changes what an entry holds
DEFAULT_MAX_BYTES = 20 * 1024**3


def default_cache_dir() -> Path:
    """$RBFT_CACHE_DIR, else the user's cache folder (e.g. ~/.cache/rbft)."""
    if os.environ.get("RBFT_CACHE_DIR"):
        return Path(os.environ["RBFT_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rbft"


class FrameCache:
    """Sampled frames on disk, under `root`/frames. `load` is the one call most code needs."""

    def __init__(self, root: str | Path | None = None, max_bytes: int = DEFAULT_MAX_BYTES):
        self.root = Path(root) if root is not None else default_cache_dir()
        self.entries = self.root / "frames" / f"v{FORMAT_VERSION}"
        self.hashes = self.root / "content-hashes"
        self.max_bytes = max_bytes
        self._bytes_estimate: int | None = None

    def load(self, video: str | Path, sampling: FrameSampling = FrameSampling()) -> Clip:
        """The frames `read_video` would return (and its VideoError), from the cache when present."""
        check_file(Path(video))  # a missing or empty file is reported as such, not as a hashing failure
        key = self.key(video, sampling)
        clip = self.get(key)
        if clip is None:
            clip = read_video(video, sampling)
            self.put(key, clip)
        return clip

    def key(self, video: str | Path, sampling: FrameSampling) -> str:
        text = f"{FORMAT_VERSION}|{content_hash(video, self.hashes)}|{sampling.key()}"
        return hashlib.blake2b(text.encode(), digest_size=20).hexdigest()

    def _path(self, key: str) -> Path:
        return self.entries / key[:2] / f"{key}.safetensors"

    def get(self, key: str) -> Clip | None:
        """The entry for `key`, or None when absent or damaged (a damaged one is deleted)."""
        path = self._path(key)
        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = f.metadata() or {}
                frames, stamps = f.get_tensor("frames"), f.get_tensor("timestamps")
            if meta.get("checksum") != _checksum(frames, stamps):
                raise ValueError("checksum mismatch")
            info = VideoInfo(**json.loads(meta["info"]))
        except FileNotFoundError:
            return None
        except Exception:  # noqa: BLE001 - any unreadable entry is decoded again
            path.unlink(missing_ok=True)
            return None
        try:
            os.utime(path)  # recently used: evicted last
        except OSError:
            pass
        return Clip(frames, stamps, info)

    def put(self, key: str, clip: Clip) -> None:
        path = self._path(key)
        meta = {"checksum": _checksum(clip.frames, clip.timestamps), "info": json.dumps(asdict(clip.info))}
        data = save({"frames": np.ascontiguousarray(clip.frames), "timestamps": clip.timestamps}, metadata=meta)
        _write_atomic(path, data)
        if self._bytes_estimate is None:
            self._bytes_estimate = self.size_bytes()
        else:
            self._bytes_estimate += len(data)
        if self._bytes_estimate > self.max_bytes:
            self.evict()

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.entries.glob("*/*.safetensors"))

    def evict(self) -> None:
        """Delete least recently used entries until the cache is under 90% of `max_bytes`;
        also clears temporary files that killed writers left behind."""
        now = time.time()
        for tmp in self.root.glob("**/*.tmp-*"):
            try:
                if now - tmp.stat().st_mtime > 3600:
                    tmp.unlink()
            except OSError:
                pass
        entries = []
        for p in self.entries.glob("*/*.safetensors"):
            try:
                st = p.stat()
                entries.append((st.st_mtime, st.st_size, p))
            except OSError:
                pass  # deleted by another worker meanwhile
        total = sum(size for _, size, _ in entries)
        for _, size, p in sorted(entries):
            if total <= 0.9 * self.max_bytes:
                break
            p.unlink(missing_ok=True)
            total -= size
        self._bytes_estimate = total


def content_hash(video: str | Path, memo_dir: Path | None = None) -> str:
    """BLAKE2b of the file's bytes. Memoised under `memo_dir` by path, size, mtime and inode,
    so an unchanged file is read once; any change to those hashes the content again."""
    video = Path(video).resolve()
    st = video.stat()
    stat_key = f"{video}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}"
    memo = None
    if memo_dir is not None:
        memo = memo_dir / (hashlib.blake2b(stat_key.encode(), digest_size=16).hexdigest() + ".txt")
        try:
            text = memo.read_text()
            if len(text) == 40:
                return text
        except OSError:
            pass
    digest = hashlib.blake2b(digest_size=20)
    with open(video, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    value = digest.hexdigest()
    if memo is not None:
        _write_atomic(memo, value.encode())
    return value


def _checksum(frames: np.ndarray, stamps: np.ndarray) -> str:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(str(frames.shape).encode())
    digest.update(np.ascontiguousarray(frames).data)
    digest.update(np.ascontiguousarray(stamps, dtype=np.float64).data)
    return digest.hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
