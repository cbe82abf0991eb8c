"""Tests of the TFPN variants, their blocks and the banded local attention."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from tp2detr.models.local_attention import (
    LocalMaskedSelfAttention,
    LocalTransformerBlock,
    banded_attention,
)
from tp2detr.models.sgp import SGPBlock, masked_group_norm, sgp_long_kernel
from released_config import config_tfpn
from tp2detr.models.tfpn import TFPN_NAMES, ConvPyramid
from tp2detr.models.tfpn_blocks import ChannelLayerNorm, keep_even

SMALL_C = 32


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def small_tfpn(name: str, seed: int = 0, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    if name == "none":
        kwargs.setdefault("num_levels", 1)
    kwargs.setdefault("num_heads", 4)
    kwargs.setdefault("sgp_mlp_dim", 48)
    model = config_tfpn(name, d_model=SMALL_C, **kwargs)
    randomise_affine(model, seed)
    return model.eval()


def randomise_affine(model: nn.Module, seed: int) -> None:
    """Give every norm weight/bias and every bias a non-trivial value (init sets them to 1/0)."""
    gen = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() == 1:
                centre = 1.0 if "weight" in name else 0.0
                param.copy_(torch.randn(param.shape, generator=gen) * 0.3 + centre)


def dense_reference(q, k, v, mask, half_window):
    """Dense masked attention restricted to the band |i − j| ≤ w (the semantics to match)."""
    length = q.shape[2]
    scores = q @ k.transpose(-1, -2)
    idx = torch.arange(length)
    band = (idx[:, None] - idx[None, :]).abs() <= half_window
    allowed = band[None, None] & (~mask)[:, None, None, :]
    scores = scores.masked_fill(~allowed, float("-inf"))
    probs = torch.nan_to_num(scores.softmax(-1), nan=0.0)
    probs = probs * (~mask)[:, None, :, None]
    return probs @ v


# ---------------------------------------------------------------------------------------------
# parameter counts at the paper's size (docs/fidelity.md §2.8, §9)


@pytest.mark.parametrize(
    "name, kwargs, expected",
    [
        ("none", {"num_levels": 1}, 0),
        ("direct", {}, 0),
        ("cnn", {}, 10_232_320),
        ("sgp", {}, 4 * 795_904),
        ("transformer", {}, 12_621_824),
        ("transformer", {"qkv_norm": False}, 12_621_824 - 4 * 3 * 1024),
    ],
)
def test_parameter_counts_match_released_model(name, kwargs, expected):
    model = config_tfpn(name, **kwargs)
    assert n_params(model) == expected
    assert all(p.requires_grad for p in model.parameters())


def test_transformer_block_breakdown():
    block = LocalTransformerBlock(512, num_heads=8, window_size=9, stride=2)
    assert n_params(block) == 3_155_456
    assert n_params(block.mlp) == 2_099_712
    assert n_params(block.attn.proj) == 262_656


def test_sgp_block_count_and_kernels():
    block = SGPBlock(512, window_size=1, stride=2, mlp_dim=768)
    assert n_params(block) == 795_904
    assert block.psi.kernel_size == (1,) and block.convw.kernel_size == (1,)
    assert block.convkw.kernel_size == (3,)
    assert [sgp_long_kernel(w) for w in (1, 3, 5, 9)] == [3, 7, 9, 15]


# ---------------------------------------------------------------------------------------------
# shapes, masks and lengths


@pytest.mark.parametrize("name", TFPN_NAMES)
@pytest.mark.parametrize("length", [37, 1])
def test_level_shapes_and_masks(name, length):
    model = small_tfpn(name)
    x = torch.randn(2, SMALL_C, length)
    mask = torch.zeros(2, length, dtype=torch.bool)
    mask[1, (length + 1) // 2 :] = True
    with torch.no_grad():
        levels, masks = model(x, mask)
    assert len(levels) == len(masks) == model.num_levels
    expected_lengths = [length]
    for _ in range(model.num_levels - 1):
        expected_lengths.append(math.ceil(expected_lengths[-1] / 2))
    assert [lv.shape[-1] for lv in levels] == expected_lengths
    assert all(lv.shape[:2] == (2, SMALL_C) for lv in levels)
    assert model.level_lengths(length) == expected_lengths
    expected_mask = mask
    for level_mask in masks:
        assert level_mask.dtype == torch.bool
        assert torch.equal(level_mask, expected_mask)
        expected_mask = keep_even(expected_mask)
    assert all(torch.isfinite(lv).all() for lv in levels)


@pytest.mark.parametrize("name", TFPN_NAMES)
def test_required_length_multiple(name):
    model = small_tfpn(name)
    expected = 1 if name == "none" else 8
    assert model.required_length_multiple() == expected


def test_length_multiple_follows_levels():
    model = config_tfpn("transformer", d_model=SMALL_C, num_levels=5, num_heads=4)
    assert model.required_length_multiple() == 16
    model = config_tfpn("direct", d_model=SMALL_C, num_levels=4, stem_layers=2)
    assert model.required_length_multiple() == 4


def test_none_is_raw_features_and_direct_keeps_even_indices():
    x = torch.randn(2, SMALL_C, 16)
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[0, 12:] = True
    (level,), (level_mask,) = small_tfpn("none")(x, mask)
    assert torch.equal(level[1], x[1]) and torch.equal(level[0, :, :12], x[0, :, :12])
    assert torch.equal(level[0, :, 12:], torch.zeros(SMALL_C, 4))
    assert torch.equal(level_mask, mask)
    levels, _ = small_tfpn("direct")(x, mask)
    assert torch.equal(levels[1][1], x[1, :, 0::2])
    assert torch.equal(levels[2][1], x[1, :, 0::4])
    assert torch.equal(levels[3][1], x[1, :, 0::8])


def test_direct_repeats_stem_level():
    model = config_tfpn("direct", d_model=SMALL_C, num_levels=3, stem_layers=2)
    x = torch.randn(1, SMALL_C, 8)
    levels, _ = model(x, torch.zeros(1, 8, dtype=torch.bool))
    assert [lv.shape[-1] for lv in levels] == [8, 8, 4]
    assert torch.equal(levels[0], levels[1])


# ---------------------------------------------------------------------------------------------
# padding invariance (eval mode)


def _padded_pair(name, valid_length, padded_length, seed=0, **kwargs):
    """Outputs for one item alone (no padding) and inside a padded batch with garbage pads."""
    model = small_tfpn(name, seed=seed, **kwargs)
    gen = torch.Generator().manual_seed(seed)
    item = torch.randn(1, SMALL_C, valid_length, generator=gen)
    batch = torch.randn(2, SMALL_C, padded_length, generator=gen) * 5.0
    batch[0, :, valid_length:] = float("nan")  # whatever the pads hold must not leak
    batch[0, :, :valid_length] = item[0]
    mask = torch.zeros(2, padded_length, dtype=torch.bool)
    mask[0, valid_length:] = True
    with torch.no_grad():
        alone, alone_masks = model(item, torch.zeros(1, valid_length, dtype=torch.bool))
        padded, padded_masks = model(batch, mask)
    return alone, alone_masks, padded, padded_masks


def _max_valid_difference(alone, alone_masks, padded, padded_masks):
    """Largest |alone − padded| over valid positions, relative to 1 + the level's magnitude."""
    worst = 0.0
    for a, am, p, pm in zip(alone, alone_masks, padded, padded_masks):
        n_valid = int((~am[0]).sum())
        assert int((~pm[0]).sum()) == n_valid
        diff = (a[0, :, :n_valid] - p[0, :, :n_valid]).abs().max().item()
        worst = max(worst, diff / (1.0 + a[0, :, :n_valid].abs().max().item()))
    return worst


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("none", {}),
        ("direct", {}),
        ("cnn", {}),
        ("sgp", {"sgp_mean_over_valid": True}),
        ("transformer", {}),
        ("transformer", {"qkv_norm": False, "window_size": 3}),
    ],
)
@pytest.mark.parametrize("valid_length", [40, 27])
def test_valid_outputs_do_not_depend_on_padding(name, kwargs, valid_length):
    outputs = _padded_pair(name, valid_length, 64, **kwargs)
    assert _max_valid_difference(*outputs) < 1e-5


