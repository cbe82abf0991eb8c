"""Every evaluation figure of one ``eval.py`` run (``plots=true``), written into one folder.

Figures (PNG, :data:`~tp2detr.viz.canvas.DEFAULT_DPI`):

* per example video — the ``num_videos`` evaluation videos with the most ground-truth (GT)
  instances (ties by video id, :func:`example_videos`):
  ``proposals_<video>.png`` (top-k by score and by matching cost, :mod:`.proposals`),
  ``pr_<video>.png`` (precision–recall of that video, :mod:`.precision_recall`) and, with a model,
  ``saliency_<video>.png`` (the salient heads on the video's input with the most GT instances,
  :mod:`.saliency`);
* for the evaluation set — ``pr_all.png`` (its points are the ones the reported AP integrates),
  ``confidence_vs_tiou.png`` (:mod:`.confidence`), ``durations.png`` (instance durations of the
  split's training and evaluation instances, :mod:`.durations`) and ``breakdown.png`` (mAP by
  action length, when the metrics hold a breakdown, :mod:`.breakdown`).

As in the evaluation, only videos with GT count (the others' proposals are dropped).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from omegaconf import DictConfig
from scipy.special import expit
from torch import nn

from tp2detr.data.protocol import ZeroShotProtocol
from tp2detr.viz.map_by_length_figure import breakdown_figure
from tp2detr.viz.canvas import file_stem, save_png
from tp2detr.viz.confidence import confidence_figure, confidence_points
from tp2detr.viz.durations import action_durations, duration_histogram_figure
from tp2detr.viz.precision_recall import (
    precision_recall_curves,
    precision_recall_figure,
)
from tp2detr.losses.hungarian_matcher import build_matcher
from tp2detr.viz.proposal_timelines import (
    proposals_vs_ground_truth_figure,
    top_k_by_matching_cost,
    top_k_by_score,
)
from tp2detr.viz.saliency import saliency_figure, snippet_times, window_saliency

logger = logging.getLogger(__name__)

Predictions = Mapping[str, tuple[np.ndarray, np.ndarray]]


def example_videos(ground_truth: Mapping[str, np.ndarray], count: int) -> list[str]:
    """The ``count`` videos with the most GT instances (ties: smaller video id first)."""
    with_gt = [video for video, segs in ground_truth.items() if len(segs)]
    ranked = sorted(with_gt, key=lambda video: (-len(ground_truth[video]), video))
    return ranked[: max(int(count), 0)]


def _no_predictions() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((0, 2)), np.zeros(0)


def _save(figure: Figure, path: Path, written: list[Path]) -> None:
    written.append(save_png(figure, path))
    logger.debug("wrote %s", path)


def _saliency_input(dataset: Any, video: str) -> int | None:
    """Index in ``dataset.samples`` of the video's input with the most GT instances (first such)."""
    best, best_count = None, -1
    for index, sample in enumerate(dataset.samples):
        if sample.video_id == video and len(sample.segments) > best_count:
            best, best_count = index, len(sample.segments)
    return best


def write_saliency_figure(
    path: Path, model: nn.Module, dataset: Any, video: str, matcher_cfg: Mapping[str, Any], device: torch.device | str
) -> bool:
    """``saliency_<video>.png`` on the video's input with the most GT instances; False (logged)
    when the video has no input or the model has no salient head."""
    index = _saliency_input(dataset, video)
    if index is None:
        logger.info("saliency figure of %s skipped: the video has no model input in the dataset", video)
        return False
    item = dataset[index]
    sample = item["sample"]
    outputs = window_saliency(model, item["feats"], device)
    if outputs.fpn_logits is None and outputs.enc_logits is None:
        logger.info("saliency figures skipped: the model has no salient head (salient=off)")
        return False
    scores = expit(outputs.actionness_logits)
    centre, width = outputs.boxes[:, 0], outputs.boxes[:, 1]
    relative = np.clip(np.stack([centre - width / 2, centre + width / 2], axis=1), 0.0, 1.0) * sample.duration
    gt = np.asarray(sample.segments, dtype=np.float64).reshape(-1, 2)
    if len(gt):
        chosen, _ = top_k_by_matching_cost(relative, scores, gt, sample.duration, build_matcher(matcher_cfg))
        what = "matched queries"
    else:
        chosen, what = top_k_by_score(scores, 3), "top-3 queries by score"
    end_s = sample.offset + sample.duration
    title = (
        f"{video}, snippets {sample.start}–{sample.end} ({sample.offset:.1f}–{end_s:.1f} s): "
        f"salient heads; proposals of the {what}"
    )
    figure = saliency_figure(
        snippet_times(sample), outputs.fpn_logits, outputs.enc_logits, item["salient"].numpy(),
        ground_truth=gt + sample.offset, proposals=relative[chosen] + sample.offset, title=title,
    )
    save_png(figure, path)
    return True


