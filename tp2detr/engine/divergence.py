"""The divergence rule (``trainer.divergence``, README "When something goes wrong").

A training step diverges when its loss is not finite, when the model's predictions are not (the
matcher raises a ``FloatingPointError``), or when its loss exceeds ``factor`` times the
reference: the loss of the run's first step, i.e. of the freshly initialised model before any
update. The reference is kept in the checkpoint, so a resumed run uses the same one;
``factor: null`` keeps only the finiteness tests. Training losses of this model stay below their
initial value; a run whose learning rate is far too high passes it by orders of magnitude within
a few steps (lr 1 and 1e4 on the toy set: 4.9e3 and 3.6e23 at the second step, against 13.4).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from tp2detr.errors import TrainingDiverged


class DivergenceGuard:
    """Checks each step's loss and words the :class:`TrainingDiverged` of a step that failed.

    Args:
        factor: the loss may reach ``factor`` × the first-step loss (None: no such bound).
        reference: the first-step loss of a resumed run (None: the next step sets it).
    """

    def __init__(self, factor: float | None, reference: float | None = None) -> None:
        self.factor = None if factor is None else float(factor)
        self.reference = reference
        self.last_finite: tuple[int, int, float] | None = None  # (epoch, step, loss)

    def check(self, value: float, terms: Callable[[], Mapping[str, float]]) -> None:
        """Accept the step's total loss ``value`` (a float already on the host) or raise
        ``FloatingPointError`` saying why; ``terms()`` gives the loss terms for the message."""
        if not math.isfinite(value):
            raise FloatingPointError(f"the loss is {value} (terms: {dict(terms())})")
        if self.reference is None:
            self.reference = value
        elif self.factor is not None and value > self.factor * self.reference:
            raise FloatingPointError(
                f"the loss {value:.4g} exceeds {self.factor:g}x the run's first-step loss {self.reference:.4g} "
                "(trainer.divergence.factor)"
            )

    def fails_on_device(self, value: Tensor, reference: Tensor | None) -> Tensor:
        """:meth:`check`'s rule where the loss lives, with no host synchronisation: a 0-d bool
        tensor, True where ``check`` would raise for the float64 loss ``value`` given the device
        copy of the first-step loss ``reference`` (None: this step sets it, so only finiteness
        counts). Both sides compute ``factor × reference`` in float64, so they always agree."""
        failing = ~torch.isfinite(value)
        if self.factor is None or reference is None:
            return failing
        return failing | (value > self.factor * reference)

    def passed(self, epoch: int, step: int, value: float) -> None:
        """Remember the last step that passed (for the message of a later divergence)."""
        self.last_finite = (epoch, step, value)

    def diverged(
        self, epoch: int, step: int, err: BaseException, param_groups: Sequence[Mapping[str, Any]],
        checkpoint: Path, completed_epochs: int,
    ) -> TrainingDiverged:
        """The error of step ``step`` of ``epoch``: what happened, the learning rates, the last
        finite loss and whether the last good ``checkpoint`` (after ``completed_epochs``) is kept."""
        lrs = ", ".join(f"{g.get('name', i)} {g['lr']:.3g}" for i, g in enumerate(param_groups))
        last = (
            f"last finite loss {self.last_finite[2]:.4g} at epoch {self.last_finite[0]}, step {self.last_finite[1]}"
            if self.last_finite else "no finite loss before it"
        )
        kept = (f"the last good checkpoint {checkpoint} (after epoch {completed_epochs - 1}) is kept"
                if checkpoint.exists() else "no checkpoint was written before it")
        return TrainingDiverged(
            f"epoch {epoch}, step {step}: {' '.join(str(err).split())}; learning rates: {lrs}; {last}; {kept}. "
            "Lower optim.lr / optim.lr_tfpn (or check the data) and run again"
        )
