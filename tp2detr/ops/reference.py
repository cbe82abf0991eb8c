"""The 1-D multi-scale deformable sampling op in pure PyTorch: its argument checks and the
reference implementation every compiled backend is tested against.

The op reads, for every query and head, ``L × P`` linearly interpolated samples from a
multi-level value sequence and returns their attention-weighted sum. Sampling follows
``grid_sample`` with ``align_corners=False`` and zero padding on a level of length ``T_l``: the
continuous index is ``t = loc · T_l − 0.5``; the taps ``⌊t⌋`` and ``⌊t⌋ + 1`` get the weights
``1 − frac`` and ``frac``; a tap outside ``[0, T_l − 1]`` reads 0, so a sample with ``t ≤ −1`` or
``t ≥ T_l`` contributes nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

DeformAttnFn = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor], Tensor]

# With gradients, the dense strategy costs ∝ S per (query, head) and the sparse one ∝ its 2·L·P taps
# (measured crossover on a 2-core CPU: S ≈ 10 keys per tap). "auto" uses dense while
# S ≤ DENSE_KEYS_PER_TAP · 2·L·P (320 keys for L·P = 16: THUMOS's 240 keys go dense).
DENSE_KEYS_PER_TAP = 10


def check_op_shapes(
    value: Tensor,
    level_lengths: Tensor,
    level_start_index: Tensor,
    sampling_locations: Tensor,
    attention_weights: Tensor,
) -> None:
    if value.dim() != 4:
        raise ValueError(f"value: expected shape [N, S, M, D], found {tuple(value.shape)}")
    if sampling_locations.dim() != 5:
        raise ValueError(
            "sampling_locations: expected shape [N, Lq, M, L, P], "
            f"found {tuple(sampling_locations.shape)}"
        )
    if attention_weights.shape != sampling_locations.shape:
        raise ValueError(
            f"attention_weights: expected the shape of sampling_locations "
            f"{tuple(sampling_locations.shape)}, found {tuple(attention_weights.shape)}"
        )
    n, _, m, _ = value.shape
    n_loc, _, m_loc, n_levels, _ = sampling_locations.shape
    if (n_loc, m_loc) != (n, m):
        raise ValueError(
            f"sampling_locations: expected batch and heads (N, M) = {(n, m)} as in value, "
            f"found {(n_loc, m_loc)}"
        )
    for name, tensor in (("level_lengths", level_lengths), ("level_start_index", level_start_index)):
        if tensor.shape != (n_levels,) or tensor.dtype != torch.int64:
            raise ValueError(
                f"{name}: expected an int64 tensor of shape [{n_levels}] (one entry per level), "
                f"found dtype {tensor.dtype} and shape {tuple(tensor.shape)}"
            )


def _linear_taps(
    level_lengths: Tensor,
    level_start_index: Tensor,
    sampling_locations: Tensor,
    attention_weights: Tensor,
) -> tuple[Tensor, Tensor]:
    """The two interpolation taps of every sample, as flat key indices and weights.

    Returns:
        index: ``[N, Lq, M, L, P, 2]`` int64 key index into the flattened levels ``[0, S)``;
            out-of-range taps are clamped into their level and carry weight 0.
        weight: ``[N, Lq, M, L, P, 2]`` attention weight × interpolation weight of each tap.
    """
    lengths = level_lengths.to(device=sampling_locations.device)
    starts = level_start_index.to(device=sampling_locations.device)
    lengths_f = lengths.to(sampling_locations.dtype).view(1, 1, 1, -1, 1)
    position = sampling_locations * lengths_f - 0.5  # continuous index within the level
    low = torch.floor(position)
    frac = position - low
    low_index = low.long()
    index = torch.stack((low_index, low_index + 1), dim=-1)  # [N, Lq, M, L, P, 2]
    lengths_i = lengths.view(1, 1, 1, -1, 1, 1)
    inside = (index >= 0) & (index < lengths_i)
    weight = torch.stack((1.0 - frac, frac), dim=-1) * attention_weights.unsqueeze(-1)
    weight = weight * inside.to(weight.dtype)
    index = torch.minimum(index.clamp(min=0), lengths_i - 1) + starts.view(1, 1, 1, -1, 1, 1)
    return index, weight


def _sample_sparse(value: Tensor, index: Tensor, weight: Tensor) -> Tensor:
    """Weighted tap sum with ``embedding_bag``: no intermediate larger than the taps.

    value ``[N, S, M, D]``; index / weight ``[N, Lq, M, L, P, 2]`` → ``[N, Lq, M·D]``.
    Low-precision values (bf16/fp16 under autocast) are summed in the weights' precision (fp32)
    and the result is returned in the value's dtype.
    """
    n, s, m, d = value.shape
    lq = index.shape[1]
    batch_offset = torch.arange(n, device=index.device).view(n, 1, 1, 1, 1, 1) * (s * m)
    head_offset = torch.arange(m, device=index.device).view(1, 1, m, 1, 1, 1)
    rows = index * m + batch_offset + head_offset  # rows of value viewed as [N·S·M, D]
    out = F.embedding_bag(
        rows.reshape(n * lq * m, -1),
        value.reshape(n * s * m, d).to(weight.dtype),
        mode="sum",
        per_sample_weights=weight.reshape(n * lq * m, -1),
    )
    return out.view(n, lq, m * d).to(value.dtype)


def _sample_dense(value: Tensor, index: Tensor, weight: Tensor) -> Tensor:
    """Weighted tap sum as a batched matmul with a scattered ``[N·M, Lq, S]`` weight matrix.

    value ``[N, S, M, D]``; index / weight ``[N, Lq, M, L, P, 2]`` → ``[N, Lq, M·D]``.
    Fastest with gradients for small S; memory grows with ``Lq · S``. The result is in the value's
    dtype; outside autocast, low-precision values are summed in the weights' precision.
    """
    n, s, m, d = value.shape
    lq = index.shape[1]
    index = index.permute(0, 2, 1, 3, 4, 5).reshape(n * m, lq, -1)
    weight = weight.permute(0, 2, 1, 3, 4, 5).reshape(n * m, lq, -1)
    matrix = weight.new_zeros(n * m, lq, s).scatter_add(2, index, weight)  # [N·M, Lq, S]
    per_head_value = value.permute(0, 2, 1, 3).reshape(n * m, s, d)
    if per_head_value.dtype != matrix.dtype and not torch.is_autocast_enabled(value.device.type):
        # bf16/fp16 values with fp32 weights outside autocast: sum in the weights' precision
        # (as the sparse path and the compiled op do); autocast would pick bf16 for bmm itself.
        per_head_value = per_head_value.to(matrix.dtype)
    out = torch.bmm(matrix, per_head_value)  # [N·M, Lq, D]
    return out.view(n, m, lq, d).permute(0, 2, 1, 3).reshape(n, lq, m * d).to(value.dtype)


def ms_deform_attn_1d_pytorch(
    value: Tensor,
    level_lengths: Tensor,
    level_start_index: Tensor,
    sampling_locations: Tensor,
    attention_weights: Tensor,
    *,
    strategy: str = "auto",
) -> Tensor:
    """Pure-PyTorch 1-D multi-scale deformable sampling (differentiable in value, locations, weights).

    Args:
        value: ``[N, S, M, D]`` per-head values of all levels, flattened along time (S = ΣT_l).
        level_lengths: ``[L]`` int64, T_l in snippets.
        level_start_index: ``[L]`` int64, first key of each level in S.
        sampling_locations: ``[N, Lq, M, L, P]`` normalised locations (0 = level start, 1 = end).
        attention_weights: ``[N, Lq, M, L, P]`` weights of the samples.
        strategy: ``"sparse"`` (``embedding_bag``: leanest, fastest without gradients), ``"dense"``
            (scatter into an ``[N·M, Lq, S]`` matrix + ``bmm``: fastest with gradients at small S)
            or ``"auto"`` (dense when a gradient is needed and S ≤ ``DENSE_KEYS_PER_TAP``·2·L·P).

    Returns:
        ``[N, Lq, M·D]`` sampled and weighted values, heads concatenated.
    """
    check_op_shapes(value, level_lengths, level_start_index, sampling_locations, attention_weights)
    if strategy == "auto":
        needs_grad = torch.is_grad_enabled() and (
            value.requires_grad or sampling_locations.requires_grad or attention_weights.requires_grad
        )
        n_taps = 2 * sampling_locations.shape[3] * sampling_locations.shape[4]
        use_dense = needs_grad and value.shape[1] <= DENSE_KEYS_PER_TAP * n_taps
        strategy = "dense" if use_dense else "sparse"
    index, weight = _linear_taps(level_lengths, level_start_index, sampling_locations, attention_weights)
    if strategy == "dense":
        return _sample_dense(value, index, weight)
    if strategy == "sparse":
        return _sample_sparse(value, index, weight)
    raise ValueError(f"strategy: expected 'auto', 'sparse' or 'dense', found {strategy!r}")


