"""When each training step's loss is read back to the host and checked (``trainer.loss_check``).

The divergence rule itself is :class:`~tp2detr.engine.divergence.DivergenceGuard`'s. Reading a
loss on a GPU is a host synchronisation: the host waits for the device to finish the step so far.
The Hungarian matching already needs one per step (its cost matrices are copied to the host), so
a second one for the loss costs the time the device needs to drain its queue.

* ``immediate`` — read the loss after the forward pass, before the backward; a failing step
  raises before it reaches the weights. One synchronisation per step on top of the matcher's.
* ``deferred`` — copy the loss to the host asynchronously and check it once the next step's own
  synchronisation (the matcher's copy) has passed, so a step needs none of its own. The weights
  are protected on the device: the fused AdamW skips the update of a step whose loss is not
  finite or exceeds the bound (its ``found_inf`` input, the mechanism of mixed-precision loss
  scaling), and the error, naming that step, is raised one step later. Needs the fused AdamW
  (``optim.fused``).
* ``auto`` — ``deferred`` on CUDA with the fused AdamW and a single process, else ``immediate``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from tp2detr.engine.divergence import DivergenceGuard
from tp2detr.errors import ConfigError

LOSS_CHECK_MODES = ("auto", "immediate", "deferred")


def resolve_loss_check(mode: str, device: torch.device, fused_optimizer: bool, distributed: bool) -> str:
    """``immediate`` or ``deferred`` for ``trainer.loss_check`` ``mode``.

    Raises:
        ConfigError: an unknown mode, or ``deferred`` without the fused AdamW or across processes
            (each process would skip its own steps, and the replicas would drift apart).
    """
    if mode not in LOSS_CHECK_MODES:
        raise ConfigError(f"trainer.loss_check is {mode!r}, expected one of {list(LOSS_CHECK_MODES)}")
    if mode == "auto":
        return "deferred" if device.type == "cuda" and fused_optimizer and not distributed else "immediate"
    if mode == "deferred" and not fused_optimizer:
        raise ConfigError(
            "trainer.loss_check=deferred needs the fused AdamW, whose found_inf input skips a failing "
            "step on the device; found optim.fused resolved to false (set optim.fused=true)"
        )
    if mode == "deferred" and distributed:
        raise ConfigError("trainer.loss_check=deferred is for one process; found a distributed run (use immediate)")
    return mode


@dataclass
class _PendingLoss:
    step: int
    host: Tensor  # 0-d float64 on the host (pinned on CUDA), filled by an asynchronous copy
    ready: torch.cuda.Event | None  # recorded after the copy (None: the copy was synchronous)
    terms: Mapping[str, Tensor]  # detached loss terms, for the message of a failing step


class LossCheck:
    """Reads each step's total loss and passes it to ``guard``, now or one step later.

    Use: :meth:`submit` after the loss of step ``step`` is computed and before its optimizer step;
    :meth:`settle` after the step (``wait=False``: only the steps whose loss is already on the
    host) and with ``wait=True`` before anything that must see every step checked (the end of an
    epoch, a checkpoint). ``settle`` returns the ``(step, loss)`` pairs it checked, in order, and
    raises ``FloatingPointError`` for a failing one, with :attr:`failed_step` naming it.

    Args:
        guard: the divergence rule (its ``reference`` may be set, as in a resumed run).
        mode: ``immediate`` or ``deferred`` (see :func:`resolve_loss_check`).
        optimizer: the fused AdamW, whose ``found_inf`` the deferred mode sets every step.
    """

    def __init__(self, guard: DivergenceGuard, mode: str, optimizer: torch.optim.Optimizer | None = None) -> None:
        if mode not in ("immediate", "deferred"):
            raise ValueError(f"mode: expected 'immediate' or 'deferred', found {mode!r}")
        if mode == "deferred" and optimizer is None:
            raise ValueError("the deferred loss check needs the optimizer whose updates it guards")
        self.guard = guard
        self.mode = mode
        self.optimizer = optimizer
        self.failed_step: int | None = None
        self._pending: deque[_PendingLoss] = deque()
        self._checked: list[tuple[int, float]] = []  # checked, not yet returned by settle
        self._device_reference: Tensor | None = None

    # -- one step ---------------------------------------------------------------------------------
    def submit(self, step: int, total: Tensor, terms: Mapping[str, Tensor]) -> None:
        """Take step ``step``'s scalar loss ``total``; ``terms`` are its (detached) loss terms.
        Immediate: checks it now (raises ``FloatingPointError``). Deferred: arranges for the
        optimizer to skip the update on the device if the loss fails, and starts its copy to the host."""
        total = total.detach()
        if self.mode == "immediate":
            self._check(step, total.item(), terms)
            return
        self._drain(wait=False)  # a caller that never settles (a benchmark loop) keeps no backlog
        value = total.to(torch.float64)
        self.optimizer.found_inf = self._failing_on_device(value).to(torch.float32)
        if value.device.type == "cuda":
            host = torch.empty((), dtype=torch.float64, pin_memory=True)
            host.copy_(value, non_blocking=True)
            ready = torch.cuda.Event()
            ready.record()
        else:
            host, ready = value.clone(), None
        self._pending.append(_PendingLoss(step, host, ready, dict(terms)))

    def _failing_on_device(self, value: Tensor) -> Tensor:
        """The guard's rule for ``value`` on its device; the first step checked here keeps its loss
        as the device's reference (or the guard's, when a resumed run has one), as the host does."""
        if self._device_reference is None and self.guard.factor is not None:
            if self.guard.reference is None:  # this step sets the reference, as on the host
                self._device_reference = value.clone()
                return self.guard.fails_on_device(value, None)
            self._device_reference = torch.tensor(float(self.guard.reference), dtype=torch.float64, device=value.device)
        return self.guard.fails_on_device(value, self._device_reference)

    def settle(self, wait: bool) -> list[tuple[int, float]]:
        """Check the pending steps whose loss has reached the host (all of them with ``wait``);
        returns every step checked since the last call."""
        self._drain(wait)
        checked, self._checked = self._checked, []
        return checked

    def _drain(self, wait: bool) -> None:
        while self._pending:
            pending = self._pending[0]
            if pending.ready is not None and not pending.ready.query():
                if not wait:
                    break
                pending.ready.synchronize()
            self._pending.popleft()
            value = float(pending.host)
            self._check(pending.step, value, pending.terms)

    def _check(self, step: int, value: float, terms: Mapping[str, Tensor]) -> None:
        def as_floats() -> dict[str, float]:
            return {key: float(term) for key, term in terms.items()}

        try:
            self.guard.check(value, as_floats)
        except FloatingPointError:
            self.failed_step = step
            self._pending.clear()
            raise
        self._checked.append((step, value))
