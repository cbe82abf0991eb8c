"""Deformable encoder / decoder / transformer (docs/fidelity.md §2.3, §2.4, §2.6, §9, §11.1)."""

from __future__ import annotations

import math

import pytest
import torch

from tp2detr.models.decoder import DeformableDecoderLayer, scale_to_padded
from tp2detr.models.deform_attn import MSDeformAttn1D
from tp2detr.models.encoder import DeformableEncoderLayer, encoder_reference_points
from tp2detr.models.heads import apply_box_delta, inverse_sigmoid
from tp2detr.models.transformer import valid_ratios_from_masks
from released_config import config_heads, config_transformer

SMALL = dict(
    d_model=32, n_heads=4, n_levels=3, n_encoder_layers=2, n_decoder_layers=3,
    dim_feedforward=48, encoder_points=2, decoder_points=3, num_queries=6,
)
#: SMALL in config_transformer's arguments (num_levels for n_levels).
SMALL_BUILD = {("num_levels" if k == "n_levels" else k): v for k, v in SMALL.items()}


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _levels(lengths, valid, d_model=32, seed=0):
    """Random levels ``[B, C, T_l]`` and masks ``[B, T_l]``; valid[b][l] snippets are valid."""
    generator = torch.Generator().manual_seed(seed)
    srcs, masks = [], []
    for level, length in enumerate(lengths):
        srcs.append(torch.randn(len(valid), d_model, length, generator=generator))
        valid_l = torch.tensor([v[level] for v in valid])
        masks.append(torch.arange(length)[None, :] >= valid_l[:, None])
    return srcs, masks


def _small_model(box_refine=True, seed=0):
    torch.manual_seed(seed)
    transformer = config_transformer(**SMALL_BUILD, box_refine=box_refine).eval()
    heads = config_heads(d_model=32, n_decoder_layers=3).eval()
    with torch.no_grad():  # move the zero-initialised box deltas away from zero
        for mlp in heads.bbox:
            mlp.layers[-1].weight.normal_(std=0.3)
    return transformer, heads


# ------------------------------------------------------------------------------------ sizes


def test_parameter_counts_of_the_paper_config() -> None:
    assert _count(DeformableEncoderLayer()) == 2_758_400
    assert _count(DeformableDecoderLayer()) == 3_810_048
    transformer = config_transformer()
    assert transformer.level_embed.numel() + _count(transformer.reference_points) == 2_561
    assert transformer.query_embed.weight.numel() == 40 * 1024 == 40_960
    assert _count(transformer.encoder) == 3 * 2_758_400
    assert _count(transformer.decoder) == 5 * 3_810_048
    assert _count(transformer) == 3 * 2_758_400 + 5 * 3_810_048 + 2_561 + 40_960


def test_init() -> None:
    torch.manual_seed(0)
    transformer = config_transformer(**SMALL_BUILD)
    attentions = [m for m in transformer.modules() if isinstance(m, MSDeformAttn1D)]
    assert len(attentions) == 2 + 3
    for attention in attentions:  # re-initialised after the xavier pass
        assert torch.count_nonzero(attention.sampling_offsets.weight) == 0
        assert torch.count_nonzero(attention.attention_weights.weight) == 0
    layer = transformer.decoder.layers[0]
    bound = math.sqrt(6.0 / (32 + 48))
    assert layer.linear1.weight.abs().max() <= bound
    assert layer.linear1.weight.abs().max() > 0.9 * bound  # xavier, not PyTorch's kaiming default
    assert torch.count_nonzero(transformer.reference_points.bias) == 0
    assert transformer.reference_points.weight.abs().max() <= math.sqrt(6.0 / 33)
    # N(0, 1) embeddings, untouched by the xavier pass (xavier would bound them by ~0.3).
    assert transformer.query_embed.weight.abs().max() > 1.5
    assert transformer.level_embed.abs().max() > 1.0


# ------------------------------------------------------------------------------------ helpers


