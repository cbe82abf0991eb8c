"""TriDet's Scalable-Granularity Perception block, as the SGP TFPN uses it (docs/fidelity.md §2.8(d)).

Released behaviour (``padding_exact=False``, the default): for a stride-2 block the input is first
max-pooled (kernel 3, stride 2, padding 1); then ``u = LN(x)`` (channel LayerNorm) and

    out = fc(u) · ReLU(global_fc(mean_T(u))) + psi(u) · (convw(u) + convkw(u)) + u
    out = x · m + out
    out = out + MLP(GroupNorm16(out))

where psi / fc / convw / convkw / global_fc are depthwise convs (groups = C, so the paper's "FC" is
per-channel), ``m`` is the nearest-downsampled valid mask and the MLP is 1×1 conv C → hidden, GELU,
1×1 conv hidden → C without dropout. The time mean and the GroupNorm statistics include padded
positions, and padded outputs are not zeroed, so the released block's valid outputs depend on how
much padding a batch carries.

``padding_exact=True`` removes that dependence: ``u`` is zeroed at padded positions before the
depthwise convs, the time mean and the GroupNorm statistics run over valid positions only, and
the output is zeroed at padded positions. Without padding both settings compute the same thing.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from tp2detr.models.tfpn_blocks import ChannelLayerNorm, keep_even, valid_weights

#: GroupNorm groups in the SGP block's FFN (TriDet).
SGP_GROUPS = 16


def sgp_long_kernel(window_size: int, k: float = 1.5) -> int:
    """Kernel length of Conv_kw: ``round((w + 1) · k)``, made odd by adding 1 (3 for w = 1)."""
    size = round((window_size + 1) * k)
    return size + 1 if size % 2 == 0 else size


def masked_group_norm(x: Tensor, norm: nn.GroupNorm, valid: Tensor) -> Tensor:
    """GroupNorm whose mean/variance are taken over valid time steps only.

    Args:
        x: ``[B, C, T]``.
        norm: the ``nn.GroupNorm`` whose groups, eps and affine parameters are used.
        valid: ``[B, 1, T]`` weights, 1.0 at valid positions.

    Returns:
        ``[B, C, T]``; equal to ``norm(x)`` when every position is valid.
    """
    batch, channels, length = x.shape
    groups = norm.num_groups
    grouped = x.reshape(batch, groups, channels // groups, length)
    weights = valid.reshape(batch, 1, 1, length)
    count = (weights.sum(dim=-1, keepdim=True) * (channels // groups)).clamp_min(1.0)
    mean = (grouped * weights).sum(dim=(2, 3), keepdim=True) / count
    var = ((grouped - mean).pow(2) * weights).sum(dim=(2, 3), keepdim=True) / count
    out = ((grouped - mean) * torch.rsqrt(var + norm.eps)).reshape(batch, channels, length)
    if norm.affine:
        out = out * norm.weight[None, :, None] + norm.bias[None, :, None]
    return out


class SGPBlock(nn.Module):
    """One SGP block (see the module docstring for the formula).

    Args:
        d_model: C (divisible by 16 for the GroupNorm).
        window_size: odd kernel of psi and Conv_w (the released SGP backbone passes 1).
        stride: 1 (stem) or 2 (branch: MaxPool1d(3, 2, 1) on the input first).
        mlp_dim: hidden width of the FFN (768 in the released config).
        k: Conv_kw kernel factor (1.5).
        init_std: std of the N(0, std²) init of the depthwise weights (1.0 = TriDet's
            ``init_conv_vars``); all conv biases start at 0 (backbone init v0).
        padding_exact: compute statistics over valid positions only and zero padded outputs, so
            valid outputs do not depend on the padding (see module docstring).

    With C = 512, window 1, mlp_dim 768 a block has 795,904 parameters: channel LN 1,024,
    GroupNorm 1,024, psi / fc / convw / global_fc 1,024 each, convkw 2,048, FFN 787,712.
    """

    def __init__(
        self,
        d_model: int,
        window_size: int = 1,
        stride: int = 1,
        mlp_dim: int = 768,
        k: float = 1.5,
        init_std: float = 1.0,
        padding_exact: bool = False,
    ) -> None:
        super().__init__()
        if d_model % SGP_GROUPS != 0:
            raise ValueError(
                f"SGP d_model: expected a multiple of {SGP_GROUPS} (GroupNorm groups), "
                f"found {d_model}"
            )
        if window_size < 1 or window_size % 2 != 1:
            raise ValueError(f"SGP window_size: expected an odd number >= 1, found {window_size}")
        if stride not in (1, 2):
            raise ValueError(f"SGP stride: expected 1 or 2, found {stride}")
        self.stride = stride
        self.padding_exact = padding_exact
        long_kernel = sgp_long_kernel(window_size, k)
        self.downsample: nn.Module = (
            nn.MaxPool1d(kernel_size=3, stride=2, padding=1) if stride == 2 else nn.Identity()
        )
        self.ln = ChannelLayerNorm(d_model)
        self.gn = nn.GroupNorm(SGP_GROUPS, d_model)

        def depthwise(kernel: int) -> nn.Conv1d:
            return nn.Conv1d(d_model, d_model, kernel, padding=kernel // 2, groups=d_model)

        self.psi = depthwise(window_size)
        self.fc = depthwise(1)
        self.convw = depthwise(window_size)
        self.convkw = depthwise(long_kernel)
        self.global_fc = depthwise(1)
        self.mlp = nn.Sequential(
            nn.Conv1d(d_model, mlp_dim, 1),
            nn.GELU(),
            nn.Conv1d(mlp_dim, d_model, 1),
        )
        for conv in (self.psi, self.fc, self.convw, self.convkw, self.global_fc):
            nn.init.normal_(conv.weight, mean=0.0, std=init_std)
        for module in self.modules():
            if isinstance(module, nn.Conv1d) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """``x [B, C, T]``, ``mask [B, T]`` (True = pad) → ``([B, C, T'], [B, T'])``.

        T' = T (stride 1) or ceil(T / 2) (stride 2); the output mask keeps the even indices.
        """
        x = self.downsample(x)
        out_mask = keep_even(mask) if self.stride == 2 else mask
        keep = valid_weights(out_mask, x.dtype)
        u = self.ln(x)
        if self.padding_exact:
            u = u * keep
            time_mean = u.sum(dim=-1, keepdim=True) / keep.sum(dim=-1, keepdim=True).clamp_min(1.0)
        else:
            time_mean = u.mean(dim=-1, keepdim=True)
        phi = F.relu(self.global_fc(time_mean))
        out = self.fc(u) * phi + (self.convw(u) + self.convkw(u)) * self.psi(u) + u
        out = x * keep + out
        if self.padding_exact:
            out = out * keep
            out = out + self.mlp(masked_group_norm(out, self.gn, keep)) * keep
        else:
            out = out + self.mlp(self.gn(out))
        return out, out_mask
