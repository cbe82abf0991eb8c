"""Proposals of one video against its ground truth on a time axis in seconds (paper Figs. 4 and 6).

The paper shows, per video with ``k`` ground-truth (GT) instances, the top-``k`` class-agnostic
proposals selected in two ways:

1. **by actionness score** (the GAP way): the ``k`` highest-scoring proposals
   (:func:`top_k_by_score`);
2. **by bipartite matching cost** (the way training matches queries): each GT instance's proposal
   under a Hungarian assignment with the training matcher's cost (:func:`top_k_by_matching_cost`).

"AvgIoU" in the panels is the mean, over the ``k`` shown proposals, of each proposal's best tIoU
with any GT instance of the video (:func:`mean_best_tiou`); the bars are coloured by the same
best tIoU. :func:`proposal_timeline_figure` draws one video's proposals without requiring
annotations (``predict.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from scipy.optimize import linear_sum_assignment

from tp2detr.evaluation.tiou import segment_iou_matrix
from tp2detr.losses.hungarian_matcher import HungarianMatcher
from tp2detr.viz.canvas import GROUND_TRUTH_COLOUR, new_figure

#: Scores are clipped to ``[SCORE_EPS, 1 − SCORE_EPS]`` before ``logit`` (a score of 0 or 1 has none).
SCORE_EPS = 1e-6
#: Colour map of the bars (tIoU or score in [0, 1]).
BAR_COLOURMAP = "viridis"


def _segments(values: Any, field: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        return np.zeros((0, 2), dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"{field}: expected (start, end) seconds of shape [N, 2], found shape {array.shape}")
    return array


def _scores(values: Any, count: int, field: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if len(array) != count:
        raise ValueError(f"{field}: expected {count} scores (one per segment), found {len(array)}")
    return array


def top_k_by_score(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``min(k, P)`` highest scores, best first (ties keep input order).

    Args:
        scores: ``[P]`` proposal scores.
        k: how many to keep (≥ 0).

    Returns:
        int64 ``[min(k, P)]``.
    """
    if k < 0:
        raise ValueError(f"k: expected a count >= 0, found {k}")
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    return np.argsort(-scores, kind="stable")[:k].astype(np.int64)


def normalised_centre_width(segments: np.ndarray, duration: float) -> np.ndarray:
    """``[N, 2]`` (start, end) seconds → ``[N, 2]`` (centre, width) as fractions of ``duration`` seconds."""
    if not duration > 0:
        raise ValueError(f"duration: expected a positive number of seconds, found {duration}")
    se = _segments(segments, "segments") / float(duration)
    return np.stack([(se[:, 0] + se[:, 1]) / 2.0, se[:, 1] - se[:, 0]], axis=1)


def score_logits(scores: np.ndarray) -> np.ndarray:
    """``logit(score)``, the actionness logit a ``sigmoid`` score came from (clipped to
    ``[SCORE_EPS, 1 − SCORE_EPS]`` first)."""
    p = np.clip(np.asarray(scores, dtype=np.float64), SCORE_EPS, 1.0 - SCORE_EPS)
    return np.log(p) - np.log1p(-p)


def top_k_by_matching_cost(
    segments: np.ndarray,
    scores: np.ndarray,
    ground_truth: np.ndarray,
    duration: float,
    matcher: HungarianMatcher,
) -> tuple[np.ndarray, np.ndarray]:
    """Each GT instance's proposal under the training matcher's Hungarian assignment.

    The video-level proposals and GT are normalised by the video's ``duration`` into
    (centre, width); the cost matrix is :meth:`HungarianMatcher.cost_matrices` (L1 on
    (centre, width), −IoU, focal cost of the actionness logit ``logit(score)``), solved with
    scipy's ``linear_sum_assignment``. With ``P < G`` proposals only ``P`` GT get one.

    Args:
        segments: ``[P, 2]`` proposals, (start, end) seconds.
        scores: ``[P]`` scores in (0, 1) (``sigmoid`` of the actionness logit).
        ground_truth: ``[G, 2]`` (start, end) seconds.
        duration: the video's duration in seconds.
        matcher: e.g. :func:`tp2detr.losses.hungarian_matcher.build_matcher` of the run's ``loss.matcher``.

    Returns:
        ``(proposal_index, gt_index)``: int64 ``[min(P, G)]`` each, ordered by GT index.
    """
    segments = _segments(segments, "segments")
    scores = _scores(scores, len(segments), "scores")
    ground_truth = _segments(ground_truth, "ground_truth")
    empty = np.zeros(0, dtype=np.int64)
    if len(segments) == 0 or len(ground_truth) == 0:
        return empty, empty.copy()
    boxes = torch.from_numpy(normalised_centre_width(segments, duration))[None]
    logits = torch.from_numpy(score_logits(scores))[None]
    targets = [torch.from_numpy(normalised_centre_width(ground_truth, duration))]
    cost = matcher.cost_matrices(boxes, logits, targets)[0].numpy()  # [P, G]
    rows, cols = linear_sum_assignment(cost)
    order = np.argsort(cols, kind="stable")
    return rows[order].astype(np.int64), cols[order].astype(np.int64)


