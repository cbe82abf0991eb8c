"""Invariants of :class:`tp2detr.losses.criterion.SetCriterion`."""

from __future__ import annotations

import math

import pytest
import torch

from tp2detr.losses.criterion import weighted_total
from released_config import released_criterion, released_matcher

NUM_LAYERS, BATCH, QUERIES, LENGTH = 4, 3, 8, 16


def make_batch(seed: int, sizes: tuple[int, ...] = (2, 0, 3)):
    """Random model outputs (leaf tensors), targets and salient ground truth."""
    generator = torch.Generator().manual_seed(seed)
    batch = len(sizes)

    def leaf(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64).requires_grad_()

    boxes = torch.rand(NUM_LAYERS, batch, QUERIES, 2, generator=generator, dtype=torch.float64)
    boxes[..., 1] *= 0.5
    outputs = {
        "boxes": boxes.requires_grad_(),
        "actionness": leaf(NUM_LAYERS, batch, QUERIES),
        "salient": {"fpn": leaf(batch, LENGTH), "enc": leaf(batch, LENGTH)},
    }
    targets = []
    for size in sizes:
        centers = torch.rand(size, generator=generator, dtype=torch.float64) * 0.8 + 0.1
        widths = torch.rand(size, generator=generator, dtype=torch.float64) * 0.3 + 0.02
        targets.append({"segments": torch.stack((centers, widths), dim=-1)})
    salient_target = (torch.rand(batch, LENGTH, generator=generator) > 0.6).double()
    salient_valid = torch.ones(batch, LENGTH, dtype=torch.bool)
    salient_valid[-1, LENGTH - 5 :] = False
    salient_target[~salient_valid] = 0.0
    return outputs, targets, salient_target, salient_valid


def focal(logit: float, target: float, alpha: float = 0.25, gamma: float = 2.0) -> float:
    p = 1.0 / (1.0 + math.exp(-logit))
    positive = alpha * target * (1 - p) ** gamma * -math.log(p)
    negative = (1 - alpha) * (1 - target) * p**gamma * -math.log(1 - p)
    return positive + negative


def bce(logit: float, target: float) -> float:
    p = 1.0 / (1.0 + math.exp(-logit))
    return -(target * math.log(p) + (1 - target) * math.log(1 - p))


def iou_clamped_pred(pred: list[float], gt: list[float]) -> float:
    ps = min(max(pred[0] - pred[1] / 2, 0.0), 1.0)
    pe = min(max(pred[0] + pred[1] / 2, 0.0), 1.0)
    gs, ge = gt[0] - gt[1] / 2, gt[0] + gt[1] / 2
    inter = max(min(pe, ge) - max(ps, gs), 0.0)
    return inter / ((pe - ps) + (ge - gs) - inter)


def reference_total(
    outputs, targets, salient_target, salient_valid, weight_actionness: float = 3.0
) -> float:
    """The released objective written out with plain Python loops (docs/fidelity.md §3, §4)."""
    matcher = released_matcher()
    segments = [target["segments"] for target in targets]
    num_boxes = max(sum(len(s) for s in segments), 1)
    total = 0.0
    for layer in range(outputs["boxes"].shape[0]):
        boxes = outputs["boxes"][layer].detach()
        logits = outputs["actionness"][layer].detach()
        matches = matcher(boxes, logits, segments)
        l1 = iou_loss = act = 0.0
        for item, (pred_idx, gt_idx) in enumerate(matches):
            matched = dict(zip(pred_idx.tolist(), gt_idx.tolist()))
            for query in range(boxes.shape[1]):
                act += focal(logits[item, query].item(), 1.0 if query in matched else 0.0)
            for query, gt in matched.items():
                pred, truth = boxes[item, query].tolist(), segments[item][gt].tolist()
                l1 += abs(pred[0] - truth[0]) + abs(pred[1] - truth[1])
                iou_loss += 1.0 - iou_clamped_pred(pred, truth)
        total += (5 * l1 + 2 * iou_loss + weight_actionness * act) / num_boxes
    for head, factor in (("fpn", 0.5), ("enc", 1.5)):
        logits = outputs["salient"][head]
        if logits is None:
            continue
        head_loss = 0.0
        for item in range(logits.shape[0]):
            length = logits.shape[1]
            row = sum(
                focal(logits[item, t].item(), salient_target[item, t].item())
                for t in range(length)
                if salient_valid[item, t]
            )
            head_loss += row / length
        total += 3.0 * factor * head_loss / num_boxes
    return total


