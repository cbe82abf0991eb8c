"""Proposals for videos outside any dataset (``predict.py``), computed exactly as evaluation does.

Each video is given as snippet features ``[T, C]`` and a :class:`~tp2detr.data.annotations.FeatureInfo`
(how the rows map to seconds). :func:`predict_video_proposals` turns them into the protocol's
evaluation samples with the dataset config's windowing (:func:`tp2detr.data.samples.build_samples`,
``training=False``: THUMOS-style sliding windows at the eval stride, or ActivityNet-style
resizing), reads them through :class:`~tp2detr.data.dataset.ProposalDataset` over an
:class:`~tp2detr.data.memory.InMemoryFeatureStore`, runs
:func:`~tp2detr.engine.proposal_inference.predict_batches` and stitches the windows with
:func:`~tp2detr.engine.proposal_inference.video_proposals`. The same features as a store on disk give the
same proposals through ``eval.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from tp2detr.data.annotations import FeatureInfo
from tp2detr.data.dataset import ProposalDataset, collate_samples
from tp2detr.data.memory import InMemoryFeatureStore
from tp2detr.data.protocol import ProtocolVideo
from tp2detr.data.samples import build_samples
from tp2detr.engine.proposal_inference import VideoPredictions, predict_batches, video_proposals
from tp2detr.errors import ConfigError


def feature_info_from_fps(video_id: str, snippets: int, feature_fps: float) -> FeatureInfo:
    """The feature info of ``snippets`` feature rows at ``feature_fps`` rows per second, when the
    video's frame rate is unknown: ``snippet_duration = snippets / feature_fps`` seconds; the frame
    fields describe one frame per snippet (``video_fps = feature_fps``, ``frame_length = snippets``),
    so :attr:`FeatureInfo.feature_fps` is ``feature_fps`` and the duration is ``snippet_duration``.

    Raises:
        ValueError: ``feature_fps`` is not positive or ``snippets`` is negative.
    """
    if not feature_fps > 0:
        raise ConfigError(f"feature_fps is {feature_fps}, expected a positive number of snippets per second")
    if snippets < 0:
        raise ConfigError(f"video '{video_id}': {snippets} snippets, expected >= 0")
    return FeatureInfo(
        video_id=video_id,
        frame_length=int(snippets),
        video_fps=float(feature_fps),
        snippet_length=int(snippets),
        snippet_duration=snippets / float(feature_fps),
    )


def feature_info_from_entry(video_id: str, entry: Mapping[str, Any]) -> FeatureInfo:
    """A feature-info record (``frame_length``, ``video_fps``, ``snippet_length``,
    ``snippet_duration``; e.g. :attr:`tp2detr.extraction.VideoFeatures.info`) as a :class:`FeatureInfo`."""
    return FeatureInfo(
        video_id=video_id,
        frame_length=int(entry["frame_length"]),
        video_fps=float(entry["video_fps"]),
        snippet_length=int(entry["snippet_length"]),
        snippet_duration=float(entry["snippet_duration"]),
    )


def video_duration(info: FeatureInfo) -> float:
    """The video's length in seconds, ``frame_length / video_fps`` (for :func:`feature_info_from_fps`
    records: ``snippets / feature_fps``). Every proposal lies within ``[0, video_duration]``."""
    return info.frame_length / info.video_fps if info.video_fps > 0 else 0.0


def predict_video_proposals(
    model: nn.Module,
    dataset_cfg: Mapping[str, Any],
    features: Mapping[str, np.ndarray],
    infos: Mapping[str, FeatureInfo],
    device: torch.device | str,
    amp_dtype: torch.dtype | None = None,
    batch_size: int = 64,
    stitch_deduplicate: bool = False,
    sources: Mapping[str, str | Path] | None = None,
) -> VideoPredictions:
    """Video-level proposals of in-memory features, with evaluation's windowing and stitching.

    Args:
        model: the detector (``length_multiple`` sets the padding of a batch).
        dataset_cfg: the checkpoint's ``dataset`` config: ``windowing`` (mode, size, eval stride,
            integrity), ``evaluation.nms_threshold`` (cross-window NMS, None for none),
            ``features.dim`` and ``features.length_tolerance``.
        features: ``{video_id: float [T, C]}`` snippet features.
        infos: ``{video_id: FeatureInfo}`` for every video of ``features``; ``snippet_length``
            may differ from ``T`` by ``length_tolerance`` snippets (as with a store on disk).
        device: where the model runs.
        amp_dtype: autocast dtype, or None for fp32.
        batch_size: model inputs (windows) per forward pass.
        stitch_deduplicate: see :func:`~tp2detr.engine.proposal_inference.video_proposals`.
        sources: ``{video_id: file}`` for messages.

    Returns:
        ``{video_id: (segments float64 [P, 2] seconds, scores float64 [P])}`` for every video of
        ``features``, in sorted id order (empty arrays for a video without proposals).

    Raises:
        ValueError: a video without feature info, or a non-positive ``batch_size``.
        DataFormatError: features whose shape disagrees with ``features.dim`` or the feature info.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size is {batch_size}, expected a positive number of windows")
    missing = sorted(set(features) - set(infos))
    if missing:
        raise ConfigError(f"videos {', '.join(missing)}: no feature info, expected one per video")
    videos = [ProtocolVideo(vid, video_duration(infos[vid]), infos[vid], ()) for vid in sorted(features)]
    samples = build_samples(videos, dataset_cfg["windowing"], training=False)
    store = InMemoryFeatureStore(
        features,
        sources=sources,
        expected_dim=int(dataset_cfg["features"]["dim"]),
        expected_lengths={vid: infos[vid].snippet_length for vid in features},
        length_tolerance=int(dataset_cfg["features"].get("length_tolerance", 2)),
    )
    dataset = ProposalDataset(samples, store, resize=dataset_cfg["windowing"]["mode"] == "resize")
    loader = DataLoader(
        dataset,
        batch_size=int(batch_size),
        shuffle=False,
        collate_fn=partial(collate_samples, pad_multiple=getattr(model, "length_multiple", 1)),
    )
    windows = predict_batches(model, loader, device, amp_dtype)
    proposals = video_proposals(windows, dataset_cfg["evaluation"].get("nms_threshold"), stitch_deduplicate)
    empty = (np.zeros((0, 2), dtype=np.float64), np.zeros(0, dtype=np.float64))
    return {vid: proposals.get(vid, empty) for vid in sorted(features)}


def top_k_per_video(predictions: Mapping[str, tuple[np.ndarray, np.ndarray]], top_k: int | None) -> VideoPredictions:
    """Each video's proposals sorted by descending score (ties keep their order), the first
    ``top_k`` kept (all when None).

    Raises:
        ValueError: ``top_k`` below 1.
    """
    if top_k is not None and top_k < 1:
        raise ConfigError(f"top_k is {top_k}, expected a positive number of proposals per video (or null for all)")
    out: VideoPredictions = {}
    for video, (segments, scores) in predictions.items():
        order = np.argsort(-np.asarray(scores), kind="stable")[: None if top_k is None else int(top_k)]
        segments = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
        out[video] = (segments[order], np.asarray(scores, dtype=np.float64)[order])
    return out
