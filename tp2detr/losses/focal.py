"""Sigmoid focal loss (Lin et al., 2017) and the matching cost derived from it.

The same elementwise loss serves the actionness head (α 0.25, γ 2, docs/fidelity.md §4) and the
released code's "focal-modulated BCE" salient loss (α 0.25 for positives / 0.75 for negatives, γ 2,
docs/fidelity.md §3).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: The ε inside the logarithms of the released matcher's focal cost.
MATCH_COST_EPS = 1e-8


def _check_focal_params(alpha: float, gamma: float) -> None:
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"focal alpha: expected a value in [0, 1], found {alpha}")
    if gamma < 0.0:
        raise ValueError(f"focal gamma: expected a value >= 0, found {gamma}")


def sigmoid_focal_loss(logits: Tensor, targets: Tensor, alpha: float, gamma: float) -> Tensor:
    """Elementwise sigmoid focal loss, unreduced.

    ``loss = α_t · (1 − p_t)^γ · BCE(logit, target)`` with ``p = sigmoid(logit)``,
    ``p_t = p·t + (1 − p)·(1 − t)`` and ``α_t = α·t + (1 − α)·(1 − t)``. The BCE is
    computed from the logits (numerically stable for large |logit|).

    Args:
        logits: any shape ``[...]``, raw scores.
        targets: same shape, values in [0, 1] (usually {0, 1}).
        alpha: weight of the positives in [0, 1]; negatives get 1 − alpha.
        gamma: focusing exponent ≥ 0 (0 gives α-weighted BCE).

    Returns:
        ``[...]`` per-element loss, same shape as ``logits``.
    """
    _check_focal_params(alpha, gamma)
    if logits.shape != targets.shape:
        raise ValueError(
            f"sigmoid_focal_loss: logits shape {tuple(logits.shape)} and targets shape "
            f"{tuple(targets.shape)} differ; expected equal shapes"
        )
    targets = targets.to(logits.dtype)
    prob = logits.sigmoid()
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1.0 - prob) * (1.0 - targets)
    alpha_t = alpha * targets + (1.0 - alpha) * (1.0 - targets)
    return alpha_t * (1.0 - p_t) ** gamma * bce


def focal_match_cost(logits: Tensor, alpha: float, gamma: float) -> Tensor:
    """Cost of calling each prediction foreground, as in the released Hungarian matcher.

    ``cost = α(1 − p)^γ(−log(p + ε)) − (1 − α)p^γ(−log(1 − p + ε))`` with
    ``p = sigmoid(logit)`` and ε = 1e-8: the focal loss for target 1 minus the focal loss for target 0.

    Args:
        logits: any shape ``[...]``, raw actionness scores.
        alpha, gamma: focal parameters (the released matcher hard-codes 0.25 and 2).

    Returns:
        ``[...]`` cost; lower means "more confidently foreground".
    """
    _check_focal_params(alpha, gamma)
    prob = logits.sigmoid()
    positive = alpha * (1.0 - prob) ** gamma * (-torch.log(prob + MATCH_COST_EPS))
    negative = (1.0 - alpha) * prob**gamma * (-torch.log(1.0 - prob + MATCH_COST_EPS))
    return positive - negative
