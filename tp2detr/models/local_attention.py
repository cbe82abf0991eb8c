"""Banded (local) multi-head self-attention and the transformer TFPN block (docs/fidelity.md §2.8(a)).

Query ``i`` attends to the keys ``j`` with ``|i − j| ≤ window_size // 2`` that lie inside the
sequence and are not padding. The released code computes this with Longformer's sliding-chunk
trick, which needs every level's length to be a multiple of ``2 · (window_size // 2)``. Here the
queries are processed in blocks, each scored against the zero-padded keys of its own span (a
strided ``unfold`` view) with one batched matmul, so any length works, the cost is linear in T and
the result equals dense masked attention (tests check it).

The modules here work **channels-last** (``[B, T, C]``): the released 1×1 convs are the same maps
as ``nn.Linear`` (same default init, same parameter count) and LayerNorm over the last axis is
several times faster than over the channel axis of ``[B, C, T]``. The pyramid transposes once.

Differences from the released kernel that do not change the valid outputs: padded and
out-of-sequence keys are excluded with a hard mask (the released code adds −1e4 to padded keys,
whose weight ``exp(−1e4)`` underflows to 0 in fp32 as well), and rows of padded queries are set to
0 exactly as in the released code.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from tp2detr.models.dropout import Dropout



#: Queries are processed in blocks of this many snippets (each block sees block + 2w keys).
DEFAULT_BLOCK_SIZE = 32


def banded_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    padding_mask: Tensor,
    half_window: int,
    weight_dropout: nn.Module | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> Tensor:
    """Banded multi-head attention: query i attends to keys i − w … i + w.

    Keys outside the sequence or padded get weight exactly 0; rows of padded queries are 0. The
    queries are split into blocks of ``S = max(block_size, 2w)`` snippets; each block's scores
    against its ``S + 2w`` neighbouring keys come from one batched matmul (an ``unfold`` view of
    the zero-padded keys), and the positions outside the band are masked. The cost is
    ``O(T · (S + 2w))`` instead of ``O(T²)`` and any length T works.

    Args:
        query: ``[B, H, T, D]``, already scaled by 1/√D.
        key, value: ``[B, H, T, D]``.
        padding_mask: ``[B, T]`` bool, True = padded (applies to keys and queries).
        half_window: w ≥ 0 (``window_size // 2``).
        weight_dropout: optional dropout applied to the attention weights.
        block_size: minimum query block length S.

    Returns:
        ``[B, H, T, D]`` attention output.
    """
    batch, heads, length, head_dim = query.shape
    block = max(block_size, 2 * half_window, 1)
    num_blocks = -(-length // block)
    tail = num_blocks * block - length
    span = block + 2 * half_window
    queries = F.pad(query, (0, 0, 0, tail)).reshape(batch, heads, num_blocks, block, head_dim)
    # [B, H, T + tail + 2w, D] → [B, H, num_blocks, D, span] (a strided view)
    key_spans = F.pad(key, (0, 0, half_window, half_window + tail)).unfold(2, span, block)
    value_spans = F.pad(value, (0, 0, half_window, half_window + tail)).unfold(2, span, block)
    scores = torch.matmul(queries, key_spans)  # [B, H, num_blocks, block, span]
    key_valid = F.pad(~padding_mask, (half_window, half_window + tail), value=False)
    key_valid = key_valid.unfold(1, span, block)  # [B, num_blocks, span]
    offsets = torch.arange(span, device=query.device)[None, :] - torch.arange(
        block, device=query.device
    )[:, None]
    in_band = (offsets >= 0) & (offsets <= 2 * half_window)  # [block, span]
    allowed = in_band[None, None, None] & key_valid[:, None, :, None, :]
    # The finite minimum (not −inf) keeps fully masked rows (padded queries) NaN-free.
    scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    weights = scores.softmax(dim=-1)
    query_valid = F.pad(~padding_mask, (0, tail), value=False).reshape(batch, num_blocks, block)
    weights = weights * query_valid[:, None, :, :, None].to(weights.dtype)
    if weight_dropout is not None:
        weights = weight_dropout(weights)
    out = torch.matmul(weights, value_spans.transpose(-1, -2))  # [B, H, num_blocks, block, D]
    return out.reshape(batch, heads, num_blocks * block, head_dim)[:, :, :length]


class LocalMaskedSelfAttention(nn.Module):
    """ActionFormer's ``LocalMaskedMHCA`` as modified by TP²-DETR (no depthwise convs).

    ``x`` (already LN1-normalised by the block) → optional nearest ×½ downsampling (keep even
    indices) → q/k/v LayerNorms (``qkv_norm``; the released code keeps them, the paper's text
    removes them, docs/fidelity.md §11.3) → q/k/v projections (the released 1×1 convs) → banded
    attention (scale 1/√head_dim) → output projection → dropout → × valid mask.

    Args:
        d_model: C.
        num_heads: H (C must be divisible by H).
        window_size: odd window length (9 for THUMOS14, 17 for ActivityNet).
        stride: 1 (stem) or 2 (branch: queries, keys and values are downsampled).
        qkv_norm: keep the three q/k/v LayerNorms.
        attn_dropout: dropout on the attention weights (0.0 in the released config).
        proj_dropout: dropout after the output projection (0.1 in the released config).
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        window_size: int,
        stride: int = 1,
        qkv_norm: bool = True,
        attn_dropout: float = 0.0,
        proj_dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if d_model % num_heads != 0:
            raise ValueError(
                f"local attention: d_model {d_model} is not divisible by num_heads {num_heads}"
            )
        if window_size < 1 or window_size % 2 != 1:
            raise ValueError(
                f"local attention window_size: expected an odd number >= 1, found {window_size}"
            )
        if stride not in (1, 2):
            raise ValueError(f"local attention stride: expected 1 or 2, found {stride}")
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.half_window = window_size // 2
        self.stride = stride
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.query_norm: nn.Module = nn.LayerNorm(d_model) if qkv_norm else nn.Identity()
        self.key_norm: nn.Module = nn.LayerNorm(d_model) if qkv_norm else nn.Identity()
        self.value_norm: nn.Module = nn.LayerNorm(d_model) if qkv_norm else nn.Identity()
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model)
        self.value = nn.Linear(d_model, d_model)
        self.attn_dropout = Dropout(attn_dropout)
        self.proj = nn.Linear(d_model, d_model)
        self.proj_dropout = Dropout(proj_dropout)

    def _split_heads(self, x: Tensor) -> Tensor:
        """``[B, T, C]`` → ``[B, H, T, C / H]``."""
        batch, length, _ = x.shape
        return x.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """``x [B, T, C]``, ``mask [B, T]`` (True = pad) → ``([B, T', C], [B, T'])``.

        T' = T for stride 1 and ceil(T / 2) for stride 2; the output is 0 at padded positions.
        """
        if self.stride == 2:
            x, mask = x[:, ::2], mask[:, ::2]
        query = self._split_heads(self.query(self.query_norm(x))) * self.scale
        key = self._split_heads(self.key(self.key_norm(x)))
        value = self._split_heads(self.value(self.value_norm(x)))
        context = banded_attention(
            query, key, value, mask, self.half_window, weight_dropout=self.attn_dropout
        )
        batch, _, length, _ = context.shape
        context = context.transpose(1, 2).reshape(batch, length, -1)
        out = self.proj_dropout(self.proj(context))
        return out * (~mask).unsqueeze(-1).to(out.dtype), mask


