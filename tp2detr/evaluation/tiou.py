"""Temporal segments ``[start, end]`` in seconds: validation and pairwise tIoU.

The tIoU follows the official ActivityNet toolkit (``Evaluation/utils.py::segment_iou``) operation
for operation, so that threshold comparisons such as ``tIoU >= 0.5`` agree bit for bit:

    inter = max(0, min(end_p, end_g) - max(start_p, start_g))
    union = (end_g - start_g) + (end_p - start_p) - inter
    tiou  = inter / union
"""

from __future__ import annotations

import numpy as np


def as_segment_array(segments: object, field: str, allow_zero_length: bool = False) -> np.ndarray:
    """Validate and convert segments to a float64 array ``[N, 2]`` (start, end) in seconds.

    Args:
        segments: anything ``np.asarray`` accepts, shape ``[N, 2]`` (``[0]`` or ``[0, 2]`` for none).
        field: name used in error messages, e.g. ``"ground truth of video_test_0000004"``.
        allow_zero_length: accept ``end == start`` (zero-length predictions are legal for the
            official toolkit; zero-length ground truth is not, its tIoU could be 0/0).

    Raises:
        ValueError: wrong shape, non-finite values, or ``end < start`` (``end <= start`` unless
            ``allow_zero_length``); the message names ``field`` and the first bad row.
    """
    array = np.asarray(segments, dtype=np.float64)
    if array.size == 0:
        return np.zeros((0, 2), dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"{field}: expected segments of shape [N, 2], found shape {array.shape}")
    finite = np.isfinite(array).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise ValueError(f"{field}: segment {row} is {array[row].tolist()}, expected finite values")
    lengths = array[:, 1] - array[:, 0]
    bad = lengths < 0 if allow_zero_length else lengths <= 0
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        relation = "end >= start" if allow_zero_length else "end > start"
        raise ValueError(f"{field}: segment {row} is {array[row].tolist()}, expected {relation}")
    return array


def as_score_array(scores: object, count: int, field: str) -> np.ndarray:
    """Validate and convert scores to a float64 array ``[N]`` of finite values.

    Raises:
        ValueError: wrong shape, length different from ``count`` or a non-finite score.
    """
    array = np.asarray(scores, dtype=np.float64)
    if array.size == 0 and count == 0:
        return np.zeros(0, dtype=np.float64)
    if array.ndim != 1 or array.shape[0] != count:
        raise ValueError(f"{field}: expected {count} scores of shape [{count}], found shape {array.shape}")
    finite = np.isfinite(array)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise ValueError(f"{field}: score {row} is {array[row]}, expected a finite number")
    return array


def segment_iou_matrix(predictions: np.ndarray, ground_truth: np.ndarray) -> np.ndarray:
    """Pairwise tIoU between predictions ``[P, 2]`` and ground truth ``[G, 2]`` (seconds).

    Returns:
        float64 ``[P, G]``; row ``p`` equals the official ``segment_iou(pred[p], gt)``.
    """
    pred_start = predictions[:, 0][:, None]
    pred_end = predictions[:, 1][:, None]
    gt_start = ground_truth[:, 0][None, :]
    gt_end = ground_truth[:, 1][None, :]
    intersection = (np.minimum(pred_end, gt_end) - np.maximum(pred_start, gt_start)).clip(0)
    union = (gt_end - gt_start) + (pred_end - pred_start) - intersection
    return intersection / union