def best_tiou(segments: np.ndarray, ground_truth: np.ndarray) -> np.ndarray:
    """``[N]`` each segment's highest tIoU with any GT segment (0 without GT)."""
    segments = _segments(segments, "segments")
    ground_truth = _segments(ground_truth, "ground_truth")
    if len(segments) == 0 or len(ground_truth) == 0:
        return np.zeros(len(segments), dtype=np.float64)
    return segment_iou_matrix(segments, ground_truth).max(axis=1)


def mean_best_tiou(segments: np.ndarray, ground_truth: np.ndarray) -> float:
    """"AvgIoU": the mean of :func:`best_tiou` over ``segments`` (NaN when there are none)."""
    values = best_tiou(segments, ground_truth)
    return float(values.mean()) if len(values) else float("nan")


def assign_lanes(segments: np.ndarray) -> np.ndarray:
    """Stack overlapping segments into lanes so that no two segments of a lane overlap.

    Greedy interval colouring: segments in start order each take the lowest lane whose last
    segment ends at or before their start.

    Returns:
        int64 ``[N]`` lane of each segment (0 = top lane).
    """
    segments = _segments(segments, "segments")
    lanes = np.zeros(len(segments), dtype=np.int64)
    lane_ends: list[float] = []
    for index in np.lexsort((segments[:, 1], segments[:, 0])):
        start, end = segments[index]
        for lane, lane_end in enumerate(lane_ends):
            if lane_end <= start:
                lanes[index] = lane
                lane_ends[lane] = end
                break
        else:
            lanes[index] = len(lane_ends)
            lane_ends.append(end)
    return lanes


def _lane_count(segments: np.ndarray) -> int:
    return int(assign_lanes(segments).max()) + 1 if len(segments) else 1


def draw_segment_lanes(
    axes: Axes, segments: np.ndarray, colours: Sequence[Any] | str, label: str, edge: str | None = None
) -> None:
    """Horizontal bars of ``segments`` (seconds) in lanes (:func:`assign_lanes`), lane 0 on top;
    ``label`` goes on the y axis. ``edge`` defaults to white for one plain colour, else black."""
    segments = _segments(segments, "segments")
    lanes = assign_lanes(segments)
    count = _lane_count(segments)
    if edge is None:  # a plain colour (ground truth): white edges keep touching instances apart
        edge = "white" if isinstance(colours, str) else "black"
    if isinstance(colours, str):
        colours = [colours] * len(segments)
    for (start, end), lane, colour in zip(segments, lanes, colours):
        axes.broken_barh(
            [(start, max(end - start, 1e-9))], (count - 1 - lane + 0.1, 0.8),
            facecolors=colour, edgecolors=edge, linewidth=0.4,
        )
    axes.set_ylim(0, count)
    axes.set_yticks([])
    axes.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    axes.grid(axis="x", alpha=0.3)


def _time_limit(duration: float | None, *segment_sets: np.ndarray) -> float:
    ends = [float(s[:, 1].max()) for s in segment_sets if len(s)]
    limit = max([duration or 0.0, *ends])
    return limit if limit > 0 else 1.0


