"""Deformable transformer encoder (post-norm, Deformable-DETR style, 1-D references)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from tp2detr.models.deform_attn import MSDeformAttn1D
from tp2detr.models.dropout import Dropout


def encoder_reference_points(level_lengths: Sequence[int], valid_ratios: Tensor) -> Tensor:
    """Reference point of every token of the flattened levels, as seen from every level.

    Token j of level l sits at ``(j + 0.5) / (valid_ratio_l · T_l)`` (normalised to the level's
    valid length); it is then rescaled by each level's valid ratio so that it addresses the same
    time in every level's padded coordinates.

    Args:
        level_lengths: T_l of each level (padded lengths), in snippets.
        valid_ratios: ``[B, L, 1]`` valid length / padded length of each level.

    Returns:
        ``[B, S, L, 1]`` normalised centers, S = ΣT_l.
    """
    if valid_ratios.dim() != 3 or valid_ratios.shape[1:] != (len(level_lengths), 1):
        raise ValueError(
            f"valid_ratios: expected shape [B, {len(level_lengths)}, 1], found {tuple(valid_ratios.shape)}"
        )
    centers = []
    for level, length in enumerate(level_lengths):
        cells = torch.arange(length, device=valid_ratios.device, dtype=valid_ratios.dtype) + 0.5
        centers.append(cells[None, :] / (valid_ratios[:, level] * length))  # [B, T_l]
    flat = torch.cat(centers, dim=1)  # [B, S]
    return flat[:, :, None, None] * valid_ratios[:, None, :, :]


class DeformableEncoderLayer(nn.Module):
    """x ← LN(x + Drop(MSDeformAttn(x + pos, ref, x))); x ← LN(x + Drop(FFN(x))). Shapes ``[B, S, C]``."""

    def __init__(
        self,
        d_model: int = 512,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        n_levels: int = 4,
        n_heads: int = 8,
        n_points: int = 4,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.self_attn = MSDeformAttn1D(d_model, n_levels, n_heads, n_points, backend=backend)
        self.dropout1 = Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout2 = Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.dropout3 = Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(
        self,
        src: Tensor,
        pos: Tensor,
        reference_points: Tensor,
        level_lengths: Tensor,
        level_start_index: Tensor,
        padding_mask: Tensor | None = None,
    ) -> Tensor:
        """src, pos ``[B, S, C]``; reference_points ``[B, S, L, 1]``; padding_mask ``[B, S]`` → ``[B, S, C]``."""
        attended = self.self_attn(src + pos, reference_points, src, level_lengths, level_start_index, padding_mask)
        src = self.norm1(src + self.dropout1(attended))
        hidden = self.linear2(self.dropout2(torch.relu(self.linear1(src))))
        return self.norm2(src + self.dropout3(hidden))


class DeformableEncoder(nn.Module):
    """A stack of ``DeformableEncoderLayer`` with no final norm."""

    def __init__(self, n_layers: int, **layer_kwargs: Any) -> None:
        super().__init__()
        if n_layers < 0:
            raise ValueError(f"n_layers: expected ≥ 0, found {n_layers}")
        self.layers = nn.ModuleList(DeformableEncoderLayer(**layer_kwargs) for _ in range(n_layers))

    def forward(
        self,
        src: Tensor,
        pos: Tensor,
        level_sizes: Sequence[int],
        level_lengths: Tensor,
        level_start_index: Tensor,
        valid_ratios: Tensor,
        padding_mask: Tensor | None = None,
    ) -> Tensor:
        """src, pos ``[B, S, C]``; level_sizes: the L lengths T_l as Python ints (the reference
        points are built from them without reading ``level_lengths`` back from the device);
        level_lengths, level_start_index ``[L]`` int64 (the same lengths, for the attention op);
        valid_ratios ``[B, L, 1]``; padding_mask ``[B, S]`` (True = pad) → memory ``[B, S, C]``."""
        reference_points = encoder_reference_points(level_sizes, valid_ratios)
        for layer in self.layers:
            src = layer(src, pos, reference_points, level_lengths, level_start_index, padding_mask)
        return src
