"""The two salient heads' outputs along one model input against its foreground mask (paper Fig. 8).

The salient heads (TFPN and encoder, :mod:`tp2detr.models.salient`) only supervise training; the
model computes them in eval mode when called with ``with_salient=True`` (output key
``"salient"``: ``{"fpn": [B, T], "enc": [B, T]}`` logits). :func:`window_saliency` runs one
window (THUMOS) or resized video (ActivityNet) through the model and returns them with the last
decoder layer's boxes; :func:`saliency_figure` draws them (as sigmoid probabilities by default)
over the salient ground-truth mask, with the ground truth and the proposals of the queries the
training matcher assigns to it (paper: "predicted proposals from matched queries").

The shaded mask is the salient heads' training target as the released code builds it (snippets
⌊s⌋…⌈e⌉ of each instance, :func:`tp2detr.data.windows.salient_mask`), so it reaches up to a
snippet beyond the ground-truth bars on either side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure
from scipy.special import expit
from torch import nn

from tp2detr.data.samples import Sample
from tp2detr.viz.canvas import (
    ENCODER_COLOUR,
    GROUND_TRUTH_COLOUR,
    PROPOSAL_COLOUR,
    TFPN_COLOUR,
    new_figure,
)
from tp2detr.viz.proposal_timelines import draw_segment_lanes

#: ``scale`` values of :func:`saliency_figure`.
SCALES = ("probability", "logit")


@dataclass(frozen=True)
class WindowSaliency:
    """The model's outputs on one input of T snippets.

    Attributes:
        fpn_logits: float64 ``[T]`` TFPN salient head logits, or None (``salient=off`` or
            ``encoder_only``).
        enc_logits: float64 ``[T]`` encoder salient head logits, or None (``salient=off``).
        boxes: float64 ``[Q, 2]`` last decoder layer's (centre, width), fractions of the input's
            duration.
        actionness_logits: float64 ``[Q]`` last decoder layer's actionness logits.
    """

    fpn_logits: np.ndarray | None
    enc_logits: np.ndarray | None
    boxes: np.ndarray
    actionness_logits: np.ndarray


def _as_numpy(tensor: torch.Tensor | None, length: int) -> np.ndarray | None:
    if tensor is None:
        return None
    return tensor[0, :length].detach().float().cpu().double().numpy()


def window_saliency(model: nn.Module, feats: torch.Tensor, device: torch.device | str = "cpu") -> WindowSaliency:
    """Run ``model`` (in eval mode, no autograd) on one input with ``with_salient=True``.

    Args:
        model: a :class:`~tp2detr.models.detector.TP2DETR` (on ``device``).
        feats: ``[T, C]`` snippet features of one window / resized video.
        device: where the model is.

    Returns:
        :class:`WindowSaliency`; the salient logits are cut to the T valid snippets. The model is
        given back in the mode it had.
    """
    if feats.dim() != 2:
        raise ValueError(f"feats: expected one input's features [T, C], found shape {tuple(feats.shape)}")
    length = int(feats.shape[0])
    multiple = max(int(getattr(model, "length_multiple", 1)), 1)
    padded = -(-length // multiple) * multiple
    batch = torch.zeros(1, padded, feats.shape[1], dtype=torch.float32)
    batch[0, :length] = feats.float()
    mask = torch.ones(1, padded, dtype=torch.bool)
    mask[0, :length] = False
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            outputs = model(batch.to(device), mask.to(device), with_salient=True)
    finally:
        model.train(was_training)
    salient = outputs["salient"]
    return WindowSaliency(
        fpn_logits=_as_numpy(salient.get("fpn"), length),
        enc_logits=_as_numpy(salient.get("enc"), length),
        boxes=outputs["boxes"][-1, 0].detach().float().cpu().double().numpy(),
        actionness_logits=outputs["actionness"][-1, 0].detach().float().cpu().double().numpy(),
    )


def snippet_times(sample: Sample) -> np.ndarray:
    """``[length]`` seconds of video time of each model-input position of ``sample``: position
    ``i`` at ``offset + i · duration / (length − 1)`` (snippet ``i`` starts at ``i / feature_fps``
    for a sliding window; a resized video spreads its positions over its duration)."""
    steps = max(sample.length - 1, 1)
    return sample.offset + np.arange(sample.length, dtype=np.float64) * (sample.duration / steps)


def _mask_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive index runs ``(first, last)`` where ``mask`` is 1."""
    padded = np.concatenate([[0], (np.asarray(mask) > 0.5).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2])]


