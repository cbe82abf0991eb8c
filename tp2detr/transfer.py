"""Host-to-device copies that do not make the host wait.

A plain ``tensor.to("cuda")`` of host memory copies and then synchronises the stream: the host
waits for every kernel queued before it. From page-locked (pinned) memory with
``non_blocking=True`` the copy is queued like a kernel instead. The training step's small index
tensors go through :func:`to_device_async` (docs/performance.md, "Host synchronisations of a
training step").
"""

from __future__ import annotations

import torch
from torch import Tensor


def to_device_async(tensor: Tensor, device: torch.device) -> Tensor:
    """``tensor`` (on the host) on ``device``: pinned and queued without a host synchronisation on
    CUDA; elsewhere the tensor itself or a plain copy (``non_blocking`` changes nothing there)."""
    if device.type == "cuda":
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)
