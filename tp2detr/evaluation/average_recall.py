"""Average recall vs. average number of proposals per video (AR@AN), official ActivityNet semantics.

Follows ``activitynet/ActivityNet Evaluation/eval_proposal.py::average_recall_vs_avg_nr_proposals``:

* the videos are those with at least one ground-truth (GT) instance, N of them;
* ``ratio = max_avg_nr_proposals · N / total_proposals``, where ``total_proposals`` counts *every*
  proposal passed in (also those of videos without GT, as the official data frame does);
* per video the proposals are ranked by ``scores.argsort()[::-1]`` and the first
  ``min(int(n_v · ratio), n_v)`` are kept; their sum is ``total_kept``;
* ``pcn = arange(1, 101) / 100 · (max_avg_nr_proposals · N / total_kept)``; at point j a video
  uses its first ``min(int(n_kept · pcn[j]), n_kept)`` proposals, and a GT is recalled when
  **any** of them has ``tIoU >= thr`` (no one-to-one matching);
* ``recall[t, j]`` = recalled GT / all GT; ``avg_recall = recall.mean(axis=0)``;
  ``proposals_per_video = pcn · total_kept / N``; AUC = trapezoid(avg_recall,
  proposals_per_video) / proposals_per_video[-1].

A video with GT but no proposals counts as one proposal of tIoU 0 (as in the official code), so it
adds zero recall at any positive threshold.

AR@k (GAP / TP²-DETR convention, max_avg_nr_proposals = 100) is ``avg_recall[k - 1]``. That is
"k proposals per video" only when every video has at least 100 proposals (see docs/evaluation.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from tp2detr.evaluation.detection import as_thresholds, validate_ground_truth
from tp2detr.evaluation.tiou import as_score_array, as_segment_array, segment_iou_matrix

#: THUMOS14 AR thresholds of the released code (BSN convention 0.5:0.05:1.0, 11 values).
THUMOS_AR_TIOU: tuple[float, ...] = tuple(np.linspace(0.5, 1.0, 11).tolist())
#: ActivityNet AR thresholds (official toolkit default ``np.linspace(0.5, 0.95, 10)``).
ANET_AR_TIOU: tuple[float, ...] = tuple(np.linspace(0.5, 0.95, 10).tolist())
#: The AR@k values the released code logs.
AR_AT_K: tuple[int, ...] = (1, 5, 10, 25, 40, 50, 100)
#: Number of points of the AR-AN curve (percentages 1..100 of the budget).
NUM_CURVE_POINTS = 100


@dataclass(frozen=True)
class RecallCurve:
    """AR-AN curve.

    Attributes:
        tiou_thresholds: float64 ``[T]``.
        recall: float64 ``[T, 100]``; recall at each threshold and curve point.
        avg_recall: float64 ``[100]``; ``recall.mean(axis=0)``.
        proposals_per_video: float64 ``[100]``; average number of proposals per video at each point.
        auc: area under ``avg_recall`` vs ``proposals_per_video``, divided by its last value
            (a fraction in [0, 1]).
    """

    tiou_thresholds: np.ndarray
    recall: np.ndarray
    avg_recall: np.ndarray
    proposals_per_video: np.ndarray
    auc: float

    def summary(self, ks: Sequence[int] = AR_AT_K) -> dict[str, float]:
        """``{"AR@k": avg_recall[k - 1], ..., "AUC": auc}`` (GAP's column convention).

        Raises:
            ValueError: a ``k`` outside 1..100.
        """
        out: dict[str, float] = {}
        for k in ks:
            if not 1 <= int(k) <= NUM_CURVE_POINTS:
                raise ValueError(f"ks: AR@k needs 1 <= k <= {NUM_CURVE_POINTS}, found {k}")
            out[f"AR@{int(k)}"] = float(self.avg_recall[int(k) - 1])
        out["AUC"] = float(self.auc)
        return out


def trapezoid_area(y: np.ndarray, x: np.ndarray) -> float:
    """Trapezoidal integral of ``y`` over ``x`` with numpy's ``trapz`` arithmetic."""
    dx = np.diff(x)
    return float((dx * (y[1:] + y[:-1]) / 2.0).sum())


def first_hit_index(tiou: np.ndarray, threshold: float) -> np.ndarray:
    """For each GT, the rank of its first proposal with ``tIoU >= threshold``.

    Args:
        tiou: float64 ``[G, K]``, proposals in ranked order along the columns.

    Returns:
        int64 ``[G]``; ``K`` where no proposal reaches the threshold.
    """
    if tiou.shape[1] == 0:  # the budget kept no proposal of this video: nothing is hit
        return np.full(tiou.shape[0], tiou.shape[1], dtype=np.int64)
    hits = tiou >= threshold
    first = np.argmax(hits, axis=1)
    return np.where(hits.any(axis=1), first, tiou.shape[1]).astype(np.int64)


def average_recall_vs_proposals(
    ground_truth: Mapping[str, np.ndarray],
    proposals: Mapping[str, tuple[np.ndarray, np.ndarray]],
    tiou_thresholds: Sequence[float] | np.ndarray = THUMOS_AR_TIOU,
    max_avg_nr_proposals: float | None = 100,
) -> RecallCurve:
    """AR-AN curve with the official semantics (module docstring).

    Args:
        ground_truth: ``{video_id: [G, 2]}`` seconds; videos with no GT are not counted.
        proposals: ``{video_id: (segments [P, 2], scores [P])}`` seconds.
        tiou_thresholds: ``[T]`` in [0, 1].
        max_avg_nr_proposals: proposal budget per video on average; ``None`` means
            ``total_proposals / N`` (official default).

    Raises:
        ValueError: no GT at all, no proposal kept (nothing to evaluate), or malformed input.
    """
    thresholds = as_thresholds(tiou_thresholds)
    gt = {video: segs for video, segs in validate_ground_truth(ground_truth).items() if len(segs) > 0}
    if not gt:
        raise ValueError("ground_truth: found 0 instances, expected at least one (the evaluation set is empty)")
    ranked: dict[str, np.ndarray] = {}
    total_proposals = 0
    for video, entry in proposals.items():
        field = f"proposals of video {video!r}"
        if not isinstance(entry, (tuple, list)) or len(entry) != 2:
            raise ValueError(f"{field}: expected a (segments, scores) pair, found {type(entry).__name__}")
        segments = as_segment_array(entry[0], field, allow_zero_length=True)
        scores = as_score_array(entry[1], len(segments), field)
        total_proposals += len(segments)
        ranked[str(video)] = segments[scores.argsort()[::-1]]
    if total_proposals == 0:
        raise ValueError("proposals: found 0 proposals, expected at least one to compute AR@AN")
    num_videos = len(gt)
    if not max_avg_nr_proposals:
        max_avg_nr_proposals = float(total_proposals) / num_videos
    if max_avg_nr_proposals <= 0:
        raise ValueError(f"max_avg_nr_proposals: expected a positive number, found {max_avg_nr_proposals}")
    ratio = max_avg_nr_proposals * float(num_videos) / total_proposals

    per_video_tiou: list[np.ndarray] = []  # [G, K] per video, K = kept proposals
    total_kept = 0
    for video, gt_segments in gt.items():
        segments = ranked.get(video)
        if segments is None or len(segments) == 0:
            per_video_tiou.append(np.zeros((len(gt_segments), 1)))
            continue
        kept = min(int(segments.shape[0] * ratio), segments.shape[0])
        total_kept += kept
        per_video_tiou.append(segment_iou_matrix(segments[:kept], gt_segments).T)
    if total_kept == 0:
        raise ValueError(
            f"proposals: the budget keeps 0 of {total_proposals} proposals "
            f"(max_avg_nr_proposals={max_avg_nr_proposals}), expected at least one"
        )

    pcn = np.arange(1, NUM_CURVE_POINTS + 1) / 100.0 * (max_avg_nr_proposals * float(num_videos) / total_kept)
    num_positives = float(sum(t.shape[0] for t in per_video_tiou))
    recall = np.empty((len(thresholds), NUM_CURVE_POINTS))
    budgets = [np.minimum((t.shape[1] * pcn).astype(np.int64), t.shape[1]) for t in per_video_tiou]
    for r, threshold in enumerate(thresholds):
        matches = np.zeros(NUM_CURVE_POINTS)
        for tiou, budget in zip(per_video_tiou, budgets):
            first = np.sort(first_hit_index(tiou, threshold))
            matches += np.searchsorted(first, budget, side="left")
        recall[r] = matches / num_positives
    avg_recall = recall.mean(axis=0)
    proposals_per_video = pcn * (float(total_kept) / num_videos)
    auc = trapezoid_area(avg_recall, proposals_per_video) / proposals_per_video[-1]
    return RecallCurve(thresholds, recall, avg_recall, proposals_per_video, float(auc))
