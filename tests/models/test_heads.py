"""Prediction heads and the box parameterisation (docs/fidelity.md §2.6, §2.7, §9, §11.1)."""

from __future__ import annotations

import math

import pytest
import torch

from tp2detr.models.heads import BoxMLP, apply_box_delta, inverse_sigmoid
from released_config import config_heads, config_transformer


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts() -> None:
    heads = config_heads(d_model=512, n_decoder_layers=5)
    assert _count(BoxMLP(512)) == 526_338
    assert _count(heads.bbox) == 2_631_690
    assert _count(heads.actionness) == 2_565
    shared = config_heads(d_model=512, n_decoder_layers=5, separate=False)
    assert _count(shared) == 526_338 + 513


def test_box_mlp_structure() -> None:
    mlp = BoxMLP(16)
    assert [(layer.in_features, layer.out_features) for layer in mlp.layers] == [(16, 16), (16, 16), (16, 2)]
    x = torch.randn(4, 16)
    expected = mlp.layers[2](torch.relu(mlp.layers[1](torch.relu(mlp.layers[0](x)))))
    torch.testing.assert_close(mlp(x), expected)


def test_init() -> None:
    heads = config_heads(d_model=16, n_decoder_layers=4)
    for layer, mlp in enumerate(heads.bbox):
        assert torch.count_nonzero(mlp.layers[-1].weight) == 0
        expected_bias = torch.tensor([0.0, -2.0 if layer == 0 else 0.0])
        torch.testing.assert_close(mlp.layers[-1].bias.detach(), expected_bias)
        assert torch.count_nonzero(mlp.layers[0].weight) > 0  # hidden layers keep PyTorch's init
    for action in heads.actionness:
        torch.testing.assert_close(action.bias.detach(), torch.tensor([-math.log(99.0)]))
    shared = config_heads(d_model=16, n_decoder_layers=4, separate=False)
    assert len(shared.bbox) == len(shared.actionness) == 1
    torch.testing.assert_close(shared.bbox[0].layers[-1].bias.detach(), torch.tensor([0.0, -2.0]))


def test_released_init_copies_one_head_to_every_layer_and_independent_does_not() -> None:
    torch.manual_seed(0)
    heads = config_heads(d_model=16, n_decoder_layers=4)  # init="shared", as released
    for layer in range(1, 4):
        for a, b in zip(heads.bbox[0].layers, heads.bbox[layer].layers):
            torch.testing.assert_close(a.weight, b.weight)
            assert a.weight is not b.weight  # copies, trained apart
        torch.testing.assert_close(heads.actionness[0].weight, heads.actionness[layer].weight)
        torch.testing.assert_close(heads.bbox[layer].layers[-1].bias.detach(), torch.tensor([0.0, 0.0]))
    torch.testing.assert_close(heads.bbox[0].layers[-1].bias.detach(), torch.tensor([0.0, -2.0]))
    independent = config_heads(d_model=16, n_decoder_layers=4, init="independent")
    assert not torch.equal(independent.bbox[0].layers[0].weight, independent.bbox[1].layers[0].weight)
    assert not torch.equal(independent.actionness[0].weight, independent.actionness[1].weight)
    with pytest.raises(ValueError, match="init"):
        config_heads(d_model=16, n_decoder_layers=2, init="random")


def test_inverse_sigmoid() -> None:
    x = torch.tensor([0.001, 0.2, 0.5, 0.9])
    torch.testing.assert_close(inverse_sigmoid(x).sigmoid(), x)
    clamped = inverse_sigmoid(torch.tensor([-0.5, 0.0, 1.0, 2.0]))
    limit = math.log(1e-5 / 1.0)
    torch.testing.assert_close(clamped, torch.tensor([limit, limit, -limit, -limit]))


def test_apply_box_delta_rules() -> None:
    delta = torch.tensor([[0.3, -1.0]])
    center = torch.tensor([[0.6]])
    box = apply_box_delta(delta, center)  # 1 coordinate: only the center gets the logit
    expected = torch.tensor([[torch.logit(torch.tensor(0.6)) + 0.3, -1.0]]).sigmoid()
    torch.testing.assert_close(box, expected)
    ref = torch.tensor([[0.6, 0.1]])
    box = apply_box_delta(delta, ref)  # 2 coordinates: both
    torch.testing.assert_close(box, (torch.logit(ref) + delta).sigmoid())
    torch.testing.assert_close(apply_box_delta(torch.zeros(1, 2), ref), ref)
    with pytest.raises(ValueError, match="reference"):
        apply_box_delta(delta, torch.rand(1, 3))
    with pytest.raises(ValueError, match="delta"):
        apply_box_delta(torch.rand(1, 3), ref)