def write_eval_figures(
    plots_dir: str | os.PathLike,
    predictions: Predictions,
    protocol: ZeroShotProtocol,
    cfg: DictConfig,
    metrics: Mapping[str, Any],
    num_videos: int = 3,
    model: nn.Module | None = None,
    dataset: Any = None,
    device: torch.device | str = "cpu",
) -> list[Path]:
    """Write every figure of the module docstring into ``plots_dir``.

    Args:
        plots_dir: the folder (created).
        predictions: ``{video_id: (segments [P, 2] seconds, scores [P])}`` of the evaluation.
        protocol: the evaluated protocol (GT, durations, training instances).
        cfg: the evaluated config: ``dataset`` (``name``, ``evaluation.tiou_thresholds``) and
            ``loss.matcher`` (the matching cost of the proposal figures), ``split``.
        metrics: the evaluation's ``METRICS`` (:mod:`tp2detr.evaluation.evaluate`).
        num_videos: how many example videos get per-video figures.
        model: the evaluated model (on ``device``), or None (no saliency figures: predictions
            mode).
        dataset: the evaluation :class:`~tp2detr.data.dataset.ProposalDataset` (features of the
            model's inputs), needed with ``model``.
        device: where ``model`` is.

    Returns:
        The paths written, in writing order.
    """
    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    ground_truth = {video: segs for video, segs in protocol.eval_ground_truth.items() if len(segs)}
    durations = protocol.eval_durations
    kept = {video: entry for video, entry in predictions.items() if video in ground_truth}
    thresholds = list(cfg.dataset.evaluation.tiou_thresholds)
    matcher = build_matcher(cfg.loss.matcher)
    run_label = f"{cfg.dataset.name} {cfg.split.setting} split {cfg.split.id}"
    written: list[Path] = []

    videos = example_videos(ground_truth, num_videos)
    for video in videos:
        segments, scores = kept.get(video, _no_predictions())
        stem = file_stem(video)
        _save(proposals_vs_ground_truth_figure(segments, scores, ground_truth[video], durations[video], matcher, video),
              plots_dir / f"proposals_{stem}.png", written)
        curves = precision_recall_curves({video: ground_truth[video]}, {video: (segments, scores)}, thresholds)
        _save(precision_recall_figure(curves, f"{video} ({run_label})"), plots_dir / f"pr_{stem}.png", written)
    if model is None or dataset is None:
        logger.info("saliency figures skipped: they need the model (checkpoint mode), not a predictions file")
    else:
        for video in videos:
            path = plots_dir / f"saliency_{file_stem(video)}.png"
            if write_saliency_figure(path, model, dataset, video, cfg.loss.matcher, device):
                written.append(path)

    curves = precision_recall_curves(ground_truth, kept, thresholds)
    _save(precision_recall_figure(curves, f"all evaluation videos ({run_label})"), plots_dir / "pr_all.png", written)
    _save(confidence_figure(confidence_points(ground_truth, kept), run_label),
          plots_dir / "confidence_vs_tiou.png", written)
    groups = {
        "training (seen classes)": action_durations(protocol.train_videos),
        "evaluation (unseen classes)": action_durations(protocol.eval_videos),
    }
    _save(duration_histogram_figure(groups, title=f"action durations, {run_label}"),
          plots_dir / "durations.png", written)
    if metrics.get("breakdown"):
        _save(breakdown_figure({run_label: metrics["breakdown"]}, f"mAP by action length, {run_label}"),
              plots_dir / "breakdown.png", written)
    else:
        logger.info("breakdown figure skipped: the metrics hold no breakdown (trainer.breakdown=false)")
    logger.info("wrote %d figures into %s", len(written), plots_dir)
    return written