def saliency_figure(
    times: np.ndarray,
    fpn_logits: np.ndarray | None,
    enc_logits: np.ndarray | None,
    gt_mask: np.ndarray,
    ground_truth: np.ndarray | None = None,
    proposals: np.ndarray | None = None,
    scale: str = "probability",
    title: str = "",
) -> Figure:
    """Paper Fig. 8: the salient heads' outputs along one input, over its foreground mask.

    Top: the encoder (blue) and TFPN (green) salient outputs per snippet, as ``sigmoid``
    probabilities (``scale="probability"``) or raw logits (``"logit"``), the salient ground-truth
    mask shaded grey. Below: ground-truth segments and the proposals (red), when given, on the
    same time axis.

    Args:
        times: ``[T]`` seconds of each snippet (:func:`snippet_times`).
        fpn_logits, enc_logits: ``[T]`` logits, or None for a head the model does not have.
        gt_mask: ``[T]`` 0/1 salient target (:meth:`~tp2detr.data.samples.Sample.salient_target`).
        ground_truth: optional ``[G, 2]`` (start, end) seconds.
        proposals: optional ``[K, 2]`` (start, end) seconds (e.g. the matched queries').
        scale: ``probability`` | ``logit``.
        title: the title (e.g. the video id and window).

    Raises:
        ValueError: an unknown ``scale``, both heads None, or arrays whose length is not T.
    """
    if scale not in SCALES:
        raise ValueError(f"scale: expected one of {SCALES}, found {scale!r}")
    if fpn_logits is None and enc_logits is None:
        raise ValueError("fpn_logits / enc_logits: both are None, expected at least one salient head's output")
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    gt_mask = np.asarray(gt_mask, dtype=np.float64).reshape(-1)
    for name, values in (("fpn_logits", fpn_logits), ("enc_logits", enc_logits), ("gt_mask", gt_mask)):
        if values is not None and len(np.asarray(values).reshape(-1)) != len(times):
            raise ValueError(f"{name}: expected {len(times)} values (one per snippet), found {np.asarray(values).size}")
    rows = []
    if ground_truth is not None:
        rows.append((np.asarray(ground_truth, dtype=np.float64).reshape(-1, 2), GROUND_TRUTH_COLOUR, "ground truth"))
    if proposals is not None:
        rows.append((np.asarray(proposals, dtype=np.float64).reshape(-1, 2), PROPOSAL_COLOUR, "proposals"))
    figure = new_figure(10.0, 3.4 + 0.7 * len(rows))
    axes = np.atleast_1d(figure.subplots(1 + len(rows), 1, sharex=True, height_ratios=[4.0] + [1.0] * len(rows)))
    top = axes[0]
    half_step = 0.5 * float(np.median(np.diff(times))) if len(times) > 1 else 0.5
    for index, (first, last) in enumerate(_mask_runs(gt_mask)):
        top.axvspan(times[first] - half_step, times[last] + half_step, color="0.85", zorder=0,
                    label="ground-truth foreground mask" if index == 0 else None)
    for values, colour, name in ((enc_logits, ENCODER_COLOUR, "encoder salient head"),
                                 (fpn_logits, TFPN_COLOUR, "TFPN salient head")):
        if values is None:
            continue
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        shown = expit(values) if scale == "probability" else values
        top.plot(times, shown, color=colour, linewidth=1.3, label=name)
    if scale == "probability":
        top.set_ylim(-0.02, 1.02)
        top.set_ylabel("salient probability\n(sigmoid of logit)")
    else:
        top.axhline(0.0, color="0.5", linewidth=0.6, linestyle="--")
        top.set_ylabel("salient logit")
    top.grid(alpha=0.3)
    top.legend(loc="upper right", fontsize=8, framealpha=0.9)
    for ax, (segments, colour, name) in zip(axes[1:], rows):
        draw_segment_lanes(ax, segments, colour, f"{name}\n({len(segments)})")
    axes[-1].set_xlim(times[0] - half_step, times[-1] + half_step)
    axes[-1].set_xlabel("time (s)")
    top.set_title(title, fontsize=10)
    return figure
