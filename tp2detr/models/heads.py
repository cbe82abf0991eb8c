"""Per-decoder-layer prediction heads: box regression (center, width) and actionness.

Box parameterisation (Deformable DETR with iterative refinement, 1-D): the box MLP of layer l
predicts a delta ``[Δc, Δw]`` in logit space, added to the logit of the reference that entered
layer l. A 1-coordinate reference (a center: decoder layer 0, or every layer when refinement is
off) only shifts the center: ``box = sigmoid([Δc + logit(ref_c), Δw])``. A 2-coordinate reference
(center, width) shifts both: ``box = sigmoid(Δ + logit(ref))``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn


def inverse_sigmoid(x: Tensor, eps: float = 1e-5) -> Tensor:
    """logit(x) with x clamped to [0, 1] and both x and 1 − x floored at ``eps``."""
    x = x.clamp(min=0.0, max=1.0)
    return torch.log(x.clamp(min=eps) / (1.0 - x).clamp(min=eps))


def apply_box_delta(delta: Tensor, reference: Tensor) -> Tensor:
    """Boxes from logit-space deltas and the reference they refine.

    Args:
        delta: ``[..., 2]`` (Δcenter, Δwidth) in logit space.
        reference: ``[..., 1]`` normalised center or ``[..., 2]`` normalised (center, width).

    Returns:
        ``[..., 2]`` (center, width) in (0, 1), normalised to the window/video.
    """
    if delta.shape[-1] != 2:
        raise ValueError(f"delta: expected a last dimension of 2 (Δc, Δw), found {tuple(delta.shape)}")
    if reference.shape[-1] == 2:
        return (delta + inverse_sigmoid(reference)).sigmoid()
    if reference.shape[-1] == 1:
        center = delta[..., :1] + inverse_sigmoid(reference)
        return torch.cat((center, delta[..., 1:]), dim=-1).sigmoid()
    raise ValueError(
        f"reference: expected a last dimension of 1 (center) or 2 (center, width), "
        f"found {tuple(reference.shape)}"
    )


#: ``model.head_init``: ``shared`` (released: one head deep-copied to every decoder layer) or
#: ``independent`` (each layer's heads drawn on their own).
HEAD_INITS = ("shared", "independent")


class BoxMLP(nn.Module):
    """MLP ``d → d → d → 2`` with ReLU between the Linear layers: ``[..., d]`` → ``[..., 2]``."""

    def __init__(self, d_model: int = 512, n_layers: int = 3) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers: expected ≥ 1, found {n_layers}")
        widths = [d_model] * n_layers + [2]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers[:-1]:
            x = torch.relu(layer(x))
        return self.layers[-1](x)


@dataclass
class HeadOutputs:
    """boxes: ``[n_dec, B, Q, 2]`` (center, width) in (0, 1); actionness_logits: ``[n_dec, B, Q]``."""

    boxes: Tensor
    actionness_logits: Tensor


class PredictionHeads(nn.Module):
    """Box and actionness heads for every decoder layer (deep supervision).

    Args:
        d_model: channels of the decoder output.
        n_decoder_layers: number of decoder layers served.
        separate: one head copy per layer (True, as the released code) or one shared head.
        actionness_prior: initial actionness probability; the bias starts at −log((1 − p)/p).
        initial_width_bias: bias of the width output of layer 0's box head (−2 → width ≈ 0.12).
        init: ``shared`` (as released: one box head and one actionness head are initialised and
            deep-copied to every layer, so all layers start from the same weights) or
            ``independent`` (each layer's heads initialised on their own).

    Init: hidden Linear layers keep PyTorch's default init; every box head's last Linear is
    zero; then only layer 0's width bias is set (with ``separate=False`` the shared head's).
    """

    def __init__(
        self,
        *,
        d_model: int,
        n_decoder_layers: int,
        separate: bool,
        init: str,
        actionness_prior: float = 0.01,
        initial_width_bias: float = -2.0,
    ) -> None:
        super().__init__()
        if n_decoder_layers < 1:
            raise ValueError(f"n_decoder_layers: expected ≥ 1, found {n_decoder_layers}")
        if not 0.0 < actionness_prior < 1.0:
            raise ValueError(f"actionness_prior: expected a probability in (0, 1), found {actionness_prior}")
        if init not in HEAD_INITS:
            raise ValueError(f"init: expected one of {HEAD_INITS}, found {init!r}")
        self.n_decoder_layers = n_decoder_layers
        self.separate = separate
        n_copies = n_decoder_layers if separate else 1
        prior_bias = -math.log((1.0 - actionness_prior) / actionness_prior)

        def new_pair() -> tuple[BoxMLP, nn.Linear]:
            box_head, action_head = BoxMLP(d_model), nn.Linear(d_model, 1)
            nn.init.zeros_(box_head.layers[-1].weight)
            nn.init.zeros_(box_head.layers[-1].bias)
            nn.init.constant_(action_head.bias, prior_bias)
            return box_head, action_head

        if init == "shared":
            first = new_pair()
            pairs = [first] + [copy.deepcopy(first) for _ in range(n_copies - 1)]
        else:
            pairs = [new_pair() for _ in range(n_copies)]
        self.bbox = nn.ModuleList(box for box, _ in pairs)
        self.actionness = nn.ModuleList(action for _, action in pairs)
        with torch.no_grad():
            self.bbox[0].layers[-1].bias[1] = initial_width_bias

    def _copy(self, layer: int) -> int:
        if not 0 <= layer < self.n_decoder_layers:
            raise ValueError(f"layer: expected 0 ≤ layer < {self.n_decoder_layers}, found {layer}")
        return layer if self.separate else 0

    def box_delta(self, layer: int, hidden: Tensor) -> Tensor:
        """Logit-space box delta of decoder layer ``layer``: ``[..., C]`` → ``[..., 2]``."""
        return self.bbox[self._copy(layer)](hidden)

    def actionness_logit(self, layer: int, hidden: Tensor) -> Tensor:
        """Actionness logit of decoder layer ``layer``: ``[..., C]`` → ``[...]``."""
        return self.actionness[self._copy(layer)](hidden).squeeze(-1)

    def forward(
        self,
        hs: Tensor,
        references: Sequence[Tensor],
        box_deltas: Tensor | None = None,
    ) -> HeadOutputs:
        """Boxes and actionness of every decoder layer.

        Args:
            hs: ``[n_dec, B, Q, C]`` decoder outputs.
            references: n_dec tensors, the reference entering each layer, ``[B, Q, 1]`` or ``[B, Q, 2]``.
            box_deltas: ``[n_dec, B, Q, 2]`` deltas already computed by these heads inside the decoder
                (iterative refinement), reused instead of running the box MLPs again.

        Returns:
            ``HeadOutputs`` with boxes ``[n_dec, B, Q, 2]`` and actionness logits ``[n_dec, B, Q]``.
        """
        n_dec = hs.shape[0]
        if n_dec != self.n_decoder_layers or len(references) != n_dec:
            raise ValueError(
                f"hs / references: expected {self.n_decoder_layers} decoder layers, "
                f"found hs {tuple(hs.shape)} and {len(references)} references"
            )
        if box_deltas is not None and box_deltas.shape != (*hs.shape[:-1], 2):
            raise ValueError(
                f"box_deltas: expected shape {(*hs.shape[:-1], 2)}, found {tuple(box_deltas.shape)}"
            )
        boxes = []
        logits = []
        for layer in range(n_dec):
            delta = box_deltas[layer] if box_deltas is not None else self.box_delta(layer, hs[layer])
            boxes.append(apply_box_delta(delta, references[layer]))
            logits.append(self.actionness_logit(layer, hs[layer]))
        return HeadOutputs(boxes=torch.stack(boxes), actionness_logits=torch.stack(logits))


def build_heads(model: Mapping[str, Any]) -> PredictionHeads:
    """The box / actionness heads of the ``model`` config group (``d_model``, ``decoder_layers``,
    ``separate_heads``, ``head_init``)."""
    return PredictionHeads(
        d_model=int(model["d_model"]),
        n_decoder_layers=int(model["decoder_layers"]),
        separate=bool(model["separate_heads"]),
        init=str(model["head_init"]),
    )
