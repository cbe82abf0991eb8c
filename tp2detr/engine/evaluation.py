"""Evaluating video proposals under the zero-shot protocol → the engine's ``METRICS`` dict.

``METRICS`` (JSON-ready; every AP / AR is a fraction in [0, 1]; tables print percent)::

    {"tiou": [0.3, ...], "ap": {"0.3": f, ...}, "mAP": f,
     "ar": {"AR@1": f, ..., "AR@100": f, "AUC": f} | None,
     "breakdown": {"absolute_s": [bin, ...], "relative": [bin, ...] | None} | None,
     "num_videos": int, "num_gt": int, "num_predictions": int}

The metrics themselves are :mod:`tp2detr.evaluation`'s (official ActivityNet semantics); this
module only applies the protocol's last step — predictions of videos without ground truth are
dropped (docs/fidelity.md §5.4) — and picks the dataset's thresholds and length bins.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from omegaconf import DictConfig

from tp2detr.data.protocol import ZeroShotProtocol
from tp2detr.evaluation.breakdown import DEFAULT_ABSOLUTE_BINS_S, DEFAULT_RELATIVE_BINS
from tp2detr.evaluation.detection import as_thresholds, threshold_key
from tp2detr.evaluation.evaluate import evaluate_predictions
from tp2detr.evaluation.results_io import GroundTruthSet
from tp2detr.errors import DataFormatError

logger = logging.getLogger(__name__)

#: Absolute length bins (seconds) for ActivityNet, whose actions last from 1 s to minutes.
ANET_ABSOLUTE_BINS_S: tuple[tuple[float, float], ...] = (
    (0.0, 10.0),
    (10.0, 30.0),
    (30.0, 60.0),
    (60.0, 120.0),
    (120.0, math.inf),
)

Metrics = dict[str, Any]


def length_bins_for(dataset_name: str) -> tuple[tuple[tuple[float, float], ...], tuple[tuple[float, float], ...]]:
    """``(absolute_bins_s, relative_bins)`` for a dataset: ActivityNet names (``anet*``) get
    :data:`ANET_ABSOLUTE_BINS_S`, every other dataset THUMOS's
    :data:`~tp2detr.evaluation.breakdown.DEFAULT_ABSOLUTE_BINS_S`; both get
    :data:`~tp2detr.evaluation.breakdown.DEFAULT_RELATIVE_BINS`."""
    absolute = ANET_ABSOLUTE_BINS_S if str(dataset_name).lower().startswith("anet") else DEFAULT_ABSOLUTE_BINS_S
    return absolute, DEFAULT_RELATIVE_BINS


def evaluate_proposals(
    predictions: Mapping[str, tuple[np.ndarray, np.ndarray]],
    ground_truth: Mapping[str, np.ndarray],
    durations: Mapping[str, float],
    tiou_thresholds: Sequence[float],
    ar_tiou_thresholds: Sequence[float] | None,
    breakdown: bool,
    absolute_bins: Sequence[tuple[float, float]] = DEFAULT_ABSOLUTE_BINS_S,
    relative_bins: Sequence[tuple[float, float]] = DEFAULT_RELATIVE_BINS,
) -> Metrics:
    """Class-agnostic mAP per tIoU, optionally AR@AN and the per-length breakdown.

    Args:
        predictions: ``{video_id: (segments [P, 2] seconds, scores [P])}``; the videos without
            ground truth are dropped (logged at INFO), as the protocol does.
        ground_truth: ``{video_id: [G, 2]}`` seconds; videos with ``G = 0`` are not evaluated.
        durations: ``{video_id: seconds}`` for the relative-length bins (videos without one skip
            the relative table, with a warning).
        tiou_thresholds: mAP thresholds ``[T]``.
        ar_tiou_thresholds: AR@AN thresholds, or None to skip AR (``"ar": None``).
        breakdown: compute ``"breakdown"`` (else None).
        absolute_bins, relative_bins: ``(low, high)`` length bins, seconds / fraction of the
            video's duration (see :func:`length_bins_for`).

    Returns:
        ``METRICS`` (module docstring).

    Raises:
        ValueError: no ground-truth instance, or malformed input.
    """
    thresholds = as_thresholds(tiou_thresholds)
    gt = GroundTruthSet(
        segments={
            str(video): np.asarray(segs, dtype=np.float64).reshape(-1, 2) for video, segs in ground_truth.items()
        },
        durations={str(video): float(value) for video, value in durations.items()},
    )
    evaluated = set(gt.videos_with_instances)
    if not evaluated:
        raise DataFormatError("ground_truth: no video has an instance, expected at least one ground-truth segment")
    dropped = [video for video in predictions if video not in evaluated]
    if dropped:
        logger.info(
            "%d predictions of %d videos without ground truth dropped, as the protocol does",
            sum(len(predictions[video][1]) for video in dropped),
            len(dropped),
        )
    kept = {video: entry for video, entry in predictions.items() if video in evaluated}
    report = evaluate_predictions(
        gt,
        kept,
        tiou_thresholds=thresholds,
        with_ar=ar_tiou_thresholds is not None,
        ar_tiou_thresholds=ar_tiou_thresholds if ar_tiou_thresholds is not None else (),
        with_breakdown=breakdown,
        absolute_bins=absolute_bins,
        relative_bins=relative_bins,
    )
    return {
        "tiou": [float(t) for t in thresholds],
        "ap": report["ap"],
        "mAP": float(report["mAP"]),
        "ar": report.get("ar"),
        "breakdown": report.get("breakdown"),
        "num_videos": int(report["n_videos"]),
        "num_gt": int(report["n_gt"]),
        "num_predictions": int(report["n_pred"]),
    }


def evaluate_on_protocol(
    predictions: Mapping[str, tuple[np.ndarray, np.ndarray]],
    protocol: ZeroShotProtocol,
    dataset: DictConfig,
    breakdown: bool = True,
    with_ar: bool = True,
) -> Metrics:
    """:func:`evaluate_proposals` against the protocol's evaluation ground truth (unseen classes),
    with the thresholds of ``dataset.evaluation`` and the length bins of :func:`length_bins_for`.

    Args:
        predictions: ``{video_id: (segments [P, 2] seconds, scores [P])}``.
        protocol: from :func:`tp2detr.data.builder.load_data`.
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
    )


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100.0 * float(value):.2f}"