def expected_keys(num_layers: int, aux: bool, heads: tuple[str, ...] = ("fpn", "enc")) -> set[str]:
    keys = {"loss_l1", "loss_iou", "loss_actionness"}
    if aux:
        keys |= {
            f"loss_{name}_{layer}"
            for name in ("l1", "iou", "actionness")
            for layer in range(num_layers - 1)
        }
    return keys | {f"loss_salient_{head}" for head in heads}


@pytest.mark.parametrize("seed", [0, 1])
def test_total_equals_the_written_out_objective(seed: int) -> None:
    outputs, targets, salient_target, salient_valid = make_batch(seed)
    result = released_criterion()(outputs, targets, salient_target, salient_valid)
    assert result.total.item() == pytest.approx(
        reference_total(outputs, targets, salient_target, salient_valid), rel=1e-10
    )


def test_no_term_is_dropped_from_the_total() -> None:
    outputs, targets, salient_target, salient_valid = make_batch(2)
    result = released_criterion()(outputs, targets, salient_target, salient_valid)
    assert set(result.terms) == expected_keys(NUM_LAYERS, aux=True)
    assert set(result.weights) == set(result.terms)
    recomputed = sum(result.weights[key] * result.terms[key].item() for key in result.terms)
    assert result.total.item() == pytest.approx(recomputed, rel=1e-12)
    assert all(weight > 0 for weight in result.weights.values())
    assert result.as_floats()["loss"] == pytest.approx(result.total.item())


def test_weights_are_the_released_defaults() -> None:
    outputs, targets, salient_target, salient_valid = make_batch(3)
    weights = released_criterion()(outputs, targets, salient_target, salient_valid).weights
    for layer_suffix in [""] + [f"_{layer}" for layer in range(NUM_LAYERS - 1)]:
        assert weights["loss_l1" + layer_suffix] == 5.0
        assert weights["loss_iou" + layer_suffix] == 2.0
        assert weights["loss_actionness" + layer_suffix] == 3.0
    assert weights["loss_salient_fpn"] == pytest.approx(3.0 * 0.5)
    assert weights["loss_salient_enc"] == pytest.approx(3.0 * 1.5)


def test_paper_actionness_weight_changes_only_that_weight() -> None:
    outputs, targets, salient_target, salient_valid = make_batch(4)
    released = released_criterion()(outputs, targets, salient_target, salient_valid)
    paper = released_criterion(weight_actionness=2.0)(outputs, targets, salient_target, salient_valid)
    for key in released.terms:
        assert torch.equal(released.terms[key], paper.terms[key])
        expected = 2.0 if key.startswith("loss_actionness") else released.weights[key]
        assert paper.weights[key] == expected
    assert paper.total.item() == pytest.approx(
        reference_total(outputs, targets, salient_target, salient_valid, weight_actionness=2.0),
        rel=1e-10,
    )


def test_weighted_total_rejects_unweighted_terms() -> None:
    terms = {"loss_l1": torch.tensor(1.0), "loss_iou": torch.tensor(2.0)}
    with pytest.raises(ValueError, match="terms without a weight: \\['loss_iou'\\]"):
        weighted_total(terms, {"loss_l1": 5.0})
    with pytest.raises(ValueError, match="weights without a term: \\['loss_x'\\]"):
        weighted_total(terms, {"loss_l1": 5.0, "loss_iou": 2.0, "loss_x": 1.0})
    assert weighted_total(terms, {"loss_l1": 5.0, "loss_iou": 2.0}).item() == 9.0


def test_aux_loss_off_keeps_only_the_last_layer() -> None:
    outputs, targets, salient_target, salient_valid = make_batch(5)
    with_aux = released_criterion()(outputs, targets, salient_target, salient_valid)
    without = released_criterion(aux_loss=False)(outputs, targets, salient_target, salient_valid)
    assert set(without.terms) == expected_keys(NUM_LAYERS, aux=False)
    for key in without.terms:
        assert torch.equal(without.terms[key], with_aux.terms[key])
    without.total.backward()
    assert outputs["boxes"].grad[:-1].abs().sum() == 0
    assert outputs["actionness"].grad[:-1].abs().sum() == 0
    assert outputs["actionness"].grad[-1].abs().sum() > 0


