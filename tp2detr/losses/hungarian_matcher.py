"""Hungarian (bipartite) matching of predicted proposals to ground-truth segments (paper eqs. 12-13).

Cost of assigning query i to ground truth j (docs/fidelity.md §4, the released ``models/matcher.py``)::

    C[i, j] = cost_l1 · |c_i − c_j| + |w_i − w_j|          (cdist, p = 1, on (center, width))
            + cost_iou · (−IoU(clamp(pred_i), clamp(gt_j)))   (plain IoU of (start, end) in [0, 1])
            + cost_focal · focal_cost(actionness_i)          (same for every j: one class)

with ``focal_cost`` from :func:`tp2detr.losses.focal.focal_match_cost`. The cost matrix of the whole
batch is computed in one go, moved to the CPU and split per item; each item is then solved with
scipy's ``linear_sum_assignment``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from tp2detr.losses.focal import focal_match_cost
from tp2detr.losses.segment_geometry import clamp_unit, cw_to_se, pairwise_segment_iou

#: One item's assignment: (query indices [K], ground-truth indices [K]), int64, K = min(Q, G).
MatchIndices = tuple[Tensor, Tensor]


def _check_targets(targets: Sequence[Tensor], batch_size: int) -> None:
    if len(targets) != batch_size:
        raise ValueError(
            f"targets: expected one segment tensor per batch item ({batch_size}), found {len(targets)}"
        )
    for index, segments in enumerate(targets):
        if segments.dim() != 2 or segments.shape[1] != 2:
            raise ValueError(
                f"targets[{index}]: expected segments of shape [G, 2] as (center, width), "
                f"found shape {tuple(segments.shape)}"
            )


class NonFiniteCostError(FloatingPointError, ValueError):
    """The matching cost is not finite: the model's outputs (a diverged run) or the targets hold
    NaN/Inf. A ``FloatingPointError``, so the trainer treats it as a divergence."""


class HungarianMatcher:
    """One-to-one assignment of Q predictions to G ground-truth segments per batch item.

    Built from the ``loss.matcher`` config group by :func:`build_matcher` (the released values
    live in ``configs/loss/default.yaml`` only).

    Args:
        cost_l1: weight α_L1 of the L1 distance on (center, width).
        cost_iou: weight α_IoU of the negative plain IoU.
        cost_focal: weight β of the focal actionness cost.
        alpha, gamma: focal-cost parameters (hard-coded in the released matcher).
    """

    def __init__(self, *, cost_l1: float, cost_iou: float, cost_focal: float, alpha: float, gamma: float) -> None:
        for name, value in (("cost_l1", cost_l1), ("cost_iou", cost_iou), ("cost_focal", cost_focal)):
            if value < 0:
                raise ValueError(f"HungarianMatcher.{name}: expected a weight >= 0, found {value}")
        if cost_l1 == 0 and cost_iou == 0 and cost_focal == 0:
            raise ValueError("HungarianMatcher: all cost weights are 0; expected at least one > 0")
        self.cost_l1 = float(cost_l1)
        self.cost_iou = float(cost_iou)
        self.cost_focal = float(cost_focal)
        self.alpha = float(alpha)
        self.gamma = float(gamma)
        # Validate the focal parameters now rather than at the first batch.
        focal_match_cost(torch.zeros(1), self.alpha, self.gamma)

    def __repr__(self) -> str:
        return (
            f"HungarianMatcher(cost_l1={self.cost_l1}, cost_iou={self.cost_iou}, "
            f"cost_focal={self.cost_focal}, alpha={self.alpha}, gamma={self.gamma})"
        )

    @torch.no_grad()
    def cost_matrices(
        self, pred_boxes: Tensor, pred_logits: Tensor, targets: Sequence[Tensor]
    ) -> list[Tensor]:
        """The matching cost of every (query, ground truth) pair, per batch item.

        Args:
            pred_boxes: ``[B, Q, 2]`` predicted (center, width), normalised.
            pred_logits: ``[B, Q]`` actionness logits.
            targets: B tensors ``[G_b, 2]`` of ground-truth (center, width), normalised.

        Returns:
            B CPU float tensors ``[Q, G_b]`` (``[Q, 0]`` for an item without ground truth).
        """
        if pred_boxes.dim() != 3 or pred_boxes.shape[-1] != 2:
            raise ValueError(
                f"pred_boxes: expected shape [B, Q, 2], found {tuple(pred_boxes.shape)}"
            )
        batch_size, num_queries = pred_boxes.shape[:2]
        if pred_logits.shape != (batch_size, num_queries):
            raise ValueError(
                f"pred_logits: expected shape {(batch_size, num_queries)} to match pred_boxes, "
                f"found {tuple(pred_logits.shape)}"
            )
        _check_targets(targets, batch_size)
        return self._host_costs(pred_boxes[None], pred_logits[None], targets)[0]

    def _host_costs(self, pred_boxes: Tensor, pred_logits: Tensor, targets: Sequence[Tensor]) -> list[list[Tensor]]:
        """``[L][B]`` CPU cost matrices ``[Q, G_b]`` of checked inputs ``pred_boxes`` [L, B, Q, 2],
        ``pred_logits`` [L, B, Q]. The costs of all layers are computed together, each layer's bit
        for bit those of a one-layer call (see :meth:`_device_cost`); the finiteness check and the
        copy to the host are done once for all layers."""
        num_layers, batch_size, num_queries = pred_boxes.shape[:3]
        sizes = [len(segments) for segments in targets]
        if sum(sizes) == 0:
            empty = pred_boxes.new_zeros((num_queries, 0)).cpu()
            return [[empty.clone() for _ in sizes] for _ in range(num_layers)]
        gt = torch.cat(list(targets), dim=0)  # [ΣG, 2]
        cost = self._device_cost(pred_boxes, pred_logits, gt)
        per_layer = cost.view(num_layers, batch_size, num_queries, -1).cpu()  # the step's one host synchronisation
        host = per_layer.numpy()
        if not np.isfinite(host).all():  # checked on the host copy: no second synchronisation
            self._raise_non_finite(pred_boxes, pred_logits, gt)
        # Per-item blocks as numpy views wrapped without copies (no tensor operation per block).
        ends = np.cumsum(sizes)
        return [
            [torch.from_numpy(host[layer, item, :, end - size:end]) for item, (size, end) in enumerate(zip(sizes, ends))]
            for layer in range(num_layers)
        ]

    def _device_cost(self, pred_boxes: Tensor, pred_logits: Tensor, gt: Tensor) -> Tensor:
        """``[L, B·Q, ΣG]`` costs on the predictions' device: ``pred_boxes`` [L, B, Q, 2],
        ``pred_logits`` [L, B, Q], ``gt`` [ΣG, 2] (every item's ground truth, concatenated)."""
        dtype = torch.promote_types(pred_boxes.dtype, torch.float32)  # no half-precision costs
        boxes = pred_boxes.flatten(1, 2).to(dtype)  # [L, B·Q, 2]
        gt = gt.to(boxes)
        cost = self.cost_l1 * torch.cdist(boxes, gt.expand(boxes.shape[0], -1, -1), p=1)
        iou = pairwise_segment_iou(clamp_unit(cw_to_se(boxes.flatten(0, 1))), clamp_unit(cw_to_se(gt)))
        cost = cost - self.cost_iou * iou.view_as(cost)
        # The focal cost per layer: sigmoid, log and pow round differently in vectorised and scalar
        # code, so only a layer's own shape gives a one-layer call's bits; the L1 and IoU costs are
        # correctly rounded operations, the same at any shape.
        focal = torch.stack([focal_match_cost(layer.flatten().to(dtype), self.alpha, self.gamma) for layer in pred_logits])
        return cost + self.cost_focal * focal[:, :, None]

    @staticmethod
    def _raise_non_finite(pred_boxes: Tensor, pred_logits: Tensor, gt: Tensor) -> None:
        """Raise :class:`NonFiniteCostError` for a cost matrix with NaN or inf, naming the
        non-finite inputs."""
        culprits = [
            name for name, values in (("pred_boxes", pred_boxes), ("pred_logits", pred_logits), ("target segments", gt))
            if not torch.isfinite(values).all()
        ]
        raise NonFiniteCostError(
            "HungarianMatcher: the cost matrix contains NaN or inf"
            + (f" because {' and '.join(culprits)} do" if culprits else "")
            + "; expected finite pred_boxes, pred_logits and target segments"
        )

    @torch.no_grad()
    def __call__(
        self, pred_boxes: Tensor, pred_logits: Tensor, targets: Sequence[Tensor]
    ) -> list[MatchIndices]:
        """Match one decoder layer's predictions to the ground truth.

        Args:
            pred_boxes: ``[B, Q, 2]`` predicted (center, width), normalised.
            pred_logits: ``[B, Q]`` actionness logits.
            targets: B tensors ``[G_b, 2]`` of ground-truth (center, width), normalised.

        Returns:
            B pairs ``(pred_idx, gt_idx)`` of int64 CPU tensors of length ``min(Q, G_b)``, with
            ``pred_idx`` ascending; both empty for an item without ground truth.
        """
        return [_assign(cost) for cost in self.cost_matrices(pred_boxes, pred_logits, targets)]

    @torch.no_grad()
    def match_layers(
        self, pred_boxes: Tensor, pred_logits: Tensor, targets: Sequence[Tensor]
    ) -> list[list[MatchIndices]]:
        """Match every decoder layer's predictions at once: the same costs and assignments as
        calling the matcher on each layer, with one finiteness check and one device-to-host copy
        for all layers instead of one per layer.

        Args:
            pred_boxes: ``[L, B, Q, 2]`` predicted (center, width) of L layers, normalised.
            pred_logits: ``[L, B, Q]`` actionness logits.
            targets: B tensors ``[G_b, 2]`` of ground-truth (center, width), normalised.

        Returns:
            L lists of B pairs ``(pred_idx, gt_idx)`` (see :meth:`__call__`).
        """
        if pred_boxes.dim() != 4 or pred_logits.dim() != 3:
            raise ValueError(
                f"pred_boxes, pred_logits: expected shapes [L, B, Q, 2] and [L, B, Q], found "
                f"{tuple(pred_boxes.shape)} and {tuple(pred_logits.shape)}"
            )
        if pred_logits.shape != pred_boxes.shape[:3]:
            raise ValueError(
                f"pred_logits: expected shape {tuple(pred_boxes.shape[:3])} to match pred_boxes, "
                f"found {tuple(pred_logits.shape)}"
            )
        _check_targets(targets, pred_boxes.shape[1])
        return [[_assign(cost) for cost in layer] for layer in self._host_costs(pred_boxes, pred_logits, targets)]


def _assign(cost: Tensor) -> MatchIndices:
    """The minimum-cost assignment of one ``[Q, G]`` CPU cost matrix (both indices empty for G = 0)."""
    if cost.shape[1] == 0:
        empty = torch.empty(0, dtype=torch.int64)
        return empty, empty.clone()
    rows, cols = linear_sum_assignment(cost.numpy())
    return torch.from_numpy(rows.astype(np.int64, copy=False)), torch.from_numpy(cols.astype(np.int64, copy=False))


#: The ``loss.matcher`` keys :func:`build_matcher` reads.
MATCHER_KEYS = ("cost_l1", "cost_iou", "cost_focal", "alpha", "gamma")


def build_matcher(matcher: Mapping[str, Any]) -> HungarianMatcher:
    """The matcher of the ``loss.matcher`` config group (``cost_l1``, ``cost_iou``, ``cost_focal``,
    ``alpha``, ``gamma``).

    Raises:
        ValueError: a key is missing (the message lists what was found).
    """
    missing = [key for key in MATCHER_KEYS if key not in matcher]
    if missing:
        raise ValueError(f"loss.matcher: missing {missing}, expected the keys {list(MATCHER_KEYS)}; found {sorted(matcher)}")
    return HungarianMatcher(**{key: float(matcher[key]) for key in MATCHER_KEYS})
