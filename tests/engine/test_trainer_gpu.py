"""On a GPU in fp32, the engine's training step gives the CPU's losses (issue 12: every change keeps
the results equal within float tolerance, on CPU and on GPU fp32).

The same tiny model, seed and batches train three steps on the CPU (fused AdamW, immediate loss
check) and on CUDA (fused AdamW, the deferred loss check that ``auto`` picks there), with both
attention backends on CUDA. TF32 is off for the comparison, so fp32 means fp32, and dropout is off:
the CPU and CUDA generators draw different masks from the same seed.
"""

from __future__ import annotations

import pytest
import torch

from tp2detr.config import compose
from tp2detr.engine.trainer import Trainer
from tiny_config import tiny_training

pytestmark = pytest.mark.gpu

STEPS = 3
NO_DROPOUT = ["model.dropout=0.0", "tfpn.proj_dropout=0.0", "tfpn.attn_dropout=0.0"]


@pytest.fixture(scope="module")
def feature_dir(toy_feature_dir):
    return toy_feature_dir


@pytest.fixture
def strict_fp32():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _losses(feature_dir, run_dir, *overrides) -> tuple[list[dict[str, float]], str]:
    cfg = compose([*tiny_training(epochs=1), "optim.epochs=1", "trainer.precision=fp32", "optim.fused=true",
                   *NO_DROPOUT, f"paths.feature_dir={feature_dir}", *overrides])
    trainer = Trainer(cfg, run_dir)
    trainer.setup()
    batches = iter(trainer.train_loader(0, 0))
    losses = []
    for step in range(STEPS):
        losses.append({k: float(v) for k, v in trainer.train_step(next(batches), step).items()})
        trainer.loss_check.settle(wait=True)
    return losses, trainer.loss_check.mode


@pytest.mark.parametrize("backend", ["pytorch", "cuda"])
def test_three_cuda_steps_give_the_cpus_losses_in_fp32(feature_dir, tmp_path, strict_fp32, backend):
    cpu, cpu_mode = _losses(feature_dir, tmp_path / "cpu", "trainer.device=cpu", "model.attn_backend=pytorch",
                            "trainer.loss_check=immediate")
    gpu, gpu_mode = _losses(feature_dir, tmp_path / "gpu", "trainer.device=cuda", f"model.attn_backend={backend}")
    assert (cpu_mode, gpu_mode) == ("immediate", "deferred")
    for step, (c, g) in enumerate(zip(cpu, gpu)):
        assert c.keys() == g.keys()
        for key in c:
            tolerance = 1e-4 if step == 0 else 1e-3  # later steps carry the updates' rounding too
            assert g[key] == pytest.approx(c[key], rel=tolerance, abs=1e-6), (step, key)