def proposals_vs_ground_truth_figure(
    segments: np.ndarray,
    scores: np.ndarray,
    ground_truth: np.ndarray,
    duration: float,
    matcher: HungarianMatcher,
    video_id: str = "",
) -> Figure:
    """Paper Fig. 4/6: GT instances, the top-``k`` proposals by actionness score and the top-``k``
    by bipartite matching cost (:func:`top_k_by_matching_cost`), ``k`` = number of GT instances,
    on one time axis in seconds. Bars are coloured by their best tIoU with any GT; each row's
    label gives its AvgIoU (:func:`mean_best_tiou`).

    Args:
        segments: ``[P, 2]`` the video's proposals, (start, end) seconds.
        scores: ``[P]`` their scores in (0, 1).
        ground_truth: ``[G, 2]`` (start, end) seconds, ``G ≥ 1``.
        duration: the video's duration in seconds (normalises the matching; the axis spans it).
        matcher: the training matcher (:func:`tp2detr.losses.hungarian_matcher.build_matcher`).
        video_id: for the title.

    Raises:
        ValueError: no GT instance, or malformed arrays.
    """
    segments = _segments(segments, "segments")
    scores = _scores(scores, len(segments), "scores")
    ground_truth = _segments(ground_truth, "ground_truth")
    k = len(ground_truth)
    if k == 0:
        raise ValueError(f"ground_truth of video {video_id!r}: found no instance, expected at least one (k = #GT)")
    by_score = segments[top_k_by_score(scores, k)]
    by_cost = segments[top_k_by_matching_cost(segments, scores, ground_truth, duration, matcher)[0]]
    norm = Normalize(0.0, 1.0)
    cmap = ScalarMappable(norm=norm, cmap=BAR_COLOURMAP)
    rows = [
        (ground_truth, GROUND_TRUTH_COLOUR, f"ground truth\n({k} instances)"),
        (by_score, list(cmap.to_rgba(best_tiou(by_score, ground_truth))),
         f"top-{k} by score\nAvgIoU {mean_best_tiou(by_score, ground_truth):.2f}"),
        (by_cost, list(cmap.to_rgba(best_tiou(by_cost, ground_truth))),
         f"top-{k} by matching cost\nAvgIoU {mean_best_tiou(by_cost, ground_truth):.2f}"),
    ]
    lane_counts = [_lane_count(row[0]) for row in rows]
    height = 1.3 + sum(0.45 + 0.16 * n for n in lane_counts)
    figure = new_figure(11.0, min(height, 14.0))
    axes = figure.subplots(3, 1, sharex=True, height_ratios=[1.5 + n for n in lane_counts])
    for ax, (rows_segments, colours, label) in zip(axes, rows):
        draw_segment_lanes(ax, rows_segments, colours, label)
    axes[-1].set_xlim(0.0, _time_limit(duration, ground_truth, segments))
    axes[-1].set_xlabel("time (s)")
    figure.colorbar(cmap, ax=list(axes[1:]), label="best tIoU with ground truth", shrink=0.9, pad=0.01)
    figure.suptitle(
        f"{video_id}: {len(segments)} proposals, top-k with k = {k} ground-truth instances".lstrip(": "),
        fontsize=11,
    )
    return figure


def proposal_timeline_figure(
    segments: np.ndarray,
    scores: np.ndarray,
    top_k: int | None = 20,
    ground_truth: np.ndarray | None = None,
    duration: float | None = None,
    video_id: str = "",
) -> Figure:
    """One video's proposals along its timeline (seconds): the ``top_k`` by score (all when None),
    coloured by score, under the GT instances when they are given.

    Args:
        segments: ``[P, 2]`` (start, end) seconds.
        scores: ``[P]`` scores in [0, 1].
        top_k: how many of the best-scoring proposals to draw; None draws all.
        ground_truth: optional ``[G, 2]`` (start, end) seconds.
        duration: the video's duration in seconds (the axis spans it), if known.
        video_id: for the title.
    """
    segments = _segments(segments, "segments")
    scores = _scores(scores, len(segments), "scores")
    keep = top_k_by_score(scores, len(scores) if top_k is None else int(top_k))
    shown, shown_scores = segments[keep], scores[keep]
    cmap = ScalarMappable(norm=Normalize(0.0, 1.0), cmap=BAR_COLOURMAP)
    rows: list[tuple[np.ndarray, Any, str]] = []
    if ground_truth is not None:
        ground_truth = _segments(ground_truth, "ground_truth")
        rows.append((ground_truth, GROUND_TRUTH_COLOUR, f"ground truth\n({len(ground_truth)} instances)"))
    rows.append((shown, list(cmap.to_rgba(shown_scores)), f"top-{len(shown)} proposals\nby score"))
    lane_counts = [_lane_count(row[0]) for row in rows]
    height = 1.3 + sum(0.45 + 0.16 * n for n in lane_counts)
    figure = new_figure(11.0, min(height, 12.0))
    axes = np.atleast_1d(figure.subplots(len(rows), 1, sharex=True, height_ratios=[1.5 + n for n in lane_counts]))
    for ax, (row_segments, colours, label) in zip(axes, rows):
        draw_segment_lanes(ax, row_segments, colours, label)
    axes[-1].set_xlim(0.0, _time_limit(duration, segments, *(row[0] for row in rows)))
    axes[-1].set_xlabel("time (s)")
    figure.colorbar(cmap, ax=axes[-1], label="actionness score", shrink=0.9, pad=0.01)
    figure.suptitle(f"{video_id}: {len(segments)} proposals".lstrip(": "), fontsize=11)
    return figure
