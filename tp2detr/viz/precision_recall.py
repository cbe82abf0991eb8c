"""Precision–recall curves, one per tIoU threshold, of one video or the whole evaluation set (paper Fig. 7).

The points are exactly the ones the evaluator's AP integrates
(:mod:`tp2detr.evaluation.detection`): predictions ranked by ``scores.argsort()[::-1]``
(:func:`~tp2detr.evaluation.detection.flatten_predictions`), matched with the evaluator's own
:func:`~tp2detr.evaluation.detection.match_all`, then cumulative precision and recall after each
ranked prediction; AP is :func:`~tp2detr.evaluation.detection.interpolated_average_precision` of
them. Predictions of videos without ground truth (GT) are false positives, as in
:func:`~tp2detr.evaluation.detection.average_precision_detection`; pass the protocol's kept
predictions (videos with GT only) to get the numbers of ``eval_metrics.json``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from tp2detr.evaluation.detection import (
    as_thresholds,
    flatten_predictions,
    interpolated_average_precision,
    match_all,
    threshold_key,
    validate_ground_truth,
)
from tp2detr.viz.canvas import new_figure


@dataclass(frozen=True)
class PrecisionRecallCurves:
    """Precision and recall after each ranked prediction, per threshold.

    Attributes:
        tiou_thresholds: float64 ``[T]``.
        precision: float64 ``[T, N]`` (N predictions in ranked order).
        recall: float64 ``[T, N]``, non-decreasing along N.
        num_ground_truth: ``npos``.
    """

    tiou_thresholds: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    num_ground_truth: int

    @property
    def average_precision(self) -> np.ndarray:
        """float64 ``[T]`` all-point interpolated AP of each curve (the evaluator's AP)."""
        return np.array(
            [interpolated_average_precision(p, r) for p, r in zip(self.precision, self.recall)], dtype=np.float64
        )


def precision_recall_curves(
    ground_truth: Mapping[str, np.ndarray],
    predictions: Mapping[str, tuple[np.ndarray, np.ndarray]],
    tiou_thresholds: Sequence[float] | np.ndarray,
) -> PrecisionRecallCurves:
    """The evaluator's precision–recall points (module docstring).

    Args:
        ground_truth: ``{video_id: [G, 2]}`` seconds (one video for a per-video curve).
        predictions: ``{video_id: (segments [P, 2] seconds, scores [P])}``.
        tiou_thresholds: ``[T]`` in [0, 1].

    Raises:
        ValueError: no GT instance at all, or malformed arrays.
    """
    thresholds = as_thresholds(tiou_thresholds)
    gt = validate_ground_truth(ground_truth)
    num_positives = sum(len(segments) for segments in gt.values())
    if num_positives == 0:
        raise ValueError(f"ground_truth: found 0 instances in {len(gt)} videos, expected at least one")
    flat = flatten_predictions(predictions)
    matched, _ = match_all(gt, flat, thresholds)
    tp_cumsum = np.cumsum(matched.astype(np.float64), axis=1)
    fp_cumsum = np.cumsum((~matched).astype(np.float64), axis=1)
    recall = tp_cumsum / float(num_positives)
    with np.errstate(invalid="ignore"):
        precision = tp_cumsum / (tp_cumsum + fp_cumsum)
    return PrecisionRecallCurves(thresholds, precision, recall, num_positives)


def precision_recall_figure(curves: PrecisionRecallCurves, title: str = "") -> Figure:
    """Paper Fig. 7: one precision–recall curve per tIoU threshold, AP (percent) in the legend.

    The curves are the raw points (precision after each ranked prediction); AP integrates their
    monotone envelope (all-point interpolation).

    Args:
        curves: from :func:`precision_recall_curves`.
        title: first title line (e.g. the video id or "all evaluation videos").
    """
    figure = new_figure(6.4, 5.0)
    axes = figure.subplots()
    count = len(curves.tiou_thresholds)
    palette = colormaps["viridis"]
    ap = curves.average_precision
    for index, threshold in enumerate(curves.tiou_thresholds):
        colour = palette(0.85 * index / max(count - 1, 1))
        axes.plot(curves.recall[index], curves.precision[index], color=colour, linewidth=1.3,
                  label=f"tIoU {threshold_key(threshold)}: AP {100 * ap[index]:.1f}%")
    axes.set_xlim(0.0, 1.0)
    axes.set_ylim(0.0, 1.02)
    axes.set_xlabel("recall")
    axes.set_ylabel("precision")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper right", fontsize=8, title=f"mAP {100 * ap.mean():.1f}%", title_fontsize=9)
    predictions = curves.precision.shape[1]
    heading = f"{title}\n" if title else ""
    axes.set_title(
        f"{heading}precision–recall ({curves.num_ground_truth} ground-truth instances, {predictions} proposals)",
        fontsize=10,
    )
    return figure
