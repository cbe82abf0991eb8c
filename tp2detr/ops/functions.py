"""The compiled deformable-attention op as a differentiable function.

``ms_deform_attn_1d_compiled(module, ...)`` has the signature and semantics of
``tp2detr.ops.reference.ms_deform_attn_1d_pytorch`` (linear interpolation,
``align_corners=False``, zero padding; gradients for value, locations and weights) and runs the
extension's forward / backward kernels through ``MSDeformAttn1DFunction`` — or, under
``torch.compile``, through the equivalent custom ops of :mod:`tp2detr.ops.library`.

Dtypes. On CPU the kernels run in float64 or float32 (16-bit values are computed in float32 and
the result is cast back, like the fallback). On CUDA the value may be float64, float32, float16 or
bfloat16; locations and weights are computed in the accumulation type (float64 for float64 values,
else float32) and the output has the value's dtype. The CUDA backward avoids atomic adds when
``torch.are_deterministic_algorithms_enabled()``; the CPU backward is always deterministic.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import torch
from torch import Tensor

from tp2detr.ops.library import ms_deform_attn_1d_op
from tp2detr.ops.reference import check_op_shapes

_LOW_PRECISION = (torch.float16, torch.bfloat16)


class MSDeformAttn1DFunction(torch.autograd.Function):
    """Autograd wrapper of the extension's ``forward`` / ``backward`` (contiguous inputs, see
    ``ms_deform_attn_1d_compiled`` for the dtype rules). Returns ``[N, Lq, M·D]``."""

    @staticmethod
    def forward(ctx: Any, module: ModuleType, *inputs: Tensor) -> Tensor:
        """``inputs``: value, level_lengths, level_start_index, sampling_locations, attention_weights."""
        ctx.module = module
        ctx.save_for_backward(*inputs)
        return module.forward(*inputs)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, ...]:
        inputs = ctx.saved_tensors
        grad_value, grad_locations, grad_weights = ctx.module.backward(
            *inputs, grad_output.contiguous().to(inputs[0].dtype), torch.are_deterministic_algorithms_enabled()
        )
        return None, grad_value, None, None, grad_locations, grad_weights


def _compute_dtypes(value: Tensor, sampling_locations: Tensor, attention_weights: Tensor) -> tuple[torch.dtype, torch.dtype]:
    """(value dtype, location/weight dtype) the kernels run in for these inputs."""
    if value.device.type == "cuda":
        kernel_value = value.dtype if value.dtype.is_floating_point else torch.float32
        accumulate = torch.float64 if kernel_value == torch.float64 else torch.float32
        return kernel_value, accumulate
    common = torch.promote_types(torch.promote_types(value.dtype, sampling_locations.dtype), attention_weights.dtype)
    if common in _LOW_PRECISION or not common.is_floating_point:
        common = torch.float32
    return common, common


def ms_deform_attn_1d_compiled(
    module: ModuleType,
    value: Tensor,
    level_lengths: Tensor,
    level_start_index: Tensor,
    sampling_locations: Tensor,
    attention_weights: Tensor,
) -> Tensor:
    """1-D multi-scale deformable sampling through the compiled kernels of ``module``.

    Args:
        module: the loaded extension (``tp2detr.ops.build.load_extension``).
        value: ``[N, S, M, D]``; level_lengths / level_start_index: ``[L]`` int64;
        sampling_locations / attention_weights: ``[N, Lq, M, L, P]`` (normalised locations).

    Returns:
        ``[N, Lq, M·D]`` in the value's dtype.
    """
    check_op_shapes(value, level_lengths, level_start_index, sampling_locations, attention_weights)
    kernel_value, accumulate = _compute_dtypes(value, sampling_locations, attention_weights)
    device = value.device
    inputs = (
        value.to(kernel_value).contiguous(),
        level_lengths.to(device=device).contiguous(),
        level_start_index.to(device=device).contiguous(),
        sampling_locations.to(accumulate).contiguous(),
        attention_weights.to(accumulate).contiguous(),
    )
    if torch.compiler.is_compiling():  # the custom op torch.compile traces through (tp2detr.ops.library)
        out = ms_deform_attn_1d_op(*inputs)
    else:
        out = MSDeformAttn1DFunction.apply(module, *inputs)
    return out.to(value.dtype)
