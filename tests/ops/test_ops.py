"""The compiled 1-D deformable-attention op (CPU build) against the PyTorch fallback.

The C++ extension is built once per session (module fixture; tens of seconds the first time, a
no-op afterwards thanks to the build cache) and the tests skip if no C++ compiler is present.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest
import torch

from tp2detr.models import deform_attn
from tp2detr.models.deform_attn import (
    MSDeformAttn1D,
    ms_deform_attn_1d,
    ms_deform_attn_1d_pytorch,
    resolve_backend,
)
from tp2detr.ops import (
    auto_policy,
    ms_deform_attn_1d_compiled,
    register_compiled_backends,
)
from tp2detr.ops import build as ops_build
from op_test_inputs import random_op_inputs

HEAD_DIMS = (30, 32, 64, 71, 128)


def compiler_available() -> bool:
    """Whether the C++ compiler that torch's extension builder uses is on the PATH."""
    return shutil.which(os.environ.get("CXX", "c++")) is not None


@pytest.fixture(scope="module")
def extension():
    if not compiler_available():
        pytest.skip("no C++ compiler on the PATH: the compiled op cannot be built (fallback-only install)")
    before = set(deform_attn.available_backends())
    register_compiled_backends("cpp")
    module = ops_build.load_extension(False, required=True)
    yield module
    for name in set(deform_attn.available_backends()) - before:
        deform_attn.unregister_backend(name)


make_inputs = random_op_inputs  # CPU tensors


def forward_and_grads(op, value, lengths, starts, locations, weights, seed: int = 1):
    leaves = [t.detach().clone().requires_grad_() for t in (value, locations, weights)]
    out = op(leaves[0], lengths, starts, leaves[1], leaves[2])
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    grads = torch.autograd.grad(out, leaves, upstream)
    return out.detach(), grads


def assert_matches_fallback(extension, inputs, atol: float, rtol: float) -> None:
    expected, expected_grads = forward_and_grads(ms_deform_attn_1d_pytorch, *inputs)
    got, got_grads = forward_and_grads(lambda *a: ms_deform_attn_1d_compiled(extension, *a), *inputs)
    torch.testing.assert_close(got, expected, atol=atol, rtol=rtol)
    for name, g, e in zip(("value", "locations", "weights"), got_grads, expected_grads):
        torch.testing.assert_close(g, e, atol=atol, rtol=rtol, msg=lambda m, name=name: f"grad {name}: {m}")


