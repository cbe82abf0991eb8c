"""From a trained model to video-level proposals in seconds (docs/fidelity.md §6).

1. :func:`predict_batches` runs the model over an evaluation loader (eval mode, no autograd) and
   keeps the **last decoder layer** only: score = ``sigmoid(actionness)``; each (centre, width)
   box becomes ``(c − w/2, c + w/2)`` clamped to [0, 1] and is scaled by the sample's duration
   (seconds) and shifted by its offset. The top ``min(100, Q)`` proposals are kept, i.e. all of
   them for the paper's 40 (THUMOS) or 30 (ActivityNet) queries.
2. :func:`video_proposals` groups the windows by video. THUMOS sliding windows are fused with the
   released code's cross-window NMS (:mod:`tp2detr.evaluation.stitching`, IoU 0.4 inside window
   overlaps only); ActivityNet (one resized window per video) is passed through without NMS.
   Zero-length proposals (end ≤ start after clamping) are dropped, since results files require
   end > start.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from tp2detr.data.samples import Sample
from tp2detr.evaluation.stitching import WindowProposals, stitch_videos

logger = logging.getLogger(__name__)

#: The released post-processing keeps the top ``min(MAX_PROPOSALS_PER_WINDOW, Q)`` proposals.
MAX_PROPOSALS_PER_WINDOW = 100

VideoPredictions = dict[str, tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class WindowPrediction:
    """The proposals of one model input (a THUMOS window or a resized ActivityNet video).

    Attributes:
        sample: the input's :class:`~tp2detr.data.samples.Sample` (video_id, start/end snippet,
            feature_fps, offset and duration in seconds).
        relative_segments: float64 ``[K, 2]`` (start, end) seconds from the sample's start,
            ``clamp(c ∓ w/2, 0, 1) · duration``.
        segments: float64 ``[K, 2]`` (start, end) seconds of video time,
            ``offset + relative_segments``.
        scores: float64 ``[K]`` ``sigmoid(actionness)`` of the last decoder layer.
    """

    sample: Sample
    relative_segments: np.ndarray
    segments: np.ndarray
    scores: np.ndarray


def boxes_to_segments(boxes: torch.Tensor) -> torch.Tensor:
    """(centre, width) → (start, end), clamped to [0, 1].

    Args:
        boxes: ``[..., 2]`` normalised (c, w).

    Returns:
        ``[..., 2]`` normalised (start, end), same dtype.
    """
    centre, width = boxes.unbind(-1)
    return torch.stack([centre - width / 2, centre + width / 2], dim=-1).clamp(0.0, 1.0)


def window_predictions_from_outputs(
    outputs: Mapping[str, Any],
    samples: Sequence[Sample],
    max_proposals: int = MAX_PROPOSALS_PER_WINDOW,
) -> list[WindowPrediction]:
    """Post-process one batch of model outputs (last decoder layer).

    Args:
        outputs: the model's dict with ``boxes [n_dec, B, Q, 2]`` (c, w) in (0, 1) and
            ``actionness [n_dec, B, Q]`` logits.
        samples: the B samples of the batch, in batch order.
        max_proposals: keep the top ``min(max_proposals, Q)`` by score (all when Q ≤ it, in
            query order; otherwise the best ones in descending score order).

    Returns:
        One :class:`WindowPrediction` per sample.

    Raises:
        ValueError: shapes that do not match each other or the number of samples.
    """
    boxes, logits = outputs["boxes"], outputs["actionness"]
    if boxes.dim() != 4 or boxes.shape[-1] != 2 or logits.dim() != 3 or boxes.shape[:3] != logits.shape:
        raise ValueError(
            "model outputs: expected boxes [n_dec, B, Q, 2] and actionness [n_dec, B, Q], found "
            f"{tuple(boxes.shape)} and {tuple(logits.shape)}"
        )
    if boxes.shape[1] != len(samples):
        raise ValueError(f"model outputs: batch of {boxes.shape[1]} but {len(samples)} samples, expected equal")
    if max_proposals < 1:
        raise ValueError(f"max_proposals is {max_proposals}, expected at least 1")
    normalised = boxes_to_segments(boxes[-1].float()).detach().cpu().double().numpy()
    scores = logits[-1].float().sigmoid().detach().cpu().double().numpy()
    out = []
    for b, sample in enumerate(samples):
        se, score = normalised[b], scores[b]
        if len(score) > max_proposals:
            keep = np.argsort(-score, kind="stable")[:max_proposals]
            se, score = se[keep], score[keep]
        relative = se * sample.duration
        out.append(WindowPrediction(sample, relative, relative + sample.offset, score))
    return out


def predict_batches(
    model: nn.Module,
    loader: Iterable[Mapping[str, Any]],
    device: torch.device | str,
    amp_dtype: torch.dtype | None = None,
    max_proposals: int = MAX_PROPOSALS_PER_WINDOW,
) -> list[WindowPrediction]:
    """Run ``model`` over ``loader`` and post-process every sample (module docstring, step 1).

    The model is put in eval mode under ``torch.inference_mode()`` and given back in the mode it
    had.

    Args:
        model: returns ``{"boxes": [n_dec, B, Q, 2], "actionness": [n_dec, B, Q], ...}`` from
            ``model(feats [B, T, C], mask [B, T])``.
        loader: yields batches of :func:`tp2detr.data.dataset.collate_samples` (``feats``,
            ``mask``, ``samples``).
        device: where the forward pass runs.
        amp_dtype: autocast dtype (e.g. ``torch.bfloat16``), or None for full precision.
        max_proposals: see :func:`window_predictions_from_outputs`.

    Returns:
        One :class:`WindowPrediction` per sample, in loader order.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    predictions: list[WindowPrediction] = []
    try:
        with torch.inference_mode():
            for batch in loader:
                feats = batch["feats"].to(device, non_blocking=True)
                mask = batch["mask"].to(device, non_blocking=True)
                with torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    outputs = model(feats, mask)
                predictions.extend(window_predictions_from_outputs(outputs, batch["samples"], max_proposals))
    finally:
        model.train(was_training)
    return predictions


