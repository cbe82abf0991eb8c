"""Invariants of :class:`tp2detr.losses.hungarian_matcher.HungarianMatcher`."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from released_config import released_matcher


def random_batch(
    generator: torch.Generator, num_queries: int, sizes: list[int]
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    batch_size = len(sizes)
    boxes = torch.rand(batch_size, num_queries, 2, generator=generator)
    boxes[..., 1] *= 0.6
    logits = torch.randn(batch_size, num_queries, generator=generator) * 2
    targets = []
    for size in sizes:
        centers = torch.rand(size, generator=generator) * 0.8 + 0.1
        widths = torch.rand(size, generator=generator) * 0.3 + 0.01
        targets.append(torch.stack((centers, widths), dim=-1))
    return boxes, logits, targets


def reference_cost(box: tuple[float, float], logit: float, gt: tuple[float, float]) -> float:
    """The released matcher's cost for one (query, GT) pair, written out with plain floats."""
    l1 = abs(box[0] - gt[0]) + abs(box[1] - gt[1])
    ps, pe = (min(max(box[0] - box[1] / 2, 0.0), 1.0), min(max(box[0] + box[1] / 2, 0.0), 1.0))
    gs, ge = (min(max(gt[0] - gt[1] / 2, 0.0), 1.0), min(max(gt[0] + gt[1] / 2, 0.0), 1.0))
    inter = max(min(pe, ge) - max(ps, gs), 0.0)
    union = (pe - ps) + (ge - gs) - inter
    iou = inter / union
    p = 1.0 / (1.0 + math.exp(-logit))
    focal = 0.25 * (1 - p) ** 2 * (-math.log(p + 1e-8)) - 0.75 * p**2 * (-math.log(1 - p + 1e-8))
    return 5.0 * l1 - 2.0 * iou + 2.0 * focal


def test_cost_matches_the_released_formula_including_clamping() -> None:
    # Query 0 sticks out of the window: (0.9, 0.4) → [0.7, 1.1] → clamped [0.7, 1.0].
    boxes = torch.tensor([[[0.9, 0.4], [0.3, 0.2], [0.5, 0.05]]], dtype=torch.float64)
    logits = torch.tensor([[1.5, -0.7, 0.0]], dtype=torch.float64)
    gt = torch.tensor([[0.8, 0.2], [0.25, 0.3]], dtype=torch.float64)
    (cost,) = released_matcher().cost_matrices(boxes, logits, [gt])
    assert cost.shape == (3, 2)
    for i in range(3):
        for j in range(2):
            box, truth = tuple(boxes[0, i].tolist()), tuple(gt[j].tolist())
            expected = reference_cost(box, logits[0, i].item(), truth)
            assert cost[i, j].item() == pytest.approx(expected, abs=1e-9)
    # The IoU part uses the clamped prediction: IoU([0.7, 1.0], [0.7, 0.9]) = 2/3, not 1/2.
    iou_only = released_matcher(cost_l1=0, cost_iou=1, cost_focal=0).cost_matrices(
        boxes, logits, [gt]
    )[0]
    assert iou_only[0, 0].item() == pytest.approx(-2.0 / 3.0, abs=1e-9)


def test_each_cost_weight_scales_its_own_term() -> None:
    generator = torch.Generator().manual_seed(1)
    boxes, logits, targets = random_batch(generator, 6, [3])
    def costs(l1: float, iou: float, focal: float) -> torch.Tensor:
        matcher = released_matcher(cost_l1=l1, cost_iou=iou, cost_focal=focal)
        return matcher.cost_matrices(boxes, logits, targets)[0]

    l1, iou, focal = costs(1, 0, 0), costs(0, 1, 0), costs(0, 0, 1)
    torch.testing.assert_close(l1, torch.cdist(boxes[0], targets[0], p=1))
    assert (iou <= 0).all() and (iou >= -1).all()
    # The focal cost depends only on the query: every column is the same.
    torch.testing.assert_close(focal, focal[:, :1].expand_as(focal))
    full = costs(5, 2, 2)
    torch.testing.assert_close(full, 5 * l1 + 2 * iou + 2 * focal)
    # Defaults are 5 / 2 / 2.
    torch.testing.assert_close(released_matcher().cost_matrices(boxes, logits, targets)[0], full)


