"""Detection AP: hand-computed cases pin the oracle, hypothesis compares the fast path with it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tp2detr.evaluation.detection import (
    ANET_MAP_TIOU,
    THUMOS_MAP_TIOU,
    average_precision_detection,
    interpolated_average_precision,
)
from tp2detr.evaluation.tiou import segment_iou_matrix

# ---------------------------------------------------------------- the loop oracle
# A deliberately simple, independent re-statement of the official toolkit
# (``Evaluation/eval_detection.py::compute_average_precision_detection`` and ``utils.py``),
# pandas-free: one prediction, one GT, one threshold at a time. It shares no code with the package.


def oracle_segment_iou(target, candidates):
    """tIoU of one segment ``target`` [2] with every row of ``candidates`` [N, 2]."""
    tt1 = np.maximum(target[0], candidates[:, 0])
    tt2 = np.minimum(target[1], candidates[:, 1])
    inter = (tt2 - tt1).clip(0)
    union = (candidates[:, 1] - candidates[:, 0]) + (target[1] - target[0]) - inter
    return inter.astype(float) / union


def oracle_interpolated_ap(prec, rec):
    mprec = [0.0] + list(prec) + [0.0]
    mrec = [0.0] + list(rec) + [1.0]
    for i in range(len(mprec) - 2, -1, -1):
        mprec[i] = max(mprec[i], mprec[i + 1])
    mprec = np.array(mprec)
    mrec = np.array(mrec)
    idx = np.where(mrec[1:] != mrec[:-1])[0] + 1
    return np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx])


def oracle_detection_ap(ground_truth, predictions, thresholds):
    """Official compute_average_precision_detection on dict inputs (see module docstring)."""
    gt_rows = []  # (video, start, end) in dict order
    for video, segs in ground_truth.items():
        for s, e in np.asarray(segs, dtype=float).reshape(-1, 2):
            gt_rows.append((video, float(s), float(e)))
    pred_rows = []
    for video, (segs, scores) in predictions.items():
        segs = np.asarray(segs, dtype=float).reshape(-1, 2)
        for (s, e), score in zip(segs, np.asarray(scores, dtype=float).reshape(-1)):
            pred_rows.append((video, float(s), float(e), float(score)))
    npos = float(len(gt_rows))
    thresholds = list(thresholds)
    lock = np.full((len(thresholds), len(gt_rows)), -1)
    scores = np.array([r[3] for r in pred_rows], dtype=float)
    sort_idx = scores.argsort()[::-1]
    ranked = [pred_rows[i] for i in sort_idx]
    tp = np.zeros((len(thresholds), len(ranked)))
    fp = np.zeros((len(thresholds), len(ranked)))
    for idx, (video, s, e, _) in enumerate(ranked):
        video_gt_index = [k for k, row in enumerate(gt_rows) if row[0] == video]
        if not video_gt_index:
            fp[:, idx] = 1
            continue
        this_gt = np.array([[gt_rows[k][1], gt_rows[k][2]] for k in video_gt_index])
        tiou = oracle_segment_iou(np.array([s, e]), this_gt)
        order = tiou.argsort()[::-1]
        for t, thr in enumerate(thresholds):
            for j in order:
                if tiou[j] < thr:
                    fp[t, idx] = 1
                    break
                if lock[t, video_gt_index[j]] >= 0:
                    continue
                tp[t, idx] = 1
                lock[t, video_gt_index[j]] = idx
                break
            if fp[t, idx] == 0 and tp[t, idx] == 0:
                fp[t, idx] = 1
    tp_c = np.cumsum(tp, axis=1).astype(float)
    fp_c = np.cumsum(fp, axis=1).astype(float)
    rec = tp_c / npos
    prec = tp_c / (tp_c + fp_c)
    return np.array([oracle_interpolated_ap(prec[t], rec[t]) for t in range(len(thresholds))])


BOTH = pytest.mark.parametrize("evaluate", ["fast", "oracle"])


def run(evaluate, gt, preds, thresholds):
    if evaluate == "fast":
        return average_precision_detection(gt, preds, thresholds).ap
    return oracle_detection_ap(gt, preds, thresholds)


def pred(segments, scores):
    return (np.array(segments, dtype=float).reshape(-1, 2), np.array(scores, dtype=float))


# ---------------------------------------------------------------- hand-computed cases (pin both)


@BOTH
def test_perfect_ranking_gives_ap_one(evaluate):
    gt = {"a": np.array([[0.0, 10.0], [20.0, 30.0]]), "b": np.array([[5.0, 6.0]])}
    preds = {"a": pred([[0, 10], [20, 30]], [0.9, 0.8]), "b": pred([[5, 6]], [0.7])}
    np.testing.assert_allclose(run(evaluate, gt, preds, [0.5, 0.95, 1.0]), [1.0, 1.0, 1.0])


@BOTH
def test_one_false_positive_ahead_of_one_true_positive_gives_half(evaluate):
    # precision [0, 1/2], recall [0, 1] -> envelope 1/2 on the recall step 0 -> 1.
    gt = {"a": np.array([[0.0, 10.0]])}
    preds = {"a": pred([[50, 60], [0, 10]], [0.9, 0.8])}
    np.testing.assert_allclose(run(evaluate, gt, preds, [0.5]), [0.5])


@BOTH
def test_tp_fp_tp_uses_interpolated_envelope(evaluate):
    # precision [1, 1/2, 2/3], recall [1/2, 1/2, 1] -> 1/2*1 + 1/2*2/3.
    gt = {"a": np.array([[0.0, 10.0], [20.0, 30.0]])}
    preds = {"a": pred([[0, 10], [50, 60], [20, 30]], [0.9, 0.8, 0.7])}
    np.testing.assert_allclose(run(evaluate, gt, preds, [0.5]), [0.5 + 0.5 * 2 / 3])


@BOTH
def test_locked_ground_truth_falls_through_to_next_best(evaluate):
    # Two GT with tIoU 0.9 between them; both predictions sit on GT A. The second one skips the
    # locked A and takes B when thr <= 0.9, and is a FP at 0.95.
    gt = {"a": np.array([[0.0, 10.0], [0.0, 9.0]])}
    preds = {"a": pred([[0, 10], [0, 10]], [0.9, 0.8])}
    np.testing.assert_allclose(run(evaluate, gt, preds, [0.5, 0.9, 0.95]), [1.0, 1.0, 0.5])


@BOTH
def test_prediction_on_video_without_ground_truth_is_false_positive(evaluate):
    gt = {"a": np.array([[0.0, 10.0]]), "empty": np.zeros((0, 2))}
    preds = {"nogt": pred([[0, 10]], [0.9]), "empty": pred([[0, 10]], [0.85]), "a": pred([[0, 10]], [0.8])}
    # ranking: FP, FP, TP -> precision 1/3 at recall 1.
    np.testing.assert_allclose(run(evaluate, gt, preds, [0.5]), [1 / 3])


@BOTH
def test_match_condition_is_greater_or_equal(evaluate):
    gt = {"a": np.array([[0.0, 10.0]])}
    preds = {"a": pred([[0, 5]], [0.9])}  # tIoU exactly 0.5
    np.testing.assert_allclose(run(evaluate, gt, preds, [0.5, 0.5000001]), [1.0, 0.0])


@BOTH
def test_touching_segments_have_zero_tiou(evaluate):
    gt = {"a": np.array([[0.0, 10.0]])}
    preds = {"a": pred([[10, 20]], [0.9])}
    np.testing.assert_allclose(run(evaluate, gt, preds, [0.0, 1e-12]), [1.0, 0.0])


def test_interpolated_ap_matches_the_oracle_formula():
    precision = np.array([1.0, 0.5, 2 / 3, 0.5, 0.6])
    recall = np.array([0.2, 0.2, 0.4, 0.4, 0.6])
    expected = 0.2 * 1.0 + 0.2 * (2 / 3) + 0.2 * 0.6
    assert interpolated_average_precision(precision, recall) == pytest.approx(expected, abs=1e-15)
    assert interpolated_average_precision(precision, recall) == oracle_interpolated_ap(precision, recall)


def test_empty_predictions_give_zero_ap():
    result = average_precision_detection({"a": np.array([[0.0, 1.0]])}, {}, THUMOS_MAP_TIOU)
    assert result.ap.tolist() == [0.0] * 5
    assert result.num_predictions == 0 and result.num_ground_truth == 1
    assert result.mean_ap == 0.0


def test_no_ground_truth_is_a_clear_error():
    with pytest.raises(ValueError, match="found 0 instances"):
        average_precision_detection({"a": np.zeros((0, 2))}, {"a": pred([[0, 1]], [0.5])})


@pytest.mark.parametrize(
    "gt, preds, message",
    [
        ({"a": [[1.0, 1.0]]}, {}, "expected end > start"),
        ({"a": [[0.0, np.nan]]}, {}, "expected finite values"),
        ({"a": [[0.0, 1.0, 2.0]]}, {}, r"shape \[N, 2\]"),
        ({"a": [[0.0, 1.0]]}, {"a": pred([[2, 1]], [0.5])}, "expected end >= start"),
        ({"a": [[0.0, 1.0]]}, {"a": pred([[0, 1]], [np.inf])}, "expected a finite number"),
        ({"a": [[0.0, 1.0]]}, {"a": pred([[0, 1]], [0.5, 0.4])}, "expected 1 scores"),
        ({"a": [[0.0, 1.0]]}, {"a": [[0, 1]]}, "expected a .segments, scores. pair"),
    ],
)
def test_malformed_arrays_are_rejected_with_the_field(gt, preds, message):
    with pytest.raises(ValueError, match=message):
        average_precision_detection(gt, preds)


def test_threshold_validation():
    with pytest.raises(ValueError, match="tiou_thresholds"):
        average_precision_detection({"a": [[0.0, 1.0]]}, {}, [])
    with pytest.raises(ValueError, match="tiou_thresholds"):
        average_precision_detection({"a": [[0.0, 1.0]]}, {}, [1.5])


def test_defaults_are_the_released_code_lists():
    assert THUMOS_MAP_TIOU == (0.3, 0.4, 0.5, 0.6, 0.7)
    assert ANET_MAP_TIOU == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def test_segment_iou_matrix_values():
    iou = segment_iou_matrix(np.array([[0.0, 10.0], [5.0, 15.0]]), np.array([[0.0, 10.0], [10.0, 20.0], [2.0, 4.0]]))
    np.testing.assert_allclose(iou, [[1.0, 0.0, 0.2], [5 / 15, 5 / 15, 0.0]])


def test_input_order_decides_score_ties_like_the_official_argsort():
    # Equal scores: the official ranking is argsort()[::-1] of the concatenation, i.e. the later
    # input comes first here. Swapping the videos' order changes AP, in both implementations.
    gt = {"a": np.array([[0.0, 10.0]])}
    forward = {"a": pred([[0, 10]], [0.5]), "x": pred([[0, 10]], [0.5])}
    backward = {"x": pred([[0, 10]], [0.5]), "a": pred([[0, 10]], [0.5])}
    for preds in (forward, backward):
        np.testing.assert_allclose(run("fast", gt, preds, [0.5]), oracle_detection_ap(gt, preds, [0.5]), atol=0)
    assert run("fast", gt, forward, [0.5])[0] != run("fast", gt, backward, [0.5])[0]


# ---------------------------------------------------------------- randomised agreement with the oracle

GRID_SEGMENT = st.tuples(st.integers(0, 24), st.integers(1, 8)).map(lambda sl: (sl[0] / 2, (sl[0] + sl[1]) / 2))
PRED_SEGMENT = st.tuples(st.integers(0, 24), st.integers(0, 8)).map(lambda sl: (sl[0] / 2, (sl[0] + sl[1]) / 2))
TIED_SCORES = st.sampled_from([0.1, 0.25, 0.5, 0.5, 0.75, 0.9])
FREE_SCORES = st.floats(0, 1, allow_nan=False)
THRESHOLDS = st.lists(
    st.one_of(st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.7, 0.95, 1.0, 1 / 3, 2 / 3]), st.floats(0, 1)),
    min_size=1,
    max_size=6,
)


@st.composite
def evaluation_inputs(draw):
    num_videos = draw(st.integers(1, 6))
    videos = [f"v{i}" for i in range(num_videos)]
    gt = {}
    for video in videos:
        if draw(st.booleans()) or video == "v0":
            segs = draw(st.lists(GRID_SEGMENT, min_size=0, max_size=6))
            gt[video] = np.array(segs, dtype=float).reshape(-1, 2)
    if sum(len(s) for s in gt.values()) == 0:
        gt["v0"] = np.array([[1.0, 3.0]])
    pred_videos = videos + ["extra_no_gt"]
    order = draw(st.permutations(pred_videos))
    score_strategy = draw(st.sampled_from([TIED_SCORES, FREE_SCORES]))
    preds = {}
    for video in order:
        if draw(st.integers(0, 4)) == 0:
            continue  # GT without predictions
        segs = draw(st.lists(PRED_SEGMENT, min_size=0, max_size=10))
        scores = draw(st.lists(score_strategy, min_size=len(segs), max_size=len(segs)))
        preds[video] = pred(segs, scores)
    return gt, preds, draw(THRESHOLDS)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(evaluation_inputs())
def test_fast_path_agrees_with_the_loop_oracle(inputs):
    gt, preds, thresholds = inputs
    fast = average_precision_detection(gt, preds, thresholds).ap
    slow = oracle_detection_ap(gt, preds, thresholds)
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_fast_path_agrees_on_larger_random_sets(seed):
    rng = np.random.default_rng(seed)
    gt, preds = {}, {}
    for v in range(8):
        g = int(rng.integers(0, 12))
        starts = rng.integers(0, 60, g) / 2
        gt[f"v{v}"] = np.stack([starts, starts + rng.integers(1, 20, g) / 2], axis=1)
        p = int(rng.integers(0, 60))
        starts = rng.integers(0, 60, p) / 2
        preds[f"v{v}"] = pred(np.stack([starts, starts + rng.integers(0, 20, p) / 2], axis=1), rng.integers(0, 20, p) / 20)
    if sum(len(s) for s in gt.values()) == 0:
        gt["v0"] = np.array([[0.0, 5.0]])
    thresholds = [0.0, 0.3, 0.5, 0.7, 0.95, 1.0]
    fast = average_precision_detection(gt, preds, thresholds).ap
    np.testing.assert_allclose(fast, oracle_detection_ap(gt, preds, thresholds), rtol=0, atol=1e-9)