def test_valid_ratios_and_encoder_reference_points() -> None:
    masks = [torch.arange(8)[None] >= torch.tensor([[8], [6]]), torch.arange(4)[None] >= torch.tensor([[4], [3]])]
    ratios = valid_ratios_from_masks(masks)
    torch.testing.assert_close(ratios, torch.tensor([[[1.0], [1.0]], [[0.75], [0.75]]]))
    ref = encoder_reference_points([8, 4], ratios)
    assert ref.shape == (2, 12, 2, 1)
    # Full item: the token centers themselves, the same on every level.
    centers = torch.cat([(torch.arange(8) + 0.5) / 8, (torch.arange(4) + 0.5) / 4])
    torch.testing.assert_close(ref[0, :, 0, 0], centers)
    torch.testing.assert_close(ref[0, :, 1, 0], centers)
    # Padded item: token j of level l sits at (j+0.5)/V_l of the valid part, rescaled to padded coords.
    expected = torch.cat([(torch.arange(8) + 0.5) / 6, (torch.arange(4) + 0.5) / 3]) * 0.75
    torch.testing.assert_close(ref[1, :, 0, 0], expected)


def test_scale_to_padded_scales_center_and_width() -> None:
    reference = torch.tensor([[[0.5, 0.2]]])
    ratios = torch.tensor([[[1.0], [0.5]]])
    torch.testing.assert_close(scale_to_padded(reference, ratios), torch.tensor([[[[0.5, 0.2], [0.25, 0.1]]]]))
    torch.testing.assert_close(scale_to_padded(reference[..., :1], ratios), torch.tensor([[[[0.5], [0.25]]]]))


# ------------------------------------------------------------------------------------ layers


def _flat_inputs(seed=0, n_batch=2, n_queries=5):
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([8, 4, 2])
    starts = torch.tensor([0, 8, 12])
    x = torch.randn(n_batch, 14, 32, generator=generator)
    pos = torch.randn(n_batch, 14, 32, generator=generator)
    queries = torch.randn(n_batch, n_queries, 32, generator=generator)
    query_pos = torch.randn(n_batch, n_queries, 32, generator=generator)
    mask = torch.zeros(n_batch, 14, dtype=torch.bool)
    mask[1, 6:8] = True
    return lengths, starts, x, pos, queries, query_pos, mask


def test_encoder_layer_is_post_norm_with_positions_on_the_query_only() -> None:
    torch.manual_seed(0)
    layer = DeformableEncoderLayer(d_model=32, dim_feedforward=48, n_levels=3, n_heads=4, n_points=2).eval()
    with torch.no_grad():
        layer.self_attn.sampling_offsets.weight.normal_(std=0.3)
        layer.self_attn.attention_weights.weight.normal_(std=0.3)
    lengths, starts, x, pos, _, _, mask = _flat_inputs()
    ref = torch.rand(2, 14, 3, 1)
    attended = layer.self_attn(x + pos, ref, x, lengths, starts, mask)
    hidden = layer.norm1(x + attended)
    expected = layer.norm2(hidden + layer.linear2(torch.relu(layer.linear1(hidden))))
    torch.testing.assert_close(layer(x, pos, ref, lengths, starts, mask), expected)


def test_decoder_layer_order_and_attention_inputs() -> None:
    torch.manual_seed(0)
    layer = DeformableDecoderLayer(d_model=32, dim_feedforward=48, n_levels=3, n_heads=4, n_points=3).eval()
    with torch.no_grad():
        layer.cross_attn.sampling_offsets.weight.normal_(std=0.3)
    lengths, starts, memory, _, tgt, query_pos, mask = _flat_inputs()
    ref = torch.rand(2, 5, 3, 2)
    q = tgt + query_pos
    attended = layer.self_attn(q, q, tgt)[0]  # values are the content queries, without positions
    tgt1 = layer.norm1(tgt + attended)
    tgt2 = layer.norm2(tgt1 + layer.cross_attn(tgt1 + query_pos, ref, memory, lengths, starts, mask))
    expected = layer.norm3(tgt2 + layer.linear2(torch.relu(layer.linear1(tgt2))))
    torch.testing.assert_close(layer(tgt, query_pos, ref, memory, lengths, starts, mask), expected)


def test_encoder_positions_are_sine_plus_level_embedding() -> None:
    from tp2detr.models.position import sine_position_encoding

    transformer, heads = _small_model()
    srcs, masks = _levels([16, 8, 4], [[16, 8, 4], [11, 6, 3]])
    captured = {}
    hook = transformer.encoder.layers[0].register_forward_pre_hook(
        lambda module, args: captured.update(src=args[0], pos=args[1])
    )
    try:
        transformer(srcs, masks, heads.box_delta)
    finally:
        hook.remove()
    start = 0
    for level, (src, mask) in enumerate(zip(srcs, masks)):
        stop = start + src.shape[2]
        expected = sine_position_encoding(mask, 32) + transformer.level_embed[level]
        torch.testing.assert_close(captured["pos"][:, start:stop], expected)
        torch.testing.assert_close(captured["src"][:, start:stop], src.transpose(1, 2))
        start = stop


