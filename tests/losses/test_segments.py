"""Invariants of the 1-D segment geometry in :mod:`tp2detr.losses.segment_geometry`."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tp2detr.losses.segment_geometry import (
    clamp_unit,
    cw_to_se,
    pairwise_segment_iou,
    se_to_cw,
    segment_iou,
    segment_length,
)

finite = st.floats(min_value=-10.0, max_value=10.0, allow_nan=False, allow_infinity=False)
positive = st.floats(min_value=0.0, max_value=10.0, allow_nan=False, allow_infinity=False)


def se(start: float, end: float) -> torch.Tensor:
    return torch.tensor([start, end], dtype=torch.float64)


def test_cw_to_se_known_values() -> None:
    cw = torch.tensor([[0.5, 0.2], [0.0, 1.0]])
    expected = torch.tensor([[0.4, 0.6], [-0.5, 0.5]])
    torch.testing.assert_close(cw_to_se(cw), expected)
    torch.testing.assert_close(se_to_cw(expected), cw)


@settings(max_examples=60, deadline=None)
@given(center=finite, width=positive)
def test_round_trip_cw_se_cw(center: float, width: float) -> None:
    cw = torch.tensor([center, width], dtype=torch.float64)
    torch.testing.assert_close(se_to_cw(cw_to_se(cw)), cw, atol=1e-12, rtol=0)


@settings(max_examples=60, deadline=None)
@given(start=finite, length=positive)
def test_round_trip_se_cw_se(start: float, length: float) -> None:
    segment = se(start, start + length)
    torch.testing.assert_close(cw_to_se(se_to_cw(segment)), segment, atol=1e-12, rtol=0)


def test_conversions_keep_leading_shape() -> None:
    cw = torch.rand(3, 4, 5, 2)
    assert cw_to_se(cw).shape == (3, 4, 5, 2)
    assert se_to_cw(cw).shape == (3, 4, 5, 2)


def test_clamp_unit() -> None:
    segments = torch.tensor([[-0.3, 0.4], [0.7, 1.2], [-1.0, 2.0], [0.2, 0.3]])
    expected = torch.tensor([[0.0, 0.4], [0.7, 1.0], [0.0, 1.0], [0.2, 0.3]])
    torch.testing.assert_close(clamp_unit(segments), expected)


def test_length_of_inverted_segment_is_zero() -> None:
    torch.testing.assert_close(
        segment_length(torch.tensor([[0.2, 0.5], [0.5, 0.2]])), torch.tensor([0.3, 0.0])
    )


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ((0.0, 2.0), (1.0, 3.0), 1.0 / 3.0),  # partial overlap
        ((0.0, 1.0), (0.0, 1.0), 1.0),  # identical
        ((0.0, 1.0), (2.0, 3.0), 0.0),  # disjoint: plain IoU is 0, not negative like GIoU
        ((0.0, 1.0), (1.0, 2.0), 0.0),  # touching
        ((0.0, 4.0), (1.0, 2.0), 0.25),  # containment: short / long
        ((0.5, 0.5), (0.0, 1.0), 0.0),  # zero-length inside a segment
        ((0.5, 0.5), (0.5, 0.5), 0.0),  # two identical zero-length segments: empty union
        ((0.8, 0.2), (0.0, 1.0), 0.0),  # inverted segment counts as empty
    ],
)
def test_segment_iou_known_values(a: tuple, b: tuple, expected: float) -> None:
    iou = segment_iou(se(*a), se(*b))
    assert iou.item() == pytest.approx(expected, abs=1e-12)
    assert segment_iou(se(*b), se(*a)).item() == pytest.approx(expected, abs=1e-12)


def test_segment_iou_is_finite_with_finite_gradient_for_zero_length() -> None:
    a = torch.tensor([[0.5, 0.5], [0.3, 0.3], [0.1, 0.4]], requires_grad=True)
    b = torch.tensor([[0.5, 0.5], [0.0, 1.0], [0.2, 0.6]], requires_grad=True)
    iou = segment_iou(a, b)
    assert torch.isfinite(iou).all()
    iou.sum().backward()
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()
    # An empty union contributes no gradient at all.
    assert a.grad[0].abs().sum() == 0 and b.grad[0].abs().sum() == 0
    # A regular overlap does get gradient.
    assert a.grad[2].abs().sum() > 0


@settings(max_examples=60, deadline=None)
@given(s1=finite, l1=positive, s2=finite, l2=positive)
def test_segment_iou_is_symmetric_and_bounded(s1: float, l1: float, s2: float, l2: float) -> None:
    a, b = se(s1, s1 + l1), se(s2, s2 + l2)
    iou_ab = segment_iou(a, b).item()
    assert 0.0 <= iou_ab <= 1.0 + 1e-12
    assert iou_ab == pytest.approx(segment_iou(b, a).item(), abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(start=finite, length=st.floats(min_value=1e-3, max_value=10.0))
def test_segment_iou_with_itself_is_one(start: float, length: float) -> None:
    a = se(start, start + length)
    assert segment_iou(a, a).item() == pytest.approx(1.0, abs=1e-9)


def test_pairwise_iou_equals_elementwise() -> None:
    generator = torch.Generator().manual_seed(0)
    a = cw_to_se(torch.rand(7, 2, generator=generator, dtype=torch.float64))
    b = cw_to_se(torch.rand(5, 2, generator=generator, dtype=torch.float64))
    pairwise = pairwise_segment_iou(a, b)
    assert pairwise.shape == (7, 5)
    for i in range(7):
        for j in range(5):
            assert pairwise[i, j].item() == segment_iou(a[i], b[j]).item()


def test_pairwise_iou_with_empty_sets() -> None:
    assert pairwise_segment_iou(torch.zeros(0, 2), torch.rand(3, 2)).shape == (0, 3)
    assert pairwise_segment_iou(torch.rand(4, 2), torch.zeros(0, 2)).shape == (4, 0)


def test_bad_shapes_raise() -> None:
    with pytest.raises(ValueError, match=r"\[\.\.\., 2\]"):
        cw_to_se(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="pairwise_segment_iou"):
        pairwise_segment_iou(torch.zeros(2, 3, 2), torch.zeros(2, 2))