def test_boxes_at_init_and_per_layer_heads() -> None:
    """At init the deltas are zero except layer 0's width bias: layer 0 predicts (ref_c, σ(−2)),
    later layers reproduce their 2-D reference."""
    heads = config_heads(d_model=16, n_decoder_layers=3)
    hs = torch.randn(3, 2, 4, 16)
    references = [torch.rand(2, 4, 1), torch.rand(2, 4, 2), torch.rand(2, 4, 2)]
    out = heads(hs, references)
    assert out.boxes.shape == (3, 2, 4, 2) and out.actionness_logits.shape == (3, 2, 4)
    torch.testing.assert_close(out.boxes[0, ..., 0], references[0][..., 0])
    torch.testing.assert_close(out.boxes[0, ..., 1], torch.full((2, 4), torch.sigmoid(torch.tensor(-2.0)).item()))
    torch.testing.assert_close(out.boxes[1], references[1])
    for layer in range(3):
        expected = heads.actionness[layer](hs[layer]).squeeze(-1)
        torch.testing.assert_close(out.actionness_logits[layer], expected)
    with pytest.raises(ValueError, match="decoder layers"):
        heads(hs[:2], references[:2])
    with pytest.raises(ValueError, match="box_deltas"):
        heads(hs, references, box_deltas=torch.zeros(3, 2, 4, 3))
    with pytest.raises(ValueError, match="layer"):
        heads.box_delta(3, hs[0])


def test_shared_heads_use_one_module_for_every_layer() -> None:
    heads = config_heads(d_model=16, n_decoder_layers=3, separate=False)
    with torch.no_grad():
        heads.bbox[0].layers[-1].weight.normal_()
    hidden = torch.randn(2, 4, 16)
    for layer in range(3):
        torch.testing.assert_close(heads.box_delta(layer, hidden), heads.bbox[0](hidden))
        torch.testing.assert_close(heads.actionness_logit(layer, hidden), heads.actionness[0](hidden).squeeze(-1))


@pytest.mark.parametrize(("box_refine", "separate"), [(True, True), (False, True), (True, False)])
def test_no_dead_parameters(box_refine: bool, separate: bool) -> None:
    """A loss on the boxes and actionness logits reaches every parameter of the transformer and
    the heads: at init every parameter gets a gradient tensor, and once the zero-initialised
    weights (last box layers, sampling offsets, attention logits) are moved off zero, every
    gradient is non-zero."""
    torch.manual_seed(0)
    transformer = config_transformer(
        d_model=32, n_heads=4, num_levels=2, n_encoder_layers=1, n_decoder_layers=2,
        dim_feedforward=48, encoder_points=2, decoder_points=2, num_queries=5, box_refine=box_refine,
    )
    heads = config_heads(d_model=32, n_decoder_layers=2, separate=separate)
    named = list(transformer.named_parameters()) + [(f"heads.{n}", p) for n, p in heads.named_parameters()]
    srcs = [torch.randn(2, 32, 8), torch.randn(2, 32, 4)]
    masks = [torch.arange(8)[None] >= torch.tensor([[8], [5]]), torch.arange(4)[None] >= torch.tensor([[4], [3]])]

    def backward() -> None:
        for _, p in named:
            p.grad = None
        out = transformer(srcs, masks, heads.box_delta)
        predictions = heads(out.hs, out.references, out.box_deltas)
        target = torch.rand_like(predictions.boxes)
        loss = (predictions.boxes - target).abs().sum() + predictions.actionness_logits.sigmoid().sum()
        loss.backward()

    backward()
    assert [name for name, p in named if p.grad is None] == []
    with torch.no_grad():
        for mlp in heads.bbox:
            mlp.layers[-1].weight.normal_(std=0.1)
        for name, p in transformer.named_parameters():
            if name.endswith(("sampling_offsets.weight", "attention_weights.weight")):
                p.normal_(std=0.1)
    backward()
    assert [name for name, p in named if p.grad is None or torch.count_nonzero(p.grad) == 0] == []
