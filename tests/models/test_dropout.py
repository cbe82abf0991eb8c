"""The threshold dropout (tp2detr/models/dropout.py) is nn.Dropout's function."""

from __future__ import annotations

import pytest
import torch

from tp2detr.models.dropout import Dropout


def test_training_zeroes_a_fraction_p_and_keeps_the_mean():
    torch.manual_seed(0)
    x = torch.ones(200_000)
    y = Dropout(0.1).train()(x)
    zeros = (y == 0).float().mean().item()
    assert zeros == pytest.approx(0.1, abs=0.003)
    values = torch.unique(y).tolist()
    assert len(values) == 2 and values[0] == 0.0 and values[1] == pytest.approx(1 / 0.9)
    assert y.mean().item() == pytest.approx(1.0, abs=0.005)


def test_eval_and_p0_are_the_identity_and_p1_zeroes():
    x = torch.randn(4, 5)
    assert Dropout(0.3).eval()(x) is x and Dropout(0.0).train()(x) is x
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))
    with pytest.raises(ValueError, match="dropout probability"):
        Dropout(1.5)


def test_the_gradient_goes_through_the_kept_elements_only():
    torch.manual_seed(1)
    x = torch.randn(64, 32, requires_grad=True)
    y = Dropout(0.25).train()(x)
    y.sum().backward()
    kept = y.detach() != 0
    torch.testing.assert_close(x.grad[kept], torch.full_like(x.grad[kept], 1 / 0.75))
    assert torch.all(x.grad[~kept] == 0)


def test_bf16_inputs_keep_their_dtype():
    torch.manual_seed(2)
    y = Dropout(0.5).train()(torch.ones(10_000, dtype=torch.bfloat16))
    assert y.dtype == torch.bfloat16
    assert (y == 0).float().mean().item() == pytest.approx(0.5, abs=0.02)