def test_each_layer_terms_equal_that_layer_alone() -> None:
    """The layers are computed in one batch; each layer's terms are exactly those of a criterion
    that sees that layer as its last one (no layer's matches or sums leak into another's)."""
    outputs, targets, salient_target, salient_valid = make_batch(6)
    with_aux = released_criterion()(outputs, targets, salient_target, salient_valid)
    for layer in range(NUM_LAYERS - 1):
        alone = released_criterion(aux_loss=False)(
            {**outputs, "boxes": outputs["boxes"][: layer + 1], "actionness": outputs["actionness"][: layer + 1]},
            targets, salient_target, salient_valid,
        )
        for name in ("loss_l1", "loss_iou", "loss_actionness"):
            assert torch.equal(with_aux.terms[f"{name}_{layer}"], alone.terms[name]), (layer, name)


def perfect_outputs(targets, permutations):
    """Every layer predicts each GT exactly with a different query order and a confident score."""
    shape = (len(permutations), len(targets), QUERIES)
    boxes = torch.tensor([0.5, 0.9], dtype=torch.float64).repeat(*shape, 1)
    logits = torch.full(shape, -30.0, dtype=torch.float64)
    for layer, permutation in enumerate(permutations):
        for item, target in enumerate(targets):
            queries = permutation[: len(target["segments"])]
            boxes[layer, item, queries] = target["segments"]
            logits[layer, item, queries] = 30.0
    return {
        "boxes": boxes.requires_grad_(),
        "actionness": logits.requires_grad_(),
        "salient": {"fpn": None, "enc": None},
    }


def test_perfect_predictions_give_zero_losses_in_every_layer() -> None:
    _, targets, _, _ = make_batch(6, sizes=(3, 1, 2))
    # Different query orders per layer: one shared matching would fail on the other layers.
    permutations = [torch.tensor(p) for p in ([0, 1, 2], [7, 6, 5], [3, 0, 6], [2, 5, 1])]
    result = released_criterion()(perfect_outputs(targets, permutations), targets)
    assert set(result.terms) == expected_keys(NUM_LAYERS, aux=True, heads=())
    for key, value in result.terms.items():
        assert value.item() == pytest.approx(0.0, abs=1e-9), key
    assert result.total.item() == pytest.approx(0.0, abs=1e-8)


def test_box_terms_are_normalised_by_the_number_of_ground_truth_segments() -> None:
    _, targets, _, _ = make_batch(7, sizes=(2, 3))
    outputs = perfect_outputs(targets, [torch.tensor([0, 1, 2])])
    with torch.no_grad():
        outputs["boxes"][0, 0, 0, 0] += 0.05  # shift one matched centre by 0.05
    result = released_criterion()(outputs, targets)
    assert result.num_boxes == 5.0
    assert result.terms["loss_l1"].item() == pytest.approx(0.05 / 5.0, rel=1e-9)
    overridden = released_criterion()(outputs, targets, num_boxes=10.0)
    assert overridden.terms["loss_l1"].item() == pytest.approx(0.05 / 10.0, rel=1e-9)


def test_gradients_reach_boxes_actionness_and_both_salient_heads() -> None:
    outputs, targets, salient_target, salient_valid = make_batch(8)
    released_criterion()(outputs, targets, salient_target, salient_valid).total.backward()
    for layer in range(NUM_LAYERS):
        assert outputs["boxes"].grad[layer].abs().sum() > 0, layer
        assert outputs["actionness"].grad[layer].abs().sum() > 0, layer
        # Actionness is supervised on every query, matched or not.
        assert (outputs["actionness"].grad[layer] != 0).all(), layer
    # Items without ground truth get no box gradient.
    assert outputs["boxes"].grad[:, 1].abs().sum() == 0
    for head in ("fpn", "enc"):
        grad = outputs["salient"][head].grad
        assert grad[salient_valid].abs().min() > 0, head
        assert grad[~salient_valid].abs().sum() == 0, head


def test_salient_focal_bce_is_a_mean_over_the_padded_length() -> None:
    outputs, targets, salient_target, salient_valid = make_batch(9)
    criterion = released_criterion()
    base = criterion(outputs, targets, salient_target, salient_valid)
    # Padding the time axis to twice its length halves the term (padding counts in the mean).
    padded = {key: value for key, value in outputs.items()}
    padded["salient"] = {
        head: torch.cat((logits.detach(), torch.full_like(logits.detach(), float("nan"))), dim=1)
        for head, logits in outputs["salient"].items()
    }
    padded_target = torch.cat((salient_target, torch.zeros_like(salient_target)), dim=1)
    padded_valid = torch.cat((salient_valid, torch.zeros_like(salient_valid)), dim=1)
    result = criterion(padded, targets, padded_target, padded_valid)
    for head in ("fpn", "enc"):
        key = f"loss_salient_{head}"
        assert torch.isfinite(result.terms[key])
        assert result.terms[key].item() == pytest.approx(base.terms[key].item() / 2, rel=1e-12)


