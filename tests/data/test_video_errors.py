"""Unusable files: each raises VideoError with the right kind and a message that says what to do."""

import numpy as np
import pytest

from rbft.data.samples import truncate, write_audio_only, write_video
from rbft.data.video import read_video
from rbft.errors import VideoError


def kind_of(path):
    with pytest.raises(VideoError) as info:
        read_video(path)
    assert info.value.message.endswith(".")  # a full sentence of advice, not a bare code
    return info.value.kind


def test_missing(tmp_path):
    assert kind_of(tmp_path / "nowhere.mp4") == "missing"


def test_zero_bytes(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    assert kind_of(tmp_path / "empty.mp4") == "empty"


def test_text_file_named_mp4(tmp_path):
    (tmp_path / "notes.mp4").write_text("codec_name=h264\nwidth=640\nThis is a report, not a video.\n")
    assert kind_of(tmp_path / "notes.mp4") == "not_a_video"


def test_folder(tmp_path):
    (tmp_path / "clips.mp4").mkdir()
    assert kind_of(tmp_path / "clips.mp4") == "not_a_video"


def test_audio_only(tmp_path):
    assert kind_of(write_audio_only(tmp_path / "voice.m4a")) == "no_video_stream"


@pytest.mark.parametrize(
    "suffix,codec,options",
    [
        (".mp4", "h264", None),  # index (moov) at the end: cut off with the data
        (".mp4", "h264", {"movflags": "faststart"}),  # index first: it promises frames that are gone
        (".mkv", "h264", None),
        (".webm", "vp9", None),
    ],
)
def test_truncated_is_detected_not_returned_short(tmp_path, suffix, codec, options):
    whole = write_video(tmp_path / f"whole{suffix}", codec=codec, frames=48, options=options)
    assert len(read_video(whole).frames) == 8
    cut = truncate(whole, tmp_path / f"cut{suffix}", 0.5)
    assert kind_of(cut) == "truncated"


def test_corrupt_frame_data_is_a_decode_error(tmp_path):
    path = write_video(tmp_path / "clip.mp4", frames=40, width=160, height=120)
    data = bytearray(path.read_bytes())
    noise = np.random.default_rng(0).integers(0, 256, len(data) // 2 - 200, dtype=np.uint8)
    data[200 : len(data) // 2] = noise.tobytes()  # the frames, not the index at the end
    (tmp_path / "bad.mp4").write_bytes(bytes(data))
    assert kind_of(tmp_path / "bad.mp4") == "decode_error"
