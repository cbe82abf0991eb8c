"""The compiled kernels as ``torch.library`` custom ops, the form ``torch.compile`` traces through.

``MSDeformAttn1DFunction`` (an ``autograd.Function`` calling the pybind11 extension) is what eager
code runs: the cheapest call (a few microseconds less per call than a custom op). To
``torch.compile`` it is opaque, so Dynamo would break the graph at every attention call (twelve
per forward of the paper's model). Under compilation ``ms_deform_attn_1d_compiled`` calls these
custom ops instead:

* ``tp2detr::ms_deform_attn_1d(value, level_lengths, level_start_index, sampling_locations,
  attention_weights) -> [N, Lq, M·D]``,
* ``tp2detr::ms_deform_attn_1d_backward(..., grad_output, deterministic) -> (grad_value,
  grad_locations, grad_weights)``, registered as the forward's autograd formula,

each with a fake implementation that gives the output shapes and dtypes without running a kernel.
Both paths run the same kernels on the same contiguous inputs, so their results are identical
(``tests/ops/test_ops.py``). The ops find the extension through :func:`bind_extension`, which
``tp2detr.ops`` calls when it registers the compiled backends: a process loads one extension.
"""

from __future__ import annotations

from types import ModuleType

import torch
from torch import Tensor

_BOUND: dict[str, ModuleType] = {}  # "extension" -> the loaded module (process-wide, like the op registration)


def bind_extension(module: ModuleType) -> None:
    """Make ``module`` (``tp2detr.ops.build.load_extension``'s) the kernels these ops run."""
    _BOUND["extension"] = module


def _extension() -> ModuleType:
    try:
        return _BOUND["extension"]
    except KeyError:
        raise RuntimeError(
            "tp2detr::ms_deform_attn_1d: no compiled extension is bound; register the compiled backends "
            "first (tp2detr.ops.register_compiled_backends)"
        ) from None


@torch.library.custom_op("tp2detr::ms_deform_attn_1d", mutates_args=())
def ms_deform_attn_1d_op(
    value: Tensor,
    level_lengths: Tensor,
    level_start_index: Tensor,
    sampling_locations: Tensor,
    attention_weights: Tensor,
) -> Tensor:
    """The extension's forward on prepared (contiguous, kernel-dtype) inputs → ``[N, Lq, M·D]``."""
    return _extension().forward(value, level_lengths, level_start_index, sampling_locations, attention_weights)


@ms_deform_attn_1d_op.register_fake
def _forward_shape(value, level_lengths, level_start_index, sampling_locations, attention_weights):
    n, _, heads, head_dim = value.shape
    return value.new_empty((n, sampling_locations.shape[1], heads * head_dim))


@torch.library.custom_op("tp2detr::ms_deform_attn_1d_backward", mutates_args=())
def ms_deform_attn_1d_backward_op(
    value: Tensor,
    level_lengths: Tensor,
    level_start_index: Tensor,
    sampling_locations: Tensor,
    attention_weights: Tensor,
    grad_output: Tensor,
    deterministic: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """The extension's backward → (grad_value, grad_locations, grad_weights)."""
    grad_value, grad_locations, grad_weights = _extension().backward(
        value, level_lengths, level_start_index, sampling_locations, attention_weights, grad_output, deterministic
    )
    return grad_value, grad_locations, grad_weights


@ms_deform_attn_1d_backward_op.register_fake
def _backward_shapes(value, level_lengths, level_start_index, sampling_locations, attention_weights, grad_output,
                     deterministic):
    return torch.empty_like(value), torch.empty_like(sampling_locations), torch.empty_like(attention_weights)


def _save_inputs(ctx, inputs, output) -> None:  # noqa: ARG001 - torch.library's setup_context signature
    ctx.save_for_backward(*inputs)


def _backward(ctx, grad_output: Tensor):
    inputs = ctx.saved_tensors
    grad_value, grad_locations, grad_weights = ms_deform_attn_1d_backward_op(
        *inputs, grad_output.contiguous().to(inputs[0].dtype), torch.are_deterministic_algorithms_enabled()
    )
    return grad_value, None, None, grad_locations, grad_weights


ms_deform_attn_1d_op.register_autograd(_backward, setup_context=_save_inputs)
