"""Training objective of TP²-DETR: set losses with deep supervision plus the salient loss.

Defaults reproduce the authors' released ``models/criterion.py`` (docs/fidelity.md §3, §4, §11.2);
each place where the paper's text (§3.3, eqs. 14-18) says otherwise is a constructor switch.

Terms (all unweighted scalars; ``num_boxes`` = total number of ground-truth segments in the batch):

* ``loss_l1``: Σ over matched pairs of |Δc| + |Δw| on unclamped (center, width), / num_boxes.
* ``loss_iou``: Σ over matched pairs of 1 − IoU(pred clamped to [0, 1], GT), plain IoU, / num_boxes.
* ``loss_actionness``: sigmoid focal loss (α 0.25, γ 2) over **all** B·Q queries, target 1 for the
  matched queries and 0 otherwise, summed, / num_boxes.
* Deep supervision (``aux_loss=True``): decoder layer ``l`` < n_dec − 1 gets its own Hungarian
  matching and the same three terms under the keys ``loss_l1_{l}``, ``loss_iou_{l}``,
  ``loss_actionness_{l}`` (l = 0 … n_dec − 2). The last layer's terms carry no suffix, so every
  layer appears exactly once. With ``aux_loss=False`` only the last layer is supervised.
* ``loss_salient_fpn`` / ``loss_salient_enc``: one term per salient head that the model produced
  (a head given as None has no term). Computed once per batch, not per decoder layer.

  - ``salient_loss_form="focal_bce"`` (released code):
    ℓ_t = α_t · (1 − p_t)^γ · BCE(logit_t, m_t) with α_t = 0.25 for positives and 0.75 for
    negatives, γ = 2; padded positions are zeroed; mean over the full padded length T (padding
    still counts in the denominator); summed over the batch; / num_boxes.
  - ``salient_loss_form="bce"`` (paper eq. 18): plain BCE summed over the valid positions t and
    over the batch, then / num_boxes — the same batch normalisation as every other term, so the
    switch changes only the per-position loss and replaces the mean over T by a sum over valid t.

Weights: ``weight_l1`` (5), ``weight_iou`` (2), ``weight_actionness`` (3 in the code; the paper
says 2) apply to every layer's term; the salient heads get ``weight_salient · salient_fpn_weight``
(3 · 0.5) and ``weight_salient · salient_enc_weight`` (3 · 1.5), i.e.
L = … + λ_salient · (0.5 · L_fpn + 1.5 · L_enc). The paper as written is
``salient_loss_form="bce"``, ``salient_fpn_weight = salient_enc_weight = 1``, ``weight_actionness = 2``.

``num_boxes`` is not averaged across processes (as released). Unlike the released code it is
clamped to ≥ 1, so a batch without any ground truth gives finite losses: the box terms are 0 and
the actionness term pushes every query to background.

The total is Σ weights[k] · terms[k] over the sorted keys (the released code's order). The term and
weight dicts always have the same keys; a mismatch raises, so no term can be computed and silently
left out of the total (cf. TadTR issue #21, docs/fidelity.md §12.4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tp2detr.losses.focal import sigmoid_focal_loss
from tp2detr.losses.hungarian_matcher import HungarianMatcher, MatchIndices, build_matcher
from tp2detr.losses.segment_geometry import clamp_unit, cw_to_se, segment_iou
from tp2detr.transfer import to_device_async

SALIENT_LOSS_FORMS = ("focal_bce", "bce")
SALIENT_HEADS = ("fpn", "enc")


@dataclass(frozen=True)
class LossOutput:
    """What :class:`SetCriterion` returns.

    Attributes:
        total: scalar, Σ ``weights[k] · terms[k]``; call ``backward()`` on it.
        terms: every unweighted scalar term, keyed as in the module docstring.
        weights: the weight applied to each term; same keys as ``terms``.
        num_boxes: the normaliser used (number of GT segments in the batch, at least 1).
        last_layer_matches: the last decoder layer's B pairs ``(pred_idx, gt_idx)``.
    """

    total: Tensor
    terms: dict[str, Tensor]
    weights: dict[str, float]
    num_boxes: float
    last_layer_matches: list[MatchIndices]

    def as_floats(self) -> dict[str, float]:
        """Detached Python floats for logging: every term plus ``"loss"`` (the total)."""
        values = {key: float(value.detach()) for key, value in self.terms.items()}
        values["loss"] = float(self.total.detach())
        return values


def match_indices_on(
    device: torch.device, layer_matches: Sequence[Sequence[MatchIndices]], gt_sizes: Sequence[int]
) -> Tensor:
    """Every layer's matches, layer after layer, as one ``[3, ΣK_l]`` int64 tensor on ``device``
    (rows: batch item, query, index into the concatenated ground truth of the batch, whose item b
    holds ``gt_sizes[b]`` segments), built on the host and copied in one (pinned, asynchronous on
    CUDA) transfer for all layers instead of one small copy per layer and item."""
    offsets = np.concatenate(([0], np.cumsum(np.asarray(gt_sizes, dtype=np.int64))[:-1]))
    rows = [
        np.stack((np.full(len(pred_idx), item), pred_idx.numpy(), gt_idx.numpy() + offsets[item]))
        for matches in layer_matches for item, (pred_idx, gt_idx) in enumerate(matches)
    ]  # assembled in numpy: no tensor operation per layer and item
    host = np.concatenate(rows, axis=1) if rows else np.zeros((3, 0))
    return to_device_async(torch.from_numpy(host.astype(np.int64, copy=False)), device)


def _segments_of(targets: Sequence[Mapping[str, Any]]) -> list[Tensor]:
    segments: list[Tensor] = []
    for index, target in enumerate(targets):
        if "segments" not in target:
            raise ValueError(
                f"targets[{index}]: expected a dict with key 'segments' ([G, 2] (center, width)), "
                f"found keys {sorted(target)}"
            )
        item = torch.as_tensor(target["segments"])
        if item.dim() != 2 or item.shape[1] != 2:
            raise ValueError(
                f"targets[{index}]['segments']: expected shape [G, 2] as (center, width), "
                f"found {tuple(item.shape)}"
            )
        segments.append(item)
    return segments


class SetCriterion(nn.Module):
    """Hungarian-matched box/actionness losses on every decoder layer plus the salient loss.

    Built from the ``loss`` config group by :func:`build_criterion` (the released values live in
    ``configs/loss/default.yaml`` only; ``experiment=paper_text`` switches to the paper's).

    Args:
        matcher: the Hungarian matcher.
        weight_l1: λ of the L1 box term.
        weight_iou: λ of the 1 − IoU box term.
        weight_actionness: λ of the focal actionness term (3 released; 2 in the paper).
        weight_salient: λ_salient (3 for THUMOS, 2 for ActivityNet).
        salient_fpn_weight: factor of the TFPN head's salient term inside L_salient.
        salient_enc_weight: factor of the encoder head's salient term inside L_salient.
        aux_loss: supervise every decoder layer (True) or only the last one.
        salient_loss_form: ``"focal_bce"`` (released) or ``"bce"`` (paper eq. 18); see module doc.
        focal_alpha, focal_gamma: focal parameters of the actionness loss (the matcher's).
        salient_alpha, salient_gamma: focal parameters of the ``focal_bce`` salient loss (0.25, 2:
            constants of the released code, not configurable there or here).
    """

    def __init__(
        self,
        *,
        matcher: HungarianMatcher,
        weight_l1: float,
        weight_iou: float,
        weight_actionness: float,
        weight_salient: float,
        salient_fpn_weight: float,
        salient_enc_weight: float,
        aux_loss: bool,
        salient_loss_form: str,
        focal_alpha: float,
        focal_gamma: float,
        salient_alpha: float = 0.25,
        salient_gamma: float = 2.0,
    ) -> None:
        super().__init__()
        if salient_loss_form not in SALIENT_LOSS_FORMS:
            raise ValueError(
                f"SetCriterion.salient_loss_form: expected one of {SALIENT_LOSS_FORMS}, "
                f"found {salient_loss_form!r}"
            )
        weights = {
            "weight_l1": weight_l1,
            "weight_iou": weight_iou,
            "weight_actionness": weight_actionness,
            "weight_salient": weight_salient,
            "salient_fpn_weight": salient_fpn_weight,
            "salient_enc_weight": salient_enc_weight,
        }
        for name, value in weights.items():
            if value < 0:
                raise ValueError(f"SetCriterion.{name}: expected a weight >= 0, found {value}")
        # Validate the focal parameters at construction time.
        sigmoid_focal_loss(torch.zeros(1), torch.zeros(1), focal_alpha, focal_gamma)
        sigmoid_focal_loss(torch.zeros(1), torch.zeros(1), salient_alpha, salient_gamma)
        self.matcher = matcher
        self.weight_l1 = float(weight_l1)
        self.weight_iou = float(weight_iou)
        self.weight_actionness = float(weight_actionness)
        self.weight_salient = float(weight_salient)
        self.salient_head_weights = {
            "fpn": float(salient_fpn_weight),
            "enc": float(salient_enc_weight),
        }
        self.aux_loss = bool(aux_loss)
        self.salient_loss_form = salient_loss_form
        self.focal_alpha = float(focal_alpha)
        self.focal_gamma = float(focal_gamma)
        self.salient_alpha = float(salient_alpha)
        self.salient_gamma = float(salient_gamma)

    def extra_repr(self) -> str:
        return (
            f"weights(l1={self.weight_l1}, iou={self.weight_iou}, "
            f"actionness={self.weight_actionness}, salient={self.weight_salient} × "
            f"(fpn {self.salient_head_weights['fpn']}, enc {self.salient_head_weights['enc']})), "
            f"aux_loss={self.aux_loss}, salient_loss_form={self.salient_loss_form!r}"
        )

    # ------------------------------------------------------------------ set (box) losses
    def _box_terms(
        self,
        boxes: Tensor,
        logits: Tensor,
        gt_all: Tensor,
        num_boxes: float,
        match_index: Tensor,
    ) -> dict[str, Tensor]:
        """L1, IoU and actionness terms of the Ls supervised decoder layers at once, each an
        ``[Ls]`` vector: ``boxes`` [Ls, B, Q, 2], ``logits`` [Ls, B, Q], ``gt_all`` [ΣG, 2] (every
        item's segments, concatenated) and the matches as ``match_index`` [3, Ls·K] on the boxes'
        device (batch item, query, row of ``gt_all``), layer after layer. Every layer has the same
        number K = Σ_b min(Q, G_b) of matches, so each layer's terms are sums over its own [K]
        block: the one-layer formulas, computed with one kernel per operation for all layers."""
        num_layers = boxes.shape[0]
        batch_index, query_index, gt_index = (row.view(num_layers, -1) for row in match_index)  # [Ls, K]
        layer_index = torch.arange(num_layers, device=boxes.device)[:, None]
        matched_pred = boxes[layer_index, batch_index, query_index]  # [Ls, K, 2]
        matched_gt = gt_all[gt_index].to(dtype=boxes.dtype)  # [Ls, K, 2]

        loss_l1 = (matched_pred - matched_gt).abs().sum(dim=(1, 2)) / num_boxes
        iou = segment_iou(clamp_unit(cw_to_se(matched_pred)), cw_to_se(matched_gt))  # [Ls, K]
        loss_iou = (1.0 - iou).sum(dim=1) / num_boxes

        actionness_target = torch.zeros_like(logits)
        actionness_target[layer_index, batch_index, query_index] = 1.0
        loss_actionness = (
            sigmoid_focal_loss(logits, actionness_target, self.focal_alpha, self.focal_gamma).sum(dim=(1, 2))
            / num_boxes
        )
        return {"loss_l1": loss_l1, "loss_iou": loss_iou, "loss_actionness": loss_actionness}

    # ------------------------------------------------------------------ salient loss
    def _salient_term(
        self, head: str, logits: Tensor, target: Tensor, valid: Tensor, num_boxes: float
    ) -> Tensor:
        """One head's term: ``logits``, ``target`` [B, T] (target in {0, 1}), ``valid`` [B, T] bool."""
        if logits.shape != target.shape:
            raise ValueError(
                f"outputs['salient'][{head!r}]: expected shape {tuple(target.shape)} "
                f"(that of salient_target, [B, T]), found {tuple(logits.shape)}"
            )
        target = target.to(device=logits.device, dtype=logits.dtype)
        valid = valid.to(logits.device)
        if self.salient_loss_form == "focal_bce":
            per_position = sigmoid_focal_loss(logits, target, self.salient_alpha, self.salient_gamma)
            per_position = torch.where(valid, per_position, torch.zeros_like(per_position))
            return per_position.mean(dim=1).sum() / num_boxes
        per_position = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        per_position = torch.where(valid, per_position, torch.zeros_like(per_position))
        return per_position.sum() / num_boxes

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        outputs: Mapping[str, Any],
        targets: Sequence[Mapping[str, Any]],
        salient_target: Tensor | None = None,
        salient_valid: Tensor | None = None,
        num_boxes: float | None = None,
    ) -> LossOutput:
        """Compute every term and the weighted total.

        Args:
            outputs: ``{"boxes": [n_dec, B, Q, 2] (center, width) normalised,
                "actionness": [n_dec, B, Q] logits,
                "salient": {"fpn": [B, T] logits or None, "enc": [B, T] logits or None}}``;
                the last decoder layer is index −1. ``"salient"`` may be absent.
            targets: B dicts with ``"segments"``: ``[G_b, 2]`` (center, width) normalised.
            salient_target: ``[B, T]`` float in {0, 1}, the salient ground truth m_t (padding 0);
                required when a salient head is present.
            salient_valid: ``[B, T]`` bool, True on real snippets, False on padding; None = all valid.
            num_boxes: override of the normaliser (e.g. a count reduced across processes);
                default = the number of GT segments in ``targets``, clamped to ≥ 1.

        Returns:
            :class:`LossOutput` with the total, the unweighted terms and the weights.
        """
        boxes = outputs["boxes"]
        logits = outputs["actionness"]
        if boxes.dim() != 4 or boxes.shape[-1] != 2:
            raise ValueError(
                f"outputs['boxes']: expected shape [n_dec, B, Q, 2], found {tuple(boxes.shape)}"
            )
        if logits.shape != boxes.shape[:-1]:
            raise ValueError(
                f"outputs['actionness']: expected shape {tuple(boxes.shape[:-1])} "
                f"([n_dec, B, Q], matching outputs['boxes']), found {tuple(logits.shape)}"
            )
        num_layers, batch_size = boxes.shape[:2]
        if num_layers == 0:
            raise ValueError("outputs['boxes']: expected at least one decoder layer, found 0")
        if len(targets) != batch_size:
            raise ValueError(
                f"targets: expected {batch_size} dicts (one per batch item of outputs['boxes']), "
                f"found {len(targets)}"
            )
        gt_segments = _segments_of(targets)
        if num_boxes is None:
            num_boxes = max(float(sum(len(segments) for segments in gt_segments)), 1.0)
        elif not num_boxes > 0:
            raise ValueError(f"num_boxes: expected a count > 0, found {num_boxes}")
        num_boxes = float(num_boxes)

        terms: dict[str, Tensor] = {}
        weights: dict[str, float] = {}
        layer_weights = {
            "loss_l1": self.weight_l1,
            "loss_iou": self.weight_iou,
            "loss_actionness": self.weight_actionness,
        }
        supervised = slice(None) if self.aux_loss else slice(num_layers - 1, None)  # a view, no index copy
        layers = range(num_layers)[supervised]
        boxes, logits = boxes[supervised], logits[supervised]
        # Every supervised layer matched in one batch: one host round trip per step, not one per layer.
        layer_matches = self.matcher.match_layers(boxes.detach(), logits.detach(), gt_segments)
        gt_all = torch.cat(gt_segments).to(boxes.device) if gt_segments else boxes.new_zeros((0, 2))
        match_index = match_indices_on(boxes.device, layer_matches, [len(segments) for segments in gt_segments])
        # The objective grouped by term: each term's weight times its sum over the layers (the same
        # Σ weights[k] · terms[k] as weighted_total over the per-layer keys, with fewer operations).
        grouped_terms: dict[str, Tensor] = {}
        grouped_weights: dict[str, float] = {}
        for name, per_layer in self._box_terms(boxes, logits, gt_all, num_boxes, match_index).items():
            for position, layer in enumerate(layers):
                suffix = "" if layer == num_layers - 1 else f"_{layer}"
                terms[name + suffix] = per_layer[position]
                weights[name + suffix] = layer_weights[name]
            grouped_terms[name] = per_layer.sum()
            grouped_weights[name] = layer_weights[name]
        last_matches = layer_matches[-1]

        salient = outputs.get("salient") or {}
        unknown_heads = set(salient) - set(SALIENT_HEADS)
        if unknown_heads:
            raise ValueError(
                f"outputs['salient']: expected keys among {SALIENT_HEADS}, "
                f"found {sorted(unknown_heads)}"
            )
        for head in SALIENT_HEADS:
            head_logits = salient.get(head)
            if head_logits is None:
                continue
            if salient_target is None:
                raise ValueError(
                    f"salient_target: outputs['salient'][{head!r}] is present, so the salient "
                    "ground truth [B, T] is required; found None"
                )
            valid = (
                torch.ones_like(salient_target, dtype=torch.bool)
                if salient_valid is None
                else salient_valid
            )
            if valid.dtype != torch.bool or valid.shape != salient_target.shape:
                raise ValueError(
                    f"salient_valid: expected a bool tensor of shape {tuple(salient_target.shape)}, "
                    f"found {valid.dtype} {tuple(valid.shape)}"
                )
            key = f"loss_salient_{head}"
            terms[key] = grouped_terms[key] = self._salient_term(head, head_logits, salient_target, valid, num_boxes)
            weights[key] = grouped_weights[key] = self.weight_salient * self.salient_head_weights[head]

        total = weighted_total(grouped_terms, grouped_weights)
        return LossOutput(
            total=total,
            terms=terms,
            weights=weights,
            num_boxes=num_boxes,
            last_layer_matches=last_matches,
        )


def weighted_total(terms: Mapping[str, Tensor], weights: Mapping[str, float]) -> Tensor:
    """Σ ``weights[k] · terms[k]`` over the sorted keys.

    Raises:
        ValueError: if a term has no weight or a weight has no term (a term must never be
            computed and then silently left out of the total).
    """
    if set(terms) != set(weights):
        raise ValueError(
            "weighted_total: the term and weight keys differ; terms without a weight: "
            f"{sorted(set(terms) - set(weights))}, weights without a term: "
            f"{sorted(set(weights) - set(terms))}"
        )
    if not terms:
        raise ValueError("weighted_total: expected at least one loss term, found none")
    keys = sorted(terms)
    total = weights[keys[0]] * terms[keys[0]]
    for key in keys[1:]:
        total = total + weights[key] * terms[key]
    return total


def criterion_arguments(loss: Mapping[str, Any]) -> dict[str, Any]:
    """The :class:`SetCriterion` keyword arguments of the ``loss`` config group (the matcher built
    from ``loss.matcher``; the actionness loss uses the matcher's focal α and γ, as released)."""
    matcher = loss["matcher"]
    return {
        "matcher": build_matcher(matcher),
        "weight_l1": float(loss["weight_l1"]),
        "weight_iou": float(loss["weight_iou"]),
        "weight_actionness": float(loss["weight_actionness"]),
        "weight_salient": float(loss["weight_salient"]),
        "salient_fpn_weight": float(loss["salient_fpn_weight"]),
        "salient_enc_weight": float(loss["salient_enc_weight"]),
        "aux_loss": bool(loss["aux_loss"]),
        "salient_loss_form": str(loss["salient_loss_form"]),
        "focal_alpha": float(matcher["alpha"]),
        "focal_gamma": float(matcher["gamma"]),
    }


def build_criterion(loss: Mapping[str, Any]) -> SetCriterion:
    """The :class:`SetCriterion` described by the ``loss`` config group."""
    return SetCriterion(**criterion_arguments(loss))
