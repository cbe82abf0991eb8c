"""Detection mAP broken down by action length (COCO area-range style), absolute or relative.

For each length bin b (lengths in seconds, or as a fraction of the video's duration):

* ground truth (GT) whose length is outside b are *ignore* GT; ``npos`` = GT inside b;
* predictions are ranked and matched exactly as in :mod:`tp2detr.evaluation.detection`, against
  all GT of their video, except that at equal validity (``tIoU >= thr``, GT free) a non-ignored GT
  is preferred over an ignored one (the first free valid non-ignored GT in the prediction's tIoU
  ranking; failing that, the first free valid ignored GT);
* a prediction matched to an ignore GT is neither TP nor FP (it is dropped from the ranking);
* an unmatched prediction whose own length is outside b is dropped too; any other unmatched
  prediction is a FP;
* AP per threshold from the remaining ranking, as in the plain evaluation.

So a prediction that only hits an out-of-bin GT does not hurt the bin, and with all GT and all
predictions inside one bin its numbers equal the plain evaluation's. A bin without GT reports
``num_gt = 0`` and ``ap = mean_ap = None`` (not 0).

Bins are ``[low, high)``; the last bin of a family is closed, ``[low, high]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from tp2detr.errors import MissingDataError
from tp2detr.evaluation.detection import (
    THUMOS_MAP_TIOU,
    FlatPredictions,
    Predictions,
    as_thresholds,
    average_precision_from_outcomes,
    flatten_predictions,
    match_all,
    threshold_key,
    validate_ground_truth,
)

#: Absolute length bins in seconds (suits THUMOS14, whose instances are mostly a few seconds).
DEFAULT_ABSOLUTE_BINS_S: tuple[tuple[float, float], ...] = (
    (0.0, 2.0),
    (2.0, 4.0),
    (4.0, 8.0),
    (8.0, 16.0),
    (16.0, math.inf),
)
#: Length bins as a fraction of the video's duration (suits ActivityNet).
DEFAULT_RELATIVE_BINS: tuple[tuple[float, float], ...] = ((0.0, 0.05), (0.05, 0.1), (0.1, 0.2), (0.2, 0.5), (0.5, 1.0))


@dataclass(frozen=True)
class LengthBin:
    """Lengths in ``[low, high)``, or ``[low, high]`` when ``closed_high``."""

    low: float
    high: float
    closed_high: bool = False

    def contains(self, lengths: np.ndarray) -> np.ndarray:
        """Boolean mask ``[N]`` of the lengths ``[N]`` inside the bin."""
        upper = lengths <= self.high if self.closed_high else lengths < self.high
        return (lengths >= self.low) & upper

    @property
    def label(self) -> str:
        """Interval notation, e.g. ``"[2, 4)"`` or ``"[0.5, 1]"``."""
        return f"[{self.low:g}, {self.high:g}{']' if self.closed_high else ')'}"


@dataclass(frozen=True)
class BinResult:
    """One bin's numbers.

    Attributes:
        bin: the length bin.
        num_ground_truth: GT inside the bin (``npos``).
        ap: float64 ``[T]`` AP per threshold, or None when the bin has no GT.
        mean_ap: mean of ``ap``, or None when the bin has no GT.
    """

    bin: LengthBin
    num_ground_truth: int
    ap: np.ndarray | None
    mean_ap: float | None

    def to_dict(self, tiou_thresholds: np.ndarray) -> dict:
        """JSON-ready ``{"bin", "low", "high", "num_gt", "ap": {"0.5": ...} | None, "mAP"}``."""
        ap = None if self.ap is None else {threshold_key(t): float(a) for t, a in zip(tiou_thresholds, self.ap)}
        high = None if math.isinf(self.bin.high) else self.bin.high
        return {
            "bin": self.bin.label,
            "low": self.bin.low,
            "high": high,
            "num_gt": self.num_ground_truth,
            "ap": ap,
            "mAP": self.mean_ap,
        }


def make_bins(edges: Sequence[tuple[float, float]]) -> tuple[LengthBin, ...]:
    """Bins from ``(low, high)`` pairs; the last one is closed at ``high``.

    Raises:
        ValueError: no bins, or a pair without ``0 <= low < high``.
    """
    if len(edges) == 0:
        raise ValueError("bins: expected at least one (low, high) pair, found none")
    bins = []
    for index, pair in enumerate(edges):
        if len(pair) != 2:
            raise ValueError(f"bins[{index}]: expected a (low, high) pair, found {pair!r}")
        low, high = float(pair[0]), float(pair[1])
        if math.isnan(low) or math.isnan(high) or not 0 <= low < high:
            raise ValueError(f"bins[{index}]: expected 0 <= low < high, found ({low}, {high})")
        bins.append(LengthBin(low, high, closed_high=index == len(edges) - 1))
    return tuple(bins)


def relative_lengths(segments: np.ndarray, duration: float) -> np.ndarray:
    """Segment lengths ``[N]`` as a fraction of the video's duration (seconds)."""
    return (segments[:, 1] - segments[:, 0]) / duration


def _durations_for(videos: Sequence[str], durations: Mapping[str, float]) -> dict[str, float]:
    out = {}
    for video in videos:
        if video not in durations:
            raise MissingDataError(f"durations: video {video!r} has no duration, expected one for relative-length bins")
        value = float(durations[video])
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"durations[{video!r}]: found {value}, expected a positive number of seconds")
        out[video] = value
    return out


