"""DDP on CPU: two gloo processes train one epoch; their gathered evaluation equals a
single-process evaluation of the checkpoint they wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tp2detr.config import compose
from tp2detr.data.feature_setup import make_synthetic_features
from tp2detr.engine.checkpoint import load_checkpoint
from tp2detr.engine.trainer import Trainer
from tiny_config import tiny_training

TINY = [*tiny_training(epochs=1, eval_batch_size=8, ar=True), "trainer.device=cpu"]


@pytest.mark.slow  # two torchrun processes, 7-8 s: `make test-all`
def test_two_process_ddp_matches_single_process_evaluation(tmp_path):
    features = tmp_path / "features"
    overrides = [*TINY, f"paths.feature_dir={features}"]
    make_synthetic_features(compose(overrides), progress=False)
    run_dir = tmp_path / "ddp"
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(Path(__file__).with_name("ddp_worker.py")), str(run_dir), *overrides],
        capture_output=True, text=True, env=env, timeout=300, cwd=root,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((run_dir / "metrics.json").read_text())
    assert doc["status"] == "finished"
    ddp_eval = doc["epochs"][-1]["eval"]

    single = Trainer(compose(overrides), tmp_path / "single")
    single.setup()
    single.model.load_state_dict(load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"])
    protocol = single.bundle.protocol
    metrics, _ = single.evaluate(single.eval_set, protocol.eval_ground_truth, protocol.eval_durations)
    assert metrics["num_predictions"] == ddp_eval["num_predictions"]
    for key, value in metrics["ap"].items():
        assert ddp_eval["ap"][key] == pytest.approx(value, abs=1e-9)
    assert ddp_eval["ar"] == pytest.approx(metrics["ar"], abs=1e-9)
