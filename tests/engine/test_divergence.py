"""The divergence rule on its own (tp2detr/engine/divergence.py); through train.py in tests/test_user_faults.py."""

from __future__ import annotations

import math

import pytest

from tp2detr.engine.divergence import DivergenceGuard


def test_the_first_step_sets_the_reference_and_a_loss_above_factor_times_it_diverges(tmp_path):
    guard = DivergenceGuard(10)
    guard.check(12.0, dict)
    assert guard.reference == 12.0
    guard.check(119.0, dict)  # below 10 x 12
    with pytest.raises(FloatingPointError, match="the loss 121 exceeds 10x the run's first-step loss 12"):
        guard.check(121.0, dict)
    with pytest.raises(FloatingPointError, match=r"the loss is nan \(terms: \{'l1': 1.0\}\)"):
        guard.check(math.nan, lambda: {"l1": 1.0})


def test_no_factor_keeps_only_the_finiteness_test_and_a_resumed_reference_is_used():
    unbounded = DivergenceGuard(None)
    unbounded.check(1.0, dict)
    unbounded.check(1e30, dict)
    with pytest.raises(FloatingPointError):
        unbounded.check(math.inf, dict)
    resumed = DivergenceGuard(2, reference=5.0)
    with pytest.raises(FloatingPointError, match="first-step loss 5"):
        resumed.check(11.0, dict)


def test_the_message_says_what_a_user_needs(tmp_path):
    guard = DivergenceGuard(10)
    checkpoint = tmp_path / "last.pt"
    groups = [{"name": "base", "lr": 1e-4}, {"name": "tfpn", "lr": 2e-5}]
    message = str(guard.diverged(0, 3, FloatingPointError("the loss is nan"), groups, checkpoint, 0))
    assert message.startswith("epoch 0, step 3: the loss is nan; learning rates: base 0.0001, tfpn 2e-05")
    assert "no finite loss before it" in message and "no checkpoint was written" in message
    guard.passed(2, 7, 3.25)
    checkpoint.write_bytes(b"x")
    message = str(guard.diverged(3, 8, FloatingPointError("boom"), groups, checkpoint, 3))
    assert "last finite loss 3.25 at epoch 2, step 7" in message
    assert f"the last good checkpoint {checkpoint} (after epoch 2) is kept" in message
