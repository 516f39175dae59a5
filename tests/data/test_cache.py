"""The decoded-frame cache: content keys, damaged entries, atomic concurrent writes, eviction."""

import multiprocessing
import os
import shutil

import numpy as np
import pytest

from rbft.data import cache as cache_module
from rbft.data.cache import FrameCache, default_cache_dir
from rbft.data.samples import write_video
from rbft.data.video import FrameSampling
from rbft.errors import VideoError

SAMPLING = FrameSampling(num_frames=4, max_pixels=None)


def count_decodes(monkeypatch):
    calls = []
    real = cache_module.read_video
    monkeypatch.setattr(cache_module, "read_video", lambda *a, **k: calls.append(a) or real(*a, **k))
    return calls


def test_second_load_reads_the_cache(tmp_path, monkeypatch):
    video = write_video(tmp_path / "a.mp4")
    cache = FrameCache(tmp_path / "c")
    decodes = count_decodes(monkeypatch)
    first = cache.load(video, SAMPLING)
    second = FrameCache(tmp_path / "c").load(video, SAMPLING)  # a new process would do this
    assert len(decodes) == 1
    np.testing.assert_array_equal(first.frames, second.frames)
    np.testing.assert_array_equal(first.timestamps, second.timestamps)
    assert first.info == second.info


def test_key_follows_content_and_sampling_not_name_or_mtime(tmp_path):
    cache = FrameCache(tmp_path / "c")
    a = write_video(tmp_path / "a.mp4")
    copy = tmp_path / "copy.mp4"
    shutil.copy(a, copy)
    assert cache.key(a, SAMPLING) == cache.key(copy, SAMPLING)
    os.utime(copy, (1, 1))
    assert cache.key(a, SAMPLING) == cache.key(copy, SAMPLING)
    assert cache.key(a, SAMPLING) != cache.key(a, FrameSampling(num_frames=5, max_pixels=None))
    write_video(copy, width=64, height=48)  # same name, new content
    assert cache.key(a, SAMPLING) != cache.key(copy, SAMPLING)
    assert cache.load(copy, SAMPLING).frames.shape[1:3] == (48, 64)


def test_damaged_entries_are_decoded_again(tmp_path, monkeypatch):
    video = write_video(tmp_path / "a.mp4")
    cache = FrameCache(tmp_path / "c")
    good = cache.load(video, SAMPLING)
    entry = cache._path(cache.key(video, SAMPLING))
    decodes = count_decodes(monkeypatch)
    for damage in ("flip", "cut", "zero"):
        data = bytearray(entry.read_bytes())
        if damage == "flip":
            data[-100] ^= 0xFF  # inside the frame data: only the checksum notices
        elif damage == "cut":
            data = data[: len(data) // 2]
        else:
            data = bytearray()
        entry.write_bytes(bytes(data))
        again = cache.load(video, SAMPLING)
        np.testing.assert_array_equal(again.frames, good.frames)
    assert len(decodes) == 3
    assert cache.get(cache.key(video, SAMPLING)) is not None  # repaired


def _load_in_process(args):
    root, video = args
    return FrameCache(root).load(video, SAMPLING).frames.sum()


def test_concurrent_writers_leave_one_good_entry(tmp_path):
    video = write_video(tmp_path / "a.mp4")
    root = tmp_path / "c"
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        sums = pool.map(_load_in_process, [(str(root), str(video))] * 8)
    assert len(set(sums)) == 1
    entries = list(root.rglob("*.safetensors"))
    assert len(entries) == 1
    assert not list(root.rglob("*.tmp-*"))
    assert FrameCache(root).get(entries[0].stem) is not None


def test_leftover_temporary_file_from_a_killed_writer_is_harmless(tmp_path):
    video = write_video(tmp_path / "a.mp4")
    cache = FrameCache(tmp_path / "c")
    entry = cache._path(cache.key(video, SAMPLING))
    entry.parent.mkdir(parents=True)
    stale = entry.with_name(entry.name + ".tmp-999-dead")
    stale.write_bytes(b"half an entry")
    os.utime(stale, (1, 1))
    assert len(cache.load(video, SAMPLING).frames) == 4
    cache.evict()
    assert not stale.exists()


def test_eviction_keeps_the_most_recently_used(tmp_path):
    videos = [write_video(tmp_path / f"v{i}.mp4", width=96 + 16 * i) for i in range(4)]
    probe = FrameCache(tmp_path / "probe")
    probe.load(videos[0], SAMPLING)
    one_entry = probe.size_bytes()
    cache = FrameCache(tmp_path / "c", max_bytes=int(one_entry * 3.5))
    for i, v in enumerate(videos[:3]):
        cache.load(v, SAMPLING)
        os.utime(cache._path(cache.key(v, SAMPLING)), (1000 + i, 1000 + i))
    cache.load(videos[0], SAMPLING)  # used again: now the most recent
    cache.load(videos[3], SAMPLING)  # over budget: the least recently used (v1) goes
    assert cache.size_bytes() <= cache.max_bytes
    kept = {v.name for v in videos if cache.get(cache.key(v, SAMPLING)) is not None}
    assert "v0.mp4" in kept and "v3.mp4" in kept and "v1.mp4" not in kept


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("RBFT_CACHE_DIR", str(tmp_path / "here"))
    assert default_cache_dir() == tmp_path / "here"
    monkeypatch.delenv("RBFT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "rbft"


def test_unusable_files_raise_the_same_errors_through_the_cache(tmp_path):
    cache = FrameCache(tmp_path / "c")
    (tmp_path / "empty.mp4").write_bytes(b"")
    for path, kind in ((tmp_path / "gone.mp4", "missing"), (tmp_path / "empty.mp4", "empty")):
        with pytest.raises(VideoError) as info:
            cache.load(path, SAMPLING)
        assert info.value.kind == kind