@pytest.mark.parametrize("name", ["none", "direct", "sgp", "transformer"])
def test_padded_outputs_are_zero(name):
    kwargs = {"sgp_mean_over_valid": True} if name == "sgp" else {}
    _, _, padded, padded_masks = _padded_pair(name, 27, 64, **kwargs)
    for level, level_mask in zip(padded, padded_masks):
        assert torch.equal(level[0][:, level_mask[0]], torch.zeros_like(level[0][:, level_mask[0]]))


def test_released_sgp_depends_on_padding():
    """The released SGP block averages over padded snippets: documented, not invariant."""
    outputs = _padded_pair("sgp", 40, 64)
    assert _max_valid_difference(*outputs) > 1e-3


def test_released_cnn_keeps_layernorm_bias_at_pads():
    """Released CNN TFPN: pads of levels 1.. hold the LN bias, read by the next strided conv
    when a valid length is odd (27 → 14 → 7); invariance holds because that read always hits a
    pad (see test_valid_outputs_do_not_depend_on_padding)."""
    _, _, padded, padded_masks = _padded_pair("cnn", 27, 64)
    model = small_tfpn("cnn")
    for level_index in (1, 2):
        pads = padded[level_index][0][:, padded_masks[level_index][0]]
        bias = model.branch_norms[level_index - 1].bias.detach()[:, None].expand_as(pads)
        torch.testing.assert_close(pads, bias)


