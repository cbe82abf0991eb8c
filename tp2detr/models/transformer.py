"""The deformable transformer: multi-level flattening, encoder, learned queries and decoder."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from tp2detr.models.decoder import BoxDeltaFn, DeformableDecoder
from tp2detr.models.deform_attn import MSDeformAttn1D
from tp2detr.models.encoder import DeformableEncoder
from tp2detr.models.position import sine_position_encoding
from tp2detr.transfer import to_device_async


@dataclass
class TransformerOutput:
    """Everything the heads, the salient head and the losses need from the transformer.

    memory: ``[B, S, C]`` encoder output over the flattened levels (S = ΣT_l).
    memory_levels: L tensors ``[B, C, T_l]``, the memory split back per level (the TFPN layout).
    memory_padding_mask: ``[B, S]`` True = pad.
    level_lengths: ``[L]`` int64 T_l. valid_ratios: ``[B, L, 1]``.
    hs: ``[n_dec, B, Q, C]`` every decoder layer's output.
    references: n_dec tensors, the reference entering each decoder layer (valid-length
        coordinates): ``[B, Q, 1]`` centers, or ``[B, Q, 2]`` (center, width) after refinement.
    box_deltas: ``[n_dec, B, Q, 2]`` box deltas computed during refinement (None when it is off).
    """

    memory: Tensor
    memory_levels: list[Tensor]
    memory_padding_mask: Tensor
    level_lengths: Tensor
    valid_ratios: Tensor
    hs: Tensor
    references: list[Tensor]
    box_deltas: Tensor | None


def valid_ratios_from_masks(masks: Sequence[Tensor]) -> Tensor:
    """Valid fraction of each level: L masks ``[B, T_l]`` (True = pad) → ``[B, L, 1]``."""
    ratios = [(~mask).sum(dim=1).to(torch.float32) / mask.shape[1] for mask in masks]
    return torch.stack(ratios, dim=1)[:, :, None]


class DeformableTransformer(nn.Module):
    """Deformable DETR's transformer for 1-D multi-level sequences.

    Args:
        d_model: channels C of every level (no input projection: the levels enter as they are).
        n_heads: M for the deformable attentions and the decoder self-attention.
        n_levels: L.
        n_encoder_layers, n_decoder_layers: depths (3 / 5 for THUMOS14).
        dim_feedforward, dropout: FFN width and dropout of every layer.
        encoder_points, decoder_points: sampling points per head and level.
        num_queries: Q learned queries.
        box_refine: iterative box refinement (on in the released code); needs ``box_delta_fn``.
        backend: deformable-attention op backend (see ``deform_attn.ms_deform_attn_1d``).

    Init: xavier-uniform for every encoder/decoder parameter with ndim > 1, then the deformable
    attentions' own init; level embedding and query embedding N(0, 1); the initial-reference
    Linear xavier (gain 1) with zero bias.
    """

    def __init__(
        self,
        *,
        d_model: int,
        n_heads: int,
        n_levels: int,
        n_encoder_layers: int,
        n_decoder_layers: int,
        dim_feedforward: int,
        dropout: float,
        encoder_points: int,
        decoder_points: int,
        num_queries: int,
        box_refine: bool,
        backend: str,
    ) -> None:
        super().__init__()
        if num_queries < 1:
            raise ValueError(f"num_queries: expected ≥ 1, found {num_queries}")
        self.d_model = d_model
        self.n_levels = n_levels
        self.num_queries = num_queries
        self.box_refine = box_refine
        shared = dict(
            d_model=d_model, dim_feedforward=dim_feedforward, dropout=dropout,
            n_levels=n_levels, n_heads=n_heads, backend=backend,
        )
        self.encoder = DeformableEncoder(n_encoder_layers, n_points=encoder_points, **shared)
        self.decoder = DeformableDecoder(n_decoder_layers, n_points=decoder_points, **shared)
        self.level_embed = nn.Parameter(torch.empty(n_levels, d_model))
        self.query_embed = nn.Embedding(num_queries, 2 * d_model)
        self.reference_points = nn.Linear(d_model, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in (self.encoder, self.decoder):
            for parameter in module.parameters():
                if parameter.dim() > 1:
                    nn.init.xavier_uniform_(parameter)
            for submodule in module.modules():
                if isinstance(submodule, MSDeformAttn1D):
                    submodule.reset_parameters()
        nn.init.xavier_uniform_(self.reference_points.weight, gain=1.0)
        nn.init.zeros_(self.reference_points.bias)
        nn.init.normal_(self.level_embed)
        nn.init.normal_(self.query_embed.weight)

    def _check_inputs(self, srcs: Sequence[Tensor], masks: Sequence[Tensor]) -> None:
        if len(srcs) != self.n_levels or len(masks) != self.n_levels:
            raise ValueError(
                f"srcs / masks: expected {self.n_levels} levels, found {len(srcs)} srcs and {len(masks)} masks"
            )
        batch = srcs[0].shape[0]
        for level, (src, mask) in enumerate(zip(srcs, masks)):
            if src.dim() != 3 or src.shape[:2] != (batch, self.d_model):
                raise ValueError(
                    f"srcs[{level}]: expected shape [{batch}, {self.d_model}, T_l], found {tuple(src.shape)}"
                )
            if mask.dtype != torch.bool or mask.shape != (batch, src.shape[2]):
                raise ValueError(
                    f"masks[{level}]: expected a bool tensor of shape [{batch}, {src.shape[2]}], "
                    f"found dtype {mask.dtype} and shape {tuple(mask.shape)}"
                )
            # Reading a device tensor back costs a host synchronisation per level, so the check
            # runs where it is free: on CPU tensors. On a GPU the masks come from a collated batch
            # (collate_samples: valid snippets first, at least one per item) through the TFPN,
            # whose every level keeps position 0, so each item keeps a valid position.
            if mask.device.type == "cpu" and not bool((~mask).any(dim=1).all()):
                raise ValueError(f"masks[{level}]: every item needs at least one valid (False) position")

    def forward(
        self,
        srcs: Sequence[Tensor],
        masks: Sequence[Tensor],
        box_delta_fn: BoxDeltaFn | None = None,
    ) -> TransformerOutput:
        """Encode the levels and decode the queries.

        Args:
            srcs: L tensors ``[B, C, T_l]`` (the TFPN levels).
            masks: L tensors ``[B, T_l]`` bool, True = pad.
            box_delta_fn: (layer, hidden ``[B, Q, C]``) → delta ``[B, Q, 2]``, normally
                ``PredictionHeads.box_delta``; required when ``box_refine`` is on, unused otherwise.

        Returns:
            ``TransformerOutput``.
        """
        self._check_inputs(srcs, masks)
        if self.box_refine and box_delta_fn is None:
            raise ValueError("box_delta_fn: box_refine is on, so the box heads' delta function is required")
        flat_src, flat_pos = [], []
        for level, (src, mask) in enumerate(zip(srcs, masks)):
            pos = sine_position_encoding(mask, self.d_model, dtype=src.dtype)  # [B, T_l, C]
            flat_pos.append(pos + self.level_embed[level].to(src.dtype))
            flat_src.append(src.transpose(1, 2))  # [B, T_l, C]
        lengths = [src.shape[2] for src in srcs]
        device = srcs[0].device
        level_lengths = to_device_async(torch.tensor(lengths, dtype=torch.int64), device)
        level_start_index = torch.cat((level_lengths.new_zeros(1), level_lengths.cumsum(0)[:-1]))
        src_flat = torch.cat(flat_src, dim=1)  # [B, S, C]
        pos_flat = torch.cat(flat_pos, dim=1)
        mask_flat = torch.cat(list(masks), dim=1)  # [B, S]
        valid_ratios = valid_ratios_from_masks(masks).to(src_flat.dtype)  # [B, L, 1]

        memory = self.encoder(src_flat, pos_flat, lengths, level_lengths, level_start_index, valid_ratios, mask_flat)

        batch = src_flat.shape[0]
        query_pos, tgt = self.query_embed.weight.split(self.d_model, dim=1)  # [Q, C] each
        query_pos = query_pos[None].expand(batch, -1, -1)
        tgt = tgt[None].expand(batch, -1, -1)
        initial_reference = self.reference_points(query_pos).sigmoid()  # [B, Q, 1]
        decoded = self.decoder(
            tgt,
            query_pos,
            initial_reference,
            memory,
            level_lengths,
            level_start_index,
            valid_ratios,
            mask_flat,
            box_delta_fn if self.box_refine else None,
        )
        memory_levels = [level.transpose(1, 2) for level in memory.split(lengths, dim=1)]
        return TransformerOutput(
            memory=memory,
            memory_levels=memory_levels,
            memory_padding_mask=mask_flat,
            level_lengths=level_lengths,
            valid_ratios=valid_ratios,
            hs=decoded.hs,
            references=decoded.references,
            box_deltas=decoded.box_deltas,
        )


def transformer_arguments(model: Mapping[str, Any], num_levels: int) -> dict[str, Any]:
    """The :class:`DeformableTransformer` keyword arguments of the ``model`` config group over
    ``num_levels`` pyramid levels (the TFPN's)."""
    return {
        "d_model": int(model["d_model"]),
        "n_heads": int(model["n_heads"]),
        "n_levels": int(num_levels),
        "n_encoder_layers": int(model["encoder_layers"]),
        "n_decoder_layers": int(model["decoder_layers"]),
        "dim_feedforward": int(model["dim_feedforward"]),
        "dropout": float(model["dropout"]),
        "encoder_points": int(model["encoder_points"]),
        "decoder_points": int(model["decoder_points"]),
        "num_queries": int(model["num_queries"]),
        "box_refine": bool(model["box_refine"]),
        "backend": str(model["attn_backend"]),
    }


def build_transformer(model: Mapping[str, Any], num_levels: int) -> DeformableTransformer:
    """The deformable encoder/decoder of the ``model`` config group over ``num_levels`` pyramid
    levels (the TFPN's)."""
    return DeformableTransformer(**transformer_arguments(model, num_levels))
