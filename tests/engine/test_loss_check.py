"""trainer.loss_check: the immediate and the deferred check of each step's loss, the fused AdamW
they rely on, and the host synchronisations of a training step (counted on CPU)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tp2detr.config import compose
from tp2detr.engine import trainer as trainer_module
from tp2detr.engine.divergence import DivergenceGuard
from tp2detr.engine.host_syncs import HostSyncCounter, mark_on_device
from tp2detr.engine.loss_check import LossCheck, resolve_loss_check
from tp2detr.engine.optim import resolve_fused
from tp2detr.engine.trainer import Trainer
from tp2detr.errors import ConfigError, TrainingDiverged
from tiny_config import tiny_training

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def _fused_setup():
    param = torch.nn.Parameter(torch.ones(3))
    return param, torch.optim.AdamW([param], lr=0.1, fused=True)


def _step(param, optimizer, check, step, loss_value):
    """One guarded step with the given loss value (the gradient is always finite)."""
    loss = torch.tensor(loss_value, device=param.device)
    check.submit(step, loss, {"loss": loss})
    optimizer.zero_grad()
    param.grad = torch.ones_like(param)
    optimizer.step()


def test_resolution_rules():
    assert resolve_loss_check("auto", CUDA, fused_optimizer=True, distributed=False) == "deferred"
    assert resolve_loss_check("auto", CPU, fused_optimizer=True, distributed=False) == "immediate"
    assert resolve_loss_check("auto", CUDA, fused_optimizer=False, distributed=False) == "immediate"
    assert resolve_loss_check("auto", CUDA, fused_optimizer=True, distributed=True) == "immediate"
    with pytest.raises(ConfigError, match="needs the fused AdamW"):
        resolve_loss_check("deferred", CPU, fused_optimizer=False, distributed=False)
    with pytest.raises(ConfigError, match="one process"):
        resolve_loss_check("deferred", CUDA, fused_optimizer=True, distributed=True)
    with pytest.raises(ConfigError, match="trainer.loss_check is 'later'"):
        resolve_loss_check("later", CPU, fused_optimizer=True, distributed=False)
    assert resolve_fused("auto", CUDA) and not resolve_fused("auto", CPU) and resolve_fused(True, CPU)
    with pytest.raises(ConfigError, match="optim.fused is 'yes'"):
        resolve_fused("yes", CPU)


def test_immediate_check_raises_before_the_update():
    check = LossCheck(DivergenceGuard(factor=10), "immediate")
    check.submit(0, torch.tensor(2.0), {})
    with pytest.raises(FloatingPointError, match="the loss is nan"):
        check.submit(1, torch.tensor(math.nan), {})
    assert check.failed_step == 1
    assert check.settle(wait=True) == [(0, 2.0)]


@pytest.mark.parametrize("bad", [math.nan, math.inf, 25.0])  # 25 > 10 × the first loss 2
def test_deferred_check_skips_a_failing_update_and_names_its_step(bad):
    param, optimizer = _fused_setup()
    check = LossCheck(DivergenceGuard(factor=10), "deferred", optimizer)
    _step(param, optimizer, check, 0, 2.0)
    after_first = param.detach().clone()
    assert not torch.equal(after_first, torch.ones(3))  # a passing step updates
    _step(param, optimizer, check, 1, bad)
    assert torch.equal(param.detach(), after_first)  # the failing step did not reach the weights
    assert optimizer.state[param]["step"].item() == 1  # nor AdamW's step count
    with pytest.raises(FloatingPointError):
        check.settle(wait=True)
    assert check.failed_step == 1


def test_deferred_bound_agrees_with_the_host_rule_at_the_edge():
    """The device evaluates factor × reference in float64 as the host does: a loss exactly at the
    bound passes on both sides, the next float above it fails on both."""
    reference = 0.1 + 0.2  # not exact in binary
    bound = 10 * reference
    for value, fails in ((bound, False), (math.nextafter(bound, math.inf), True)):
        param, optimizer = _fused_setup()
        guard = DivergenceGuard(factor=10, reference=reference)
        check = LossCheck(guard, "deferred", optimizer)
        before = param.detach().clone()
        check.submit(0, torch.tensor(value, dtype=torch.float64), {})
        param.grad = torch.ones_like(param)
        optimizer.step()
        assert torch.equal(param.detach(), before) == fails
        if fails:
            with pytest.raises(FloatingPointError, match="exceeds"):
                check.settle(wait=True)
        else:
            assert check.settle(wait=True) == [(0, value)]


@pytest.fixture(scope="module")
def feature_dir(toy_feature_dir):
    return toy_feature_dir


def _cfg(feature_dir, *overrides):
    """The tiny model on the CPU (also on a GPU machine: these tests pin the CPU's defaults)."""
    return compose([*tiny_training(epochs=1), "optim.epochs=1", "trainer.device=cpu", f"paths.feature_dir={feature_dir}",
                    *overrides])


def _losses(trainer, steps):
    batches = iter(trainer.train_loader(0, 0))
    out = []
    for step in range(steps):
        out.append({k: float(v) for k, v in trainer.train_step(next(batches), step).items()})
        trainer.loss_check.settle(wait=True)
    return out


def test_fused_adamw_and_the_deferred_check_train_as_before(feature_dir, tmp_path, one_thread):
    """Three steps of the tiny model: the fused AdamW (immediate or deferred check) gives the
    for-each AdamW's losses within float tolerance, and the deferred check changes nothing."""
    runs = {}
    for name, overrides in {"foreach": [], "fused": ["optim.fused=true", "trainer.loss_check=immediate"],
                            "deferred": ["optim.fused=true", "trainer.loss_check=deferred"]}.items():
        trainer = Trainer(_cfg(feature_dir, *overrides), tmp_path / name)
        trainer.setup()
        assert trainer.loss_check.mode == ("deferred" if name == "deferred" else "immediate")
        runs[name] = _losses(trainer, 3)
    assert runs["deferred"] == runs["fused"]  # bit-identical: found_inf = 0 changes no arithmetic
    for fused, foreach in zip(runs["fused"], runs["foreach"]):
        assert fused.keys() == foreach.keys()
        for key in fused:
            assert fused[key] == pytest.approx(foreach[key], rel=1e-5, abs=1e-6)


def test_a_nan_loss_stops_a_deferred_run_naming_its_step(feature_dir, tmp_path, monkeypatch):
    real_build = trainer_module.build_criterion

    def poisoned_at_step_two(loss_cfg):
        criterion = real_build(loss_cfg)
        calls = {"n": 0}

        def call(*args, **kwargs):
            import dataclasses

            out = criterion(*args, **kwargs)
            calls["n"] += 1
            return dataclasses.replace(out, total=out.total * float("nan")) if calls["n"] == 3 else out

        return call

    monkeypatch.setattr(trainer_module, "build_criterion", poisoned_at_step_two)
    with pytest.raises(TrainingDiverged, match="epoch 0, step 2: the loss is nan.*last finite loss [0-9.]+ at epoch 0, step 1"):
        Trainer(_cfg(feature_dir, "optim.fused=true", "trainer.loss_check=deferred"), tmp_path).fit()
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "diverged"


@pytest.mark.parametrize("mode,expected", [
    ("immediate", {"losses/hungarian_matcher.py": 1, "engine/loss_check.py": 1}),
    ("deferred", {"losses/hungarian_matcher.py": 1}),
])
def test_host_synchronisations_of_a_training_step(feature_dir, tmp_path, one_thread, mode, expected):
    """A step synchronises once for the matcher's cost matrices (all decoder layers in one copy)
    and, when the loss check is immediate, once for the loss; nothing else in the forward, the
    matching or the loss reads a device value or copies host data to the device synchronously. (The transformer's mask check runs on CPU tensors
    only, so its reads here are not a GPU run's and are left out.)"""
    trainer = Trainer(_cfg(feature_dir, "optim.fused=true", f"trainer.loss_check={mode}"), tmp_path)
    trainer.setup()
    batches = iter(trainer.train_loader(0, 0))
    trainer.train_step(next(batches), 0)
    batch = next(batches)
    mark_on_device(trainer.model.parameters())  # the batch is counted as on the device once the step moves it
    mark_on_device(trainer.model.buffers())
    with HostSyncCounter() as counter:
        trainer.train_step(batch, 1)
    sites = {site: n for site, n in counter.sites.items() if "in _check_inputs" not in site[1]}
    by_file = {}
    for (_, where), n in sites.items():
        by_file[where.split(":")[0]] = by_file.get(where.split(":")[0], 0) + n
    assert by_file == expected, counter.sites


@pytest.mark.gpu
def test_deferred_check_on_cuda_skips_and_reports_with_pinned_copies():
    """On the device: the loss reaches the host through a pinned buffer and an event, a passing
    step is returned once its copy is done, a NaN step's update is skipped by the fused AdamW."""
    param = torch.nn.Parameter(torch.ones(3, device="cuda"))
    optimizer = torch.optim.AdamW([param], lr=0.1, fused=True)
    check = LossCheck(DivergenceGuard(factor=10), "deferred", optimizer)
    _step(param, optimizer, check, 0, 2.0)
    torch.cuda.synchronize()
    assert check.settle(wait=False) == [(0, 2.0)]
    after_first = param.detach().clone()
    _step(param, optimizer, check, 1, math.nan)
    with pytest.raises(FloatingPointError, match="nan"):
        check.settle(wait=True)
    assert check.failed_step == 1
    assert torch.equal(param.detach(), after_first)
