"""Cross-window fusion and temporal NMS (released code semantics)."""

from __future__ import annotations

import numpy as np
import pytest

from tp2detr.evaluation.stitching import (
    WindowProposals,
    overlap_spans,
    stitch_videos,
    stitch_windows,
    temporal_nms,
)


def window(start, end, segments, scores, fps=1.0):
    return WindowProposals(start, end, fps, np.array(segments, dtype=float).reshape(-1, 2), np.array(scores, dtype=float))


# ---------------------------------------------------------------- temporal_nms


def test_nms_suppresses_strictly_above_threshold_in_score_order():
    segments = np.array([[0.0, 10.0], [0.0, 10.0], [0.0, 4.0], [20.0, 30.0], [0.0, 7.0]])
    scores = np.array([0.5, 0.9, 0.8, 0.1, 0.7])
    # kept 1 (0.9); 2: IoU 0.4 -> kept (not > 0.4); 4: IoU 0.7 with 1 -> suppressed; 0: IoU 1 -> suppressed.
    assert temporal_nms(segments, scores, 0.4).tolist() == [1, 2, 3]


def test_nms_keeps_disjoint_and_touching_segments():
    segments = np.array([[0.0, 1.0], [1.0, 2.0], [5.0, 6.0]])
    assert sorted(temporal_nms(segments, np.array([0.3, 0.2, 0.1]), 0.0).tolist()) == [0, 1, 2]


def test_nms_empty_and_mismatch():
    assert temporal_nms(np.zeros((0, 2)), np.zeros(0), 0.4).tolist() == []
    with pytest.raises(ValueError, match="equal counts"):
        temporal_nms(np.zeros((2, 2)), np.zeros(1), 0.4)


# ---------------------------------------------------------------- stitching


def test_single_window_is_shifted_and_score_sorted_only():
    w = window(10, 137, [[1, 2], [0, 1], [0, 1]], [0.2, 0.9, 0.8], fps=2.0)
    out = stitch_windows([w])
    np.testing.assert_array_equal(out.segments, [[5, 6], [5, 6], [6, 7]])  # offset 10 / 2 fps = 5 s
    np.testing.assert_array_equal(out.scores, [0.9, 0.8, 0.2])
    assert out.window_index.tolist() == [0, 0, 0]


def test_windows_without_overlap_are_unchanged():
    a = window(0, 127, [[100, 110], [0, 5]], [0.9, 0.5])
    b = window(128, 255, [[0, 10], [1, 9]], [0.8, 0.7])  # duplicate-looking but no overlap span
    out = stitch_windows([a, b])
    np.testing.assert_array_equal(out.segments, [[100, 110], [0, 5], [128, 138], [129, 137]])
    np.testing.assert_array_equal(out.scores, [0.9, 0.5, 0.8, 0.7])


def test_duplicates_inside_an_overlap_are_suppressed_and_the_rest_is_untouched():
    a = window(0, 127, [[10, 20], [100, 110], [120, 130]], [0.3, 0.9, 0.2])
    b = window(96, 223, [[4, 14], [50, 60], [90, 100]], [0.8, 0.6, 0.4])
    out = stitch_windows([a, b])
    # overlap span [96, 127] s. Intersecting it: a[100,110](.9), a[120,130](.2), b[100,110](.8).
    # NMS keeps a[100,110] and a[120,130]; b[100,110] (IoU 1) is suppressed.
    # Output: kept by score, then the non-intersecting ones in list order (a then b, score-sorted).
    np.testing.assert_array_equal(out.segments, [[100, 110], [120, 130], [10, 20], [146, 156], [186, 196]])
    np.testing.assert_array_equal(out.scores, [0.9, 0.2, 0.3, 0.6, 0.4])
    assert out.window_index.tolist() == [0, 0, 0, 1, 1]


def test_intersection_with_the_span_is_strict():
    a = window(0, 127, [[90, 96]], [0.9])  # ends exactly where the span [96, 127] starts
    b = window(96, 223, [[-6, 0]], [0.8])  # the same segment [90, 96] from the other window
    out = stitch_windows([a, b])
    assert len(out.scores) == 2  # neither intersects the span, so no NMS between them


def test_detection_straddling_two_spans_is_kept_twice_unless_deduplicated():
    a = window(0, 127, [[0, 10]], [0.1])
    b = window(96, 223, [[4, 104]], [0.9])  # video [100, 200]: intersects [96, 127] and [192, 223]
    c = window(192, 319, [[100, 110]], [0.2])
    default = stitch_windows([a, b, c])
    np.testing.assert_array_equal(default.segments, [[100, 200], [100, 200], [0, 10], [292, 302]])
    clean = stitch_windows([a, b, c], deduplicate=True)
    np.testing.assert_array_equal(clean.segments, [[100, 200], [0, 10], [292, 302]])


def test_spans_follow_start_order_not_input_order_and_skip_empty_windows():
    a = window(0, 127, [[100, 110]], [0.9])
    b = window(96, 223, [[4, 14]], [0.8])
    empty = window(500, 627, [], [])
    forward = stitch_windows([a, b, empty])
    backward = stitch_windows([b, empty, a])
    assert overlap_spans([a, b, empty], [0, 1]) == [(96.0, 127.0)]
    assert len(forward.scores) == len(backward.scores) == 1
    assert forward.scores.tolist() == backward.scores.tolist() == [0.9]
    assert backward.window_index.tolist() == [2]


def test_output_is_deterministic():
    rng = np.random.default_rng(0)
    windows = []
    for start in (0, 96, 192, 288):
        s = rng.uniform(0, 120, 40)
        windows.append(window(start, start + 127, np.stack([s, s + rng.uniform(0.5, 20, 40)], 1), rng.uniform(0, 1, 40), fps=30 / 8))
    first, second = stitch_windows(windows), stitch_windows(windows)
    np.testing.assert_array_equal(first.segments, second.segments)
    np.testing.assert_array_equal(first.scores, second.scores)
    assert len(first.scores) < 160


def test_stitch_videos_and_validation():
    out = stitch_videos({"v": [window(0, 127, [[0, 1]], [0.5])]})
    assert list(out) == ["v"] and out["v"][0].tolist() == [[0.0, 1.0]]
    with pytest.raises(ValueError, match="feature_fps"):
        stitch_windows([window(0, 127, [[0, 1]], [0.5], fps=0.0)])
    with pytest.raises(ValueError, match="end_snippet < start_snippet"):
        stitch_windows([window(10, 5, [[0, 1]], [0.5])])
