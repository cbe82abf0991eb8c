"""What machine this is: the CPU's model and flags (for benchmark records and for choosing a
precision the CPU computes natively), the torch build and the GPU.

bf16 autocast on a CPU without native bf16 arithmetic (no ``avx512_bf16`` or ``amx_bf16`` flag,
e.g. an AVX2-only AMD EPYC of family 25 model 1) is emulated and catastrophically slow: a
paper-config training step took 194 s in bf16 against 6.0 s in fp32 there. Such a CPU is refused
bf16 (:func:`tp2detr.engine.device.resolve_precision`).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch

#: CPU flags (Linux ``/proc/cpuinfo`` names) that mean native bf16 arithmetic.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
#: The flags a benchmark record keeps (vector widths and the low-precision extensions).
RECORDED_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_bf16", "amx_tile", "f16c")


def _cpuinfo_fields(path: str | Path = "/proc/cpuinfo") -> dict[str, str]:
    """The first processor's ``key: value`` lines of ``/proc/cpuinfo`` (empty where unreadable)."""
    fields: dict[str, str] = {}
    try:
        text = Path(path).read_text()
    except OSError:
        return fields
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str] | None:
    """The CPU's flags, or None where they cannot be read (not Linux)."""
    fields = _cpuinfo_fields(cpuinfo)
    return frozenset(fields["flags"].split()) if "flags" in fields else None


def cpu_model(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The CPU's model name (with family/model numbers when known)."""
    fields = _cpuinfo_fields(cpuinfo)
    name = fields.get("model name") or platform.processor() or "unknown CPU"
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']} model {fields['model']})"
    return name


def cpu_has_native_bf16(flags: frozenset[str] | None = None) -> bool | None:
    """Whether the CPU computes bf16 natively (:data:`NATIVE_BF16_FLAGS`); None when unknown."""
    flags = cpu_flags() if flags is None else flags
    if flags is None:
        return None
    return any(flag in flags for flag in NATIVE_BF16_FLAGS)


def machine_info() -> dict[str, Any]:
    """What a benchmark record states about the machine it ran on."""
    flags = cpu_flags()
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_flags": sorted(f for f in RECORDED_FLAGS if flags and f in flags) if flags is not None else None,
        "cpu_native_bf16": cpu_has_native_bf16(flags),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
        info["cuda"] = torch.version.cuda
    return info
