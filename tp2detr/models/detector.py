"""TP²-DETR (paper Fig. 1): TFPN → deformable encoder/decoder → per-layer prediction heads,
with the two salient heads supervising the TFPN and the encoder during training.

``forward(feats [B, T, C], mask [B, T] bool, True = pad)`` returns a dict:

* ``boxes``: ``[n_dec, B, Q, 2]`` (center, width) in (0, 1) of the window/video duration;
* ``actionness``: ``[n_dec, B, Q]`` logits (the proposal score is ``sigmoid`` of the last layer's);
* ``salient``: ``{"fpn": [B, T] | None, "enc": [B, T] | None}`` logits — computed in training
  only (they supervise; they never change the proposals).

There is no input projection: the CLIP features (C = 512) enter the TFPN as they are, and the
TFPN levels enter the encoder as they are (docs/fidelity.md §2.1), so ``d_model`` is the feature dimension.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from tp2detr.models.heads import PredictionHeads
from tp2detr.models.salient import SalientHeads
from tp2detr.models.tfpn import TemporalPyramid
from tp2detr.models.transformer import DeformableTransformer


class TP2DETR(nn.Module):
    """The full model; see the module docstring for inputs and outputs."""

    def __init__(
        self,
        tfpn: TemporalPyramid,
        transformer: DeformableTransformer,
        heads: PredictionHeads,
        salient: SalientHeads,
    ) -> None:
        super().__init__()
        if tfpn.num_levels != transformer.n_levels:
            raise ValueError(
                f"tfpn has {tfpn.num_levels} levels but the transformer expects {transformer.n_levels}"
            )
        self.tfpn = tfpn
        self.transformer = transformer
        self.heads = heads
        self.salient = salient

    @property
    def length_multiple(self) -> int:
        """Pad batches to a multiple of this many snippets to avoid an internal copy."""
        return self.tfpn.required_length_multiple()

    def forward(self, feats: Tensor, mask: Tensor, with_salient: bool | None = None) -> dict[str, Any]:
        """Proposals for a padded batch.

        Args:
            feats: ``[B, T, C]`` snippet features.
            mask: ``[B, T]`` bool, True = padding.
            with_salient: compute the salient logits; default: only in training mode.
        """
        if feats.dim() != 3 or mask.shape != feats.shape[:2] or mask.dtype.is_floating_point:
            raise ValueError(
                f"feats / mask: expected [B, T, C] and a bool [B, T], found {tuple(feats.shape)} "
                f"and {mask.dtype} {tuple(mask.shape)}"
            )
        levels, level_masks = self.tfpn(feats.transpose(1, 2), mask)
        out = self.transformer(levels, level_masks, box_delta_fn=self.heads.box_delta)
        predictions = self.heads(out.hs, out.references, out.box_deltas)
        salient: dict[str, Tensor | None] = {"fpn": None, "enc": None}
        if self.training if with_salient is None else with_salient:
            salient = self.salient(levels, out.memory_levels, feats.shape[1], compute_in_eval=True)
        return {
            "boxes": predictions.boxes,
            "actionness": predictions.actionness_logits,
            "salient": salient,
        }