@pytest.mark.parametrize("seed", range(6))
def test_batched_equals_one_by_one(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    sizes = torch.randint(0, 6, (5,), generator=generator).tolist()
    sizes[seed % 5] = 0  # always at least one item without ground truth
    boxes, logits, targets = random_batch(generator, 8, sizes)
    matcher = released_matcher()
    batched = matcher(boxes, logits, targets)
    assert len(batched) == len(sizes)
    for item, (pred_idx, gt_idx) in enumerate(batched):
        one = slice(item, item + 1)
        single_pred, single_gt = matcher(boxes[one], logits[one], [targets[item]])[0]
        assert torch.equal(pred_idx, single_pred) and torch.equal(gt_idx, single_gt)
        assert pred_idx.dtype == torch.int64 and gt_idx.dtype == torch.int64
        assert len(pred_idx) == len(gt_idx) == min(8, sizes[item])


@pytest.mark.parametrize("seed", range(8))
def test_assignment_is_optimal_against_brute_force(seed: int) -> None:
    generator = torch.Generator().manual_seed(100 + seed)
    num_queries = int(torch.randint(1, 6, (1,), generator=generator))
    num_gt = int(torch.randint(1, num_queries + 1, (1,), generator=generator))
    boxes, logits, targets = random_batch(generator, num_queries, [num_gt])
    matcher = released_matcher()
    cost = matcher.cost_matrices(boxes, logits, targets)[0]
    best = min(
        sum(cost[query, gt].item() for gt, query in enumerate(assignment))
        for assignment in itertools.permutations(range(num_queries), num_gt)
    )
    pred_idx, gt_idx = matcher(boxes, logits, targets)[0]
    found = cost[pred_idx, gt_idx].sum().item()
    assert found == pytest.approx(best, abs=1e-5)
    assert sorted(gt_idx.tolist()) == list(range(num_gt))
    assert len(set(pred_idx.tolist())) == num_gt


def test_recovers_a_permutation_of_exact_predictions() -> None:
    gt = torch.tensor([[0.2, 0.1], [0.5, 0.2], [0.8, 0.15]])
    permutation = torch.tensor([3, 0, 5])  # GT j is predicted exactly by query permutation[j]
    boxes = torch.tensor([[0.5, 0.9]]).repeat(6, 1)
    boxes[permutation] = gt
    logits = torch.zeros(1, 6)
    pred_idx, gt_idx = released_matcher()(boxes[None], logits, [gt])[0]
    assert torch.equal(permutation[gt_idx], pred_idx)
    assert torch.equal(pred_idx, pred_idx.sort().values)


def test_more_ground_truth_than_queries_matches_every_query() -> None:
    generator = torch.Generator().manual_seed(3)
    boxes, logits, targets = random_batch(generator, 2, [5])
    pred_idx, gt_idx = released_matcher()(boxes, logits, targets)[0]
    assert pred_idx.tolist() == [0, 1]
    assert len(set(gt_idx.tolist())) == 2


def test_empty_targets_give_empty_indices() -> None:
    generator = torch.Generator().manual_seed(4)
    boxes, logits, targets = random_batch(generator, 4, [0, 0])
    for pred_idx, gt_idx in released_matcher()(boxes, logits, targets):
        assert pred_idx.shape == (0,) and gt_idx.shape == (0,)
        assert pred_idx.dtype == torch.int64 and gt_idx.dtype == torch.int64
    costs = released_matcher().cost_matrices(boxes, logits, targets)
    assert [tuple(cost.shape) for cost in costs] == [(4, 0), (4, 0)]


def test_invalid_inputs_raise() -> None:
    with pytest.raises(ValueError, match="all cost weights are 0"):
        released_matcher(cost_l1=0, cost_iou=0, cost_focal=0)
    with pytest.raises(ValueError, match="cost_iou"):
        released_matcher(cost_iou=-1)
    matcher = released_matcher()
    boxes = torch.rand(2, 3, 2)
    with pytest.raises(ValueError, match="one segment tensor per batch item"):
        matcher(boxes, torch.zeros(2, 3), [torch.rand(1, 2)])
    with pytest.raises(ValueError, match=r"targets\[1\]"):
        matcher(boxes, torch.zeros(2, 3), [torch.rand(1, 2), torch.rand(3)])
    with pytest.raises(ValueError, match="pred_logits"):
        matcher(boxes, torch.zeros(2, 4), [torch.rand(1, 2), torch.rand(1, 2)])
    boxes[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        matcher(boxes, torch.zeros(2, 3), [torch.rand(1, 2), torch.rand(1, 2)])


def test_matching_all_layers_at_once_equals_matching_each_layer(monkeypatch):
    torch.manual_seed(7)
    layers, batch, queries = 5, 4, 9
    boxes = torch.rand(layers, batch, queries, 2) * 0.5 + 0.1
    logits = torch.randn(layers, batch, queries)
    targets = [torch.rand(n, 2) * 0.4 + 0.1 for n in (3, 0, 9, 1)]
    matcher = released_matcher()
    together = matcher.match_layers(boxes, logits, targets)
    assert len(together) == layers
    for layer in range(layers):
        separately = matcher(boxes[layer], logits[layer], targets)
        for (p_a, g_a), (p_b, g_b) in zip(together[layer], separately):
            assert torch.equal(p_a, p_b) and torch.equal(g_a, g_b)
    # the cost matrices themselves are bit-identical
    import tp2detr.losses.hungarian_matcher as module

    seen: list[torch.Tensor] = []
    assign = module._assign
    monkeypatch.setattr(module, "_assign", lambda cost: (seen.append(cost.clone()), assign(cost))[1])
    matcher.match_layers(boxes, logits, targets)
    batched, seen[:] = list(seen), []
    for layer in range(layers):
        matcher(boxes[layer], logits[layer], targets)
    assert len(batched) == len(seen) == layers * batch
    assert all(torch.equal(a, b) for a, b in zip(batched, seen))
    empty = matcher.match_layers(boxes, logits, [torch.zeros(0, 2)] * batch)
    assert len(empty) == layers and all(len(p) == 0 and len(g) == 0 for row in empty for p, g in row)
    with pytest.raises(ValueError, match=r"\[L, B, Q, 2\]"):
        matcher.match_layers(boxes[0], logits[0], targets)
