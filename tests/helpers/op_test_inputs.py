"""Random inputs of the 1-D deformable-attention op, shared by the CPU and GPU op tests."""

from __future__ import annotations

import torch


def random_op_inputs(
    n: int = 3,
    lengths: tuple[int, ...] = (7, 4, 1),
    heads: int = 2,
    head_dim: int = 30,
    queries: int = 5,
    points: int = 3,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> tuple[torch.Tensor, ...]:
    """(value ``[N, S, M, D]``, level lengths ``[L]``, level starts ``[L]``, sampling locations and
    attention weights ``[N, Lq, M, L, P]``) on the CPU, from ``seed``; locations over [-0.4, 1.4]
    so that taps fall into the zero padding on both sides of every level."""
    generator = torch.Generator().manual_seed(seed)
    level_lengths = torch.tensor(lengths, dtype=torch.int64)
    starts = torch.cat((level_lengths.new_zeros(1), level_lengths.cumsum(0)[:-1]))
    total, levels = int(level_lengths.sum()), len(lengths)
    value = torch.randn(n, total, heads, head_dim, generator=generator, dtype=dtype)
    locations = torch.rand(n, queries, heads, levels, points, generator=generator, dtype=dtype) * 1.8 - 0.4
    weights = torch.rand(n, queries, heads, levels, points, generator=generator, dtype=dtype)
    return value, level_lengths, starts, locations, weights