@pytest.mark.parametrize("head_dim", HEAD_DIMS)
def test_forward_and_backward_match_fallback_over_head_dims(extension, head_dim: int) -> None:
    assert_matches_fallback(extension, make_inputs(head_dim=head_dim, seed=head_dim), atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "case",
    [
        {"n": 1, "lengths": (1,), "points": 1},  # L = 1, P = 1, a level of length 1
        {"n": 5, "lengths": (1, 1, 3), "points": 1},  # odd batch, several length-1 levels
        {"n": 3, "lengths": (9,), "points": 4},  # L = 1
        {"n": 2, "lengths": (16, 8, 4, 2), "points": 1, "heads": 3},  # P = 1
    ],
)
def test_edge_shapes_match_fallback_in_float64(extension, case: dict) -> None:
    inputs = make_inputs(dtype=torch.float64, head_dim=7, **case)
    assert_matches_fallback(extension, inputs, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("head_dim", [32, 64])
@pytest.mark.parametrize(
    "case",
    [
        {"n": 1, "lengths": (1,), "points": 1},  # one sample per query
        {"n": 3, "lengths": (5, 3, 2), "points": 3},  # L·P = 9
        {"n": 2, "lengths": (16, 8, 4, 2), "points": 4, "heads": 3},  # L·P = 16, the paper's
    ],
)
def test_specialised_float32_head_dims_match_fallback(extension, head_dim: int, case: dict) -> None:
    """Float32 with D = 32 / 64 runs the compile-time-specialised loops (registers, tree sums)."""
    inputs = make_inputs(head_dim=head_dim, seed=head_dim + case["n"], **case)
    assert_matches_fallback(extension, inputs, atol=2e-5, rtol=1e-5)


def test_locations_on_and_beyond_the_padding_boundaries(extension) -> None:
    value, lengths, starts, _, _ = make_inputs(n=1, lengths=(4, 2), heads=1, queries=1, points=8, dtype=torch.float64)
    # On a level of length T, t = loc·T − 0.5: t = −1 (loc = −0.5/T) and t = T (loc = 1 + 0.5/T)
    # are the exact edges where the taps leave the level; also far outside and exactly 0 and 1.
    per_level = []
    for t in (4.0, 2.0):
        per_level.append([-0.5 / t, -0.5 / t + 1e-3, 0.0, 1.0, 1.0 + 0.5 / t, 1.0 + 0.5 / t - 1e-3, -7.0, 9.0])
    locations = torch.tensor(per_level, dtype=torch.float64).view(1, 1, 1, 2, 8)
    weights = torch.linspace(0.5, 1.5, 16, dtype=torch.float64).view(1, 1, 1, 2, 8)
    assert_matches_fallback(extension, (value, lengths, starts, locations, weights), atol=1e-12, rtol=1e-12)
    out = ms_deform_attn_1d_compiled(extension, value, lengths, starts, locations.new_full((1, 1, 1, 2, 8), 5.0), weights)
    assert torch.count_nonzero(out) == 0  # every sample far outside: zero padding everywhere


@pytest.mark.parametrize("head_dim", [32, 64])
def test_float32_boundaries_and_non_finite_locations(extension, head_dim: int) -> None:
    """Float32, D = 32 / 64 and L·P = 16 (the AVX2 backward where the build has it): the padding
    edges as in float64, and a NaN or infinite location contributes nothing and gets zero gradients."""
    value, lengths, starts, _, _ = make_inputs(n=1, lengths=(4, 2), heads=1, queries=2, head_dim=head_dim, points=8)
    per_level = []
    for t in (4.0, 2.0):
        per_level.append([-0.5 / t, -0.5 / t + 1e-3, 0.0, 1.0, 1.0 + 0.5 / t, 1.0 + 0.5 / t - 1e-3, -7.0, 9.0])
    locations = torch.tensor([per_level, per_level], dtype=torch.float32).view(1, 2, 1, 2, 8)
    weights = torch.linspace(0.5, 1.5, 32, dtype=torch.float32).view(1, 2, 1, 2, 8)
    assert_matches_fallback(extension, (value, lengths, starts, locations, weights), atol=2e-5, rtol=1e-5)
    bad = locations.clone()
    bad[0, 1, 0, 0, :3] = torch.tensor([float("nan"), float("inf"), -float("inf")])
    out, (grad_value, grad_locations, grad_weights) = forward_and_grads(
        lambda *a: ms_deform_attn_1d_compiled(extension, *a), value, lengths, starts, bad, weights
    )
    keep = torch.ones_like(bad, dtype=torch.bool)
    keep[0, 1, 0, 0, :3] = False
    reference_weights = weights * keep  # the three bad samples, as if their weight were zero
    expected = ms_deform_attn_1d_pytorch(value, lengths, starts, torch.where(keep, bad, torch.zeros_like(bad)),
                                         reference_weights)
    assert torch.isfinite(out).all() and torch.isfinite(grad_value).all()
    torch.testing.assert_close(out, expected, atol=2e-5, rtol=1e-5)
    assert torch.count_nonzero(grad_locations[~keep]) == 0 and torch.count_nonzero(grad_weights[~keep]) == 0


@pytest.mark.parametrize("case", [{"head_dim": 30}, {"head_dim": 71, "lengths": (1,), "points": 1}])
def test_gradcheck_float64_on_the_compiled_op(extension, case: dict) -> None:
    value, lengths, starts, locations, weights = make_inputs(n=3, queries=3, dtype=torch.float64, **case)
    # keep samples away from the kinks of linear interpolation (integer t), where finite
    # differences straddle two linear pieces
    position = locations * lengths.view(1, 1, 1, -1, 1) - 0.5
    locations = locations + (0.5 - (position - position.floor())) * 0.8 / lengths.view(1, 1, 1, -1, 1)
    leaves = [t.clone().requires_grad_() for t in (value, locations, weights)]

    def op(v, loc, w):
        return ms_deform_attn_1d_compiled(extension, v, lengths, starts, loc, w)

    assert torch.autograd.gradcheck(op, leaves, eps=1e-6, atol=1e-7, rtol=1e-6)


def test_non_contiguous_inputs(extension) -> None:
    value, lengths, starts, locations, weights = make_inputs(n=3, head_dim=32)
    value_nc = value.transpose(0, 1).contiguous().transpose(0, 1)  # same values, other strides
    locations_nc = torch.stack((locations, locations), dim=-1)[..., 0]
    weights_nc = weights.permute(4, 3, 2, 1, 0).contiguous().permute(4, 3, 2, 1, 0)
    assert not (value_nc.is_contiguous() or locations_nc.is_contiguous() or weights_nc.is_contiguous())
    expected, expected_grads = forward_and_grads(ms_deform_attn_1d_pytorch, value, lengths, starts, locations, weights)
    got, got_grads = forward_and_grads(
        lambda *a: ms_deform_attn_1d_compiled(extension, *a), value_nc, lengths, starts, locations_nc, weights_nc
    )
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=1e-5)
    for g, e in zip(got_grads, expected_grads):
        torch.testing.assert_close(g, e, atol=2e-5, rtol=1e-5)


