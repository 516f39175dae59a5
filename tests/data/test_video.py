"""Decoding real files written with PyAV: every container and codec, rotation, VFR, seeking."""

import av
import numpy as np
import pytest

from rbft.data.samples import draw_frame, frame_number, write_video
from rbft.data.video import FrameSampling, read_video

FULL = FrameSampling(num_frames=8, max_pixels=None)

CASES = [
    ("h264", ".mp4"), ("hevc", ".mp4"), ("h264", ".mov"), ("h264", ".mkv"), ("h264", ".ts"),
    ("vp8", ".webm"), ("vp9", ".webm"), ("mpeg4", ".avi"), ("mjpeg", ".avi"), ("mjpeg", ".mkv"),
]


@pytest.mark.parametrize("codec,suffix", CASES)
def test_every_container_and_codec_samples_uniformly(tmp_path, codec, suffix):
    path = write_video(tmp_path / f"clip{suffix}", codec=codec, frames=16, fps=8)
    clip = read_video(path, FULL)
    assert clip.frames.shape == (8, 64, 96, 3) and clip.frames.dtype == np.uint8
    # 16 frames over 2 s, 8 segment centres: the frames shown at 0.125, 0.375, ... s
    assert [frame_number(f) for f in clip.frames] == [1, 3, 5, 7, 9, 11, 13, 15]
    np.testing.assert_allclose(clip.timestamps, np.arange(1, 16, 2) / 8, atol=1e-3)
    assert (clip.info.width, clip.info.height) == (96, 64)
    assert clip.info.duration_s == pytest.approx(2.0, abs=0.01)
    assert clip.info.frame_count == 16


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_metadata_gives_upright_frames(tmp_path, rotation):
    path = write_video(tmp_path / "phone.mp4", rotation=rotation, width=96, height=64)
    with av.open(str(path)) as c:  # what is stored is not upright
        stored = next(c.decode(video=0))
        assert stored.rotation % 360 == (-rotation) % 360
    clip = read_video(path, FULL)
    assert clip.info.rotation == rotation
    assert (clip.info.width, clip.info.height) == (96, 64)
    first = clip.frames[0].astype(int)
    expected = draw_frame(frame_number(clip.frames[0]), 96, 64).astype(int)
    assert np.abs(first - expected).mean() < 6  # same picture, same way up
    assert first[5, 5, 0] > 180 and first[5, 5, 1] < 80  # the red marker is top-left


def test_variable_frame_rate_uses_real_timestamps(tmp_path):
    times = [0.0, 0.05, 0.1, 0.6, 0.65, 1.5, 1.55, 1.6]
    path = write_video(tmp_path / "vfr.mkv", frames=len(times), times=times)
    clip = read_video(path, FrameSampling(num_frames=4, max_pixels=None))
    # the frame on screen at each segment centre of [0, end): the last one whose time <= t
    end = clip.info.duration_s
    for t_shown, frame, k in zip(clip.timestamps, clip.frames, range(4)):
        centre = (k + 0.5) * end / 4
        expected = max(i for i, t in enumerate(times) if t <= centre + 1e-9)
        assert t_shown == pytest.approx(times[expected], abs=1e-3)
        assert frame_number(frame) == expected


def test_fps_sampling_with_a_cap(tmp_path):
    path = write_video(tmp_path / "clip.mp4", frames=32, fps=8)  # 4 s
    two_fps = read_video(path, FrameSampling(num_frames=None, fps=2, max_pixels=None))
    assert len(two_fps.frames) == 8
    np.testing.assert_allclose(np.diff(two_fps.timestamps), 0.5, atol=1e-3)
    capped = read_video(path, FrameSampling(num_frames=None, fps=8, max_frames=5, max_pixels=None))
    assert len(capped.frames) == 5


def test_short_clip_repeats_frames_rather_than_returning_fewer(tmp_path):
    path = write_video(tmp_path / "short.mp4", frames=3, fps=8)
    clip = read_video(path, FULL)
    assert len(clip.frames) == 8
    numbers = [frame_number(f) for f in clip.frames]
    assert numbers == sorted(numbers) and set(numbers) == {0, 1, 2}
    one = read_video(write_video(tmp_path / "one.mp4", frames=1), FULL)
    assert len(one.frames) == 8


@pytest.mark.parametrize("codec,suffix", [("vp9", ".webm"), ("ffv1", ".mkv")])
def test_odd_sizes(tmp_path, codec, suffix):
    path = write_video(tmp_path / f"odd{suffix}", codec=codec, width=161, height=121)
    clip = read_video(path, FULL)
    assert clip.frames.shape[1:] == (121, 161, 3)
    assert (clip.info.width, clip.info.height) == (161, 121)


def test_resize_to_pixel_budget_keeps_aspect(tmp_path):
    path = write_video(tmp_path / "big.mp4", width=640, height=480, frames=4)
    clip = read_video(path, FrameSampling(num_frames=2, max_pixels=160 * 120))
    h, w = clip.frames.shape[1:3]
    assert h * w <= 160 * 120 and abs(w / h - 4 / 3) < 0.02
    assert (clip.info.width, clip.info.height) == (640, 480)  # the original size is reported


def _reference_frames(path, times):
    """Decode every frame in order and pick, for each time (from the first frame), the last
    frame shown at or before it."""
    with av.open(str(path)) as c:
        decoded = [(f.time, f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
    start = decoded[0][0]  # MPEG-TS, for one, does not start at 0
    return [max(((ft, a) for ft, a in decoded if ft - start <= t + 1e-9), key=lambda x: x[0])[1] for t in times]


@pytest.mark.parametrize("suffix,codec", [(".mp4", "h264"), (".mkv", "h264"), (".webm", "vp9"), (".ts", "h264")])
def test_seeking_returns_exactly_what_full_decoding_shows(tmp_path, suffix, codec):
    path = write_video(
        tmp_path / f"long{suffix}", codec=codec, frames=240, fps=24, width=64, height=48, keyframe_every=24
    )
    with av.open(str(path)) as c:
        assert sum(p.is_keyframe for p in c.demux(video=0)) >= 8  # so reaching the targets means seeking
    clip = read_video(path, FrameSampling(num_frames=5, max_pixels=None))
    reference = _reference_frames(path, clip.timestamps)
    for got, want in zip(clip.frames, reference):
        np.testing.assert_array_equal(got, want)
    assert len(set(np.round(clip.timestamps, 3))) == 5


def test_non_ascii_name_with_spaces(tmp_path):
    path = write_video(tmp_path / "café clip 1 – été.mp4")
    assert len(read_video(path, FULL).frames) == 8