def test_sgp_exact_mode_agrees_with_released_without_padding():
    released = small_tfpn("sgp", seed=3)
    exact = small_tfpn("sgp", seed=3, sgp_mean_over_valid=True)
    x = torch.randn(2, SMALL_C, 24)
    mask = torch.zeros(2, 24, dtype=torch.bool)
    with torch.no_grad():
        a, _ = released(x, mask)
        b, _ = exact(x, mask)
    for la, lb in zip(a, b):
        torch.testing.assert_close(la, lb, rtol=1e-5, atol=1e-5)


def test_batched_equals_one_by_one_transformer():
    model = small_tfpn("transformer", seed=5)
    x = torch.randn(3, SMALL_C, 32)
    mask = torch.zeros(3, 32, dtype=torch.bool)
    mask[1, 20:] = True
    mask[2, 9:] = True
    with torch.no_grad():
        batched, _ = model(x, mask)
        for b in range(3):
            single, _ = model(x[b : b + 1], mask[b : b + 1])
            for lb, ls in zip(batched, single):
                torch.testing.assert_close(lb[b : b + 1], ls, rtol=1e-5, atol=1e-5)


def test_fully_padded_item_is_finite_and_has_gradients():
    for name, kwargs in [("transformer", {}), ("sgp", {"sgp_mean_over_valid": True})]:
        model = small_tfpn(name, **kwargs).train()
        x = torch.randn(2, SMALL_C, 16, requires_grad=True)
        mask = torch.zeros(2, 16, dtype=torch.bool)
        mask[1] = True
        levels, _ = model(x, mask)
        sum(lv.sum() for lv in levels).backward()
        assert torch.isfinite(x.grad).all()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# ---------------------------------------------------------------------------------------------
# banded local attention