def test_cpu_op_is_bitwise_deterministic_across_runs_and_thread_counts(extension) -> None:
    inputs = make_inputs(n=4, lengths=(32, 16, 8, 4), heads=4, head_dim=64, queries=60, points=4)
    threads = torch.get_num_threads()
    try:
        results = []
        for count in (2, 2, 1):
            torch.set_num_threads(count)
            results.append(forward_and_grads(lambda *a: ms_deform_attn_1d_compiled(extension, *a), *inputs))
    finally:
        torch.set_num_threads(threads)
    reference_out, reference_grads = results[0]
    for out, grads in results[1:]:
        assert torch.equal(out, reference_out)
        assert all(torch.equal(g, r) for g, r in zip(grads, reference_grads))


def test_bfloat16_value_runs_in_float32_and_returns_the_value_dtype(extension) -> None:
    value, lengths, starts, locations, weights = make_inputs(head_dim=32)
    out = ms_deform_attn_1d_compiled(extension, value.bfloat16(), lengths, starts, locations, weights)
    assert out.dtype == torch.bfloat16
    expected = ms_deform_attn_1d_pytorch(value.bfloat16().float(), lengths, starts, locations, weights)
    torch.testing.assert_close(out.float(), expected, atol=2e-2, rtol=1e-2)


def test_backend_cpp_in_the_module_matches_pytorch(extension) -> None:
    torch.manual_seed(0)
    layer_cpp = MSDeformAttn1D(d_model=48, n_levels=2, n_heads=3, n_points=2, backend="cpp")
    layer_pt = MSDeformAttn1D(d_model=48, n_levels=2, n_heads=3, n_points=2, backend="pytorch")
    layer_pt.load_state_dict(layer_cpp.state_dict())
    with torch.no_grad():  # non-trivial offsets and attention
        for layer in (layer_cpp, layer_pt):
            layer.sampling_offsets.weight.copy_(torch.linspace(-0.3, 0.3, layer.sampling_offsets.weight.numel()).view_as(layer.sampling_offsets.weight))
    lengths = torch.tensor([6, 3])
    starts = torch.tensor([0, 6])
    query = torch.randn(3, 9, 48)
    reference = torch.rand(3, 9, 2, 1)
    outs = [layer(query, reference, query, lengths, starts) for layer in (layer_cpp, layer_pt)]
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-5)
    assert resolve_backend("cpp", "cpu") == "cpp"
    with pytest.raises(ValueError, match="'cpp' runs on"):
        resolve_backend("cpp", "cuda")


def test_invalid_shapes_are_value_errors(extension) -> None:
    value, lengths, starts, locations, weights = make_inputs()
    with pytest.raises(ValueError, match="attention_weights"):
        ms_deform_attn_1d(value, lengths, starts, locations, weights[..., :1], backend="cpp")
    with pytest.raises(ValueError, match="level_lengths"):
        ms_deform_attn_1d(value, lengths.int(), starts, locations, weights, backend="cpp")


@pytest.mark.parametrize(
    ("setting", "policy"), [(None, "off"), ("prebuilt", "prebuilt"), ("1", "build"), ("0", "off")]
)
def test_auto_policy_from_environment(monkeypatch: pytest.MonkeyPatch, setting: str | None, policy: str) -> None:
    if setting is None:
        monkeypatch.delenv("TP2DETR_BUILD_OPS", raising=False)
    else:
        monkeypatch.setenv("TP2DETR_BUILD_OPS", setting)
    assert auto_policy() == policy