def _windows_by_video(window_predictions: Iterable[WindowPrediction]) -> OrderedDict[str, list[WindowPrediction]]:
    """Videos in sorted id order, each with its windows sorted by (start, end) snippet; exact
    duplicates of a window (a distributed sampler pads with repeated samples) are kept once."""
    grouped: dict[str, dict[tuple[int, int], WindowPrediction]] = {}
    duplicates = 0
    for prediction in window_predictions:
        windows = grouped.setdefault(prediction.sample.video_id, {})
        key = (prediction.sample.start, prediction.sample.end)
        if key in windows:
            duplicates += 1
            continue
        windows[key] = prediction
    if duplicates:
        logger.debug("video_proposals: %d repeated windows ignored", duplicates)
    return OrderedDict((video, [windows[k] for k in sorted(windows)]) for video, windows in sorted(grouped.items()))


def _score_sorted_concatenation(windows: Sequence[WindowPrediction]) -> tuple[np.ndarray, np.ndarray]:
    """Each window's proposals by ``scores.argsort()[::-1]`` (the stitching's own first step),
    concatenated in window order."""
    orders = [w.scores.argsort()[::-1] for w in windows]
    segments = np.concatenate([w.segments[o] for w, o in zip(windows, orders)]).reshape(-1, 2)
    scores = np.concatenate([w.scores[o] for w, o in zip(windows, orders)])
    return segments, scores


def video_proposals(
    window_predictions: Iterable[WindowPrediction],
    nms_threshold: float | None,
    stitch_deduplicate: bool = False,
) -> VideoPredictions:
    """Video-level proposals (module docstring, step 2).

    Args:
        window_predictions: from :func:`predict_batches`, any order (also gathered from several
            processes).
        nms_threshold: cross-window NMS IoU (THUMOS 0.4, ``dataset.evaluation.nms_threshold``);
            None concatenates each video's windows without NMS (ActivityNet).
        stitch_deduplicate: output a detection lying in two window overlaps once instead of the
            released code's twice (:func:`tp2detr.evaluation.stitching.stitch_windows`).

    Returns:
        ``{video_id: (segments float64 [P, 2] seconds, scores float64 [P])}``, videos in sorted id
        order; within a video, the stitching's output order (or, without NMS, each window's
        proposals by descending score, windows by start). Videos whose proposals all had zero
        length map to empty arrays.
    """
    by_video = _windows_by_video(window_predictions)
    if nms_threshold is None:
        merged = {video: _score_sorted_concatenation(windows) for video, windows in by_video.items()}
    else:
        merged = stitch_videos(
            {
                video: [
                    WindowProposals(w.sample.start, w.sample.end, w.sample.feature_fps, w.relative_segments, w.scores)
                    for w in windows
                ]
                for video, windows in by_video.items()
            },
            iou_threshold=float(nms_threshold),
            deduplicate=stitch_deduplicate,
        )
    out: VideoPredictions = {}
    dropped = 0
    for video, (segments, scores) in merged.items():
        positive = segments[:, 1] > segments[:, 0]
        dropped += int((~positive).sum())
        out[video] = (segments[positive], scores[positive])
    if dropped:
        logger.debug("video_proposals: %d zero-length proposals dropped (end <= start after clamping)", dropped)
    return out
