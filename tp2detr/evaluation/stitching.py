"""Merging THUMOS sliding-window proposals into video-level proposals (released code's semantics).

The released code (GAP/TP²-DETR ``eval/tad_eval.py::cross_window_fusion``) does, per video:

1. Each window's proposals are sorted by ``scores.argsort()[::-1]`` and shifted from window-relative
   seconds to video seconds by the window's offset ``start_snippet / feature_fps``. The video's
   detection list is the windows' lists concatenated in input (inference) order.
2. Windows that contributed at least one detection are sorted by ``start_snippet``; for each
   adjacent pair (cur, next) the overlap span is ``[next.start_snippet, cur.end_snippet] /
   cur.feature_fps`` seconds (inclusive snippet indices).
3. For each span in that order: the detections that intersect it, ``min(end, span_end) -
   max(start, span_start) > 0`` (strict), from any window, go through hard temporal NMS
   (:func:`temporal_nms`, suppress IoU > 0.4); the survivors are appended in descending score
   order (``argsort()[::-1]`` of their scores).
4. The detections that intersect no span are appended unchanged, in list order. No other NMS.

A video with a single window (or windows without overlap) is returned unchanged in list order.
A detection that intersects two spans is processed in both and can be output twice (docs/fidelity.md §11.13);
that is the default, for fidelity. ``deduplicate=True`` keeps only the first occurrence of each
detection; everything else is identical.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from tp2detr.evaluation.tiou import as_score_array, as_segment_array

#: IoU above which the released code suppresses a detection inside an overlap span.
CROSS_WINDOW_NMS_IOU = 0.4


@dataclass(frozen=True)
class WindowProposals:
    """One sliding window's proposals.

    Attributes:
        start_snippet: first snippet index of the window (inclusive).
        end_snippet: last snippet index of the window (inclusive).
        feature_fps: snippets per second of the video's features.
        segments: float ``[Q, 2]`` (start, end) in seconds relative to the window's start.
        scores: float ``[Q]``.
    """

    start_snippet: int
    end_snippet: int
    feature_fps: float
    segments: np.ndarray
    scores: np.ndarray


@dataclass(frozen=True)
class VideoProposals:
    """Video-level proposals.

    Attributes:
        segments: float64 ``[N, 2]`` seconds from the start of the video.
        scores: float64 ``[N]``.
        window_index: int64 ``[N]``; the input window each proposal comes from.
    """

    segments: np.ndarray
    scores: np.ndarray
    window_index: np.ndarray


def temporal_nms(segments: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Hard 1-D non-maximum suppression, as in the released code's ``temporal_nms``.

    Visits segments by ``scores.argsort()[::-1]``; keeps the current one and suppresses the
    remaining ones whose IoU with it is ``> iou_threshold``. The IoU uses the *unclipped*
    intersection ``min(ends) - max(starts)`` (negative for disjoint segments, which are therefore
    kept); two zero-length segments at the same time give 0/0, which suppresses.

    Args:
        segments: float ``[P, 2]`` (start, end).
        scores: float ``[P]``.
        iou_threshold: suppression threshold.

    Returns:
        int64 ``[K]`` indices of the kept segments, in the order they were kept (descending score).
    """
    segments = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(segments) != len(scores):
        raise ValueError(f"temporal_nms: {len(segments)} segments but {len(scores)} scores, expected equal counts")
    starts, ends = segments[:, 0], segments[:, 1]
    durations = ends - starts
    order = scores.argsort()[::-1]
    keep: list[int] = []
    with np.errstate(divide="ignore", invalid="ignore"):
        while order.size > 0:
            current = int(order[0])
            keep.append(current)
            rest = order[1:]
            intersection = np.minimum(ends[current], ends[rest]) - np.maximum(starts[current], starts[rest])
            iou = intersection / (durations[current] + durations[rest] - intersection)
            order = rest[iou <= iou_threshold]
    return np.array(keep, dtype=np.int64)