def test_auto_policy_rejects_unknown_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TP2DETR_BUILD_OPS", "sometimes")
    with pytest.raises(ValueError, match="TP2DETR_BUILD_OPS"):
        auto_policy()


def test_failed_build_warns_once_or_raises_with_the_compiler_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    if not compiler_available():
        pytest.skip("no C++ compiler on the PATH")
    broken = tmp_path / "csrc"
    shutil.copytree(ops_build.CSRC_DIR, broken)
    for name in ops_build.CPP_SOURCES:  # a missing header is fatal at once: no time spent parsing torch
        source = broken / name
        source.write_text('#include "tp2detr-broken-source-marker.h"\n' + source.read_text())
    monkeypatch.setattr(ops_build, "CSRC_DIR", broken)
    monkeypatch.setenv("TP2DETR_OPS_CACHE", str(tmp_path / "cache"))
    with caplog.at_level(logging.WARNING, logger="tp2detr.ops.build"):
        assert ops_build.load_extension(False, required=False) is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "PyTorch fallback" in warnings[0].getMessage()
    with pytest.raises(ops_build.OpBuildError, match="tp2detr-broken-source-marker"):
        ops_build.load_extension(False, required=True)


def test_cuda_backend_by_name_is_an_error_without_cuda() -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: covered by the gpu tests")
    with pytest.raises(ops_build.OpBuildError, match="CUDA"):
        register_compiled_backends("cuda")


@pytest.mark.slow
def test_cuda_sources_compile_with_nvcc(tmp_path: Path) -> None:
    if shutil.which("nvcc") is None and not Path("/usr/local/cuda/bin/nvcc").exists():
        pytest.skip("nvcc not found: the CUDA sources cannot be compile-checked here")
    objects = ops_build.nvcc_compile_check(tmp_path, arch="90")
    assert objects and all(o.stat().st_size > 0 for o in objects)


def test_the_custom_ops_are_the_function_and_pass_opcheck(extension) -> None:
    """The custom ops torch.compile traces (tp2detr.ops.library) run the same kernels as the eager
    autograd.Function: identical output and gradients; torch.library.opcheck validates their
    schema, fake (shape) implementations and autograd registration."""
    from tp2detr.ops.functions import MSDeformAttn1DFunction
    from tp2detr.ops.library import ms_deform_attn_1d_op

    value, lengths, starts, locations, weights = make_inputs(head_dim=8, seed=3)
    eager = forward_and_grads(lambda v, n, s, l, w: MSDeformAttn1DFunction.apply(extension, v, n, s, l, w),
                              value, lengths, starts, locations, weights)
    custom = forward_and_grads(ms_deform_attn_1d_op, value, lengths, starts, locations, weights)
    assert torch.equal(custom[0], eager[0])
    for got, expected in zip(custom[1], eager[1]):
        assert torch.equal(got, expected)
    args = (value, lengths, starts, locations.requires_grad_(), weights.requires_grad_())
    torch.library.opcheck(torch.ops.tp2detr.ms_deform_attn_1d.default, args)


def test_torch_compile_traces_the_op_without_a_graph_break(extension) -> None:
    """Under torch.compile the compiled backend is one node of the graph (fullgraph=True fails on
    any graph break); aot_eager, because inductor's CPU code generation is not what is tested here."""
    inputs = make_inputs(head_dim=8, seed=4)
    leaves = [t.detach().clone().requires_grad_() for t in (inputs[0], inputs[3], inputs[4])]

    def attention(value, locations, weights):
        return ms_deform_attn_1d_compiled(extension, value, inputs[1], inputs[2], locations, weights).sum()

    torch._dynamo.reset()
    compiled = torch.compile(attention, backend="aot_eager", fullgraph=True)
    got = compiled(*leaves)
    got.backward()
    expected_leaves = [t.detach().clone().requires_grad_() for t in leaves]
    expected = attention(*expected_leaves)
    expected.backward()
    torch.testing.assert_close(got, expected)
    for a, b in zip(leaves, expected_leaves):
        torch.testing.assert_close(a.grad, b.grad)
