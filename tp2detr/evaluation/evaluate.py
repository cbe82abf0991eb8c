"""The one evaluation of video proposals → the ``METRICS`` dict, used by every caller.

The trainer, ``eval.py``, ``python -m tp2detr.evaluation`` and the sweep summaries all read this
one dict (JSON-ready; every AP / AR is a fraction in [0, 1]; tables print percent)::

    {"tiou": [0.3, ...], "ap": {"0.3": f, ...}, "mAP": f,
     "ar": {"AR@1": f, ..., "AR@100": f, "AUC": f} | None,
     "breakdown": {"absolute_s": [BIN, ...], "relative": [BIN, ...] | None} | None,
     "num_videos": int, "num_gt": int, "num_predictions": int}
    BIN = {"bin": "[2, 4)", "low", "high", "num_gt", "ap": {"0.5": f, ...} | None, "mAP": f | None}

It applies the protocol's last step once — predictions of videos without ground truth are
dropped (docs/fidelity.md §5.4), or refused with ``strict`` — then computes AP per threshold and
mAP (:mod:`~tp2detr.evaluation.detection`), optionally AR@AN
(:mod:`~tp2detr.evaluation.average_recall`) and mAP by action length
(:mod:`~tp2detr.evaluation.map_by_length`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tp2detr.errors import DataFormatError
from tp2detr.evaluation.average_recall import average_recall_vs_proposals
from tp2detr.evaluation.detection import as_thresholds, average_precision_detection
from tp2detr.evaluation.map_by_length import (
    DEFAULT_ABSOLUTE_BINS_S,
    DEFAULT_RELATIVE_BINS,
    length_bins_for,
    map_by_absolute_length,
    map_by_relative_length,
)
from tp2detr.evaluation.results_io import GroundTruthSet, restrict_to_ground_truth

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from tp2detr.data.protocol import ZeroShotProtocol

logger = logging.getLogger(__name__)

Metrics = dict[str, Any]


def evaluate_proposals(
    predictions: Mapping[str, tuple[np.ndarray, np.ndarray]],
    ground_truth: Mapping[str, np.ndarray],
    durations: Mapping[str, float],
    tiou_thresholds: Sequence[float],
    ar_tiou_thresholds: Sequence[float] | None = None,
    breakdown: bool = False,
    absolute_bins: Sequence[tuple[float, float]] = DEFAULT_ABSOLUTE_BINS_S,
    relative_bins: Sequence[tuple[float, float]] = DEFAULT_RELATIVE_BINS,
    max_avg_nr_proposals: float = 100,
    strict: bool = False,
    source: str = "predictions",
    ground_truth_source: str = "ground_truth",
    drop_log_level: int = logging.WARNING,
) -> Metrics:
    """Class-agnostic mAP per tIoU, optionally AR@AN and mAP by action length.

    Args:
        predictions: ``{video_id: (segments [P, 2] seconds, scores [P])}``.
        ground_truth: ``{video_id: [G, 2]}`` seconds; videos with ``G = 0`` are not evaluated.
        durations: ``{video_id: seconds}`` for the relative-length bins (a video without one
            skips the relative table, with a warning).
        tiou_thresholds: mAP thresholds ``[T]``.
        ar_tiou_thresholds: AR@AN thresholds, or None to skip AR (``"ar": None``).
        breakdown: compute ``"breakdown"`` (else None).
        absolute_bins, relative_bins: ``(low, high)`` length bins, seconds / fraction of the
            video's duration (:func:`~tp2detr.evaluation.map_by_length.length_bins_for`).
        max_avg_nr_proposals: AN of the AR@AN curve's end.
        strict: refuse predictions of videos without ground truth instead of dropping them.
        source: the predictions' file or name, for messages.
        ground_truth_source: the ground truth's file or name, for messages.
        drop_log_level: how loudly dropped predictions are reported (INFO where the protocol
            expects them, as in training; WARNING for a user's file).

    Returns:
        ``METRICS`` (module docstring).

    Raises:
        DataFormatError: no ground-truth instance; ``strict`` and predictions of videos without
            ground truth; malformed input.
    """
    thresholds = as_thresholds(tiou_thresholds)
    gt_set = GroundTruthSet(
        segments={
            str(video): np.asarray(segs, dtype=np.float64).reshape(-1, 2) for video, segs in ground_truth.items()
        },
        durations={str(video): float(value) for video, value in durations.items()},
    )
    if not gt_set.videos_with_instances:
        raise DataFormatError(
            f"{ground_truth_source}: found 0 instances in {len(gt_set.segments)} videos, expected at least one "
            "ground-truth segment"
        )
    kept = restrict_to_ground_truth(predictions, gt_set, strict=strict, source=source, log_level=drop_log_level)
    num_predictions = sum(len(scores) for _, scores in kept.values())
    if num_predictions == 0:
        logger.warning("%s: no predictions on the evaluated videos; every AP is 0", source)
    gt = {video: gt_set.segments[video] for video in gt_set.videos_with_instances}
    detection = average_precision_detection(gt, kept, thresholds)
    metrics: Metrics = {
        "tiou": [float(t) for t in thresholds],
        **detection.to_dict(),
        "ar": None,
        "breakdown": None,
        "num_videos": len(gt),
    }
    if ar_tiou_thresholds is not None and num_predictions > 0:
        curve = average_recall_vs_proposals(gt, kept, ar_tiou_thresholds, max_avg_nr_proposals)
        metrics["ar"] = curve.summary()
    if breakdown:
        absolute = map_by_absolute_length(gt, kept, thresholds, absolute_bins)
        missing = [video for video in gt if video not in gt_set.durations]
        if missing:
            logger.warning(
                "%s: %d ground-truth videos have no duration (e.g. %s); the relative-length breakdown is skipped",
                source,
                len(missing),
                missing[0],
            )
            relative = None
        else:
            bins = map_by_relative_length(gt, kept, gt_set.durations, thresholds, relative_bins)
            relative = [b.to_dict(thresholds) for b in bins]
        metrics["breakdown"] = {"absolute_s": [b.to_dict(thresholds) for b in absolute], "relative": relative}
    return metrics


def evaluate_on_protocol(
    predictions: Mapping[str, tuple[np.ndarray, np.ndarray]],
    protocol: ZeroShotProtocol,
    dataset: DictConfig,
    breakdown: bool = True,
    with_ar: bool = True,
) -> Metrics:
    """:func:`evaluate_proposals` against the protocol's evaluation ground truth (unseen classes),
    with the thresholds of ``dataset.evaluation`` and the length bins of
    :func:`~tp2detr.evaluation.map_by_length.length_bins_for`. The predictions of videos without
    ground truth are dropped quietly (INFO), as the protocol expects them.

    Args:
        predictions: ``{video_id: (segments [P, 2] seconds, scores [P])}``.
        protocol: from :func:`tp2detr.data.bundle.load_data`.
        dataset: the ``dataset`` config group (``name``, ``evaluation.tiou_thresholds``,
            ``evaluation.ar_tiou_thresholds``).
        breakdown: compute the per-length breakdown.
        with_ar: compute AR@AN.
    """
    absolute_bins, relative_bins = length_bins_for(str(dataset.name))
    return evaluate_proposals(
        predictions,
        protocol.eval_ground_truth,
        protocol.eval_durations,
        tiou_thresholds=list(dataset.evaluation.tiou_thresholds),
        ar_tiou_thresholds=list(dataset.evaluation.ar_tiou_thresholds) if with_ar else None,
        breakdown=breakdown,
        absolute_bins=absolute_bins,
        relative_bins=relative_bins,
        source=f"{dataset.name} evaluation",
        drop_log_level=logging.INFO,
    )