def test_salient_bce_form_is_a_sum_over_valid_positions_and_changes_only_salient_terms() -> None:
    outputs, targets, salient_target, salient_valid = make_batch(10)
    focal_result = released_criterion()(outputs, targets, salient_target, salient_valid)
    bce_result = released_criterion(salient_loss_form="bce")(outputs, targets, salient_target, salient_valid)
    assert set(focal_result.terms) == set(bce_result.terms)
    assert focal_result.weights == bce_result.weights
    num_boxes = sum(len(target["segments"]) for target in targets)
    for key in focal_result.terms:
        if key.startswith("loss_salient"):
            head = key.rsplit("_", 1)[1]
            logits = outputs["salient"][head]
            expected = sum(
                bce(logits[b, t].item(), salient_target[b, t].item())
                for b in range(logits.shape[0])
                for t in range(logits.shape[1])
                if salient_valid[b, t]
            ) / num_boxes
            assert bce_result.terms[key].item() == pytest.approx(expected, rel=1e-10)
            assert bce_result.terms[key].item() != pytest.approx(focal_result.terms[key].item())
        else:
            assert torch.equal(focal_result.terms[key], bce_result.terms[key]), key


def test_missing_salient_head_has_no_term() -> None:
    full_outputs, targets, salient_target, salient_valid = make_batch(11)
    outputs = {**full_outputs, "salient": {"fpn": None, "enc": full_outputs["salient"]["enc"]}}
    result = released_criterion()(outputs, targets, salient_target, salient_valid)
    assert "loss_salient_fpn" not in result.terms and "loss_salient_fpn" not in result.weights
    assert "loss_salient_enc" in result.terms
    full = released_criterion()(full_outputs, targets, salient_target, salient_valid)
    # Encoder-only mode: the total lacks exactly 3 · 0.5 · L_fpn.
    assert result.total.item() == pytest.approx(
        full.total.item() - 1.5 * full.terms["loss_salient_fpn"].item(), rel=1e-12
    )
    no_salient = {"boxes": outputs["boxes"], "actionness": outputs["actionness"]}
    assert not any(key.startswith("loss_salient") for key in released_criterion()(no_salient, targets).terms)


def test_empty_targets_do_not_give_nan() -> None:
    outputs, targets, salient_target, salient_valid = make_batch(12, sizes=(0, 0, 0))
    salient_target.zero_()
    result = released_criterion()(outputs, targets, salient_target, salient_valid)
    assert result.num_boxes == 1.0
    for key, value in result.terms.items():
        assert torch.isfinite(value), key
        if key.startswith(("loss_l1", "loss_iou")):
            assert value.item() == 0.0, key
    assert result.terms["loss_actionness"].item() > 0
    result.total.backward()
    assert torch.isfinite(outputs["actionness"].grad).all()
    # Every query is pushed towards background: d loss / d logit > 0.
    assert (outputs["actionness"].grad > 0).all()
    assert outputs["boxes"].grad.abs().sum() == 0
    assert all(len(pred_idx) == 0 for pred_idx, _ in result.last_layer_matches)


def test_invalid_inputs_raise() -> None:
    outputs, targets, salient_target, salient_valid = make_batch(13)
    with pytest.raises(ValueError, match="salient_loss_form"):
        released_criterion(salient_loss_form="dice")
    with pytest.raises(ValueError, match="weight_iou"):
        released_criterion(weight_iou=-1.0)
    with pytest.raises(ValueError, match="salient_target"):
        released_criterion()(outputs, targets)
    with pytest.raises(ValueError, match="targets: expected 3 dicts"):
        released_criterion()(outputs, targets[:2], salient_target, salient_valid)
    with pytest.raises(ValueError, match=r"targets\[0\]: expected a dict with key 'segments'"):
        renamed = [{"boxes": target["segments"]} for target in targets]
        released_criterion()(outputs, renamed, salient_target, salient_valid)
    with pytest.raises(ValueError, match="salient_valid"):
        released_criterion()(outputs, targets, salient_target, salient_valid.float())
    with pytest.raises(ValueError, match=r"outputs\['actionness'\]"):
        released_criterion()({**outputs, "actionness": outputs["actionness"][:, :, :-1]}, targets)
    with pytest.raises(ValueError, match="num_boxes"):
        released_criterion()(outputs, targets, salient_target, salient_valid, num_boxes=0)
