"""Tests of the salient heads (unified MLP and per-scale CNN designs)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tp2detr.models.salient import (
    SALIENT_FUSIONS,
    SALIENT_UPSAMPLING,
    PerScaleConvSalientHead,
    UnifiedMLPSalientHead,
    split_memory_levels,
    upsample_to,
)
from released_config import config_salient

C = 16
LEVELS = 4
T = 32


def pyramid(seed: int, batch: int = 2, length: int = T, channels: int = C) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, channels, length // 2**lvl, generator=gen) for lvl in range(LEVELS)]


def test_unified_mlp_parameter_count_at_paper_size():
    head = config_salient(d_model=512, num_levels=4)
    assert sum(p.numel() for p in head.parameters()) == 1_049_601


def test_off_has_no_parameters_and_returns_nones():
    heads = config_salient(d_model=C, num_levels=LEVELS, mode="off").train()
    assert sum(p.numel() for p in heads.parameters()) == 0
    assert heads(pyramid(0), pyramid(1), T) == {"fpn": None, "enc": None}


@pytest.mark.parametrize("design", ["mlp", "cnn"])
@pytest.mark.parametrize("fusion", SALIENT_FUSIONS)
@pytest.mark.parametrize("upsample", SALIENT_UPSAMPLING)
def test_shapes_for_every_design_fusion_upsample(design, fusion, upsample):
    torch.manual_seed(0)
    heads = config_salient(C, LEVELS, mode="both", design=design, fusion=fusion, upsample=upsample)
    out = heads.train()(pyramid(0), pyramid(1), T)
    assert out["fpn"].shape == (2, T) and out["enc"].shape == (2, T)
    assert torch.isfinite(out["fpn"]).all() and torch.isfinite(out["enc"]).all()
    assert not torch.equal(out["fpn"], out["enc"])


def test_encoder_only_mode():
    heads = config_salient(C, LEVELS, mode="encoder_only").train()
    out = heads(None, pyramid(1), T)
    assert out["fpn"] is None and out["enc"].shape == (2, T)


def test_heads_share_weights():
    torch.manual_seed(0)
    heads = config_salient(C, LEVELS).train()
    levels = pyramid(3)
    out = heads(levels, [lv.clone() for lv in levels], T)
    assert torch.equal(out["fpn"], out["enc"])


@pytest.mark.parametrize("design", ["mlp", "cnn"])
def test_nearest_and_linear_upsampling_differ(design):
    torch.manual_seed(0)
    nearest = config_salient(C, LEVELS, design=design, upsample="nearest").train()
    torch.manual_seed(0)
    linear = config_salient(C, LEVELS, design=design, upsample="linear").train()
    levels = pyramid(4)
    a = nearest(levels, levels, T)["enc"]
    b = linear(levels, levels, T)["enc"]
    assert not torch.allclose(a, b)


def test_upsample_to_semantics():
    x = torch.arange(4.0).view(1, 1, 4)
    assert upsample_to(x, 4, "nearest") is x
    assert upsample_to(x, 8, "nearest").flatten().tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    # linear, align_corners=False: output i samples source (i + 0.5) / 2 − 0.5, clamped at 0
    linear = upsample_to(x, 8, "linear").flatten().tolist()
    assert linear == [0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3]


@pytest.mark.parametrize("upsample", SALIENT_UPSAMPLING)
def test_unified_mlp_matches_algorithm_1(upsample):
    """Upsample levels 1.. to T, concatenate [level0, level1, …] per snippet, Linear-ReLU-Linear."""
    torch.manual_seed(0)
    head = UnifiedMLPSalientHead(C, LEVELS, upsample=upsample)
    levels = pyramid(5)
    feats = []
    for lvl, x in enumerate(levels):
        if lvl == 0:
            feats.append(x)
        elif upsample == "nearest":
            feats.append(x.repeat_interleave(2**lvl, dim=-1))
        else:
            feats.append(F.interpolate(x, size=T, mode="linear", align_corners=False))
    stacked = torch.cat(feats, dim=1).transpose(1, 2)  # [B, T, L·C]
    lin1, lin2 = head.mlp[0], head.mlp[2]
    expected = (torch.relu(stacked @ lin1.weight.T + lin1.bias) @ lin2.weight.T + lin2.bias)[..., 0]
    torch.testing.assert_close(head(levels, T), expected)


def test_unified_mlp_is_per_snippet():
    """An MLP head: changing snippet t of level 0 changes only logit t."""
    torch.manual_seed(0)
    head = UnifiedMLPSalientHead(C, LEVELS)
    levels = pyramid(6)
    changed = [lv.clone() for lv in levels]
    changed[0][..., 7] += 1.0
    diff = (head(levels, T) - head(changed, T)).abs()[0]
    assert diff.nonzero().flatten().tolist() == [7]


def _per_level_logits(head: PerScaleConvSalientHead, levels):
    return torch.stack(
        [upsample_to(h(x), T, head.upsample)[:, 0] for h, x in zip(head.level_heads, levels)], dim=1
    )


def test_per_scale_fusions():
    levels = pyramid(7)
    torch.manual_seed(1)
    heads = {f: PerScaleConvSalientHead(C, LEVELS, fusion=f) for f in SALIENT_FUSIONS}
    # same conv weights for every fusion, so the fusions can be compared
    for head in heads.values():
        head.level_heads.load_state_dict(heads["max"].level_heads.state_dict())
    per_level = _per_level_logits(heads["max"], levels)
    torch.testing.assert_close(heads["max"](levels, T), per_level.amax(1))
    torch.testing.assert_close(heads["mean"](levels, T), per_level.mean(1))
    torch.testing.assert_close(
        heads["mix"](levels, T), 0.5 * per_level.mean(1) + 0.5 * per_level.amax(1)
    )
    torch.testing.assert_close(heads["adaptive"](levels, T), per_level.mean(1))  # w = 1 → mean
    with torch.no_grad():
        heads["adaptive"].fusion_weights.copy_(torch.tensor([3.0, 1.0, 0.0, 0.0]))
    torch.testing.assert_close(
        heads["adaptive"](levels, T), 0.75 * per_level[:, 0] + 0.25 * per_level[:, 1]
    )


def test_per_scale_conv_head_structure():
    head = PerScaleConvSalientHead(512, 4, fusion="adaptive")
    first = head.level_heads[0]
    assert first[0].kernel_size == (3,) and first[0].padding == (1,)
    assert first[1].negative_slope == 0.2
    assert first[2].kernel_size == (1,) and first[2].out_channels == 1
    assert head.fusion_weights.shape == (4,) and torch.equal(head.fusion_weights, torch.ones(4))
    assert head.level_heads[0][0].weight.data_ptr() != head.level_heads[1][0].weight.data_ptr()


def test_adaptive_weights_get_gradients():
    torch.manual_seed(0)
    heads = config_salient(C, LEVELS, design="cnn", fusion="adaptive").train()
    out = heads(pyramid(8), pyramid(9), T)
    (out["fpn"].pow(2).sum() + out["enc"].pow(2).sum()).backward()
    grad = heads.head.fusion_weights.grad
    assert grad is not None and grad.abs().sum() > 0


def test_eval_mode_skips_work_unless_asked():
    heads = config_salient(C, LEVELS).eval()
    bad_levels = [torch.randn(1, C + 1, 4)]  # would raise if the head ran
    assert heads(bad_levels, bad_levels, T) == {"fpn": None, "enc": None}
    out = heads(pyramid(0), pyramid(1), T, compute_in_eval=True)
    assert out["fpn"].shape == (2, T)


def test_split_memory_levels_round_trip():
    levels = pyramid(10)
    memory = torch.cat([lv.transpose(1, 2) for lv in levels], dim=1)  # [B, Σ T_l, C]
    split = split_memory_levels(memory, [lv.shape[-1] for lv in levels])
    assert all(torch.equal(a, b) for a, b in zip(split, levels))
    with pytest.raises(ValueError, match="encoder memory"):
        split_memory_levels(memory, [T, T])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"mode": "tfpn_only"}, "mode"),
        ({"design": "transformer"}, "design"),
        ({"fusion": "sum"}, "fusion"),
        ({"upsample": "cubic"}, "upsample"),
    ],
)
def test_invalid_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        config_salient(C, LEVELS, **kwargs)


def test_wrong_level_inputs():
    heads = config_salient(C, LEVELS).train()
    with pytest.raises(ValueError, match="tfpn_levels: expected 4 levels"):
        heads(pyramid(0)[:3], pyramid(1), T)
    with pytest.raises(ValueError, match="encoder_levels: expected 4 levels"):
        heads(pyramid(0), pyramid(1)[:2], T)
    with pytest.raises(ValueError, match="tfpn_levels"):
        heads(None, pyramid(1), T)
    with pytest.raises(ValueError, match=r"encoder_levels"):
        heads(pyramid(0), None, T)
    with pytest.raises(ValueError, match=r"tfpn_levels\[0\]"):
        heads(pyramid(0, channels=C + 1), pyramid(1), T)
    with pytest.raises(ValueError, match=r"levels\[2\]"):
        bad = pyramid(0)
        bad[2] = torch.randn(2, C, 4, 1)
        UnifiedMLPSalientHead(C, LEVELS)(bad, T)