# ------------------------------------------------------------------------------------ forward


def test_output_shapes_with_refinement() -> None:
    transformer, heads = _small_model()
    srcs, masks = _levels([16, 8, 4], [[16, 8, 4], [11, 6, 3]])
    out = transformer(srcs, masks, heads.box_delta)
    assert out.memory.shape == (2, 28, 32)
    assert [tuple(m.shape) for m in out.memory_levels] == [(2, 32, 16), (2, 32, 8), (2, 32, 4)]
    torch.testing.assert_close(torch.cat([m.transpose(1, 2) for m in out.memory_levels], 1), out.memory)
    assert out.memory_padding_mask.shape == (2, 28)
    assert out.level_lengths.tolist() == [16, 8, 4]
    assert out.valid_ratios.shape == (2, 3, 1)
    assert out.hs.shape == (3, 2, 6, 32)
    assert [tuple(r.shape) for r in out.references] == [(2, 6, 1), (2, 6, 2), (2, 6, 2)]
    assert out.box_deltas.shape == (3, 2, 6, 2)
    predictions = heads(out.hs, out.references, out.box_deltas)
    assert predictions.boxes.shape == (3, 2, 6, 2)
    assert predictions.actionness_logits.shape == (3, 2, 6)
    assert bool(((predictions.boxes > 0) & (predictions.boxes < 1)).all())


def test_refinement_chain_and_every_intermediate_output() -> None:
    """Re-run the decoder by hand: each layer's output is returned and each reference is the
    detached box of the layer before (2-D from layer 1 on)."""
    transformer, heads = _small_model()
    srcs, masks = _levels([16, 8, 4], [[16, 8, 4], [11, 6, 3]])
    out = transformer(srcs, masks, heads.box_delta)
    query_pos, tgt = transformer.query_embed.weight.split(32, dim=1)
    query_pos, tgt = query_pos.expand(2, -1, -1), tgt.expand(2, -1, -1)
    reference = transformer.reference_points(query_pos).sigmoid()
    starts = torch.tensor([0, 16, 24])
    for index, layer in enumerate(transformer.decoder.layers):
        torch.testing.assert_close(out.references[index], reference)
        assert not out.references[index].requires_grad or index == 0
        tgt = layer(tgt, query_pos, scale_to_padded(reference, out.valid_ratios), out.memory,
                    out.level_lengths, starts, out.memory_padding_mask)
        torch.testing.assert_close(out.hs[index], tgt)
        delta = heads.box_delta(index, tgt)
        torch.testing.assert_close(out.box_deltas[index], delta)
        reference = apply_box_delta(delta, reference)
    predictions = heads(out.hs, out.references, out.box_deltas)
    torch.testing.assert_close(predictions.boxes, heads(out.hs, out.references).boxes)
    torch.testing.assert_close(predictions.boxes[-1], reference)


def test_without_refinement_references_stay_the_initial_centers() -> None:
    transformer, heads = _small_model(box_refine=False)
    srcs, masks = _levels([16, 8, 4], [[16, 8, 4], [11, 6, 3]])
    out = transformer(srcs, masks, heads.box_delta)
    assert out.box_deltas is None
    initial = out.references[0]
    assert initial.shape == (2, 6, 1)
    for reference in out.references:
        assert reference is initial
    boxes = heads(out.hs, out.references).boxes
    for layer in range(3):
        delta = heads.bbox[layer](out.hs[layer])
        expected = torch.stack([delta[..., 0] + inverse_sigmoid(initial[..., 0]), delta[..., 1]], -1).sigmoid()
        torch.testing.assert_close(boxes[layer], expected)
    # Without refinement, the decoder's output does not depend on the box heads at all.
    torch.testing.assert_close(transformer(srcs, masks).hs, out.hs)


def test_refinement_changes_the_later_layers_only() -> None:
    torch.manual_seed(0)
    with_refine, heads = _small_model(box_refine=True)
    without = config_transformer(**SMALL_BUILD, box_refine=False).eval()
    without.load_state_dict(with_refine.state_dict())
    srcs, masks = _levels([16, 8, 4], [[16, 8, 4], [11, 6, 3]])
    a = with_refine(srcs, masks, heads.box_delta)
    b = without(srcs, masks)
    torch.testing.assert_close(a.hs[0], b.hs[0])
    assert not torch.allclose(a.hs[1], b.hs[1])


