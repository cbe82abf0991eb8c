"""``trainer.compile``: the training model under ``torch.compile``, on a GPU.

Values (``configs/trainer/default.yaml``):

* ``false`` — eager;
* ``true`` — ``torch.compile`` in its default mode: Inductor fuses the forward's and backward's
  element-wise work into generated kernels; the attention op runs as one custom op
  (:mod:`tp2detr.ops.library`), so the forward traces as one graph (ops/README.md);
* ``reduce-overhead`` — the same, and the compiled graphs are replayed as CUDA graphs, one launch
  per graph instead of one per kernel (for a step bound by the host's launches: issue 12,
  docs/performance.md);
* ``max-autotune`` — the same as ``reduce-overhead``, and Inductor also benchmarks kernel choices
  while compiling (minutes).

Only the model is compiled: the Hungarian matching runs on the host and the criterion stays eager.
Refused on the CPU, where torch 2.13's generated code for this model aborts with heap corruption.
"""

from __future__ import annotations

from typing import Any

import torch

from tp2detr.errors import ConfigError

#: trainer.compile value -> torch.compile mode (False: eager).
COMPILE_MODES: dict[Any, str] = {True: "default", "reduce-overhead": "reduce-overhead",
                                 "max-autotune": "max-autotune"}


def compile_mode(value: Any) -> str | None:
    """The ``torch.compile`` mode of a ``trainer.compile`` value; None for ``false``."""
    if value is False:
        return None
    if value not in COMPILE_MODES:
        raise ConfigError(f"trainer.compile={value!r}: expected false, true, reduce-overhead or max-autotune")
    return COMPILE_MODES[value]


def uses_cuda_graphs(value: Any) -> bool:
    """Whether ``trainer.compile=value`` replays CUDA graphs: the trainer then marks each step's
    start (``torch.compiler.cudagraph_mark_step_begin``), so no step reads a graph output that a
    later replay overwrote."""
    return compile_mode(value) in ("reduce-overhead", "max-autotune")


def compile_for_training(model: torch.nn.Module, value: Any, device: torch.device) -> torch.nn.Module:
    """``model`` itself (eager) or its ``torch.compile`` wrapper (parameters shared) for ``value``."""
    mode = compile_mode(value)
    if mode is None:
        return model
    if device.type == "cpu":
        raise ConfigError(
            f"trainer.compile={str(value).lower()} on CPU: torch.compile of this model aborts with heap "
            "corruption in the generated CPU code (seen with torch 2.13); use it on GPU or set trainer.compile=false"
        )
    return torch.compile(model, mode=mode)
