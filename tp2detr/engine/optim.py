"""AdamW with the released code's three parameter groups, and the step schedule (docs/fidelity.md §8).

* ``base``: everything else (encoder, decoder, embeddings, heads, salient heads) at ``lr``;
* ``tfpn``: every TFPN parameter at ``lr_tfpn`` (empty for parameter-free pyramids);
* ``linear_proj``: the initial-reference Linear and every deformable-attention sampling-offset
  projection at ``lr × lr_linear_proj_mult``.

Weight decay applies to all groups.
"""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn
from torch.optim import AdamW
from torch.optim.lr_scheduler import StepLR

from tp2detr.errors import ConfigError

LINEAR_PROJ_KEYS = ("reference_points", "sampling_offsets")


def parameter_groups(model: nn.Module, optim: DictConfig) -> list[dict]:
    """The three groups, named (``group["name"]``), empty groups left out."""
    groups: dict[str, list] = {"base": [], "tfpn": [], "linear_proj": []}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        bare = name.removeprefix("module.").removeprefix("_orig_mod.")
        if bare.startswith("tfpn."):
            groups["tfpn"].append(param)
        elif any(key in bare for key in LINEAR_PROJ_KEYS):
            groups["linear_proj"].append(param)
        else:
            groups["base"].append(param)
    lrs = {
        "base": float(optim.lr),
        "tfpn": float(optim.lr_tfpn),
        "linear_proj": float(optim.lr) * float(optim.lr_linear_proj_mult),
    }
    return [{"name": k, "params": v, "lr": lrs[k]} for k, v in groups.items() if v]


def resolve_fused(value: Any, device: torch.device) -> bool:
    """``optim.fused``: ``auto`` → the fused AdamW kernel on CUDA (one launch for all parameters
    instead of a few per tensor), the for-each implementation elsewhere (what the CPU results
    were measured with); ``true`` / ``false`` as given.

    Raises:
        ConfigError: any other value.
    """
    if value == "auto":
        return device.type == "cuda"
    if isinstance(value, bool):
        return value
    raise ConfigError(f"optim.fused is {value!r}, expected auto, true or false")


def build_optimizer(model: nn.Module, optim: DictConfig, device: torch.device | None = None) -> AdamW:
    """AdamW (betas 0.9/0.999, eps 1e-8) over :func:`parameter_groups`; fused per
    :func:`resolve_fused` (``device``: the parameters', default CPU)."""
    fused = resolve_fused(optim.get("fused", "auto"), device or torch.device("cpu"))
    return AdamW(
        parameter_groups(model, optim), lr=float(optim.lr), weight_decay=float(optim.weight_decay),
        fused=True if fused else None,
    )


def build_scheduler(optimizer: AdamW, optim: DictConfig) -> StepLR:
    """StepLR stepped once per epoch: lr × ``lr_drop_gamma`` from epoch ``lr_drop_epoch`` on."""
    return StepLR(optimizer, step_size=int(optim.lr_drop_epoch), gamma=float(optim.lr_drop_gamma))
