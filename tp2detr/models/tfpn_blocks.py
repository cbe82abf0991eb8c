"""Small building blocks shared by the TFPN variants (docs/fidelity.md §2.8).

Conventions: features are ``[B, C, T]`` (channels first, time last) and masks are ``[B, T]``
bool with **True = padding**, the convention of the whole detector. "Valid" below means
"not padding".
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


def keep_even(x: Tensor) -> Tensor:
    """Nearest ×½ downsampling along the last axis: keeps indices 0, 2, 4, …

    This is what ``F.interpolate(scale_factor=0.5, mode="nearest")`` does for an even length; for
    an odd length it keeps the last index too (``ceil(T / 2)`` outputs), so a valid snippet at an
    even index is never dropped.

    Args:
        x: ``[..., T]`` features ``[B, C, T]`` or a mask ``[B, T]``.

    Returns:
        ``[..., ceil(T / 2)]``.
    """
    return x[..., ::2]


def valid_weights(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """``[B, T]`` padding mask (True = pad) → ``[B, 1, T]`` weights, 1.0 at valid positions."""
    return (~mask).unsqueeze(1).to(dtype)


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of a ``[B, C, T]`` tensor (ActionFormer's ``LayerNorm``).

    Each time step is normalised on its own with the biased variance and ``eps`` inside the
    square root, then scaled and shifted by per-channel ``weight`` / ``bias`` (init 1 / 0).
    Equivalent to ``nn.LayerNorm(C)`` applied to ``x.transpose(1, 2)``.
    """

    def __init__(self, num_channels: int, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__()
        self.num_channels = num_channels
        self.eps = eps
        if affine:
            self.weight: nn.Parameter | None = nn.Parameter(torch.ones(num_channels))
            self.bias: nn.Parameter | None = nn.Parameter(torch.zeros(num_channels))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, T]`` → ``[B, C, T]``."""
        if x.dim() != 3 or x.shape[1] != self.num_channels:
            raise ValueError(
                f"ChannelLayerNorm input: expected [B, {self.num_channels}, T], "
                f"found shape {tuple(x.shape)}"
            )
        # F.layer_norm over the channels of the [B, T, C] view: the same arithmetic (biased
        # variance, eps inside the square root), several times faster than reducing over dim 1.
        channels_last = x.transpose(1, 2)
        out = F.layer_norm(channels_last, (self.num_channels,), self.weight, self.bias, self.eps)
        return out.transpose(1, 2)

    def extra_repr(self) -> str:
        return f"{self.num_channels}, eps={self.eps}, affine={self.weight is not None}"


class MaskedConv1d(nn.Module):
    """A "same"-padded Conv1d whose output is zeroed at padded positions.

    With stride 2 the output mask is the input mask downsampled by :func:`keep_even`; the conv
    (kernel k, padding k // 2, stride 2) yields exactly ``ceil(T / 2)`` outputs, aligned with it.

    Args:
        in_channels, out_channels: channel counts.
        kernel_size: odd kernel length (snippets).
        stride: 1 or 2.
        bias: whether the conv has a bias (initialised to 0, as in the released ``MaskedConv1D``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(
                f"MaskedConv1d kernel_size: expected an odd number, found {kernel_size}"
            )
        if stride not in (1, 2):
            raise ValueError(f"MaskedConv1d stride: expected 1 or 2, found {stride}")
        self.stride = stride
        self.conv = nn.Conv1d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            bias=bias,
        )
        if self.conv.bias is not None:
            nn.init.zeros_(self.conv.bias)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """``x [B, C_in, T]``, ``mask [B, T]`` → ``([B, C_out, T'], [B, T'])``.

        T' = ceil(T / stride); the output is 0 at padded positions.
        """
        out = self.conv(x)
        out_mask = keep_even(mask) if self.stride == 2 else mask
        return out * valid_weights(out_mask, out.dtype), out_mask


class ResidualConvBlock(nn.Module):
    """ResNet-style basic block of the CNN TFPN's stem (ActionFormer's ``ConvBlock``, stride 1).

    ``out = ReLU(x + conv2(ReLU(conv1(x))))`` with masked k-sized convs ``C → expansion·C → C``.

    Args:
        channels: C.
        kernel_size: odd conv length (3 in the released code).
        expansion: width multiplier of the hidden conv (2 → 1024 for C = 512).
    """

    def __init__(self, channels: int, kernel_size: int = 3, expansion: int = 2) -> None:
        super().__init__()
        width = channels * expansion
        self.conv1 = MaskedConv1d(channels, width, kernel_size)
        self.conv2 = MaskedConv1d(width, channels, kernel_size)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """``x [B, C, T]``, ``mask [B, T]`` → ``([B, C, T], [B, T])``."""
        out, _ = self.conv1(x, mask)
        out, _ = self.conv2(F.relu(out), mask)
        return F.relu(out + x), mask


def zero_all_biases(module: nn.Module) -> None:
    """The released ``backbone_init_method v0``: every Linear/Conv1d bias ← 0, weights untouched."""
    for sub in module.modules():
        if isinstance(sub, (nn.Linear, nn.Conv1d)) and sub.bias is not None:
            nn.init.zeros_(sub.bias)
