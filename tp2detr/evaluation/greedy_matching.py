"""Greedy score-ordered matching of one video's predictions to its ground truth (ActivityNet rule).

The official toolkit visits predictions in descending score order. For each one it walks the
video's ground truth (GT) in descending tIoU order (``tiou.argsort()[::-1]``) and, per threshold:
stops with a false positive at the first GT whose tIoU is below the threshold, skips GT already
locked at this threshold, and otherwise takes (locks) that GT as a true positive.

Because the walk is in descending tIoU order, the GT with ``tIoU >= thr`` form a prefix of it, so
the rule is: *a prediction takes the first free GT, in its own tIoU ranking, among those with
``tIoU >= thr``; it is a false positive when none is free.* Only predictions that take a GT change
the state, and there are at most ``G`` of them per threshold, so this module jumps from one
taking prediction to the next with vector operations instead of looping over every prediction.
When no prediction has more than one valid GT (GT that do not overlap each other at the
threshold, the common case) the result is fully vectorised: each GT goes to its first prediction.

With ``gt_ignore`` (the per-length breakdown, COCO area-range style), non-ignored GT are preferred:
a prediction takes the first free valid non-ignored GT in its ranking if there is one, else the
first free valid ignored GT. Without ignored GT this is exactly the official rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class VideoMatch:
    """Matching result of one video's predictions (rows in global score order).

    Attributes:
        matched_gt: int64 ``[T, P]``; index of the GT taken at each threshold, -1 for none.
        matched_ignored: bool ``[T, P]``; the GT taken is an ignored GT (always False without
            ``gt_ignore``).
    """

    matched_gt: np.ndarray
    matched_ignored: np.ndarray


def rank_ground_truth(tiou: np.ndarray) -> np.ndarray:
    """Each prediction's GT visiting order, ``tiou.argsort()[::-1]`` row by row.

    Args:
        tiou: float64 ``[P, G]``.

    Returns:
        int64 ``[P, G]``; row ``p`` equals ``tiou[p].argsort()[::-1]`` (numpy's default sort, so
        ties between equal tIoU are broken exactly as in the official code).
    """
    return np.argsort(tiou, axis=1)[:, ::-1]


def match_video(
    tiou: np.ndarray,
    thresholds: np.ndarray,
    gt_ignore: np.ndarray | None = None,
) -> VideoMatch:
    """Match one video's predictions, given in descending global score order, at every threshold.

    Args:
        tiou: float64 ``[P, G]`` tIoU of each prediction (rows in global score order) with each GT.
        thresholds: float64 ``[T]``; a GT is valid for a prediction when ``tIoU >= thr``.
        gt_ignore: optional bool ``[G]``; GT flagged here are taken only when no valid
            non-ignored GT is free.

    Returns:
        :class:`VideoMatch` with ``[T, P]`` arrays.
    """
    num_pred, num_gt = tiou.shape
    num_thr = len(thresholds)
    matched_gt = np.full((num_thr, num_pred), -1, dtype=np.int64)
    matched_ignored = np.zeros((num_thr, num_pred), dtype=bool)
    if num_pred == 0 or num_gt == 0:
        return VideoMatch(matched_gt, matched_ignored)
    ranking = rank_ground_truth(tiou)
    ranked_tiou = np.take_along_axis(tiou, ranking, axis=1)
    ignore = np.zeros(num_gt, dtype=bool) if gt_ignore is None else np.asarray(gt_ignore, dtype=bool)
    ranked_ignore = ignore[ranking]
    for t, threshold in enumerate(thresholds):
        valid = tiou >= threshold  # [P, G], in GT order
        free_valid_count = valid.sum(axis=1)  # valid GT still free, per prediction
        if free_valid_count.max() <= 1:
            # Every prediction has at most one valid GT: the first prediction on each GT takes it.
            rows = np.flatnonzero(free_valid_count)
            gts = np.argmax(valid[rows], axis=1)
            _, first = np.unique(gts, return_index=True)
            matched_gt[t, rows[first]] = gts[first]
            matched_ignored[t, rows[first]] = ignore[gts[first]]
            continue
        ranked_valid = ranked_tiou >= threshold  # [P, G], in each row's visiting order
        locked = np.zeros(num_gt, dtype=bool)
        start = 0
        while start < num_pred:
            offset = int((free_valid_count[start:] > 0).argmax())
            p = start + offset
            if free_valid_count[p] <= 0:
                break
            candidates = ranked_valid[p] & ~locked[ranking[p]]
            if gt_ignore is not None:
                preferred = candidates & ~ranked_ignore[p]
                if preferred.any():
                    candidates = preferred
            g = int(ranking[p, int(candidates.argmax())])
            matched_gt[t, p] = g
            matched_ignored[t, p] = ignore[g]
            locked[g] = True
            free_valid_count -= valid[:, g]
            start = p + 1
    return VideoMatch(matched_gt, matched_ignored)
