"""1-D segment geometry: (center, width) ↔ (start, end), clamping and temporal IoU.

All functions work on the last dimension of size 2 and accept any leading shape ``[..., 2]``.
Coordinates are in whatever unit the caller uses (normalised to [0, 1] inside the model and
the losses; seconds or snippets elsewhere); only :func:`clamp_unit` assumes the [0, 1] range.

The IoU here is the *plain* temporal IoU, ``|A ∩ B| / |A ∪ B|``, as in the released TP²-DETR
matcher and loss (their comments say "GIoU", their code computes IoU; docs/fidelity.md §4). A segment whose
end lies before its start is treated as empty (length 0). When the union is empty (two
zero-length segments) the IoU is defined as 0 and its gradient is 0, never NaN.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: Non-empty unions shorter than this are treated as this long, so the IoU and its gradient stay
#: finite; an exactly empty union gives IoU 0 with zero gradient.
UNION_EPS = 1e-8


def _check_pairs(name: str, segments: Tensor) -> None:
    if segments.shape[-1:] != (2,):
        raise ValueError(
            f"{name}: expected a tensor of shape [..., 2], found shape {tuple(segments.shape)}"
        )


def cw_to_se(segments: Tensor) -> Tensor:
    """(center, width) → (start, end).

    Args:
        segments: ``[..., 2]`` as (center, width).

    Returns:
        ``[..., 2]`` as (start, end) = (c − w/2, c + w/2), same dtype and device.
    """
    _check_pairs("segments", segments)
    center, width = segments.unbind(-1)
    return torch.stack((center - 0.5 * width, center + 0.5 * width), dim=-1)


def se_to_cw(segments: Tensor) -> Tensor:
    """(start, end) → (center, width).

    Args:
        segments: ``[..., 2]`` as (start, end).

    Returns:
        ``[..., 2]`` as (center, width) = ((s + e)/2, e − s), same dtype and device.
    """
    _check_pairs("segments", segments)
    start, end = segments.unbind(-1)
    return torch.stack((0.5 * (start + end), end - start), dim=-1)


def clamp_unit(segments_se: Tensor) -> Tensor:
    """Clamp (start, end) segments to the normalised window [0, 1].

    Args:
        segments_se: ``[..., 2]`` as (start, end), normalised.

    Returns:
        ``[..., 2]`` with both ends clamped to [0, 1] (differentiable inside the range).
    """
    _check_pairs("segments_se", segments_se)
    return segments_se.clamp(min=0.0, max=1.0)


def segment_length(segments_se: Tensor) -> Tensor:
    """Length ``max(e − s, 0)`` of (start, end) segments; ``[..., 2]`` → ``[...]``."""
    _check_pairs("segments_se", segments_se)
    return (segments_se[..., 1] - segments_se[..., 0]).clamp(min=0.0)


def _iou_from_parts(inter: Tensor, len_a: Tensor, len_b: Tensor) -> Tensor:
    union = len_a + len_b - inter
    iou = inter / union.clamp(min=UNION_EPS)
    return torch.where(union > 0, iou, torch.zeros_like(iou))


def segment_iou(a_se: Tensor, b_se: Tensor) -> Tensor:
    """Elementwise temporal IoU of two aligned sets of (start, end) segments.

    Args:
        a_se: ``[..., 2]`` (start, end).
        b_se: ``[..., 2]`` (start, end), broadcastable against ``a_se``.

    Returns:
        ``[...]`` IoU in [0, 1]; 0 where both segments are empty.
    """
    _check_pairs("a_se", a_se)
    _check_pairs("b_se", b_se)
    inter = (
        torch.minimum(a_se[..., 1], b_se[..., 1]) - torch.maximum(a_se[..., 0], b_se[..., 0])
    ).clamp(min=0.0)
    return _iou_from_parts(inter, segment_length(a_se), segment_length(b_se))


def pairwise_segment_iou(a_se: Tensor, b_se: Tensor) -> Tensor:
    """Temporal IoU of every segment in ``a_se`` with every segment in ``b_se``.

    Args:
        a_se: ``[N, 2]`` (start, end).
        b_se: ``[M, 2]`` (start, end).

    Returns:
        ``[N, M]`` IoU in [0, 1]; entry (i, j) equals ``segment_iou(a_se[i], b_se[j])``.
    """
    if a_se.dim() != 2 or b_se.dim() != 2:
        raise ValueError(
            "pairwise_segment_iou: expected a_se [N, 2] and b_se [M, 2], found shapes "
            f"{tuple(a_se.shape)} and {tuple(b_se.shape)}"
        )
    return segment_iou(a_se[:, None, :], b_se[None, :, :])
