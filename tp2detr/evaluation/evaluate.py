"""One evaluation of a results set against a ground truth, as a JSON-ready report.

Applies the protocol's last step (predictions of videos without ground truth are dropped, or
rejected with ``strict``), then computes AP per threshold and mAP, optionally AR@AN and the
per-length breakdown.
"""

from __future__ import annotations

import logging
from typing import Mapping, Sequence

import numpy as np

from tp2detr.evaluation.breakdown import (
    DEFAULT_ABSOLUTE_BINS_S,
    DEFAULT_RELATIVE_BINS,
    map_by_absolute_length,
    map_by_relative_length,
)
from tp2detr.evaluation.detection import THUMOS_MAP_TIOU, as_thresholds, average_precision_detection
from tp2detr.evaluation.proposals import THUMOS_AR_TIOU, average_recall_vs_proposals
from tp2detr.evaluation.results_io import GroundTruthSet, restrict_to_ground_truth

logger = logging.getLogger(__name__)


def evaluate_predictions(
    ground_truth: GroundTruthSet,
    predictions: Mapping[str, tuple[np.ndarray, np.ndarray]],
    tiou_thresholds: Sequence[float] = THUMOS_MAP_TIOU,
    with_ar: bool = False,
    ar_tiou_thresholds: Sequence[float] = THUMOS_AR_TIOU,
    max_avg_nr_proposals: float = 100,
    with_breakdown: bool = False,
    absolute_bins: Sequence[tuple[float, float]] = DEFAULT_ABSOLUTE_BINS_S,
    relative_bins: Sequence[tuple[float, float]] = DEFAULT_RELATIVE_BINS,
    strict: bool = False,
    source: str = "predictions",
) -> dict:
    """Evaluate and return ``{"ap": {"0.3": ...}, "mAP", "n_gt", "n_pred", "n_videos", ["ar"], ["breakdown"]}``.

    ``ar`` holds ``AR@{1,5,10,25,40,50,100}`` and ``AUC`` (fractions), or None when no proposal is
    left. ``breakdown`` holds ``{"absolute_s": [bin...], "relative": [bin...] | None}``; the relative
    table is None (with a warning) when a video lacks its duration.

    Raises:
        ValueError: the ground truth has no instance; DataFormatError in strict mode.
    """
    thresholds = as_thresholds(tiou_thresholds)
    kept = restrict_to_ground_truth(predictions, ground_truth, strict=strict, source=source)
    num_predictions = sum(len(scores) for _, scores in kept.values())
    if num_predictions == 0:
        logger.warning("%s: no predictions on the evaluated videos; every AP is 0", source)
    gt = {video: ground_truth.segments[video] for video in ground_truth.videos_with_instances}
    detection = average_precision_detection(gt, kept, thresholds)
    report: dict = detection.to_dict()
    report["n_videos"] = len(gt)
    if with_ar:
        if num_predictions == 0:
            report["ar"] = None
        else:
            curve = average_recall_vs_proposals(gt, kept, ar_tiou_thresholds, max_avg_nr_proposals)
            report["ar"] = curve.summary()
    if with_breakdown:
        absolute = map_by_absolute_length(gt, kept, thresholds, absolute_bins)
        missing = [video for video in gt if video not in ground_truth.durations]
        if missing:
            logger.warning(
                "%s: %d ground-truth videos have no duration (e.g. %s); the relative-length breakdown is skipped",
                source,
                len(missing),
                missing[0],
            )
            relative = None
        else:
            bins = map_by_relative_length(gt, kept, ground_truth.durations, thresholds, relative_bins)
            relative = [b.to_dict(thresholds) for b in bins]
        report["breakdown"] = {"absolute_s": [b.to_dict(thresholds) for b in absolute], "relative": relative}
    return report
