"""Which device a run uses and in which precision: the ``device`` and ``precision`` settings.

``trainer.device`` (read by ``train.py``, ``eval.py`` and ``predict.py``) is ``auto`` (CUDA when
available), ``cpu`` or ``cuda``; ``precision`` is ``auto`` (bf16 autocast on GPU, fp32 on CPU),
``fp32`` or ``bf16`` (refused on a CPU without native bf16, :mod:`tp2detr.engine.hardware`).
"""

from __future__ import annotations

import torch

from tp2detr.engine import hardware
from tp2detr.errors import ConfigError

#: ``precision`` config values → autocast dtype (None = no autocast).
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16}


def select_device(name: str, origin: str = "") -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cpu``; ``cuda`` (must be available).
    ``origin`` says where the value came from in the error (e.g. a checkpoint's stored config).

    Raises:
        ConfigError: an unknown name, or ``cuda`` without a CUDA device.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"trainer.device is 'cuda'{origin} but no CUDA device is available; expected trainer.device=auto "
                "or trainer.device=cpu"
            )
        return torch.device("cuda")
    raise ConfigError(f"device is {name!r}, expected 'auto', 'cpu' or 'cuda'")


def autocast_dtype(precision: str) -> torch.dtype | None:
    """``fp32`` → None (no autocast); ``bf16`` → ``torch.bfloat16`` (autocast on CPU and GPU).

    Raises:
        ValueError: an unknown precision name.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision is {precision!r}, expected one of {sorted(PRECISIONS)}")
    return PRECISIONS[precision]


def resolve_precision(
    name: str, device: torch.device, key: str = "trainer.precision", native_bf16: bool | None = None
) -> torch.dtype | None:
    """The autocast dtype of the ``precision`` setting ``name`` on ``device``.

    ``auto`` → bf16 on GPU, fp32 (None) on CPU; ``fp32`` → None; ``bf16`` → ``torch.bfloat16``,
    refused on a CPU without native bf16 arithmetic (:mod:`tp2detr.engine.hardware`), where it
    is emulated and tens of times slower than fp32. ``native_bf16`` overrides the CPU's flags
    (None: read them).

    Raises:
        ConfigError: an unknown name, or bf16 on a CPU without native bf16; names ``key``.
    """
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if name not in PRECISIONS:
        raise ConfigError(f"{key} is {name!r}, expected auto or one of {', '.join(sorted(PRECISIONS))}")
    dtype = PRECISIONS[name]
    if dtype is torch.bfloat16 and device.type == "cpu":
        native = hardware.cpu_has_native_bf16() if native_bf16 is None else native_bf16
        if native is False:
            raise ConfigError(
                f"{key}=bf16 on CPU: this CPU ({hardware.cpu_model()}) has no native bf16 arithmetic (no "
                "avx512_bf16 or amx_bf16 flag), so bf16 is emulated and tens of times slower than fp32 "
                f"(a paper-config training step: 194 s against 6.0 s); expected {key}=fp32 or auto on this machine"
            )
    return dtype
