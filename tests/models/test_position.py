"""Sine positional encoding along time (docs/fidelity.md §2.3)."""

from __future__ import annotations

import math

import pytest
import torch

from tp2detr.models.position import sine_position_encoding


def _mask(valid_lengths: list[int], total: int) -> torch.Tensor:
    positions = torch.arange(total)[None, :]
    return positions >= torch.tensor(valid_lengths)[:, None]


def test_matches_the_formula_channel_by_channel() -> None:
    dim = 12
    mask = _mask([5, 8], 8)
    encoding = sine_position_encoding(mask, dim=dim, dtype=torch.float64)
    assert encoding.shape == (2, 8, dim)
    for b, valid in enumerate([5, 8]):
        for i in range(8):
            x = (min(i, valid - 1) + 0.5) / valid * 2 * math.pi
            for k in range(dim):
                divisor = 10000.0 ** (2 * (k // 2) / dim)
                expected = math.sin(x / divisor) if k % 2 == 0 else math.cos(x / divisor)
                assert encoding[b, i, k].item() == pytest.approx(expected, abs=1e-5)


def test_padded_positions_repeat_the_last_valid_position() -> None:
    mask = _mask([3], 7)
    encoding = sine_position_encoding(mask, dim=16)
    for i in range(3, 7):
        torch.testing.assert_close(encoding[0, i], encoding[0, 2])
    assert not torch.allclose(encoding[0, 1], encoding[0, 2])


def test_valid_positions_do_not_depend_on_padding() -> None:
    padded = sine_position_encoding(_mask([6, 10], 10), dim=32)
    alone = sine_position_encoding(_mask([6], 6), dim=32)
    torch.testing.assert_close(padded[0, :6], alone[0])


def test_sin_cos_pairs_share_a_frequency_and_default_dim_is_512() -> None:
    encoding = sine_position_encoding(_mask([4, 9], 9))
    assert encoding.shape == (2, 9, 512)
    squared_norm = encoding[..., 0::2] ** 2 + encoding[..., 1::2] ** 2
    torch.testing.assert_close(squared_norm, torch.ones_like(squared_norm))
    # The first pair has divisor 1: the angle itself is (i + 0.5) / V · 2π.
    expected = (torch.arange(9) + 0.5) / 9 * 2 * math.pi
    torch.testing.assert_close(encoding[1, :, 0], expected.sin(), atol=1e-5, rtol=0)
    torch.testing.assert_close(encoding[1, :, 1], expected.cos(), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("mask", "dim"),
    [
        (torch.zeros(2, 5, dtype=torch.bool), 7),
        (torch.zeros(2, 5, dtype=torch.int64), 8),
        (torch.zeros(5, dtype=torch.bool), 8),
    ],
)
def test_rejects_bad_arguments(mask: torch.Tensor, dim: int) -> None:
    with pytest.raises(ValueError):
        sine_position_encoding(mask, dim=dim)
