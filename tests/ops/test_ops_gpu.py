"""The compiled op's CUDA kernels against the PyTorch fallback (marked ``gpu``: skipped without CUDA).

Run on a GPU machine with ``python -m pytest tests/ops/test_ops_gpu.py -m gpu`` (or scripts/gpu_check.sh).
"""

from __future__ import annotations

import pytest
import torch

from tp2detr.models import deform_attn
from tp2detr.models.deform_attn import ms_deform_attn_1d, ms_deform_attn_1d_pytorch
from tp2detr.ops import register_compiled_backends
from op_test_inputs import random_op_inputs

pytestmark = pytest.mark.gpu

HEAD_DIMS = (30, 32, 64, 71, 128, 1025)


@pytest.fixture(scope="module")
def cuda_backend():
    before = set(deform_attn.available_backends())
    register_compiled_backends("cuda")
    yield "cuda"
    for name in set(deform_attn.available_backends()) - before:
        deform_attn.unregister_backend(name)


def make_inputs(**kwargs):
    """:func:`op_test_inputs.random_op_inputs` (tests/helpers) on the GPU."""
    return [t.cuda() for t in random_op_inputs(**kwargs)]


def forward_and_grads(op, value, lengths, starts, locations, weights, upstream_dtype=None):
    """Output and (value, locations, weights) gradients for a fixed random upstream gradient, rounded
    to ``upstream_dtype`` first when given (so a float32 reference sees the same upstream values as a
    half-precision op)."""
    leaves = [t.detach().clone().requires_grad_() for t in (value, locations, weights)]
    out = op(leaves[0], lengths, starts, leaves[1], leaves[2])
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    upstream = upstream.to(upstream_dtype or out.dtype).to(out)
    return out.detach(), torch.autograd.grad(out, leaves, upstream)


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    """``‖got − expected‖ / ‖expected‖`` in float64."""
    got, expected = got.double(), expected.double()
    return float((got - expected).norm() / expected.norm().clamp_min(1e-30))


def compiled(*args):
    return ms_deform_attn_1d(*args, backend="cuda")


@pytest.mark.parametrize("head_dim", HEAD_DIMS)
@pytest.mark.parametrize("deterministic", [False, True])
def test_cuda_matches_fallback(cuda_backend, head_dim: int, deterministic: bool) -> None:
    inputs = make_inputs(head_dim=head_dim, seed=head_dim)
    expected, expected_grads = forward_and_grads(ms_deform_attn_1d_pytorch, *inputs)
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    try:
        got, got_grads = forward_and_grads(compiled, *inputs)
    finally:
        torch.use_deterministic_algorithms(previous)
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=1e-5)
    for g, e in zip(got_grads, expected_grads):
        torch.testing.assert_close(g, e, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("case", [
    {"lengths": (1,), "points": 1, "n": 1},
    {"lengths": (5, 1, 2), "points": 1, "n": 5},
    {"lengths": (9, 5, 3, 2), "points": 9, "n": 2},  # L·P = 36 > 32: the forward's samples span two warp chunks
    {"lengths": (6, 3), "points": 16, "n": 1, "heads": 3},  # L·P = 32 exactly, odd head count
])
def test_cuda_edge_shapes_float64(cuda_backend, case: dict) -> None:
    inputs = make_inputs(dtype=torch.float64, head_dim=7, **case)
    expected, expected_grads = forward_and_grads(ms_deform_attn_1d_pytorch, *inputs)
    got, got_grads = forward_and_grads(compiled, *inputs)
    torch.testing.assert_close(got, expected, atol=1e-12, rtol=1e-12)
    for g, e in zip(got_grads, expected_grads):
        torch.testing.assert_close(g, e, atol=1e-12, rtol=1e-12)


def test_cuda_gradcheck_float64(cuda_backend) -> None:
    value, lengths, starts, locations, weights = make_inputs(n=3, queries=3, head_dim=71, dtype=torch.float64)
    position = locations * lengths.view(1, 1, 1, -1, 1) - 0.5
    locations = locations + (0.5 - (position - position.floor())) * 0.8 / lengths.view(1, 1, 1, -1, 1)
    leaves = [t.clone().requires_grad_() for t in (value, locations, weights)]
    assert torch.autograd.gradcheck(
        lambda v, loc, w: compiled(v, lengths, starts, loc, w), leaves, eps=1e-6, atol=1e-7, rtol=1e-6
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_half_precision_values_accumulate_in_float32(cuda_backend, dtype: torch.dtype) -> None:
    value, lengths, starts, locations, weights = make_inputs(head_dim=64, lengths=(64, 32, 16, 8), queries=40)
    low = value.to(dtype)
    expected, expected_grads = forward_and_grads(
        ms_deform_attn_1d_pytorch, low.float(), lengths, starts, locations, weights, upstream_dtype=dtype
    )
    got, got_grads = forward_and_grads(compiled, low, lengths, starts, locations, weights)
    assert got.dtype == dtype and got_grads[0].dtype == dtype and got_grads[1].dtype == torch.float32
    tolerance = 1e-2 if dtype == torch.float16 else 3e-2
    torch.testing.assert_close(got.float(), expected, atol=tolerance, rtol=tolerance)
    # The output and value gradient only round once (to the half dtype); the location and weight
    # gradients are fp32 sums over D of products that cancel, so compare them as whole tensors
    # (float32 accumulation keeps them far under a half-precision rounding step).
    torch.testing.assert_close(got_grads[0].float(), expected_grads[0], atol=tolerance, rtol=tolerance)
    for name, g, e in zip(("locations", "weights"), got_grads[1:], expected_grads[1:]):
        assert relative_error(g, e) < 1e-4, (name, relative_error(g, e))


def test_cuda_deterministic_backward_is_bitwise_repeatable(cuda_backend) -> None:
    inputs = make_inputs(n=4, lengths=(128, 64, 32, 16), heads=8, head_dim=64, queries=240, points=4)
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        first = forward_and_grads(compiled, *inputs)
        second = forward_and_grads(compiled, *inputs)
    finally:
        torch.use_deterministic_algorithms(previous)
    assert torch.equal(first[0], second[0])
    assert all(torch.equal(a, b) for a, b in zip(first[1], second[1]))


def test_cuda_errors_are_exceptions(cuda_backend) -> None:
    value, lengths, starts, locations, weights = make_inputs()
    with pytest.raises(RuntimeError, match="device"):
        ms_deform_attn_1d(value, lengths, starts, locations.cpu(), weights, backend="cuda")
    with pytest.raises(ValueError, match="'cuda' runs on"):
        ms_deform_attn_1d(value.cpu(), lengths.cpu(), starts.cpu(), locations.cpu(), weights.cpu(), backend="cuda")


def test_cuda_runs_on_a_non_default_device(cuda_backend) -> None:
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two GPUs")
    inputs = [t.to("cuda:1") for t in make_inputs(head_dim=32)]
    expected = ms_deform_attn_1d_pytorch(*inputs)
    torch.testing.assert_close(compiled(*inputs), expected, atol=2e-5, rtol=1e-5)
