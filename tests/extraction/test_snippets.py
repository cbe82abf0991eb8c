"""Snippet averaging and the feature-info entry (plain numpy: no PyAV / transformers needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tp2detr.config import REPO_ROOT
from tp2detr.errors import ExtractionError
from tp2detr.extraction.snippets import (
    SnippetAccumulator,
    check_enough_frames,
    feature_info_entry,
    snippet_count,
)

DATA = REPO_ROOT / "data"


@pytest.mark.parametrize(
    "chunks",
    [[50], [1] * 50, [3, 5, 1, 8, 13, 20], [7, 9, 34], [8, 8, 8, 8, 8, 8, 2], [0, 50, 0]],
)
def test_snippets_are_means_of_consecutive_groups_whatever_the_chunking(chunks):
    rng = np.random.default_rng(0)
    frames = rng.normal(size=(sum(chunks), 6)).astype(np.float32)
    acc = SnippetAccumulator(frames_per_snippet=8, dim=6)
    start = 0
    for size in chunks:
        acc.add(frames[start : start + size])
        start += size
    result = acc.result()
    assert result.dtype == np.float32
    assert result.shape == (6, 6) == (acc.snippet_count, 6)
    assert acc.frame_count == 50
    expected = frames[:48].reshape(6, 8, 6).mean(axis=1)
    np.testing.assert_allclose(result, expected, rtol=1e-6, atol=1e-6)


def test_fewer_frames_than_a_snippet_give_no_row_and_the_trailing_group_is_dropped():
    acc = SnippetAccumulator(frames_per_snippet=16, dim=3)
    acc.add(np.ones((15, 3)))
    assert acc.result().shape == (0, 3)
    acc.add(np.full((1, 3), 17.0))
    acc.add(np.full((5, 3), 99.0))  # partial group: left out
    np.testing.assert_allclose(acc.result(), [[2.0, 2.0, 2.0]])


def test_accumulator_refuses_a_wrong_embedding_shape():
    acc = SnippetAccumulator(frames_per_snippet=8, dim=4)
    with pytest.raises(ValueError, match=r"expected \[N, 4\]"):
        acc.add(np.zeros((3, 5)))


def test_snippet_count_drops_the_trailing_partial_group_like_the_released_features():
    assert snippet_count(8273, 8) == 1034
    assert snippet_count(50, 8) == 6
    assert snippet_count(7, 8) == 0


def test_feature_info_entry_reproduces_every_released_thumos14_entry_exactly():
    released = json.loads((DATA / "thumos14" / "feature_info_8frame.json").read_text())
    assert len(released) == 412
    for video_id, record in released.items():
        entry = feature_info_entry(record["frame_length"], record["video_fps"], 8)
        assert entry == record, video_id
    first = feature_info_entry(8273, 30.0, 8)
    assert first["snippet_length"] == 1034 and first["frame_duration"] == 8272 / 30


def test_feature_info_entry_matches_the_released_activitynet_entries():
    released = json.loads((DATA / "activitynet13" / "feature_info.json").read_text())
    for video_id, record in released.items():
        entry = feature_info_entry(record["frame_length"], record["video_fps"], 16)
        assert entry.keys() == record.keys()
        assert entry["snippet_length"] == record["snippet_length"], video_id
        for key in ("frame_duration", "snippet_duration", "video_fps"):
            assert entry[key] == pytest.approx(record[key], abs=1e-9), (video_id, key)


@pytest.mark.parametrize("frames, match", [(0, "no frame could be decoded"), (5, "has 5 frame")])
def test_too_few_frames_is_an_error_naming_the_file(frames, match):
    with pytest.raises(ExtractionError, match=match) as info:
        check_enough_frames(frames, 8, Path("/videos/short.mp4"))
    assert "/videos/short.mp4" in str(info.value)
    check_enough_frames(8, 8, "ok.mp4")