def format_table(metrics_by_row: Mapping[str, Metrics | None], tiou: Sequence[float]) -> str:
    """Table-1 style markdown: one row per entry, ``mAP@t`` for each threshold and ``AVG``.

    Values are percent with two decimals; a row whose metrics are None (e.g. a failed run) or that
    lacks a threshold shows ``—``. ``AVG`` is the row's ``mAP`` (the mean over its own thresholds).

    Args:
        metrics_by_row: ``{row label: METRICS | None}``, in display order.
        tiou: the thresholds that make the columns.

    Returns:
        The markdown table (header, separator, one line per row), no trailing newline.
    """
    keys = [threshold_key(t) for t in as_thresholds(tiou)]
    header = "| | " + " | ".join(f"mAP@{k}" for k in keys) + " | AVG |"
    separator = "|---|" + "---:|" * (len(keys) + 1)
    lines = [header, separator]
    for label, metrics in metrics_by_row.items():
        ap = (metrics or {}).get("ap") or {}
        cells = [_percent(ap.get(k)) for k in keys]
        cells.append(_percent(None if metrics is None else metrics.get("mAP")))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_recall(metrics: Metrics) -> str:
    """One line ``AR@1 x | AR@5 x | ... | AUC x`` (percent), or ``""`` when AR was not computed."""
    ar = metrics.get("ar")
    if not ar:
        return ""
    return " | ".join(f"{name} {_percent(value)}" for name, value in ar.items())