def _bin_ap(
    gt: Mapping[str, np.ndarray],
    gt_measure: Mapping[str, np.ndarray],
    flat: FlatPredictions,
    pred_measure: np.ndarray,
    thresholds: np.ndarray,
    length_bin: LengthBin,
) -> BinResult:
    gt_ignore = {video: ~length_bin.contains(measure) for video, measure in gt_measure.items()}
    num_positives = int(sum(int((~ignore).sum()) for ignore in gt_ignore.values()))
    if num_positives == 0:
        return BinResult(length_bin, 0, None, None)
    if len(flat.scores) == 0:
        return BinResult(length_bin, num_positives, np.zeros(len(thresholds)), 0.0)
    matched, matched_ignored = match_all(gt, flat, thresholds, gt_ignore)
    pred_outside = ~length_bin.contains(pred_measure)[None, :]
    true_positive = matched & ~matched_ignored
    false_positive = ~matched & ~pred_outside
    counted = true_positive | false_positive
    ap = np.zeros(len(thresholds))
    for t in range(len(thresholds)):
        keep = counted[t]
        if keep.any():
            tp, fp = true_positive[t : t + 1, keep], false_positive[t : t + 1, keep]
            ap[t] = average_precision_from_outcomes(tp, fp, num_positives)[0]
    return BinResult(length_bin, num_positives, ap, float(ap.mean()))


def map_by_length(
    ground_truth: Mapping[str, np.ndarray],
    predictions: Predictions,
    tiou_thresholds: Sequence[float] | np.ndarray = THUMOS_MAP_TIOU,
    bins: Sequence[tuple[float, float]] = DEFAULT_ABSOLUTE_BINS_S,
    durations: Mapping[str, float] | None = None,
) -> list[BinResult]:
    """mAP per action-length bin (module docstring for the protocol).

    Args:
        ground_truth: ``{video_id: [G, 2]}`` seconds.
        predictions: ``{video_id: (segments [P, 2], scores [P])}`` seconds.
        tiou_thresholds: ``[T]``.
        bins: ``(low, high)`` pairs; seconds, or fractions of the duration when ``durations`` is
            given.
        durations: ``{video_id: seconds}``; when given, lengths are relative to the video's
            duration and every video of ``ground_truth`` and ``predictions`` needs one.

    Returns:
        One :class:`BinResult` per bin, in the given order.

    Raises:
        MissingDataError: ``durations`` lacks a video.
        ValueError: malformed input or bins.
    """
    thresholds = as_thresholds(tiou_thresholds)
    length_bins = make_bins(bins)
    gt = validate_ground_truth(ground_truth)
    flat = flatten_predictions(predictions)
    pred_lengths = flat.segments[:, 1] - flat.segments[:, 0]
    if durations is None:
        gt_measure = {video: segs[:, 1] - segs[:, 0] for video, segs in gt.items()}
        pred_measure = pred_lengths
    else:
        gt_durations = _durations_for(list(gt), durations)
        pred_durations = _durations_for(flat.video_names, durations)
        gt_measure = {video: relative_lengths(segs, gt_durations[video]) for video, segs in gt.items()}
        per_code = np.array([pred_durations[name] for name in flat.video_names], dtype=np.float64)
        pred_measure = pred_lengths / per_code[flat.video_codes]
    return [_bin_ap(gt, gt_measure, flat, pred_measure, thresholds, b) for b in length_bins]


def map_by_absolute_length(
    ground_truth: Mapping[str, np.ndarray],
    predictions: Predictions,
    tiou_thresholds: Sequence[float] | np.ndarray = THUMOS_MAP_TIOU,
    bins: Sequence[tuple[float, float]] = DEFAULT_ABSOLUTE_BINS_S,
) -> list[BinResult]:
    """mAP per bin of action length in seconds (default bins :data:`DEFAULT_ABSOLUTE_BINS_S`)."""
    return map_by_length(ground_truth, predictions, tiou_thresholds, bins)


def map_by_relative_length(
    ground_truth: Mapping[str, np.ndarray],
    predictions: Predictions,
    durations: Mapping[str, float],
    tiou_thresholds: Sequence[float] | np.ndarray = THUMOS_MAP_TIOU,
    bins: Sequence[tuple[float, float]] = DEFAULT_RELATIVE_BINS,
) -> list[BinResult]:
    """mAP per bin of action length / video duration (default bins :data:`DEFAULT_RELATIVE_BINS`)."""
    return map_by_length(ground_truth, predictions, tiou_thresholds, bins, durations)


#: Absolute length bins (seconds) for ActivityNet, whose actions last from 1 s to minutes.
ANET_ABSOLUTE_BINS_S: tuple[tuple[float, float], ...] = (
    (0.0, 10.0),
    (10.0, 30.0),
    (30.0, 60.0),
    (60.0, 120.0),
    (120.0, math.inf),
)


def length_bins_for(dataset_name: str) -> tuple[tuple[tuple[float, float], ...], tuple[tuple[float, float], ...]]:
    """``(absolute_bins_s, relative_bins)`` for a dataset: ActivityNet names (``anet*``) get
    :data:`ANET_ABSOLUTE_BINS_S`, every other dataset THUMOS's
    :data:`DEFAULT_ABSOLUTE_BINS_S`; both get
    :data:`DEFAULT_RELATIVE_BINS`."""
    absolute = ANET_ABSOLUTE_BINS_S if str(dataset_name).lower().startswith("anet") else DEFAULT_ABSOLUTE_BINS_S
    return absolute, DEFAULT_RELATIVE_BINS
