"""Decoding with PyAV: frame rate, frames in order and in bounded chunks, clear errors, inputs."""

from __future__ import annotations

import os
from fractions import Fraction

import numpy as np
import pytest

pytest.importorskip("av")

from tp2detr.errors import ExtractionError
from video_test_fixtures import synthetic_frame, write_test_video
from tp2detr.extraction.video import (
    find_videos,
    iter_frame_chunks,
    probe_video,
    video_id_of,
)


def test_probe_reads_fps_size_and_declared_frame_count(video_50):
    info = probe_video(video_50)
    assert (info.fps, info.width, info.height, info.header_frames) == (25.0, 64, 48, 50)


def test_ntsc_frame_rate_is_the_exact_fraction_the_released_feature_info_uses(tmp_path):
    path = write_test_video(tmp_path / "ntsc.mp4", frames=10, fps=Fraction(30000, 1001))
    assert probe_video(path).fps == 29.97002997002997  # THUMOS14's video_fps for such videos


def test_frames_come_in_order_in_chunks_of_at_most_the_chunk_size(video_50):
    chunks = list(iter_frame_chunks(video_50, 16))
    assert [len(c) for c in chunks] == [16, 16, 16, 2]
    frames = [f for chunk in chunks for f in chunk]
    assert all(f.shape == (48, 64, 3) and f.dtype == np.uint8 for f in frames)
    # Lossy codec: each decoded frame is closest to the frame written at its index.
    for index in (0, 13, 31, 49):
        errors = [np.abs(frames[index].astype(int) - synthetic_frame(k).astype(int)).mean() for k in range(50)]
        assert int(np.argmin(errors)) == index


def test_random_bytes_are_an_error_naming_the_file(tmp_path):
    path = tmp_path / "garbage.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    for call in (lambda: probe_video(path), lambda: list(iter_frame_chunks(path, 8))):
        with pytest.raises(ExtractionError, match="cannot open as a video") as info:
            call()
        assert str(path) in str(info.value)


def test_missing_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(ExtractionError, match="not found") as info:
        probe_video(tmp_path / "nope.mp4")
    assert str(tmp_path / "nope.mp4") in str(info.value)


def test_zero_frame_files_either_have_no_video_stream_or_decode_to_nothing(tmp_path):
    mp4 = write_test_video(tmp_path / "empty.mp4", frames=0)
    with pytest.raises(ExtractionError, match="no video stream") as info:
        probe_video(mp4)
    assert str(mp4) in str(info.value)
    avi = write_test_video(tmp_path / "empty.avi", frames=0)
    assert probe_video(avi).header_frames is None
    assert list(iter_frame_chunks(avi, 8)) == []


def test_a_truncated_file_is_an_error_naming_it(tmp_path, video_50):
    data = video_50.read_bytes()
    path = tmp_path / "truncated.mp4"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ExtractionError) as info:
        list(iter_frame_chunks(path, 8))
    assert str(path) in str(info.value)


def test_find_videos_lists_video_files_of_a_folder_by_name(tmp_path):
    for name in ("b.avi", "a.mp4", "notes.txt", ".hidden.mp4", "c.MKV"):
        (tmp_path / name).write_bytes(b"x")
    os.mkdir(tmp_path / "sub.mp4")
    assert [p.name for p in find_videos(tmp_path)] == ["a.mp4", "b.avi", "c.MKV"]
    assert find_videos(tmp_path / "a.mp4") == [tmp_path / "a.mp4"]
    assert video_id_of(tmp_path / "video_test_0000004.mp4") == "video_test_0000004"


def test_find_videos_refuses_missing_empty_and_ambiguous_inputs(tmp_path):
    with pytest.raises(ExtractionError, match="not found"):
        find_videos(tmp_path / "missing")
    with pytest.raises(ExtractionError, match="holds no video file"):
        find_videos(tmp_path)
    (tmp_path / "a.mp4").write_bytes(b"x")
    (tmp_path / "a.mkv").write_bytes(b"x")
    with pytest.raises(ExtractionError, match="would both get the video id 'a'"):
        find_videos(tmp_path)