@pytest.mark.parametrize("length", [1, 5, 31, 32, 33, 100])
@pytest.mark.parametrize("half_window", [0, 1, 4, 8])
def test_banded_attention_equals_dense_reference(length, half_window):
    gen = torch.Generator().manual_seed(length * 31 + half_window)
    q = torch.randn(3, 2, length, 8, generator=gen)
    k = torch.randn(3, 2, length, 8, generator=gen)
    v = torch.randn(3, 2, length, 8, generator=gen)
    mask = torch.zeros(3, length, dtype=torch.bool)
    mask[1, (2 * length) // 3 :] = True
    mask[2] = torch.rand(length, generator=gen) < 0.3
    out = banded_attention(q, k, v, mask, half_window)
    expected = dense_reference(q, k, v, mask, half_window)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_banded_attention_gradients_equal_dense_reference():
    gen = torch.Generator().manual_seed(7)
    tensors = [torch.randn(2, 2, 45, 8, generator=gen, requires_grad=True) for _ in range(3)]
    mask = torch.zeros(2, 45, dtype=torch.bool)
    mask[0, 30:] = True
    weight = torch.randn(2, 2, 45, 8, generator=gen)
    (banded_attention(*tensors, mask, 4, block_size=8) * weight).sum().backward()
    grads = [t.grad.clone() for t in tensors]
    for t in tensors:
        t.grad = None
    (dense_reference(*tensors, mask, 4) * weight).sum().backward()
    for got, want in zip(grads, (t.grad for t in tensors)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_block_size_does_not_change_result():
    gen = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(1, 2, 77, 4, generator=gen) for _ in range(3))
    mask = torch.zeros(1, 77, dtype=torch.bool)
    ref = banded_attention(q, k, v, mask, 4, block_size=8)
    for block in (1, 13, 64, 128):
        torch.testing.assert_close(banded_attention(q, k, v, mask, 4, block_size=block), ref)


def test_attention_is_local():
    """Perturbing snippet j changes only outputs i with |i − j| ≤ window // 2."""
    torch.manual_seed(0)
    attn = LocalMaskedSelfAttention(SMALL_C, 4, window_size=5, proj_dropout=0.0).eval()
    x = torch.randn(1, 30, SMALL_C)  # channels-last
    mask = torch.zeros(1, 30, dtype=torch.bool)
    y = x.clone()
    y[:, 15] += 3.0 * torch.randn(SMALL_C)
    with torch.no_grad():
        changed = (attn(x, mask)[0] - attn(y, mask)[0]).abs().amax(dim=2)[0] > 1e-6
    assert changed.nonzero().flatten().tolist() == [13, 14, 15, 16, 17]


# ---------------------------------------------------------------------------------------------
# block formulas written out from the released description


def _channel_ln(x, norm):
    out = F.layer_norm(x.transpose(1, 2), (x.shape[1],), norm.weight, norm.bias, 1e-5)
    return out.transpose(1, 2)


def test_channel_layer_norm_matches_nn_layer_norm():
    norm = ChannelLayerNorm(SMALL_C)
    randomise_affine(norm, 1)
    x = torch.randn(2, SMALL_C, 9)
    torch.testing.assert_close(norm(x), _channel_ln(x, norm))


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("qkv_norm", [True, False])
def test_transformer_block_matches_written_out_formula(stride, qkv_norm):
    """The released block on [B, C, T] with 1×1 convs, written out with functional ops."""
    torch.manual_seed(11)
    block = LocalTransformerBlock(
        SMALL_C, num_heads=4, window_size=5, stride=stride, qkv_norm=qkv_norm
    )
    randomise_affine(block, 2)
    block.eval()
    x = torch.randn(2, SMALL_C, 20)
    mask = torch.zeros(2, 20, dtype=torch.bool)
    mask[1, 13:] = True
    x = x * (~mask)[:, None]

    def conv1x1(linear, t):  # a Linear's weights used as the released 1×1 Conv1d on [B, C, T]
        return F.conv1d(t, linear.weight[:, :, None], linear.bias)

    with torch.no_grad():
        out, out_mask = block(x.transpose(1, 2), mask)
        a = block.attn
        h = _channel_ln(x, block.ln1)
        m = mask
        if stride == 2:
            h, m = h[..., ::2], m[..., ::2]
        qn, kn, vn = (h, h, h) if not qkv_norm else (
            _channel_ln(h, a.query_norm), _channel_ln(h, a.key_norm), _channel_ln(h, a.value_norm)
        )

        def heads(t):
            return t.view(2, 4, SMALL_C // 4, -1).transpose(2, 3)

        q = heads(conv1x1(a.query, qn)) / math.sqrt(SMALL_C // 4)
        ctx = dense_reference(q, heads(conv1x1(a.key, kn)), heads(conv1x1(a.value, vn)), m, 2)
        ctx = ctx.transpose(2, 3).reshape(2, SMALL_C, -1)
        keep = (~m)[:, None].float()
        attn_out = conv1x1(a.proj, ctx) * keep
        skip = F.max_pool1d(x, 3, 2, 1) if stride == 2 else x
        mid = skip * keep + attn_out
        hidden = F.gelu(conv1x1(block.mlp[0], _channel_ln(mid, block.ln2)))
        expected = mid + conv1x1(block.mlp[3], hidden) * keep
    assert torch.equal(out_mask, m)
    torch.testing.assert_close(out.transpose(1, 2), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("stride", [1, 2])
def test_sgp_block_matches_written_out_formula(stride):
    torch.manual_seed(12)
    block = SGPBlock(SMALL_C, window_size=1, stride=stride, mlp_dim=48)
    randomise_affine(block, 3)
    x = torch.randn(2, SMALL_C, 16)
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[0, 10:] = True
    with torch.no_grad():
        out, out_mask = block(x, mask)
        xd = F.max_pool1d(x, 3, 2, 1) if stride == 2 else x
        m = mask[..., ::2] if stride == 2 else mask
        u = _channel_ln(xd, block.ln)

        def dw(conv, t):
            pad = conv.kernel_size[0] // 2
            return F.conv1d(t, conv.weight, conv.bias, padding=pad, groups=SMALL_C)

        phi = torch.relu(dw(block.global_fc, u.mean(-1, keepdim=True)))
        local = (dw(block.convw, u) + dw(block.convkw, u)) * dw(block.psi, u)
        mid = dw(block.fc, u) * phi + local + u
        mid = xd * (~m)[:, None] + mid
        gn = F.group_norm(mid, 16, block.gn.weight, block.gn.bias, block.gn.eps)
        expected = mid + block.mlp(gn)
    assert torch.equal(out_mask, m)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_masked_group_norm_equals_group_norm_on_valid_part():
    norm = nn.GroupNorm(16, SMALL_C)
    randomise_affine(norm, 4)
    x = torch.randn(1, SMALL_C, 12)
    valid = torch.zeros(1, 1, 12)
    valid[..., :7] = 1.0
    got = masked_group_norm(x, norm, valid)[..., :7]
    torch.testing.assert_close(got, norm(x[..., :7]))
    torch.testing.assert_close(masked_group_norm(x, norm, torch.ones(1, 1, 12)), norm(x))


def test_cnn_pyramid_matches_written_out_formula():
    model = small_tfpn("cnn", seed=4)
    x = torch.randn(1, SMALL_C, 16)
    mask = torch.zeros(1, 16, dtype=torch.bool)
    with torch.no_grad():
        levels, _ = model(x, mask)
        h = x
        for conv in model.embed:
            h = conv.conv(h)
        for block in model.stem:
            h = torch.relu(h + block.conv2.conv(torch.relu(block.conv1.conv(h))))
        expected = [h]
        for conv, norm in zip(model.branch_convs, model.branch_norms):
            h = _channel_ln(conv.conv(h), norm)
            expected.append(h)
    for got, want in zip(levels, expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# initialisation


def test_transformer_init_v0_zero_biases():
    model = config_tfpn("transformer", d_model=SMALL_C, num_heads=4)
    for module in model.modules():
        if isinstance(module, (nn.Conv1d, nn.Linear)):
            assert torch.count_nonzero(module.bias) == 0
            assert torch.count_nonzero(module.weight) > 0


def test_sgp_init_depthwise_normal_and_zero_biases():
    torch.manual_seed(0)
    block = SGPBlock(512)
    for conv in (block.psi, block.fc, block.convw, block.convkw, block.global_fc):
        assert conv.groups == 512
        assert 0.85 < conv.weight.std().item() < 1.15
    for module in block.modules():
        if isinstance(module, nn.Conv1d):
            assert torch.count_nonzero(module.bias) == 0


def test_cnn_init_xavier_and_zero_biases():
    torch.manual_seed(0)
    model = ConvPyramid(d_model=64, num_levels=4)
    bound = math.sqrt(6.0 / (64 * 3 + 64 * 3))
    for conv in [*model.embed, *model.branch_convs]:
        w = conv.conv.weight
        assert w.abs().max().item() <= bound + 1e-7
        assert w.abs().max().item() > 0.9 * bound
    for module in model.modules():
        if isinstance(module, nn.Conv1d):
            assert torch.count_nonzero(module.bias) == 0


def test_construction_follows_global_seed():
    a = small_tfpn("transformer", seed=9)
    b = small_tfpn("transformer", seed=9)
    c = small_tfpn("transformer", seed=10)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


# ---------------------------------------------------------------------------------------------
# train/eval behaviour and switches


def test_transformer_dropout_active_only_in_training():
    model = small_tfpn("transformer", seed=1)
    x = torch.randn(2, SMALL_C, 16)
    mask = torch.zeros(2, 16, dtype=torch.bool)
    with torch.no_grad():
        e1, _ = model(x, mask)
        e2, _ = model(x, mask)
        model.train()
        torch.manual_seed(0)
        t1, _ = model(x, mask)
    assert all(torch.equal(a, b) for a, b in zip(e1, e2))
    assert not torch.allclose(e1[0], t1[0])


def test_qkv_norm_switch_removes_norms():
    model = config_tfpn("transformer", d_model=SMALL_C, num_heads=4, qkv_norm=False)
    names = [n for n, _ in model.named_parameters()]
    assert not any("query_norm" in n or "key_norm" in n or "value_norm" in n for n in names)
    with_norm = config_tfpn("transformer", d_model=SMALL_C, num_heads=4)
    assert any("query_norm" in n for n, _ in with_norm.named_parameters())


# ---------------------------------------------------------------------------------------------
# errors


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"name": "fancy"}, "tfpn name"),
        ({"name": "none", "num_levels": 4}, "num_levels 1"),
        ({"name": "cnn", "stem_layers": 2}, "stem_layers 1"),
        ({"name": "transformer", "window_size": 8}, "odd"),
        ({"name": "transformer", "num_heads": 5}, "divisible"),
        ({"name": "sgp", "d_model": 40}, "multiple of 16"),
        ({"name": "direct", "num_levels": 0}, "num_levels"),
    ],
)
def test_build_errors(kwargs, match):
    kwargs.setdefault("d_model", SMALL_C)
    kwargs.setdefault("num_heads", 8)
    with pytest.raises(ValueError, match=match):
        config_tfpn(**kwargs)


def test_forward_input_errors():
    model = small_tfpn("direct")
    with pytest.raises(ValueError, match=r"input x"):
        model(torch.randn(1, SMALL_C + 1, 8), torch.zeros(1, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"input mask"):
        model(torch.randn(1, SMALL_C, 8), torch.zeros(1, 8))
    with pytest.raises(ValueError, match=r"input mask"):
        model(torch.randn(1, SMALL_C, 8), torch.zeros(1, 7, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"T = 0"):
        model(torch.randn(1, SMALL_C, 0), torch.zeros(1, 0, dtype=torch.bool))
