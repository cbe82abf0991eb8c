"""Salient heads: per-snippet foreground logits for early supervision.

Paper §3.2 and Algorithm 1, docs/fidelity.md §3.

Two heads read a multi-scale pyramid and predict one logit per snippet of level 0:

- the *TFPN head* reads the TFPN levels (the encoder's inputs);
- the *encoder head* reads the encoder memory split back into its levels.

Both share one set of weights. Two designs exist:

- ``mlp`` (the paper's unified MLP head, used for its results): levels 1.. are upsampled to T
  (``nearest`` = released THUMOS runs, ``linear`` with align_corners=False = the paper's
  Algorithm 1), concatenated with level 0 along channels → ``[B, T, L·C]`` → Linear L·C→hidden,
  ReLU, Linear hidden→1. 1,049,601 parameters at C = 512, L = 4.
- ``cnn`` (Table 3 rows 1-3): a separate Conv1d C→C k3 → LeakyReLU(0.2) → Conv1d C→1 k1 per level,
  each level's logits upsampled to T, then fused by ``max`` | ``mean`` | ``mix`` (½ mean + ½ max) |
  ``adaptive`` (learnable w ∈ R^L, init 1, weighted sum with w / Σw).

The heads are training-time supervision only: :class:`SalientHeads` skips all work in eval mode
unless asked explicitly (e.g. to plot saliency).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

SALIENT_MODES = ("both", "encoder_only", "off")
SALIENT_DESIGNS = ("mlp", "cnn")
SALIENT_FUSIONS = ("max", "mean", "mix", "adaptive")
SALIENT_UPSAMPLING = ("nearest", "linear")


def _check_choice(field: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"salient {field}: expected one of {choices}, found {value!r}")


def upsample_to(x: Tensor, length: int, mode: str) -> Tensor:
    """Resample ``x [B, C, T_l]`` to ``[B, C, length]`` along time (unchanged if T_l = length).

    ``nearest`` takes source index ``floor(i · T_l / length)`` (i // 2 for a ×2 ratio);
    ``linear`` interpolates with ``align_corners=False``.
    """
    if x.shape[-1] == length:
        return x
    if mode == "nearest":
        return F.interpolate(x, size=length, mode="nearest")
    return F.interpolate(x, size=length, mode="linear", align_corners=False)


def split_memory_levels(memory: Tensor, level_lengths: Sequence[int]) -> list[Tensor]:
    """Split flattened encoder memory back into per-level ``[B, C, T_l]`` tensors.

    Args:
        memory: ``[B, N, C]`` with N = Σ T_l, levels concatenated in order.
        level_lengths: ``[T_0, …, T_{L−1}]`` (snippets).

    Returns:
        L tensors ``[B, C, T_l]``.
    """
    if memory.dim() != 3 or memory.shape[1] != sum(level_lengths):
        raise ValueError(
            f"encoder memory: expected [B, {sum(level_lengths)}, C] for level lengths "
            f"{list(level_lengths)}, found shape {tuple(memory.shape)}"
        )
    return [part.transpose(1, 2) for part in memory.split(list(level_lengths), dim=1)]


def _check_levels(field: str, levels: Sequence[Tensor], num_levels: int, d_model: int) -> None:
    if len(levels) != num_levels:
        raise ValueError(f"salient {field}: expected {num_levels} levels, found {len(levels)}")
    for index, level in enumerate(levels):
        if level.dim() != 3 or level.shape[1] != d_model:
            raise ValueError(
                f"salient {field}[{index}]: expected [B, {d_model}, T_l], found shape "
                f"{tuple(level.shape)}"
            )


class UnifiedMLPSalientHead(nn.Module):
    """The paper's unified MLP salient head (Algorithm 1).

    Args:
        d_model: C per level.
        num_levels: L.
        hidden_dim: hidden width (C in the released code; defaults to d_model).
        upsample: ``nearest`` (released) or ``linear`` (paper's text).
    """

    def __init__(
        self,
        d_model: int = 512,
        num_levels: int = 4,
        hidden_dim: int | None = None,
        upsample: str = "nearest",
    ) -> None:
        super().__init__()
        _check_choice("upsample", upsample, SALIENT_UPSAMPLING)
        self.d_model = d_model
        self.num_levels = num_levels
        self.upsample = upsample
        hidden = d_model if hidden_dim is None else hidden_dim
        self.mlp = nn.Sequential(
            nn.Linear(num_levels * d_model, hidden), nn.ReLU(), nn.Linear(hidden, 1)
        )

    def forward(self, levels: Sequence[Tensor], target_length: int) -> Tensor:
        """L levels ``[B, C, T_l]`` → logits ``[B, T]`` with T = ``target_length`` (snippets)."""
        _check_levels("levels", levels, self.num_levels, self.d_model)
        stacked = torch.cat([upsample_to(lv, target_length, self.upsample) for lv in levels], dim=1)
        return self.mlp(stacked.transpose(1, 2)).squeeze(-1)


class PerScaleConvSalientHead(nn.Module):
    """Per-level conv salient heads with late fusion (paper Table 3, rows 1-3).

    Args:
        d_model: C per level.
        num_levels: L.
        fusion: ``max`` | ``mean`` | ``mix`` | ``adaptive``.
        upsample: ``nearest`` or ``linear`` (for the per-level logits).
    """

    def __init__(
        self,
        d_model: int = 512,
        num_levels: int = 4,
        fusion: str = "max",
        upsample: str = "nearest",
    ) -> None:
        super().__init__()
        _check_choice("fusion", fusion, SALIENT_FUSIONS)
        _check_choice("upsample", upsample, SALIENT_UPSAMPLING)
        self.d_model = d_model
        self.num_levels = num_levels
        self.fusion = fusion
        self.upsample = upsample
        self.level_heads = nn.ModuleList(
            nn.Sequential(
                nn.Conv1d(d_model, d_model, 3, padding=1),
                nn.LeakyReLU(0.2),
                nn.Conv1d(d_model, 1, 1),
            )
            for _ in range(num_levels)
        )
        if fusion == "adaptive":
            self.fusion_weights: nn.Parameter | None = nn.Parameter(torch.ones(num_levels))
        else:
            self.register_parameter("fusion_weights", None)

    def forward(self, levels: Sequence[Tensor], target_length: int) -> Tensor:
        """L levels ``[B, C, T_l]`` → fused logits ``[B, T]`` with T = ``target_length``."""
        _check_levels("levels", levels, self.num_levels, self.d_model)
        per_level = torch.cat(
            [
                upsample_to(head(level), target_length, self.upsample)
                for head, level in zip(self.level_heads, levels)
            ],
            dim=1,
        )  # [B, L, T]
        if self.fusion_weights is not None:  # adaptive
            weights = self.fusion_weights / self.fusion_weights.sum()
            return torch.einsum("blt,l->bt", per_level, weights)
        if self.fusion == "max":
            return per_level.amax(dim=1)
        if self.fusion == "mean":
            return per_level.mean(dim=1)
        return 0.5 * per_level.mean(dim=1) + 0.5 * per_level.amax(dim=1)  # mix


class SalientHeads(nn.Module):
    """The TFPN and encoder salient heads sharing one set of weights.

    Args:
        d_model: C.
        num_levels: L.
        mode: ``both`` (default, TFPN + encoder heads) | ``encoder_only`` | ``off`` (no
            parameters, returns Nones).
        design: ``mlp`` (unified MLP head, default) | ``cnn`` (per-scale conv heads).
        fusion: late fusion of the ``cnn`` design (``max`` | ``mean`` | ``mix`` | ``adaptive``);
            validated but unused by the ``mlp`` design, whose MLP fuses the levels itself.
        upsample: ``nearest`` (default, released) | ``linear`` (paper's text).
        hidden_dim: hidden width of the MLP design (default C).
    """

    def __init__(
        self,
        d_model: int,
        num_levels: int,
        *,
        mode: str,
        design: str,
        fusion: str,
        upsample: str,
        hidden_dim: int | None = None,
    ) -> None:
        super().__init__()
        _check_choice("mode", mode, SALIENT_MODES)
        _check_choice("design", design, SALIENT_DESIGNS)
        _check_choice("fusion", fusion, SALIENT_FUSIONS)
        _check_choice("upsample", upsample, SALIENT_UPSAMPLING)
        self.mode = mode
        self.design = design
        self.d_model = d_model
        self.num_levels = num_levels
        self.head: nn.Module | None
        if mode == "off":
            self.head = None
        elif design == "mlp":
            self.head = UnifiedMLPSalientHead(d_model, num_levels, hidden_dim, upsample)
        else:
            self.head = PerScaleConvSalientHead(d_model, num_levels, fusion, upsample)

    def forward(
        self,
        tfpn_levels: Sequence[Tensor] | None,
        encoder_levels: Sequence[Tensor] | None,
        target_length: int,
        compute_in_eval: bool = False,
    ) -> dict[str, Tensor | None]:
        """Salient logits of the TFPN and encoder heads.

        Args:
            tfpn_levels: L TFPN levels ``[B, C, T_l]`` (may be None unless mode is ``both``).
            encoder_levels: L encoder-memory levels ``[B, C, T_l]`` (see
                :func:`split_memory_levels`; may be None when mode is ``off``).
            target_length: T, the number of level-0 snippets.
            compute_in_eval: run even in eval mode (saliency plots); by default an eval-mode call
                does no work and returns Nones, since the heads only supervise training.

        Returns:
            ``{"fpn": [B, T] | None, "enc": [B, T] | None}`` logits.
        """
        result: dict[str, Tensor | None] = {"fpn": None, "enc": None}
        if self.head is None or (not self.training and not compute_in_eval):
            return result
        if encoder_levels is None:
            raise ValueError(f"salient encoder_levels: required in mode {self.mode!r}, found None")
        _check_levels("encoder_levels", encoder_levels, self.num_levels, self.d_model)
        if self.mode == "both":
            if tfpn_levels is None:
                raise ValueError("salient tfpn_levels: required in mode 'both', found None")
            _check_levels("tfpn_levels", tfpn_levels, self.num_levels, self.d_model)
            result["fpn"] = self.head(tfpn_levels, target_length)
        result["enc"] = self.head(encoder_levels, target_length)
        return result


def build_salient(salient: Mapping[str, Any], d_model: int, num_levels: int) -> SalientHeads:
    """The salient heads of the ``salient`` config group (``mode``, ``design``, ``fusion``,
    ``upsample``) over ``num_levels`` pyramid levels of width ``d_model``."""
    return SalientHeads(
        d_model,
        num_levels,
        mode=str(salient["mode"]),
        design=str(salient["design"]),
        fusion=str(salient["fusion"]),
        upsample=str(salient["upsample"]),
    )