class LocalTransformerBlock(nn.Module):
    """Pre-LN transformer block of the transformer TFPN (released ``TransformerBlock``).

    ``attn = LocalAttn(LN1(x))`` (downsampled inside for stride 2);
    ``out = skip(x)·m + attn`` with ``skip`` = identity (stride 1) or MaxPool1d(3, 2, 1) over time
    (stride 2); ``out = out + m·MLP(LN2(out))`` with MLP = C→4C, GELU, dropout, 4C→C, dropout (the
    released 1×1 convs). The α / ᾱ scales of the paper's eqs. 9-10 are 1 (no drop-path in the
    released config). LayerNorms: affine, eps 1e-5, over channels.

    Args:
        d_model: C.
        num_heads: H.
        window_size: odd local-attention window.
        stride: 1 (stem) or 2 (branch).
        qkv_norm: keep the q/k/v LayerNorms (released code) or not (paper's text).
        mlp_ratio: hidden width of the MLP as a multiple of C (4).
        attn_dropout, proj_dropout: dropout rates (0.0 / 0.1 in the released config); proj_dropout
            also applies inside the MLP.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int = 8,
        window_size: int = 9,
        stride: int = 1,
        qkv_norm: bool = True,
        mlp_ratio: int = 4,
        attn_dropout: float = 0.0,
        proj_dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.stride = stride
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = LocalMaskedSelfAttention(
            d_model, num_heads, window_size, stride, qkv_norm, attn_dropout, proj_dropout
        )
        self.ln2 = nn.LayerNorm(d_model)
        hidden = mlp_ratio * d_model
        self.mlp = nn.Sequential(
            nn.Linear(d_model, hidden),
            nn.GELU(),
            Dropout(proj_dropout),
            nn.Linear(hidden, d_model),
            Dropout(proj_dropout),
        )

    def _skip(self, x: Tensor) -> Tensor:
        """Identity, or MaxPool1d(kernel 3, stride 2, padding 1) along time of ``[B, T, C]``."""
        if self.stride == 1:
            return x
        return F.max_pool1d(x.transpose(1, 2), kernel_size=3, stride=2, padding=1).transpose(1, 2)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """``x [B, T, C]``, ``mask [B, T]`` → ``([B, T', C], [B, T'])``, 0 at padded positions."""
        attn, out_mask = self.attn(self.ln1(x), mask)
        keep = (~out_mask).unsqueeze(-1).to(attn.dtype)
        out = self._skip(x) * keep + attn
        return out + self.mlp(self.ln2(out)) * keep, out_mask
