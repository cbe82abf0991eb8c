"""1-D multi-scale deformable attention: the op against a literal reference, the backend
registry, and the MSDeformAttn1D module (docs/fidelity.md §2.5, §12.3)."""

from __future__ import annotations

import math

import pytest
import torch

from tp2detr.models import deform_attn
from tp2detr.ops import reference
from tp2detr.models.deform_attn import (
    MSDeformAttn1D,
    available_backends,
    ms_deform_attn_1d,
    ms_deform_attn_1d_pytorch,
    register_backend,
    unregister_backend,
)

STRATEGIES = ("sparse", "dense")


def naive_reference(value, level_lengths, level_start_index, sampling_locations, attention_weights):
    """The formula, literally: t = loc·T_l − 0.5; taps ⌊t⌋, ⌊t⌋+1 with weights 1−frac, frac;
    a tap outside [0, T_l − 1] reads zero. Differentiable through autograd."""
    n_batch, _, n_heads, head_dim = value.shape
    _, n_queries, _, n_levels, n_points = sampling_locations.shape
    rows = []
    for n in range(n_batch):
        for q in range(n_queries):
            heads = []
            for m in range(n_heads):
                acc = value.new_zeros(head_dim)
                for level in range(n_levels):
                    length = int(level_lengths[level])
                    start = int(level_start_index[level])
                    for p in range(n_points):
                        t = sampling_locations[n, q, m, level, p] * length - 0.5
                        low = math.floor(t.item())
                        frac = t - low
                        a = attention_weights[n, q, m, level, p]
                        for tap, w in ((low, 1 - frac), (low + 1, frac)):
                            if 0 <= tap < length:
                                acc = acc + a * w * value[n, start + tap, m]
                heads.append(acc)
            rows.append(torch.cat(heads))
    return torch.stack(rows).view(n_batch, n_queries, n_heads * head_dim)


def make_inputs(
    n_batch=3, n_queries=4, n_heads=2, head_dim=5, lengths=(6, 3, 1), n_points=2, seed=0, dtype=torch.float64
):
    generator = torch.Generator().manual_seed(seed)
    level_lengths = torch.tensor(lengths, dtype=torch.int64)
    level_start_index = torch.cat((level_lengths.new_zeros(1), level_lengths.cumsum(0)[:-1]))
    n_keys = int(level_lengths.sum())
    shape = (n_batch, n_queries, n_heads, len(lengths), n_points)
    value = torch.randn(n_batch, n_keys, n_heads, head_dim, generator=generator, dtype=dtype)
    # Locations spread over [-0.4, 1.4]: inside, partly outside and fully outside every level.
    locations = torch.rand(shape, generator=generator, dtype=dtype) * 1.8 - 0.4
    weights = torch.rand(shape, generator=generator, dtype=dtype)
    return value, level_lengths, level_start_index, locations, weights


