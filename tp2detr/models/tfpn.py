"""Temporal feature pyramid networks (TFPN, paper §3.1, docs/fidelity.md §2.8).

Every pyramid maps CLIP snippet features to L levels:

    forward(x [B, C, T], mask [B, T] bool, True = pad)
        -> (levels: list of L tensors [B, C, T_l], masks: list of L tensors [B, T_l])

with ``T_l = ceil(T / 2^(l − s + 1))`` for the l-th level after the ``s`` full-resolution stem
levels (T for the stem levels). Each level's mask is the previous one downsampled by nearest
(even indices kept). Padded input positions are zeroed before anything else (the released
collate pads with zeros, so this changes nothing there).

Lengths: the strided levels need an even length at every halving, i.e. T a multiple of
``required_length_multiple()`` (2^(number of strided levels)). A batch of another length is
padded internally and the outputs are cropped back to the lengths above, so any T works; a
collate that pads to the multiple avoids that copy. The released local attention needed
``2^(L−1) · 2 · (window // 2)`` (docs/fidelity.md §11.11); the banded attention here does not.

Padding: in eval mode the valid outputs do not depend on how much padding a batch carries, for
every variant except ``sgp`` in its default (released) form, whose time mean and GroupNorm
statistics include padded snippets; ``sgp_mean_over_valid=True`` makes it exact. Padded output
positions are 0 except for ``cnn`` levels 1.. (the LayerNorm bias, as released) and released
``sgp``; consumers must use the masks.

Variants (``build_tfpn`` names):

- ``none``: one level, the raw features (the Deformable-DETR baseline). 0 parameters.
- ``direct``: raw features, then nearest ×½ of the previous level (eq. 2). 0 parameters.
- ``cnn``: 2 masked k3 convs, 2 residual conv blocks (level 0), then per level a masked k3
  stride-2 conv + channel LayerNorm (eq. 3 and the released extras). 10,232,320 parameters at C=512.
- ``sgp``: 1 stride-1 + 3 stride-2 SGP blocks (eqs. 4-8 as released). 4 × 795,904 at C=512.
- ``transformer``: 1 stride-1 + 3 stride-2 local-attention transformer blocks (eqs. 9-11 as
  released, the paper's main model). 4 × 3,155,456 = 12,621,824 at C=512, window 9.
"""

from __future__ import annotations

import logging
from abc import ABCMeta, abstractmethod
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from tp2detr.models.local_attention import LocalTransformerBlock
from tp2detr.models.sgp import SGPBlock
from tp2detr.models.tfpn_blocks import (
    ChannelLayerNorm,
    MaskedConv1d,
    ResidualConvBlock,
    keep_even,
    zero_all_biases,
)

logger = logging.getLogger(__name__)

TFPN_NAMES = ("none", "direct", "cnn", "sgp", "transformer")