def _video_detection_list(windows: Sequence[WindowProposals]) -> VideoProposals:
    """Step 1: per window score-sorted, shifted to video seconds, concatenated in input order."""
    segment_chunks, score_chunks, window_chunks = [], [], []
    for index, window in enumerate(windows):
        field = f"window {index} (snippets {window.start_snippet}..{window.end_snippet})"
        if window.feature_fps <= 0:
            raise ValueError(f"{field}: feature_fps is {window.feature_fps}, expected a positive number")
        if window.end_snippet < window.start_snippet:
            raise ValueError(f"{field}: end_snippet < start_snippet, expected an inclusive [start, end] range")
        segments = as_segment_array(window.segments, field, allow_zero_length=True)
        scores = as_score_array(window.scores, len(segments), field)
        order = scores.argsort()[::-1]
        segment_chunks.append(segments[order] + window.start_snippet / window.feature_fps)
        score_chunks.append(scores[order])
        window_chunks.append(np.full(len(segments), index, dtype=np.int64))
    if not segment_chunks:
        return VideoProposals(np.zeros((0, 2)), np.zeros(0), np.zeros(0, dtype=np.int64))
    return VideoProposals(np.concatenate(segment_chunks), np.concatenate(score_chunks), np.concatenate(window_chunks))


def overlap_spans(windows: Sequence[WindowProposals], with_detections: Sequence[int]) -> list[tuple[float, float]]:
    """Step 2: ``[next.start, cur.end] / cur.feature_fps`` seconds for adjacent windows.

    Args:
        windows: all input windows.
        with_detections: indices of the windows that contributed detections (the only ones the
            released code sees).

    Returns:
        One (start, end) span per adjacent pair after sorting by ``start_snippet`` (stable); the
        span is empty or inverted when the windows do not overlap.
    """
    ordered = sorted(with_detections, key=lambda i: windows[i].start_snippet)
    spans = []
    for cur, nxt in zip(ordered[:-1], ordered[1:]):
        fps = windows[cur].feature_fps
        spans.append((windows[nxt].start_snippet / fps, windows[cur].end_snippet / fps))
    return spans


def stitch_windows(
    windows: Sequence[WindowProposals],
    iou_threshold: float = CROSS_WINDOW_NMS_IOU,
    deduplicate: bool = False,
) -> VideoProposals:
    """Merge one video's window proposals into video-level proposals (module docstring).

    Args:
        windows: the video's windows, in inference order.
        iou_threshold: NMS threshold inside overlap spans (0.4 in the released code).
        deduplicate: output each detection at most once (first occurrence) instead of the
            released code's possible duplicates.

    Returns:
        :class:`VideoProposals` in the documented output order.
    """
    detections = _video_detection_list(windows)
    windows_with_detections = sorted(set(detections.window_index.tolist()))
    if len(windows_with_detections) <= 1:
        return detections
    starts, ends = detections.segments[:, 0], detections.segments[:, 1]
    picked: list[np.ndarray] = []
    in_any_span = np.zeros(len(detections.scores), dtype=bool)
    for span_start, span_end in overlap_spans(windows, windows_with_detections):
        intersects = (np.minimum(ends, span_end) - np.maximum(starts, span_start)) > 0
        in_any_span |= intersects
        rows = np.flatnonzero(intersects)
        if len(rows) == 0:
            continue
        kept = rows[temporal_nms(detections.segments[rows], detections.scores[rows], iou_threshold)]
        picked.append(kept[detections.scores[kept].argsort()[::-1]])
    picked.append(np.flatnonzero(~in_any_span))
    order = np.concatenate(picked)
    if deduplicate:
        _, first = np.unique(order, return_index=True)
        order = order[np.sort(first)]
    return VideoProposals(detections.segments[order], detections.scores[order], detections.window_index[order])


def stitch_videos(
    windows_by_video: dict[str, Sequence[WindowProposals]],
    iou_threshold: float = CROSS_WINDOW_NMS_IOU,
    deduplicate: bool = False,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """:func:`stitch_windows` for every video: ``{video_id: (segments [N, 2] s, scores [N])}``."""
    out = {}
    for video, windows in windows_by_video.items():
        stitched = stitch_windows(windows, iou_threshold, deduplicate)
        out[video] = (stitched.segments, stitched.scores)
    return out