def test_padding_does_not_change_the_valid_outputs() -> None:
    transformer, heads = _small_model()
    valid = [11, 6, 3]
    alone_srcs, alone_masks = _levels(valid, [valid], seed=1)
    padded_srcs, padded_masks = _levels([16, 8, 4], [valid, [16, 8, 4]], seed=2)
    for level, length in enumerate(valid):
        padded_srcs[level][0, :, :length] = alone_srcs[level][0]
        padded_srcs[level][0, :, length:] = 1e3  # garbage in the padding
    with torch.no_grad():
        alone = transformer(alone_srcs, alone_masks, heads.box_delta)
        padded = transformer(padded_srcs, padded_masks, heads.box_delta)
        alone_pred = heads(alone.hs, alone.references, alone.box_deltas)
        padded_pred = heads(padded.hs, padded.references, padded.box_deltas)
    tol = dict(rtol=1e-4, atol=1e-5)
    for level, length in enumerate(valid):
        torch.testing.assert_close(padded.memory_levels[level][0, :, :length], alone.memory_levels[level][0], **tol)
    torch.testing.assert_close(padded.hs[:, 0], alone.hs[:, 0], **tol)
    for padded_ref, alone_ref in zip(padded.references, alone.references):
        torch.testing.assert_close(padded_ref[0], alone_ref[0], **tol)
    torch.testing.assert_close(padded_pred.boxes[:, 0], alone_pred.boxes[:, 0], **tol)
    torch.testing.assert_close(padded_pred.actionness_logits[:, 0], alone_pred.actionness_logits[:, 0], **tol)


def test_batch_items_are_independent() -> None:
    transformer, heads = _small_model()
    srcs, masks = _levels([16, 8, 4], [[16, 8, 4], [11, 6, 3], [16, 8, 4]])
    with torch.no_grad():
        batched = transformer(srcs, masks, heads.box_delta)
        single = transformer([s[2:] for s in srcs], [m[2:] for m in masks], heads.box_delta)
    torch.testing.assert_close(batched.hs[:, 2], single.hs[:, 0], rtol=1e-4, atol=1e-5)


def test_input_errors() -> None:
    transformer, heads = _small_model()
    srcs, masks = _levels([16, 8, 4], [[16, 8, 4], [11, 6, 3]])
    with pytest.raises(ValueError, match="box_delta_fn"):
        transformer(srcs, masks)
    with pytest.raises(ValueError, match="levels"):
        transformer(srcs[:2], masks[:2], heads.box_delta)
    with pytest.raises(ValueError, match=r"srcs\[1\]"):
        transformer([srcs[0], srcs[1][:, :16], srcs[2]], masks, heads.box_delta)
    with pytest.raises(ValueError, match=r"masks\[2\]"):
        transformer(srcs, [masks[0], masks[1], masks[2].long()], heads.box_delta)
    empty = [m.clone() for m in masks]
    empty[2][1] = True
    with pytest.raises(ValueError, match="at least one valid"):
        transformer(srcs, empty, heads.box_delta)


def test_runs_under_deterministic_algorithms_and_repeats_exactly() -> None:
    transformer, heads = _small_model()
    transformer.train()
    srcs, masks = _levels([16, 8, 4], [[16, 8, 4], [11, 6, 3]])
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        grads = []
        for _ in range(2):
            torch.manual_seed(1)  # same dropout masks
            transformer.zero_grad()
            out = transformer(srcs, masks, heads.box_delta)
            heads(out.hs, out.references, out.box_deltas).boxes.sum().backward()
            grads.append(torch.cat([p.grad.flatten() for p in transformer.parameters() if p.grad is not None]))
    finally:
        torch.use_deterministic_algorithms(previous)
    assert torch.equal(grads[0], grads[1])


def test_mask_check_reads_no_device_tensor() -> None:
    """The per-level mask check would cost a host synchronisation per level on a GPU, so it runs
    only on CPU tensors: all-padding masks elsewhere (here on the meta device, which holds no
    values to read) pass it, the same masks on CPU fail it."""
    transformer, _ = _small_model()
    srcs, masks = _levels([16, 8, 4], [[16, 8, 4], [11, 6, 3]])
    all_padding = [torch.ones_like(m) for m in masks]
    transformer._check_inputs([s.to("meta") for s in srcs], [m.to("meta") for m in all_padding])
    with pytest.raises(ValueError, match="at least one valid"):
        transformer._check_inputs(srcs, all_padding)
