"""Class-agnostic detection AP per tIoU threshold, with the official ActivityNet semantics.

Agrees with ``activitynet/ActivityNet Evaluation/eval_detection.py::compute_average_precision_detection``
(to 1e-9, in practice bit for bit) on any valid input, when the predictions are given in the same
order as the official code's data frame rows:

1. all predictions are concatenated video by video (the mapping's order), within a video in list
   order, and ranked by ``scores.argsort()[::-1]`` (numpy's default sort; ties follow it);
2. a prediction on a video without ground truth (GT) is a false positive (FP) at every threshold;
   otherwise it is matched with :func:`tp2detr.evaluation.greedy_matching.match_video` (greedy, each GT
   matched at most once per threshold, ``tIoU >= thr``);
3. ``npos`` = number of GT of all videos; cumulative TP/FP give recall and precision;
4. AP = all-point interpolated precision (VOC 2011), :func:`interpolated_average_precision`.

Inputs: ``ground_truth = {video_id: [G, 2]}`` and ``predictions = {video_id: (segments [P, 2],
scores [P])}``, segments in seconds (any consistent unit works).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from tp2detr.evaluation.greedy_matching import match_video
from tp2detr.evaluation.tiou import as_score_array, as_segment_array, segment_iou_matrix

#: THUMOS14 mAP thresholds (paper Table 1; the released code's literal list).
THUMOS_MAP_TIOU: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7)
#: ActivityNet mAP thresholds 0.50:0.05:0.95 as the released code writes them (``n / 100``).
ANET_MAP_TIOU: tuple[float, ...] = tuple(n / 100 for n in range(50, 100, 5))

GroundTruth = Mapping[str, np.ndarray]
Predictions = Mapping[str, tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class DetectionResult:
    """AP of one evaluation.

    Attributes:
        tiou_thresholds: float64 ``[T]``.
        ap: float64 ``[T]`` average precision per threshold, fractions in [0, 1].
        num_ground_truth: ``npos``, GT instances of all videos.
        num_predictions: predictions evaluated.
    """

    tiou_thresholds: np.ndarray
    ap: np.ndarray
    num_ground_truth: int
    num_predictions: int

    @property
    def mean_ap(self) -> float:
        """Mean of ``ap`` over the thresholds (the paper's "Avg")."""
        return float(self.ap.mean())

    def to_dict(self) -> dict:
        """JSON-ready ``{"ap": {"0.3": ...}, "mAP": ..., "num_gt": ..., "num_predictions": ...}``."""
        return {
            "ap": {threshold_key(t): float(a) for t, a in zip(self.tiou_thresholds, self.ap)},
            "mAP": self.mean_ap,
            "num_gt": self.num_ground_truth,
            "num_predictions": self.num_predictions,
        }


@dataclass(frozen=True)
class FlatPredictions:
    """All predictions in global descending score order.

    Attributes:
        video_names: the videos in input order.
        video_codes: int64 ``[N]``; index into ``video_names`` of each prediction's video.
        segments: float64 ``[N, 2]`` seconds.
        scores: float64 ``[N]``.
        input_index: int64 ``[N]``; position of each prediction in the concatenated input order.
    """

    video_names: tuple[str, ...]
    video_codes: np.ndarray
    segments: np.ndarray
    scores: np.ndarray
    input_index: np.ndarray


def threshold_key(threshold: float) -> str:
    """JSON key of a threshold, e.g. ``0.30000000000000004 -> "0.3"``."""
    return repr(round(float(threshold), 6))


def as_thresholds(tiou_thresholds: Sequence[float] | np.ndarray) -> np.ndarray:
    """Validate thresholds: a non-empty 1-D float64 array of finite values in [0, 1]."""
    thresholds = np.asarray(tiou_thresholds, dtype=np.float64).reshape(-1)
    if thresholds.size == 0:
        raise ValueError("tiou_thresholds: expected at least one threshold, found none")
    if not np.isfinite(thresholds).all() or (thresholds < 0).any() or (thresholds > 1).any():
        raise ValueError(f"tiou_thresholds: expected values in [0, 1], found {thresholds.tolist()}")
    return thresholds


def validate_ground_truth(ground_truth: GroundTruth) -> dict[str, np.ndarray]:
    """Convert every video's GT to float64 ``[G, 2]`` with ``end > start`` (ValueError otherwise)."""
    return {
        str(video): as_segment_array(segments, f"ground truth of video {video!r}")
        for video, segments in ground_truth.items()
    }


def flatten_predictions(predictions: Predictions) -> FlatPredictions:
    """Concatenate predictions in input order and rank them by ``scores.argsort()[::-1]``.

    Raises:
        ValueError: an entry is not a (segments [P, 2], scores [P]) pair of finite values with
            ``end >= start``.
    """
    names: list[str] = []
    counts: list[int] = []
    segment_chunks: list[np.ndarray] = []
    score_chunks: list[np.ndarray] = []
    for video, entry in predictions.items():
        field = f"predictions of video {video!r}"
        if not isinstance(entry, (tuple, list)) or len(entry) != 2:
            raise ValueError(f"{field}: expected a (segments, scores) pair, found {type(entry).__name__}")
        segments = as_segment_array(entry[0], field, allow_zero_length=True)
        scores = as_score_array(entry[1], len(segments), field)
        names.append(str(video))
        counts.append(len(segments))
        segment_chunks.append(segments)
        score_chunks.append(scores)
    if len(set(names)) != len(names):
        raise ValueError(f"predictions: video ids must be distinct as strings, found duplicates in {names[:10]}")
    if not score_chunks or sum(counts) == 0:
        empty_index = np.zeros(0, dtype=np.int64)
        return FlatPredictions(tuple(names), empty_index, np.zeros((0, 2)), np.zeros(0), empty_index)
    scores = np.concatenate(score_chunks)
    order = scores.argsort()[::-1]
    codes = np.repeat(np.arange(len(names), dtype=np.int64), counts)
    return FlatPredictions(
        video_names=tuple(names),
        video_codes=codes[order],
        segments=np.concatenate(segment_chunks)[order],
        scores=scores[order],
        input_index=order.astype(np.int64),
    )


def group_by_video(flat: FlatPredictions) -> dict[str, np.ndarray]:
    """Ranked positions of each video's predictions, in ranked order: ``{video_id: int64 [n_v]}``.

    Videos without predictions are absent.
    """
    if len(flat.video_codes) == 0:
        return {}
    order = np.argsort(flat.video_codes, kind="stable")
    counts = np.bincount(flat.video_codes, minlength=len(flat.video_names))
    groups = np.split(order, np.cumsum(counts)[:-1])
    return {name: rows for name, rows, count in zip(flat.video_names, groups, counts) if count > 0}


def interpolated_average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
    """All-point interpolated AP (VOC 2011, official ``utils.interpolated_prec_rec``).

    Args:
        precision: float64 ``[N]`` precision after each ranked prediction.
        recall: float64 ``[N]`` recall after each ranked prediction (non-decreasing).

    Returns:
        ``sum((r[i] - r[i-1]) * max(p[i:]))`` over the points where recall changes, with the
        curve padded by (recall 0, precision 0) in front and (recall 1, precision 0) at the end.
    """
    padded_precision = np.concatenate([[0.0], precision, [0.0]])
    padded_recall = np.concatenate([[0.0], recall, [1.0]])
    envelope = np.maximum.accumulate(padded_precision[::-1])[::-1]
    changes = np.flatnonzero(padded_recall[1:] != padded_recall[:-1]) + 1
    return float(np.sum((padded_recall[changes] - padded_recall[changes - 1]) * envelope[changes]))


def average_precision_from_outcomes(
    true_positive: np.ndarray, false_positive: np.ndarray, num_positives: int
) -> np.ndarray:
    """AP per threshold from per-prediction outcomes in ranked order.

    Args:
        true_positive: ``[T, N]`` 0/1 (ranked order).
        false_positive: ``[T, N]`` 0/1; every column must have exactly one of TP/FP set.
        num_positives: ``npos`` (> 0).

    Returns:
        float64 ``[T]``.
    """
    tp_cumsum = np.cumsum(true_positive.astype(np.float64), axis=1)
    fp_cumsum = np.cumsum(false_positive.astype(np.float64), axis=1)
    recall = tp_cumsum / float(num_positives)
    precision = tp_cumsum / (tp_cumsum + fp_cumsum)
    return np.array(
        [interpolated_average_precision(precision[t], recall[t]) for t in range(true_positive.shape[0])],
        dtype=np.float64,
    )


def match_all(
    ground_truth: Mapping[str, np.ndarray],
    flat: FlatPredictions,
    thresholds: np.ndarray,
    gt_ignore: Mapping[str, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Match every ranked prediction; videos are independent, so each is matched on its own.

    Args:
        ground_truth: validated ``{video_id: [G, 2]}``.
        flat: ranked predictions.
        thresholds: ``[T]``.
        gt_ignore: optional ``{video_id: bool [G]}`` ignore flags (see :mod:`matching`).

    Returns:
        ``(matched, matched_ignored)``: bool ``[T, N]`` arrays in ranked order; ``matched`` is True
        when the prediction took a GT (ignored or not).
    """
    num_thr, num_pred = len(thresholds), len(flat.scores)
    matched = np.zeros((num_thr, num_pred), dtype=bool)
    matched_ignored = np.zeros((num_thr, num_pred), dtype=bool)
    for video, rows in group_by_video(flat).items():
        gt = ground_truth.get(video)
        if gt is None or len(gt) == 0:
            continue
        tiou = segment_iou_matrix(flat.segments[rows], gt)
        ignore = None if gt_ignore is None else gt_ignore[video]
        result = match_video(tiou, thresholds, ignore)
        matched[:, rows] = result.matched_gt >= 0
        matched_ignored[:, rows] = result.matched_ignored
    return matched, matched_ignored


def average_precision_detection(
    ground_truth: GroundTruth,
    predictions: Predictions,
    tiou_thresholds: Sequence[float] | np.ndarray = THUMOS_MAP_TIOU,
) -> DetectionResult:
    """Class-agnostic AP per tIoU threshold with the official ActivityNet semantics.

    Args:
        ground_truth: ``{video_id: [G, 2]}`` seconds, ``end > start``.
        predictions: ``{video_id: (segments [P, 2], scores [P])}`` seconds; input order matters
            only for ties in score (see module docstring).
        tiou_thresholds: ``[T]`` in [0, 1].

    Returns:
        :class:`DetectionResult`; AP is 0 at every threshold when there are no predictions.

    Raises:
        ValueError: no GT instance at all (an empty evaluation set, e.g. after filtering), or
            malformed arrays.
    """
    thresholds = as_thresholds(tiou_thresholds)
    gt = validate_ground_truth(ground_truth)
    num_positives = sum(len(segments) for segments in gt.values())
    if num_positives == 0:
        raise ValueError(
            f"ground_truth: found 0 instances in {len(gt)} videos, expected at least one "
            "(the evaluation set is empty; check the subset / class filters)"
        )
    flat = flatten_predictions(predictions)
    if len(flat.scores) == 0:
        return DetectionResult(thresholds, np.zeros(len(thresholds)), num_positives, 0)
    matched, _ = match_all(gt, flat, thresholds)
    ap = average_precision_from_outcomes(matched, ~matched, num_positives)
    return DetectionResult(thresholds, ap, num_positives, len(flat.scores))
