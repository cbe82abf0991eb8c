"""1-D multi-scale deformable attention: the module that predicts sampling locations and weights
and calls the sampling op.

The op (``ms_deform_attn_1d``) reads, for every query and head, ``L × P`` linearly interpolated
samples from a multi-level value sequence and returns their attention-weighted sum. Sampling
follows ``grid_sample`` with ``align_corners=False`` and zero padding on a level of length
``T_l``: the continuous index is ``t = loc · T_l − 0.5``; the taps ``⌊t⌋`` and ``⌊t⌋ + 1`` get the
weights ``1 − frac`` and ``frac``; a tap outside ``[0, T_l − 1]`` reads 0, so a sample with
``t ≤ −1`` or ``t ≥ T_l`` contributes nothing.

The op and its backends live in :mod:`tp2detr.ops` (``reference`` for the PyTorch implementation,
``registry`` for the dispatch); this module holds the ``nn.Module`` that predicts the sampling
locations and weights and calls the op.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

import tp2detr.ops  # noqa: F401 - installs the provider of the compiled backends ("cpp", "cuda")
from tp2detr.ops.reference import DENSE_KEYS_PER_TAP, DeformAttnFn, check_op_shapes, ms_deform_attn_1d_pytorch
from tp2detr.ops.registry import (
    COMPILED_BACKEND_NAMES,
    available_backends,
    ms_deform_attn_1d,
    register_backend,
    require_backend,
    resolve_backend,
    unregister_backend,
)

__all__ = [
    "COMPILED_BACKEND_NAMES", "DENSE_KEYS_PER_TAP", "DeformAttnFn", "MSDeformAttn1D", "available_backends",
    "check_op_shapes", "ms_deform_attn_1d", "ms_deform_attn_1d_pytorch", "register_backend",
    "resolve_backend", "unregister_backend",
]


class MSDeformAttn1D(nn.Module):
    """Multi-scale deformable attention over a flattened multi-level sequence.

    Each query predicts, per head, level and point, a 1-D sampling offset and an attention weight
    (softmax over the ``L·P`` samples of a head) from its own features.

    Args:
        d_model: channels C (divisible by ``n_heads``).
        n_levels: L, number of levels in the value sequence.
        n_heads: M.
        n_points: P, samples per head and level.
        backend: op backend name or ``"auto"`` (see ``ms_deform_attn_1d``).
    """

    def __init__(
        self,
        d_model: int = 512,
        n_levels: int = 4,
        n_heads: int = 8,
        n_points: int = 4,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model: expected a multiple of n_heads={n_heads}, found {d_model}")
        if min(n_levels, n_heads, n_points) < 1:
            raise ValueError(
                f"n_levels, n_heads, n_points: expected ≥ 1, found {(n_levels, n_heads, n_points)}"
            )
        require_backend(backend)  # a compiled backend is built / loaded now: a failed build fails here
        self.d_model = d_model
        self.n_levels = n_levels
        self.n_heads = n_heads
        self.n_points = n_points
        self.backend = backend
        n_samples = n_heads * n_levels * n_points
        self.sampling_offsets = nn.Linear(d_model, n_samples)
        self.attention_weights = nn.Linear(d_model, n_samples)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Offsets: zero weight; head h starts at cos(2πh/M) / max_h|cos| (= cos(2πh/M), since
        head 0 gives 1) cells, × (i+1) for point i, on every level.
        Attention weights: zero (uniform attention). Value/output projections: xavier, zero bias."""
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.n_heads, dtype=torch.float64) * (2.0 * math.pi / self.n_heads)
        direction = angles.cos()  # already max-|cos|-normalised: head 0 has cos(0) = 1
        point_scale = torch.arange(1, self.n_points + 1, dtype=torch.float64)
        bias = direction.view(-1, 1, 1) * point_scale.view(1, 1, -1)  # [M, 1, P]
        bias = bias.expand(self.n_heads, self.n_levels, self.n_points)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(bias.reshape(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def sampling_locations(self, query: Tensor, reference_points: Tensor, level_lengths: Tensor) -> Tensor:
        """Normalised sampling locations ``[N, Lq, M, L, P]``.

        ``reference_points`` ``[N, Lq, L, 1]`` (center): ref + offset / T_l (offsets in level cells);
        ``[N, Lq, L, 2]`` (center, width): center + offset / P · width · 0.5.
        """
        n, lq, _ = query.shape
        offsets = self.sampling_offsets(query).view(n, lq, self.n_heads, self.n_levels, self.n_points)
        if reference_points.shape[:3] != (n, lq, self.n_levels) or reference_points.dim() != 4:
            raise ValueError(
                f"reference_points: expected shape [{n}, {lq}, {self.n_levels}, 1 or 2], "
                f"found {tuple(reference_points.shape)}"
            )
        if reference_points.shape[-1] == 1:
            lengths = level_lengths.to(device=query.device, dtype=query.dtype).view(1, 1, 1, -1, 1)
            center = reference_points[:, :, None, :, :1]  # [N, Lq, 1, L, 1]
            return center + offsets / lengths
        if reference_points.shape[-1] == 2:
            center = reference_points[:, :, None, :, 0:1]
            width = reference_points[:, :, None, :, 1:2]
            return center + offsets / self.n_points * width * 0.5
        raise ValueError(
            "reference_points: expected 1 (center) or 2 (center, width) coordinates, "
            f"found {reference_points.shape[-1]}"
        )

    def forward(
        self,
        query: Tensor,
        reference_points: Tensor,
        value_input: Tensor,
        level_lengths: Tensor,
        level_start_index: Tensor,
        padding_mask: Tensor | None = None,
    ) -> Tensor:
        """Attend from each query to ``L·P`` samples per head of the multi-level value sequence.

        Args:
            query: ``[N, Lq, C]``.
            reference_points: ``[N, Lq, L, 1]`` centers or ``[N, Lq, L, 2]`` (center, width),
                normalised to each level's padded length.
            value_input: ``[N, S, C]`` flattened levels, S = ΣT_l.
            level_lengths: ``[L]`` int64 T_l. level_start_index: ``[L]`` int64.
            padding_mask: ``[N, S]`` bool, True = pad (those values are zeroed).

        Returns:
            ``[N, Lq, C]``.
        """
        n, lq, c = query.shape
        s = value_input.shape[1]
        if value_input.shape != (n, s, c) or c != self.d_model:
            raise ValueError(
                f"value_input: expected shape [{n}, S, {self.d_model}] for query {tuple(query.shape)}, "
                f"found {tuple(value_input.shape)}"
            )
        value = self.value_proj(value_input)
        if padding_mask is not None:
            if padding_mask.shape != (n, s):
                raise ValueError(
                    f"padding_mask: expected shape [{n}, {s}], found {tuple(padding_mask.shape)}"
                )
            value = value.masked_fill(padding_mask[..., None], 0.0)
        value = value.view(n, s, self.n_heads, c // self.n_heads)
        weights = self.attention_weights(query).view(n, lq, self.n_heads, self.n_levels * self.n_points)
        weights = weights.softmax(dim=-1).view(n, lq, self.n_heads, self.n_levels, self.n_points)
        locations = self.sampling_locations(query, reference_points, level_lengths)
        sampled = ms_deform_attn_1d(
            value, level_lengths, level_start_index, locations, weights, backend=self.backend
        )
        return self.output_proj(sampled)
