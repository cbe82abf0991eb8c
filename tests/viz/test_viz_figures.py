"""Every figure function renders a real PNG (decodes, not blank, small) from hand-made inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tp2detr.config import compose
from tp2detr.data.annotations import load_annotations
from tp2detr.models.builder import build_model
from tp2detr.viz.map_by_length_figure import breakdown_figure
from tp2detr.viz.canvas import new_figure, save_png
from tp2detr.viz.confidence import confidence_figure, confidence_points
from tp2detr.viz.durations import annotation_durations, duration_histogram_figure
from tp2detr.viz.precision_recall import (
    precision_recall_curves,
    precision_recall_figure,
)
from tp2detr.viz.proposal_timelines import (
    proposal_timeline_figure,
    proposals_vs_ground_truth_figure,
)
from tp2detr.viz.saliency import saliency_figure, window_saliency
from released_config import released_matcher

RNG_SEED = 7


def _video(seed: int = RNG_SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gt_starts = np.sort(rng.uniform(0, 180, size=8))
    gt = np.stack([gt_starts, gt_starts + rng.uniform(2, 10, size=8)], axis=1)
    jitter = rng.normal(0, 1.5, size=(8, 2))
    good = gt + jitter
    good[:, 1] = np.maximum(good[:, 1], good[:, 0] + 0.5)
    starts = rng.uniform(0, 190, size=32)
    noise = np.stack([starts, starts + rng.uniform(1, 20, size=32)], axis=1)
    segments = np.concatenate([good, noise])
    scores = np.concatenate([rng.uniform(0.4, 0.9, size=8), rng.uniform(0.05, 0.95, size=32)])
    return segments, scores, gt


def test_save_png_is_atomic_and_refuses_other_formats(tmp_path: Path, png_check) -> None:
    figure = new_figure(4, 3)
    axes = figure.subplots()
    axes.plot([0, 1, 2], [0, 1, 0])
    axes.set_title("a line")
    with pytest.raises(ValueError, match="expected a .png file name"):
        save_png(figure, tmp_path / "x.pdf")
    path = save_png(figure, tmp_path / "sub" / "line.png", dpi=150)
    assert path == tmp_path / "sub" / "line.png"
    assert [p.name for p in path.parent.iterdir()] == ["line.png"]  # no temp file left behind
    assert png_check(path).shape[:2] == (450, 600)


def test_proposals_vs_ground_truth_and_timeline(tmp_path: Path, png_check) -> None:
    segments, scores, gt = _video()
    figure = proposals_vs_ground_truth_figure(segments, scores, gt, 200.0, released_matcher(), "video_a")
    assert "k = 8" in figure.get_suptitle()
    labels = [ax.get_ylabel() for ax in figure.axes[:3]]
    assert labels[0].startswith("ground truth") and "AvgIoU" in labels[1] and "matching cost" in labels[2]
    assert figure.axes[2].get_xlabel() == "time (s)"
    png_check(save_png(figure, tmp_path / "proposals.png"))
    png_check(save_png(proposal_timeline_figure(segments, scores, top_k=10, video_id="video_a"), tmp_path / "t.png"))
    with_gt = proposal_timeline_figure(segments, scores, top_k=None, ground_truth=gt, duration=200.0)
    png_check(save_png(with_gt, tmp_path / "t_gt.png"))
    with pytest.raises(ValueError, match="found no instance"):
        proposals_vs_ground_truth_figure(segments, scores, np.zeros((0, 2)), 200.0, released_matcher())


def test_confidence_and_precision_recall(tmp_path: Path, png_check) -> None:
    videos = {f"v{i}": _video(i) for i in range(4)}
    gt = {v: entry[2] for v, entry in videos.items()}
    predictions = {v: (entry[0], entry[1]) for v, entry in videos.items()}
    figure = confidence_figure(confidence_points(gt, predictions), "toy")
    assert "Pearson r = " in figure.axes[0].get_title() and "Spearman" in figure.axes[0].get_title()
    png_check(save_png(figure, tmp_path / "confidence.png"))
    curves = precision_recall_curves(gt, predictions, [0.3, 0.5, 0.7])
    figure = precision_recall_figure(curves, "all videos")
    legend = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert legend[0] == f"tIoU 0.3: AP {100 * curves.average_precision[0]:.1f}%"
    png_check(save_png(figure, tmp_path / "pr.png"))


def test_durations_and_breakdown(tmp_path: Path, png_check) -> None:
    annotations = load_annotations(compose(["dataset=toy"]).dataset.annotations)
    groups = {"val": annotation_durations(annotations, "val"), "test": annotation_durations(annotations, "test")}
    figure = duration_histogram_figure(groups, title="toy")
    assert figure.axes[0].get_xlabel() == "action duration (s)"
    png_check(save_png(figure, tmp_path / "durations.png"))
    bins = [
        {"bin": "[0, 2)", "num_gt": 10, "mAP": 0.1},
        {"bin": "[2, 4)", "num_gt": 5, "mAP": 0.3},
        {"bin": "[4, inf]", "num_gt": 0, "mAP": None},
    ]
    relative = [{"bin": "[0, 0.05)", "num_gt": 15, "mAP": 0.2}]
    runs = {"a": {"absolute_s": bins, "relative": relative}, "b": {"absolute_s": bins[:2], "relative": None}}
    figure = breakdown_figure(runs, "two runs")
    assert len(figure.axes) == 2 and figure.axes[0].get_ylabel() == "mAP (%)"
    notes = {text.get_text() for text in figure.axes[0].texts}
    assert {"10.0", "30.0", "no GT", "—"} <= notes
    png_check(save_png(figure, tmp_path / "breakdown.png"))


def test_saliency_of_a_tiny_model(tmp_path: Path, png_check) -> None:
    cfg = compose(["dataset=toy", "model.dim_feedforward=32", "model.encoder_layers=1", "model.decoder_layers=2",
                   "model.num_queries=5"])
    torch.manual_seed(0)
    model = build_model(cfg).train()
    length = 64
    feats = torch.randn(length, int(cfg.dataset.features.dim))
    outputs = window_saliency(model, feats)
    assert model.training  # given back in its mode
    assert outputs.fpn_logits.shape == outputs.enc_logits.shape == (length,)
    assert outputs.boxes.shape == (5, 2) and outputs.actionness_logits.shape == (5,)
    model.eval()
    with torch.no_grad():
        direct = model(feats[None], torch.zeros(1, length, dtype=torch.bool), with_salient=True)
    np.testing.assert_allclose(outputs.enc_logits, direct["salient"]["enc"][0].double().numpy(), atol=1e-5)
    np.testing.assert_allclose(outputs.fpn_logits, direct["salient"]["fpn"][0].double().numpy(), atol=1e-5)
    times = np.arange(length) / 3.75
    mask = np.zeros(length)
    mask[10:20] = 1
    figure = saliency_figure(
        times, outputs.fpn_logits, outputs.enc_logits, mask, ground_truth=np.array([[2.7, 5.1]]),
        proposals=np.array([[2.0, 5.0], [8.0, 9.0]]), title="window",
    )
    assert figure.axes[0].get_ylabel().startswith("salient probability")
    png_check(save_png(figure, tmp_path / "saliency.png"))
    logits = saliency_figure(times, None, outputs.enc_logits, mask, scale="logit")
    assert logits.axes[0].get_ylabel() == "salient logit"
    with pytest.raises(ValueError, match="expected at least one salient head"):
        saliency_figure(times, None, None, mask)
