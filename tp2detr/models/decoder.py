"""Deformable transformer decoder (post-norm) with optional iterative box refinement."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from tp2detr.models.deform_attn import MSDeformAttn1D
from tp2detr.models.dropout import Dropout
from tp2detr.models.heads import apply_box_delta

BoxDeltaFn = Callable[[int, Tensor], Tensor]
"""(decoder layer index, hidden ``[B, Q, C]``) → logit-space box delta ``[B, Q, 2]``."""


class DeformableDecoderLayer(nn.Module):
    """Self-attention, deformable cross-attention over the memory, FFN; each post-norm.

    Self-attention: q = k = tgt + query_pos, v = tgt. Cross-attention query: tgt + query_pos.
    """

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
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.dropout1 = Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.cross_attn = MSDeformAttn1D(d_model, n_levels, n_heads, n_points, backend=backend)
        self.dropout2 = Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout3 = Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.dropout4 = Dropout(dropout)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(
        self,
        tgt: Tensor,
        query_pos: Tensor,
        reference_points: Tensor,
        memory: Tensor,
        level_lengths: Tensor,
        level_start_index: Tensor,
        memory_padding_mask: Tensor | None = None,
    ) -> Tensor:
        """tgt, query_pos ``[B, Q, C]``; reference_points ``[B, Q, L, 1 or 2]`` (already scaled by the
        valid ratios); memory ``[B, S, C]``; memory_padding_mask ``[B, S]`` → ``[B, Q, C]``."""
        q = k = tgt + query_pos
        attended = self.self_attn(q, k, tgt, need_weights=False)[0]
        tgt = self.norm1(tgt + self.dropout1(attended))
        attended = self.cross_attn(
            tgt + query_pos, reference_points, memory, level_lengths, level_start_index, memory_padding_mask
        )
        tgt = self.norm2(tgt + self.dropout2(attended))
        hidden = self.linear2(self.dropout3(torch.relu(self.linear1(tgt))))
        return self.norm3(tgt + self.dropout4(hidden))


@dataclass
class DecoderOutput:
    """hs: ``[n_dec, B, Q, C]`` every layer's output; references: the reference entering each layer,
    ``[B, Q, 1]`` (center) or ``[B, Q, 2]`` (center, width), normalised to the valid length;
    box_deltas: ``[n_dec, B, Q, 2]`` the refinement deltas (with gradients), None without refinement."""

    hs: Tensor
    references: list[Tensor]
    box_deltas: Tensor | None


def scale_to_padded(reference: Tensor, valid_ratios: Tensor) -> Tensor:
    """Reference ``[B, Q, 1 or 2]`` (valid-length coordinates) → ``[B, Q, L, 1 or 2]`` per level
    (padded coordinates), using valid_ratios ``[B, L, 1]``; a width is scaled like the center."""
    ratios = valid_ratios.expand(-1, -1, reference.shape[-1])  # [B, L, 1 or 2]
    return reference[:, :, None, :] * ratios[:, None, :, :]


class DeformableDecoder(nn.Module):
    """A stack of ``DeformableDecoderLayer`` returning every intermediate output; no final norm."""

    def __init__(self, n_layers: int, **layer_kwargs: Any) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers: expected ≥ 1, found {n_layers}")
        self.layers = nn.ModuleList(DeformableDecoderLayer(**layer_kwargs) for _ in range(n_layers))

    def forward(
        self,
        tgt: Tensor,
        query_pos: Tensor,
        reference_points: Tensor,
        memory: Tensor,
        level_lengths: Tensor,
        level_start_index: Tensor,
        valid_ratios: Tensor,
        memory_padding_mask: Tensor | None = None,
        box_delta_fn: BoxDeltaFn | None = None,
    ) -> DecoderOutput:
        """Decode the queries.

        Args:
            tgt, query_pos: ``[B, Q, C]`` content and positional queries.
            reference_points: ``[B, Q, 1]`` initial centers in (0, 1).
            memory: ``[B, S, C]``; level_lengths, level_start_index: ``[L]`` int64.
            valid_ratios: ``[B, L, 1]``; memory_padding_mask: ``[B, S]`` True = pad.
            box_delta_fn: when given, iterative box refinement: after layer l the reference becomes
                ``apply_box_delta(box_delta_fn(l, output_l), reference_l)``, detached; otherwise every
                layer uses the initial centers.

        Returns:
            ``DecoderOutput``.
        """
        if reference_points.dim() != 3 or reference_points.shape[-1] != 1:
            raise ValueError(
                f"reference_points: expected initial centers [B, Q, 1], found {tuple(reference_points.shape)}"
            )
        output = tgt
        hidden_states: list[Tensor] = []
        references: list[Tensor] = []
        deltas: list[Tensor] = []
        reference = reference_points
        for index, layer in enumerate(self.layers):
            references.append(reference)
            output = layer(
                output,
                query_pos,
                scale_to_padded(reference, valid_ratios),
                memory,
                level_lengths,
                level_start_index,
                memory_padding_mask,
            )
            hidden_states.append(output)
            if box_delta_fn is not None:
                delta = box_delta_fn(index, output)
                deltas.append(delta)
                reference = apply_box_delta(delta, reference).detach()
        return DecoderOutput(
            hs=torch.stack(hidden_states),
            references=references,
            box_deltas=torch.stack(deltas) if deltas else None,
        )
