"""Proposal confidence against localisation quality (paper Fig. 5).

Each point is one proposal of the evaluation set: x = its confidence (the actionness score), y =
its best tIoU with any ground-truth (GT) instance of the same video. Good proposals sit top right;
the Pearson and Spearman correlations of the two summarise how well the score ranks localisation.
Only videos with GT count, as in the evaluation (the protocol drops the others' proposals).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from scipy import stats

from tp2detr.evaluation.tiou import segment_iou_matrix
from tp2detr.viz.canvas import new_figure

#: Points drawn at most (a fixed random subset beyond); correlations always use all points.
MAX_DRAWN_POINTS = 15_000
#: Colour of the points.
SCATTER_COLOUR = "#b2182b"


@dataclass(frozen=True)
class ConfidencePoints:
    """One point per proposal of the videos with GT.

    Attributes:
        scores: float64 ``[N]`` confidence (actionness score).
        best_tiou: float64 ``[N]`` highest tIoU with a GT instance of the same video.
        num_videos: videos that contributed (videos with GT and at least one proposal).
    """

    scores: np.ndarray
    best_tiou: np.ndarray
    num_videos: int


@dataclass(frozen=True)
class Correlations:
    """Pearson r and Spearman ρ of score vs best tIoU (NaN with fewer than 2 points or a constant)."""

    pearson: float
    spearman: float


def confidence_points(
    ground_truth: Mapping[str, np.ndarray],
    predictions: Mapping[str, tuple[np.ndarray, np.ndarray]],
) -> ConfidencePoints:
    """Score and best tIoU of every proposal of the videos that have GT.

    Args:
        ground_truth: ``{video_id: [G, 2]}`` (start, end) seconds; videos with ``G = 0`` are skipped.
        predictions: ``{video_id: (segments [P, 2] seconds, scores [P])}``; videos without GT are
            skipped.

    Returns:
        :class:`ConfidencePoints`, videos in ``predictions`` order, proposals in input order.
    """
    scores, tious = [], []
    videos = 0
    for video, (segments, video_scores) in predictions.items():
        gt = np.asarray(ground_truth.get(video, np.zeros((0, 2))), dtype=np.float64).reshape(-1, 2)
        segments = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
        video_scores = np.asarray(video_scores, dtype=np.float64).reshape(-1)
        if len(segments) != len(video_scores):
            raise ValueError(
                f"predictions of video {video!r}: {len(segments)} segments but {len(video_scores)} scores, "
                "expected one score per segment"
            )
        if len(gt) == 0 or len(segments) == 0:
            continue
        videos += 1
        scores.append(video_scores)
        tious.append(segment_iou_matrix(segments, gt).max(axis=1))
    if not scores:
        return ConfidencePoints(np.zeros(0), np.zeros(0), 0)
    return ConfidencePoints(np.concatenate(scores), np.concatenate(tious), videos)


def _defined(x: np.ndarray, y: np.ndarray) -> bool:
    return len(x) >= 2 and np.ptp(x) > 0 and np.ptp(y) > 0


def correlations(points: ConfidencePoints) -> Correlations:
    """Pearson r and Spearman ρ (ties get average ranks) between score and best tIoU."""
    x, y = points.scores, points.best_tiou
    if not _defined(x, y):
        return Correlations(float("nan"), float("nan"))
    return Correlations(float(stats.pearsonr(x, y).statistic), float(stats.spearmanr(x, y).statistic))


def _format(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{value:.3f}"


def confidence_figure(points: ConfidencePoints, title: str = "", max_points: int = MAX_DRAWN_POINTS) -> Figure:
    """Paper Fig. 5: a scatter of confidence (x) vs best tIoU with GT (y), both in [0, 1], with
    the Pearson and Spearman correlations (of all points) in the title.

    Args:
        points: from :func:`confidence_points`.
        title: first title line (e.g. the dataset and split).
        max_points: draw at most this many points, a fixed random subset (seed 0) when there are
            more (the title says so); keeps the PNG small (< 150 KB) for ActivityNet-sized sets.
    """
    corr = correlations(points)
    total = len(points.scores)
    drawn = np.arange(total)
    if total > max_points:
        drawn = np.sort(np.random.default_rng(0).choice(total, size=max_points, replace=False))
    figure = new_figure(6.4, 5.4)
    axes = figure.subplots()
    alpha = float(np.clip(400.0 / max(len(drawn), 1), 0.12, 0.8))
    axes.scatter(points.scores[drawn], points.best_tiou[drawn], s=4, alpha=alpha, color=SCATTER_COLOUR,
                 linewidths=0, rasterized=True)
    axes.set_xlim(0.0, 1.0)
    axes.set_ylim(-0.01, 1.0)
    axes.set_xlabel("confidence (actionness score)")
    axes.set_ylabel("best tIoU with ground truth")
    axes.grid(alpha=0.3)
    heading = f"{title}\n" if title else ""
    subset = f", {len(drawn)} drawn" if len(drawn) < total else ""
    axes.set_title(
        f"{heading}{total} proposals of {points.num_videos} videos with ground truth{subset}\n"
        f"Pearson r = {_format(corr.pearson)}, Spearman ρ = {_format(corr.spearman)}",
        fontsize=10,
    )
    return figure