CASES = {
    "D30": dict(head_dim=30),
    "D32": dict(head_dim=32),
    "D64": dict(head_dim=64),
    "D71": dict(head_dim=71),
    "P1": dict(n_points=1, head_dim=7),
    "L1": dict(lengths=(5,), head_dim=7),
    "L1_T1": dict(lengths=(1,), head_dim=3),
}


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_forward_and_backward_match_the_literal_reference(case: str, strategy: str) -> None:
    inputs = make_inputs(**CASES[case])
    value, lengths, starts, locations, weights = (
        x.clone().requires_grad_(x.is_floating_point()) for x in inputs
    )
    expected = naive_reference(value, lengths, starts, locations, weights)
    got = ms_deform_attn_1d_pytorch(value, lengths, starts, locations, weights, strategy=strategy)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)

    upstream = torch.randn_like(expected)
    grads_expected = torch.autograd.grad(expected, (value, locations, weights), upstream)
    grads_got = torch.autograd.grad(got, (value, locations, weights), upstream)
    for name, g_got, g_expected in zip(("value", "locations", "weights"), grads_got, grads_expected):
        torch.testing.assert_close(g_got, g_expected, rtol=1e-9, atol=1e-9, msg=f"grad of {name}")


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("head_dim", [30, 32, 64, 71])
def test_gradcheck_float64(head_dim: int, strategy: str) -> None:
    value, lengths, starts, locations, weights = make_inputs(
        n_batch=1, n_queries=2, n_heads=2, head_dim=head_dim, lengths=(4, 2, 1), n_points=2, seed=head_dim
    )
    # Keep every sample away from integer t so the finite differences do not straddle a tap switch.
    t = locations * lengths.double().view(1, 1, 1, -1, 1) - 0.5
    locations = locations + (0.5 - (t - t.floor())) * 0.2 / lengths.double().view(1, 1, 1, -1, 1)

    def op(v, loc, w):
        return ms_deform_attn_1d_pytorch(v, lengths, starts, loc, w, strategy=strategy)

    args = tuple(x.clone().requires_grad_() for x in (value, locations, weights))
    assert torch.autograd.gradcheck(op, args, eps=1e-6, atol=1e-6, fast_mode=True)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_odd_batch_and_both_strategies_agree_in_float32(strategy: str) -> None:
    inputs = make_inputs(n_batch=5, n_queries=9, n_heads=4, head_dim=16, lengths=(16, 8, 4, 2), n_points=4)
    value, lengths, starts, locations, weights = (x.float() if x.is_floating_point() else x for x in inputs)
    got = ms_deform_attn_1d_pytorch(value, lengths, starts, locations, weights, strategy=strategy)
    expected = naive_reference(*inputs)
    torch.testing.assert_close(got, expected.float(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("value_dtype", [torch.bfloat16, torch.float16])
def test_half_values_with_float32_weights_outside_autocast(strategy: str, value_dtype: torch.dtype) -> None:
    """What the compiled op accepts (half values, fp32 locations/weights) the fallback accepts too:
    summed in fp32, returned in the value's dtype, forward and backward."""
    inputs = make_inputs(n_batch=2, n_queries=6, n_heads=2, head_dim=8, lengths=(8, 4), n_points=3)
    value, lengths, starts, locations, weights = (x.float() if x.is_floating_point() else x for x in inputs)
    low = value.to(value_dtype).requires_grad_()
    got = ms_deform_attn_1d_pytorch(low, lengths, starts, locations, weights, strategy=strategy)
    assert got.dtype == value_dtype
    expected = naive_reference(low.detach().double(), lengths, starts, locations.double(), weights.double())
    torch.testing.assert_close(got.double(), expected, rtol=1e-2, atol=1e-2)
    got.float().sum().backward()
    assert low.grad is not None and low.grad.dtype == value_dtype


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_full_scale_not_half_scale(strategy: str) -> None:
    """Sampling exactly at a cell center returns that cell: a ratio of 1, not OpenTAD's 0.5."""
    lengths = torch.tensor([4, 2])
    starts = torch.tensor([0, 4])
    value = torch.randn(1, 6, 1, 3, dtype=torch.float64)
    cell = 2
    locations = torch.full((1, 1, 1, 2, 1), (cell + 0.5) / 4, dtype=torch.float64)
    weights = torch.tensor([1.0, 0.0], dtype=torch.float64).view(1, 1, 1, 2, 1)
    out = ms_deform_attn_1d_pytorch(value, lengths, starts, locations, weights, strategy=strategy)
    ratio = out[0, 0] / value[0, cell, 0]
    torch.testing.assert_close(ratio, torch.ones_like(ratio))
    assert not torch.allclose(ratio, torch.full_like(ratio, 0.5))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_zero_padding_at_the_level_borders(strategy: str) -> None:
    """t in (−1, 0) reads frac·v[0]; t ≤ −1 or t ≥ T reads nothing; no leak into the next level."""
    lengths = torch.tensor([4, 3])
    starts = torch.tensor([0, 4])
    value = torch.arange(1.0, 8.0, dtype=torch.float64).view(1, 7, 1, 1)
    t_values = torch.tensor([-1.5, -1.0, -0.25, 3.25, 4.0, 3.0])
    locations = ((t_values + 0.5) / 4).view(1, 6, 1, 1, 1).expand(1, 6, 1, 2, 1).clone()
    weights = torch.tensor([1.0, 0.0], dtype=torch.float64).view(1, 1, 1, 2, 1).expand(1, 6, 1, 2, 1)
    out = ms_deform_attn_1d_pytorch(value, lengths, starts, locations.double(), weights.clone(), strategy=strategy)
    expected = torch.tensor([0.0, 0.0, 0.75 * 1.0, 0.75 * 4.0, 0.0, 4.0], dtype=torch.float64)
    torch.testing.assert_close(out[0, :, 0], expected)


def test_auto_strategy_uses_dense_only_with_gradients(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(reference, "_sample_dense", lambda *a: calls.append("dense") or torch.zeros(()))
    monkeypatch.setattr(reference, "_sample_sparse", lambda *a: calls.append("sparse") or torch.zeros(()))
    value, lengths, starts, locations, weights = make_inputs()  # S = 10 keys, 2·L·P = 12 taps
    ms_deform_attn_1d_pytorch(value, lengths, starts, locations, weights)
    ms_deform_attn_1d_pytorch(value.requires_grad_(), lengths, starts, locations, weights)
    with torch.no_grad():
        ms_deform_attn_1d_pytorch(value, lengths, starts, locations, weights)
    assert calls == ["sparse", "dense", "sparse"]
    # Many keys per tap: the dense matrix would cost more than the taps, so sparse even with gradients.
    value, lengths, starts, locations, weights = make_inputs(lengths=(160, 1), n_points=1)
    ms_deform_attn_1d_pytorch(value.requires_grad_(), lengths, starts, locations, weights)
    assert calls[-1] == "sparse"


def test_op_rejects_inconsistent_shapes() -> None:
    value, lengths, starts, locations, weights = make_inputs()
    with pytest.raises(ValueError, match="attention_weights"):
        ms_deform_attn_1d_pytorch(value, lengths, starts, locations, weights[..., :1])
    with pytest.raises(ValueError, match="level_lengths"):
        ms_deform_attn_1d_pytorch(value, lengths[:2], starts, locations, weights)
    with pytest.raises(ValueError, match="level_start_index"):
        ms_deform_attn_1d_pytorch(value, lengths, starts.int(), locations, weights)
    with pytest.raises(ValueError, match="strategy"):
        ms_deform_attn_1d_pytorch(value, lengths, starts, locations, weights, strategy="grid")


# ------------------------------------------------------------------------------------ registry


def test_registry_dispatch_and_auto_selection() -> None:
    inputs = make_inputs()
    assert "pytorch" in available_backends()
    seen: list[str] = []

    def fake_cpu_op(*args):
        seen.append("cpu")
        return ms_deform_attn_1d_pytorch(*args)

    def fake_cuda_op(*args):
        seen.append("cuda")
        return ms_deform_attn_1d_pytorch(*args)

    register_backend("test_cuda_only", fake_cuda_op, device_types=("cuda",))
    try:
        assert "test_cuda_only" in available_backends("cuda")
        assert "test_cuda_only" not in available_backends("cpu")
        ms_deform_attn_1d(*inputs, backend="auto")  # only a CUDA op is registered: pytorch runs
        assert seen == []
        with pytest.raises(ValueError, match="test_cuda_only"):
            ms_deform_attn_1d(*inputs, backend="test_cuda_only")
        register_backend("test_cpu", fake_cpu_op, device_types=("cpu",))
        try:
            out = ms_deform_attn_1d(*inputs, backend="auto")
            assert seen == ["cpu"]
            torch.testing.assert_close(out, ms_deform_attn_1d(*inputs, backend="pytorch"))
            with pytest.raises(ValueError, match="already registered"):
                register_backend("test_cpu", fake_cpu_op, device_types=("cpu",))
        finally:
            unregister_backend("test_cpu")
    finally:
        unregister_backend("test_cuda_only")
    assert available_backends() == ["pytorch"]


@pytest.mark.parametrize("name", ["auto", "pytorch"])
def test_registry_rejects_reserved_names(name: str) -> None:
    with pytest.raises(ValueError, match="reserved"):
        register_backend(name, ms_deform_attn_1d_pytorch, device_types=("cpu",))
    with pytest.raises(ValueError):
        unregister_backend(name)


def test_unknown_backend_is_an_error() -> None:
    with pytest.raises(ValueError, match="no_such_op"):
        ms_deform_attn_1d(*make_inputs(), backend="no_such_op")
    with pytest.raises(ValueError, match="no_such_op"):
        MSDeformAttn1D(16, 2, 2, 2, backend="no_such_op")


# ------------------------------------------------------------------------------------ module


def test_module_parameter_count_for_the_paper_config() -> None:
    module = MSDeformAttn1D(d_model=512, n_levels=4, n_heads=8, n_points=4)
    counts = {name: sum(p.numel() for p in child.parameters()) for name, child in module.named_children()}
    assert counts == {
        "sampling_offsets": 65_664,
        "attention_weights": 65_664,
        "value_proj": 262_656,
        "output_proj": 262_656,
    }
    assert sum(p.numel() for p in module.parameters()) == 656_640


def test_module_init_values() -> None:
    torch.manual_seed(0)
    module = MSDeformAttn1D(d_model=64, n_levels=3, n_heads=8, n_points=4)
    assert torch.count_nonzero(module.sampling_offsets.weight) == 0
    bias = module.sampling_offsets.bias.view(8, 3, 4)
    half = math.sqrt(0.5)
    head_direction = torch.tensor([1.0, half, 0.0, -half, -1.0, -half, 0.0, half])
    expected = head_direction.view(8, 1, 1) * torch.arange(1.0, 5.0).view(1, 1, 4)
    torch.testing.assert_close(bias, expected.expand(8, 3, 4), atol=1e-6, rtol=0)
    assert torch.count_nonzero(module.attention_weights.weight) == 0
    assert torch.count_nonzero(module.attention_weights.bias) == 0
    for proj in (module.value_proj, module.output_proj):
        assert torch.count_nonzero(proj.bias) == 0
        bound = math.sqrt(6.0 / (64 + 64))
        assert proj.weight.abs().max() <= bound
        assert proj.weight.std() > bound / 3  # xavier-uniform has std bound/√3


def test_offset_bias_for_three_heads() -> None:
    module = MSDeformAttn1D(d_model=12, n_levels=1, n_heads=3, n_points=2)
    bias = module.sampling_offsets.bias.view(3, 1, 2)[:, 0, 0]
    expected = torch.tensor([1.0, -0.5, -0.5])  # cos(0), cos(2π/3), cos(4π/3); max |cos| = 1
    torch.testing.assert_close(bias, expected, atol=1e-6, rtol=0)


def _module_inputs(n_levels=2, lengths=(8, 4), d_model=16, n_batch=3, n_queries=5, coords=1, seed=0):
    generator = torch.Generator().manual_seed(seed)
    level_lengths = torch.tensor(lengths)
    level_start_index = torch.cat((level_lengths.new_zeros(1), level_lengths.cumsum(0)[:-1]))
    query = torch.randn(n_batch, n_queries, d_model, generator=generator)
    reference = torch.rand(n_batch, n_queries, n_levels, coords, generator=generator)
    value = torch.randn(n_batch, int(level_lengths.sum()), d_model, generator=generator)
    return query, reference, value, level_lengths, level_start_index


@pytest.mark.parametrize("coords", [1, 2])
def test_module_output_shape(coords: int) -> None:
    module = MSDeformAttn1D(d_model=16, n_levels=2, n_heads=4, n_points=3)
    query, reference, value, lengths, starts = _module_inputs(coords=coords)
    out = module(query, reference, value, lengths, starts)
    assert out.shape == query.shape


def test_sampling_location_rules_at_init() -> None:
    module = MSDeformAttn1D(d_model=16, n_levels=2, n_heads=4, n_points=3)
    query, reference, _, lengths, _ = _module_inputs(coords=2)
    offsets = module.sampling_offsets.bias.view(1, 1, 4, 2, 3)  # the weight is zero at init

    centers = reference[..., :1]
    loc = module.sampling_locations(query, centers, lengths)
    expected = centers[:, :, None, :, :] + offsets / lengths.float().view(1, 1, 1, 2, 1)
    torch.testing.assert_close(loc, expected)

    loc = module.sampling_locations(query, reference, lengths)
    center, width = reference[:, :, None, :, 0:1], reference[:, :, None, :, 1:2]
    torch.testing.assert_close(loc, center + offsets / 3 * width * 0.5)


def test_attention_is_uniform_at_init() -> None:
    """Zero attention logits: every one of the L·P samples of a head weighs 1/(L·P)."""
    module = MSDeformAttn1D(d_model=8, n_levels=2, n_heads=2, n_points=2)
    with torch.no_grad():
        module.value_proj.weight.copy_(torch.eye(8))
        module.output_proj.weight.copy_(torch.eye(8))
    query, reference, value, lengths, starts = _module_inputs(d_model=8)
    out = module(query, reference, value, lengths, starts)
    locations = module.sampling_locations(query, reference, lengths)
    uniform = torch.full_like(locations, 0.25)
    expected = ms_deform_attn_1d_pytorch(value.view(3, 12, 2, 4), lengths, starts, locations, uniform)
    torch.testing.assert_close(out, expected)


def test_masked_values_are_ignored() -> None:
    module = MSDeformAttn1D(d_model=16, n_levels=2, n_heads=4, n_points=3)
    with torch.no_grad():
        module.sampling_offsets.weight.normal_(std=0.5)  # spread the samples over the whole level
        module.value_proj.bias.normal_()
    query, reference, value, lengths, starts = _module_inputs()
    mask = torch.zeros(3, 12, dtype=torch.bool)
    mask[0, 5:8] = True
    mask[0, 10:] = True
    mask[2, 3:8] = True
    changed = value.clone()
    changed[mask] = torch.randn(int(mask.sum()), 16) * 100
    out = module(query, reference, value, lengths, starts, padding_mask=mask)
    torch.testing.assert_close(module(query, reference, changed, lengths, starts, padding_mask=mask), out)
    assert not torch.allclose(module(query, reference, changed, lengths, starts), out)


def test_module_rejects_bad_reference_points() -> None:
    module = MSDeformAttn1D(d_model=16, n_levels=2, n_heads=4, n_points=3)
    query, reference, value, lengths, starts = _module_inputs(coords=3)
    with pytest.raises(ValueError, match="reference_points"):
        module(query, reference, value, lengths, starts)
    with pytest.raises(ValueError, match="reference_points"):
        module(query, reference[:, :, :1, :1], value, lengths, starts)
    with pytest.raises(ValueError, match="padding_mask"):
        module(query, reference[..., :1], value, lengths, starts, padding_mask=torch.zeros(3, 5, dtype=torch.bool))
