"""AR@AN: hand-computed cases, the column convention, and agreement with the loop oracle."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tp2detr.evaluation.average_recall import (
    ANET_AR_TIOU,
    THUMOS_AR_TIOU,
    average_recall_vs_proposals,
)


# ---------------------------------------------------------------- the loop oracle
# A deliberately simple, independent re-statement of the official
# ``Evaluation/eval_proposal.py::average_recall_vs_avg_nr_proposals`` on dict inputs.


def oracle_segment_iou(target, candidates):
    """tIoU of one segment ``target`` [2] with every row of ``candidates`` [N, 2]."""
    tt1 = np.maximum(target[0], candidates[:, 0])
    tt2 = np.minimum(target[1], candidates[:, 1])
    inter = (tt2 - tt1).clip(0)
    union = (candidates[:, 1] - candidates[:, 0]) + (target[1] - target[0]) - inter
    return inter.astype(float) / union


def oracle_average_recall(ground_truth, proposals, thresholds, max_avg_nr_proposals=None):
    """Official average_recall_vs_avg_nr_proposals on dict inputs.

    Returns (recall [T, 100], avg_recall [100], proposals_per_video [100]).
    """
    videos = [v for v, segs in ground_truth.items() if len(np.asarray(segs).reshape(-1, 2)) > 0]
    total_props = sum(len(np.asarray(scores).reshape(-1)) for _, scores in proposals.values())
    n_videos = len(videos)
    if not max_avg_nr_proposals:
        max_avg_nr_proposals = float(total_props) / n_videos
    ratio = max_avg_nr_proposals * float(n_videos) / total_props
    score_lst = []
    total_nr = 0
    for video in videos:
        gt = np.asarray(ground_truth[video], dtype=float).reshape(-1, 2)
        if video not in proposals or len(np.asarray(proposals[video][1]).reshape(-1)) == 0:
            score_lst.append(np.zeros((gt.shape[0], 1)))
            continue
        segs = np.asarray(proposals[video][0], dtype=float).reshape(-1, 2)
        scores = np.asarray(proposals[video][1], dtype=float).reshape(-1)
        segs = segs[scores.argsort()[::-1], :]
        nr = min(int(segs.shape[0] * ratio), segs.shape[0])
        total_nr += nr
        segs = segs[:nr, :]
        tiou = np.empty((gt.shape[0], nr))
        for i in range(nr):
            tiou[:, i] = oracle_segment_iou(segs[i, :], gt)
        score_lst.append(tiou)
    pcn = np.arange(1, 101) / 100.0 * (max_avg_nr_proposals * float(n_videos) / total_nr)
    matches = np.empty((n_videos, 100))
    positives = np.empty(n_videos)
    recall = np.empty((len(thresholds), 100))
    for r, thr in enumerate(thresholds):
        for i, score in enumerate(score_lst):
            positives[i] = score.shape[0]
            hits = score >= thr
            counts = np.minimum((score.shape[1] * pcn).astype(np.int64), score.shape[1])
            for j, k in enumerate(counts):
                matches[i, j] = np.count_nonzero(hits[:, :k].sum(axis=1))
        recall[r, :] = matches.sum(axis=0) / positives.sum()
    avg = recall.mean(axis=0)
    ppv = pcn * (float(total_nr) / n_videos)
    return recall, avg, ppv


def props(segments, scores):
    return (np.array(segments, dtype=float).reshape(-1, 2), np.array(scores, dtype=float))


def test_named_threshold_defaults():
    np.testing.assert_allclose(THUMOS_AR_TIOU, np.linspace(0.5, 1.0, 11))
    assert len(THUMOS_AR_TIOU) == 11 and THUMOS_AR_TIOU[-1] == 1.0
    np.testing.assert_allclose(ANET_AR_TIOU, np.linspace(0.5, 0.95, 10))


def test_hand_computed_single_video():
    # 1 video, 2 GT; proposals by score: hit GT0 exactly, miss, hit GT1 exactly.
    gt = {"a": np.array([[0.0, 10.0], [20.0, 30.0]])}
    proposals = {"a": props([[0, 10], [50, 60], [20, 30]], [0.9, 0.8, 0.7])}
    curve = average_recall_vs_proposals(gt, proposals, [0.5], max_avg_nr_proposals=3)
    # ratio = 3*1/3 = 1 -> all 3 kept; pcn[j] = (j+1)/100 * 3/3; budget = int(3 * (j+1)/100).
    budget = np.minimum((3 * (np.arange(1, 101) / 100.0)).astype(int), 3)
    expected = np.where(budget >= 3, 1.0, np.where(budget >= 1, 0.5, 0.0))
    np.testing.assert_array_equal(curve.recall[0], expected)
    np.testing.assert_allclose(curve.proposals_per_video, np.arange(1, 101) / 100.0 * 3)
    assert curve.summary(ks=[100])["AR@100"] == 1.0


def test_video_without_proposals_adds_zero_recall():
    gt = {"a": np.array([[0.0, 10.0]]), "b": np.array([[0.0, 10.0]])}
    curve = average_recall_vs_proposals(gt, {"a": props([[0, 10]], [0.9])}, [0.5], max_avg_nr_proposals=1)
    assert curve.recall.max() == 0.5


def test_any_proposal_recalls_a_gt_without_one_to_one_matching():
    gt = {"a": np.array([[0.0, 10.0], [0.0, 9.5]])}
    curve = average_recall_vs_proposals(gt, {"a": props([[0, 10]], [0.9])}, [0.9], max_avg_nr_proposals=1)
    assert curve.recall[0, -1] == 1.0  # one proposal recalls both GT


def test_column_k_minus_one_is_k_proposals_when_every_video_has_100():
    rng = np.random.default_rng(3)
    gt, proposals = {}, {}
    for v in range(4):
        starts = rng.uniform(0, 100, 5)
        gt[f"v{v}"] = np.stack([starts, starts + rng.uniform(1, 10, 5)], 1)
        starts = rng.uniform(0, 100, 100)
        proposals[f"v{v}"] = props(np.stack([starts, starts + rng.uniform(1, 10, 100)], 1), rng.uniform(0, 1, 100))
    curve = average_recall_vs_proposals(gt, proposals, [0.5, 0.7], max_avg_nr_proposals=100)
    for k in (1, 5, 10, 25, 40, 50, 100):
        recalled = 0
        for video, gt_segments in gt.items():
            segs, scores = proposals[video]
            top = segs[scores.argsort()[::-1][:k]]
            for thr in (0.5, 0.7):
                for g in gt_segments:
                    inter = np.clip(np.minimum(top[:, 1], g[1]) - np.maximum(top[:, 0], g[0]), 0, None)
                    iou = inter / ((top[:, 1] - top[:, 0]) + (g[1] - g[0]) - inter)
                    recalled += bool((iou >= thr).any())
        assert curve.summary()[f"AR@{k}"] == pytest.approx(recalled / (2 * 20))


def test_summary_keys_and_auc_bounds():
    gt = {"a": np.array([[0.0, 10.0]])}
    curve = average_recall_vs_proposals(gt, {"a": props([[0, 10]], [0.9])})
    summary = curve.summary()
    assert list(summary) == ["AR@1", "AR@5", "AR@10", "AR@25", "AR@40", "AR@50", "AR@100", "AUC"]
    assert 0.0 <= summary["AUC"] <= 1.0
    with pytest.raises(ValueError, match="1 <= k <= 100"):
        curve.summary(ks=[101])


def test_empty_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="0 instances"):
        average_recall_vs_proposals({"a": np.zeros((0, 2))}, {"a": props([[0, 1]], [1.0])})
    with pytest.raises(ValueError, match="0 proposals"):
        average_recall_vs_proposals({"a": np.array([[0.0, 1.0]])}, {})


GRID_SEGMENT = st.tuples(st.integers(0, 20), st.integers(1, 8)).map(lambda sl: (sl[0] / 2, (sl[0] + sl[1]) / 2))


@st.composite
def recall_inputs(draw):
    videos = [f"v{i}" for i in range(draw(st.integers(1, 5)))]
    gt = {v: np.array(draw(st.lists(GRID_SEGMENT, max_size=5)), dtype=float).reshape(-1, 2) for v in videos}
    if sum(len(s) for s in gt.values()) == 0:
        gt["v0"] = np.array([[0.0, 2.0]])
    proposals = {}
    for video in videos + ["extra_no_gt"]:
        if draw(st.integers(0, 3)) == 0:
            continue
        segs = draw(st.lists(GRID_SEGMENT, max_size=30))
        scores = draw(st.lists(st.sampled_from([0.1, 0.5, 0.5, 0.9]), min_size=len(segs), max_size=len(segs)))
        proposals[video] = props(segs, scores)
    if sum(len(p[1]) for p in proposals.values()) == 0:
        proposals["v0"] = props([[0, 1]], [0.5])
    max_avg = draw(st.sampled_from([None, 100, 1, 2.5, 7]))
    thresholds = draw(st.sampled_from([THUMOS_AR_TIOU, ANET_AR_TIOU, (0.0, 0.3), (1.0,)]))
    return gt, proposals, max_avg, thresholds


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recall_inputs())
def test_agrees_with_the_loop_oracle(inputs):
    gt, proposals, max_avg, thresholds = inputs
    try:
        curve = average_recall_vs_proposals(gt, proposals, thresholds, max_avg)
    except ValueError as err:
        assert "keeps 0" in str(err)  # the official code divides by zero here
        return
    recall, avg_recall, per_video = oracle_average_recall(gt, proposals, np.array(thresholds), max_avg)
    np.testing.assert_allclose(curve.recall, recall, rtol=0, atol=1e-12)
    np.testing.assert_allclose(curve.avg_recall, avg_recall, rtol=0, atol=1e-12)
    np.testing.assert_allclose(curve.proposals_per_video, per_video, rtol=0, atol=1e-12)
    auc = float((np.diff(per_video) * (avg_recall[1:] + avg_recall[:-1]) / 2.0).sum()) / per_video[-1]
    assert curve.auc == pytest.approx(auc, abs=1e-12)