class TemporalPyramid(nn.Module, metaclass=ABCMeta):
    """Base class: input checks, zeroing of padded inputs, padding to the length multiple, crop.

    Subclasses implement :meth:`_pyramid` on inputs whose length is a multiple of
    :meth:`required_length_multiple`.

    Args:
        d_model: C, the feature channels (input = output).
        num_levels: L, number of output levels.
        stem_levels: number of leading full-resolution levels (1 in every released config).
    """

    def __init__(self, d_model: int, num_levels: int, stem_levels: int = 1) -> None:
        super().__init__()
        if d_model < 1:
            raise ValueError(f"TFPN d_model: expected a positive channel count, found {d_model}")
        if stem_levels < 1:
            raise ValueError(f"TFPN stem_layers: expected >= 1, found {stem_levels}")
        if num_levels < stem_levels:
            raise ValueError(
                f"TFPN num_levels: expected >= stem_layers ({stem_levels}), found {num_levels}"
            )
        self.d_model = d_model
        self.num_levels = num_levels
        self.stem_levels = stem_levels

    @property
    def num_strided_levels(self) -> int:
        """Number of levels produced by a ×½ downsampling step."""
        return self.num_levels - self.stem_levels

    def required_length_multiple(self) -> int:
        """The input length multiple at which :meth:`forward` needs no internal padding."""
        return 2**self.num_strided_levels

    def level_lengths(self, length: int) -> list[int]:
        """Output lengths ``[T_0, …, T_{L−1}]`` (snippets) for an input of ``length`` snippets."""
        lengths = [length] * self.stem_levels
        for _ in range(self.num_strided_levels):
            lengths.append(-(-lengths[-1] // 2))
        return lengths

    def forward(self, x: Tensor, mask: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """``x [B, C, T]``, ``mask [B, T]`` (True = pad) → (L levels ``[B, C, T_l]``, L masks
        ``[B, T_l]``)."""
        if x.dim() != 3 or x.shape[1] != self.d_model:
            raise ValueError(
                f"TFPN input x: expected [B, {self.d_model}, T], found shape {tuple(x.shape)}"
            )
        if mask.shape != (x.shape[0], x.shape[2]) or mask.dtype != torch.bool:
            raise ValueError(
                f"TFPN input mask: expected a bool tensor of shape {(x.shape[0], x.shape[2])}, "
                f"found {mask.dtype} of shape {tuple(mask.shape)}"
            )
        length = x.shape[-1]
        if length == 0:
            raise ValueError("TFPN input x: expected at least one snippet (T >= 1), found T = 0")
        extra = (-length) % self.required_length_multiple()
        if extra:
            x = F.pad(x, (0, extra))
            mask = F.pad(mask, (0, extra), value=True)
        x = x.masked_fill(mask.unsqueeze(1), 0.0)
        levels, masks = self._pyramid(x, mask)
        if extra:
            lengths = self.level_lengths(length)
            levels = [level[..., :n] for level, n in zip(levels, lengths)]
            masks = [level_mask[..., :n] for level_mask, n in zip(masks, lengths)]
        return levels, masks

    @abstractmethod
    def _pyramid(self, x: Tensor, mask: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Levels and masks for ``x [B, C, T]`` whose T is a multiple of the required multiple."""

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, num_levels={self.num_levels}, "
            f"stem_levels={self.stem_levels}"
        )


class DirectDownsamplePyramid(TemporalPyramid):
    """``direct`` / ``none``: level 0 = raw features, level l = nearest ×½ of level l − 1 (eq. 2).

    The released PlainFPN repeats the raw features once per stem layer. No parameters.
    """

    def _pyramid(self, x: Tensor, mask: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        levels = [x] * self.stem_levels
        masks = [mask] * self.stem_levels
        for _ in range(self.num_strided_levels):
            levels.append(keep_even(levels[-1]))
            masks.append(keep_even(masks[-1]))
        return levels, masks


class ConvPyramid(TemporalPyramid):
    """``cnn`` (CNN basic, released ``ConvBackbone`` with its defaults, docs/fidelity.md §2.8(c)).

    Embedding: ``embed_layers`` masked Conv1d C→C k3 (bias, no norm, no activation). Stem:
    ``stem_blocks`` residual conv blocks (C→2C→C, k3) → level 0. Branch: per further level a
    masked Conv1d C→C k3 stride 2 followed by a channel LayerNorm (eq. 3). Xavier-uniform on the
    embedding and branch conv weights, every conv bias 0.

    Args:
        d_model: C.
        num_levels: L (one full-resolution level, L − 1 branch levels).
        embed_layers, stem_blocks: 2 and 2 in the released code.

    As in the released code the branch LayerNorm output is not re-masked, so padded positions of
    levels 1.. hold the LayerNorm bias. Valid outputs still do not depend on the amount of
    padding: lengths are padded to :meth:`required_length_multiple`, so whenever a strided conv
    reads past the valid part it reads such a pad position, never the sequence end.
    """

    def __init__(self, d_model: int, num_levels: int, embed_layers: int = 2, stem_blocks: int = 2) -> None:
        super().__init__(d_model, num_levels, stem_levels=1)
        self.embed = nn.ModuleList(MaskedConv1d(d_model, d_model, 3) for _ in range(embed_layers))
        self.stem = nn.ModuleList(ResidualConvBlock(d_model, 3) for _ in range(stem_blocks))
        self.branch_convs = nn.ModuleList(
            MaskedConv1d(d_model, d_model, 3, stride=2) for _ in range(num_levels - 1)
        )
        self.branch_norms = nn.ModuleList(ChannelLayerNorm(d_model) for _ in range(num_levels - 1))
        for conv in [*self.embed, *self.branch_convs]:
            nn.init.xavier_uniform_(conv.conv.weight)
        zero_all_biases(self)

    def _pyramid(self, x: Tensor, mask: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        for conv in self.embed:
            x, mask = conv(x, mask)
        for block in self.stem:
            x, mask = block(x, mask)
        levels, masks = [x], [mask]
        for conv, norm in zip(self.branch_convs, self.branch_norms):
            x, mask = conv(x, mask)
            x = norm(x)
            levels.append(x)
            masks.append(mask)
        return levels, masks


class SGPPyramid(TemporalPyramid):
    """``sgp`` (CNN enhanced, released ``SGPFPN``, docs/fidelity.md §2.8(d)).

    ``stem_levels`` stride-1 SGP blocks, then ``num_levels − stem_levels`` stride-2 SGP blocks;
    every block output is a level. Window 1 everywhere (the released SGP backbone ignores the
    window flag), FFN width 768.

    Args:
        d_model: C (a multiple of 16).
        num_levels, stem_levels: L and the number of stride-1 blocks.
        window_size: psi / Conv_w kernel (1).
        mlp_dim: FFN hidden width (768).
        padding_exact: see :class:`~tp2detr.models.sgp.SGPBlock` (False = released behaviour).
    """

    def __init__(
        self,
        d_model: int,
        num_levels: int,
        stem_levels: int,
        *,
        window_size: int,
        mlp_dim: int,
        padding_exact: bool,
    ) -> None:
        super().__init__(d_model, num_levels, stem_levels)
        self.blocks = nn.ModuleList(
            SGPBlock(
                d_model,
                window_size=window_size,
                stride=1 if index < stem_levels else 2,
                mlp_dim=mlp_dim,
                padding_exact=padding_exact,
            )
            for index in range(num_levels)
        )

    def _pyramid(self, x: Tensor, mask: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        levels, masks = [], []
        for block in self.blocks:
            x, mask = block(x, mask)
            levels.append(x)
            masks.append(mask)
        return levels, masks


class LocalTransformerPyramid(TemporalPyramid):
    """``transformer`` (released ``ActionFormerFPN``, docs/fidelity.md §2.8(a)): the paper's main TFPN.

    ``stem_levels`` stride-1 blocks, then ``num_levels − stem_levels`` stride-2 blocks of
    :class:`~tp2detr.models.local_attention.LocalTransformerBlock`; every block output is a
    level. Init v0: every Linear/Conv1d bias 0, PyTorch's default weights. The returned levels
    are ``[B, C, T_l]`` views of channels-last tensors (``level.transpose(1, 2)`` is contiguous).

    Args:
        d_model: C.
        num_levels, stem_levels: L and the number of stride-1 blocks.
        window_size: odd local-attention window (9 THUMOS14, 17 ActivityNet).
        num_heads: attention heads (8).
        qkv_norm: keep the q/k/v LayerNorms (True = released code; False = paper's text).
        mlp_ratio: MLP width multiple (4).
        attn_dropout, proj_dropout: 0.0 / 0.1 in the released config.
    """

    def __init__(
        self,
        d_model: int,
        num_levels: int,
        stem_levels: int,
        *,
        window_size: int,
        num_heads: int,
        qkv_norm: bool,
        attn_dropout: float,
        proj_dropout: float,
        mlp_ratio: int = 4,
    ) -> None:
        super().__init__(d_model, num_levels, stem_levels)
        self.window_size = window_size
        self.blocks = nn.ModuleList(
            LocalTransformerBlock(
                d_model,
                num_heads=num_heads,
                window_size=window_size,
                stride=1 if index < stem_levels else 2,
                qkv_norm=qkv_norm,
                mlp_ratio=mlp_ratio,
                attn_dropout=attn_dropout,
                proj_dropout=proj_dropout,
            )
            for index in range(num_levels)
        )
        zero_all_biases(self)

    def _pyramid(self, x: Tensor, mask: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        levels, masks = [], []
        x = x.transpose(1, 2)  # the blocks run channels-last, [B, T, C]
        for block in self.blocks:
            x, mask = block(x, mask)
            levels.append(x.transpose(1, 2))  # a [B, C, T_l] view of the [B, T_l, C] tensor
            masks.append(mask)
        return levels, masks


def build_tfpn(tfpn: Mapping[str, Any], d_model: int, num_heads: int) -> TemporalPyramid:
    """Build the TFPN of the ``tfpn`` config group (``configs/tfpn/<name>.yaml``).

    Args:
        tfpn: ``name`` (``none`` | ``direct`` | ``cnn`` | ``sgp`` | ``transformer``), ``num_levels``
            (L; ``none`` requires 1), ``stem_layers`` (full-resolution levels before the strided
            ones; ``cnn`` requires 1), the transformer TFPN's ``window_size``, ``qkv_norm``,
            ``attn_dropout``, ``proj_dropout``, and SGP's ``sgp_window_size``, ``sgp_mlp_dim``,
            ``sgp_mean_over_valid`` (padding-exact mode: the time mean and the GroupNorm
            statistics run over valid snippets; False = the released code).
        d_model: C, the feature width (``model.d_model``).
        num_heads: attention heads of the transformer TFPN (``model.n_heads``).

    Returns:
        The pyramid module; ``.num_levels`` and ``.required_length_multiple()`` describe it.
    """
    name, num_levels, stem_layers = str(tfpn["name"]), int(tfpn["num_levels"]), int(tfpn["stem_layers"])
    if name == "none":
        if num_levels != 1:
            raise ValueError(
                f"tfpn 'none' (single-level baseline): expected num_levels 1, found {num_levels}"
            )
        model: TemporalPyramid = DirectDownsamplePyramid(d_model, 1, 1)
    elif name == "direct":
        model = DirectDownsamplePyramid(d_model, num_levels, stem_layers)
    elif name == "cnn":
        if stem_layers != 1:
            raise ValueError(f"tfpn 'cnn': expected stem_layers 1, found {stem_layers}")
        model = ConvPyramid(d_model, num_levels)
    elif name == "sgp":
        model = SGPPyramid(
            d_model,
            num_levels,
            stem_layers,
            window_size=int(tfpn["sgp_window_size"]),
            mlp_dim=int(tfpn["sgp_mlp_dim"]),
            padding_exact=bool(tfpn["sgp_mean_over_valid"]),
        )
    elif name == "transformer":
        model = LocalTransformerPyramid(
            d_model,
            num_levels,
            stem_layers,
            window_size=int(tfpn["window_size"]),
            num_heads=int(num_heads),
            qkv_norm=bool(tfpn["qkv_norm"]),
            attn_dropout=float(tfpn["attn_dropout"]),
            proj_dropout=float(tfpn["proj_dropout"]),
        )
    else:
        raise ValueError(f"tfpn name: expected one of {TFPN_NAMES}, found {name!r}")
    logger.debug(
        "built tfpn %r: %d levels, %d parameters",
        name,
        model.num_levels,
        sum(p.numel() for p in model.parameters()),
    )
    return model
