"""Per-length mAP: reduces to the plain AP without ignores; ignore GT / predictions do not hurt."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tp2detr.errors import MissingDataError
from tp2detr.evaluation.map_by_length import (
    DEFAULT_ABSOLUTE_BINS_S,
    DEFAULT_RELATIVE_BINS,
    LengthBin,
    make_bins,
    map_by_absolute_length,
    map_by_length,
    map_by_relative_length,
)
from tp2detr.evaluation.detection import average_precision_detection

THRESHOLDS = (0.3, 0.5, 0.7)
ONE_BIN = ((0.0, math.inf),)


def pred(segments, scores):
    return (np.array(segments, dtype=float).reshape(-1, 2), np.array(scores, dtype=float))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_single_bin_without_ignores_equals_plain_map(seed):
    rng = np.random.default_rng(seed)
    gt, preds = {}, {}
    for v in range(5):
        g = int(rng.integers(1, 8))
        starts = rng.integers(0, 40, g) / 2
        gt[f"v{v}"] = np.stack([starts, starts + rng.integers(1, 12, g) / 2], 1)
        p = int(rng.integers(0, 30))
        starts = rng.integers(0, 40, p) / 2
        preds[f"v{v}"] = pred(np.stack([starts, starts + rng.integers(1, 12, p) / 2], 1), rng.integers(0, 10, p) / 10)
    preds["no_gt"] = pred([[0, 3], [1, 2]], [0.95, 0.3])
    plain = average_precision_detection(gt, preds, THRESHOLDS)
    (only,) = map_by_length(gt, preds, THRESHOLDS, ONE_BIN)
    assert only.num_ground_truth == plain.num_ground_truth
    np.testing.assert_array_equal(only.ap, plain.ap)
    assert only.mean_ap == plain.mean_ap


def test_prediction_hitting_only_an_out_of_bin_gt_does_not_hurt():
    gt = {"a": np.array([[0.0, 1.0], [10.0, 30.0]])}  # 1 s (bin [0, 2)) and 20 s (bin [16, inf))
    preds = {"a": pred([[10, 30], [0, 1]], [0.9, 0.8])}  # the long hit ranks first
    short_bin = map_by_absolute_length(gt, preds, THRESHOLDS)[0]
    assert short_bin.num_ground_truth == 1
    np.testing.assert_array_equal(short_bin.ap, [1.0, 1.0, 1.0])
    # In the plain evaluation both are TP; dropping the long GT from the GT set instead would turn
    # the long prediction into a FP and halve the short bin's AP.
    plain_short_only = average_precision_detection({"a": gt["a"][:1]}, preds, THRESHOLDS)
    np.testing.assert_array_equal(plain_short_only.ap, [0.5, 0.5, 0.5])


def test_in_bin_length_prediction_matched_to_ignore_gt_is_ignored():
    gt = {"a": np.array([[0.0, 1.0], [10.0, 13.0]])}  # 1 s and 3 s
    preds = {"a": pred([[10, 11.5], [0, 1]], [0.9, 0.8])}  # 1.5 s prediction, tIoU 0.5 with the 3 s GT
    short_bin = map_by_length(gt, preds, (0.5,), ((0.0, 2.0), (2.0, 4.0)))[0]
    np.testing.assert_array_equal(short_bin.ap, [1.0])


def test_unmatched_prediction_counts_as_false_positive_only_inside_its_bin():
    gt = {"a": np.array([[0.0, 1.0]])}
    inside = {"a": pred([[50, 51], [0, 1]], [0.9, 0.8])}  # unmatched 1 s prediction: FP of [0, 2)
    outside = {"a": pred([[50, 70], [0, 1]], [0.9, 0.8])}  # unmatched 20 s prediction: ignored there
    assert map_by_absolute_length(gt, inside, (0.5,))[0].ap.tolist() == [0.5]
    assert map_by_absolute_length(gt, outside, (0.5,))[0].ap.tolist() == [1.0]


def test_non_ignored_gt_is_preferred_at_equal_validity():
    # The prediction [0, 10] has tIoU 1.0 with the ignored 10 s GT and 0.8 with the in-bin 8 s GT.
    gt = {"a": np.array([[0.0, 10.0], [1.0, 9.0]])}
    preds = {"a": pred([[0, 10]], [0.9])}
    (bin_8s,) = [b for b in map_by_length(gt, preds, (0.5,), ((0.0, 9.0), (9.0, 20.0))) if b.bin.high == 9.0]
    # Took the in-bin GT. Taking the better-overlapping ignored GT (the plain rule's first choice)
    # would make the prediction "ignored" and leave the bin with AP 0.
    assert bin_8s.ap.tolist() == [1.0]


def test_bin_without_gt_reports_none_not_zero():
    gt = {"a": np.array([[0.0, 1.0]])}
    results = map_by_absolute_length(gt, {"a": pred([[0, 1]], [0.9])}, THRESHOLDS)
    assert [r.num_ground_truth for r in results] == [1, 0, 0, 0, 0]
    assert all(r.ap is None and r.mean_ap is None for r in results[1:])
    as_json = results[1].to_dict(np.array(THRESHOLDS))
    assert as_json["num_gt"] == 0 and as_json["mAP"] is None and as_json["ap"] is None
    assert results[-1].to_dict(np.array(THRESHOLDS))["high"] is None  # infinity is not JSON


def test_bins_are_half_open_and_the_last_is_closed():
    bins = make_bins(DEFAULT_RELATIVE_BINS)
    assert bins[0].contains(np.array([0.0, 0.05])).tolist() == [True, False]
    assert bins[1].contains(np.array([0.05])).tolist() == [True]
    assert bins[-1].closed_high and bins[-1].contains(np.array([1.0, 1.0000001])).tolist() == [True, False]
    assert bins[-1].label == "[0.5, 1]" and bins[0].label == "[0, 0.05)"
    assert make_bins(DEFAULT_ABSOLUTE_BINS_S)[-1].label == "[16, inf]"


def test_relative_bins_use_each_videos_duration():
    gt = {"a": np.array([[0.0, 10.0]]), "b": np.array([[0.0, 10.0]])}
    preds = {"a": pred([[0, 10]], [0.9]), "b": pred([[0, 10]], [0.8])}
    results = map_by_relative_length(gt, preds, {"a": 100.0, "b": 20.0}, (0.5,))
    counts = {r.bin.label: r.num_ground_truth for r in results}
    assert counts == {"[0, 0.05)": 0, "[0.05, 0.1)": 0, "[0.1, 0.2)": 1, "[0.2, 0.5)": 0, "[0.5, 1]": 1}
    assert all(r.ap.tolist() == [1.0] for r in results if r.num_ground_truth)


def test_relative_bins_need_every_duration():
    gt = {"a": np.array([[0.0, 10.0]])}
    with pytest.raises(MissingDataError, match="'extra' has no duration"):
        map_by_relative_length(gt, {"extra": pred([[0, 1]], [0.5])}, {"a": 100.0})
    with pytest.raises(ValueError, match="positive number of seconds"):
        map_by_relative_length(gt, {}, {"a": 0.0})


@pytest.mark.parametrize("bins", [(), ((2.0, 1.0),), ((-1.0, 1.0),), ((0.0, float("nan")),), ((0.0,),)])
def test_bad_bins_are_rejected(bins):
    with pytest.raises(ValueError, match="bins"):
        make_bins(bins)


def test_empty_predictions_give_zero_in_bins_with_gt():
    results = map_by_absolute_length({"a": np.array([[0.0, 1.0]])}, {}, THRESHOLDS)
    assert results[0].ap.tolist() == [0.0, 0.0, 0.0] and results[0].mean_ap == 0.0


def test_length_bin_contains():
    assert LengthBin(2.0, 4.0).contains(np.array([1.99, 2.0, 3.99, 4.0])).tolist() == [False, True, True, False]
