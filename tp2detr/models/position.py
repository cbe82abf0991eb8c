"""Sine positional encoding along time, computed from a padding mask.

The position of valid snippet ``i`` (0-based) in a sequence with ``V`` valid snippets is the
normalised angle ``x = (i + 0.5) / V * 2π``: the cumulative sum of the not-pad mask, minus 0.5,
divided by its last value. Padded positions repeat the value of the last valid one. Channel ``k``
uses the divisor ``temperature ** (2 * (k // 2) / dim)``; even channels hold ``sin(x / divisor)``
and odd channels ``cos(x / divisor)``, so each sin/cos pair shares one frequency.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def sine_position_encoding(
    mask: Tensor,
    dim: int = 512,
    temperature: float = 10000.0,
    scale: float = 2.0 * math.pi,
    eps: float = 1e-6,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Encode the time position of each snippet of a padded batch.

    Args:
        mask: ``[B, T]`` bool, True where the position is padding.
        dim: number of output channels; must be even.
        temperature: base of the geometric frequency progression.
        scale: the normalised position ``(i + 0.5) / V`` is multiplied by it (2π by default).
        eps: added to the valid length before dividing (keeps an all-pad row finite).
        dtype: floating dtype of the result.

    Returns:
        ``[B, T, dim]`` position encoding, on ``mask``'s device.
    """
    if mask.dim() != 2:
        raise ValueError(f"mask: expected shape [B, T], found {tuple(mask.shape)}")
    if mask.dtype != torch.bool:
        raise ValueError(f"mask: expected dtype torch.bool (True = pad), found {mask.dtype}")
    if dim <= 0 or dim % 2 != 0:
        raise ValueError(f"dim: expected a positive even number of channels, found {dim}")
    # Integer cumsum: a floating-point cumsum on CUDA is refused under deterministic algorithms.
    valid_cumsum = (~mask).cumsum(dim=1).to(dtype)  # [B, T]
    position = (valid_cumsum - 0.5) / (valid_cumsum[:, -1:] + eps) * scale  # [B, T]
    channel = torch.arange(dim, device=mask.device, dtype=dtype)
    divisor = temperature ** (2.0 * torch.div(channel, 2, rounding_mode="floor") / dim)  # [dim]
    angles = position[:, :, None] / divisor  # [B, T, dim]
    encoding = torch.empty_like(angles)
    encoding[..., 0::2] = angles[..., 0::2].sin()
    encoding[..., 1::2] = angles[..., 1::2].cos()
    return encoding
