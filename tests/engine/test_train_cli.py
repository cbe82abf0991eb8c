"""`train.py` as a user runs it: a single run, a two-split multirun with its summary, a bad
override, and a real SIGINT that saves a checkpoint the next run resumes from."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tp2detr.config import compose
from tp2detr.data.builder import make_synthetic_features

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "dataset=toy", "model.dim_feedforward=32", "model.encoder_layers=1", "model.decoder_layers=2",
    "model.num_queries=6", "optim.batch_size=4", "optim.epochs=2", "trainer.progress=false",
    "trainer.eval_batch_size=16", "trainer.breakdown=false", "trainer.ar=false",
]


@pytest.fixture(scope="module")
def feature_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("features")
    make_synthetic_features(compose(["dataset=toy", f"paths.feature_dir={path}"]), progress=False)
    return path


def _train(*args, timeout=240, **kwargs):
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, **kwargs)


def test_single_run_and_resume_by_rerunning(feature_dir, tmp_path):
    args = [*TINY, f"paths.feature_dir={feature_dir}", f"paths.output_dir={tmp_path}", "split=50_50", "split.id=3"]
    first = _train(*args)
    assert first.returncode == 0, first.stderr[-2000:]
    run_dir = tmp_path / "runs" / "tp2detr" / "toy" / "50_50_split3"
    doc = json.loads((run_dir / "metrics.json").read_text())
    assert doc["status"] == "finished" and doc["split_id"] == 3 and len(doc["epochs"]) == 2
    assert (run_dir / "train.log").read_text().count("deformable attention backend") == 1
    again = _train(*args)
    assert again.returncode == 0
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == doc["epochs"]


def test_multirun_writes_a_summary_with_every_split(feature_dir, tmp_path):
    sweep = tmp_path / "sweep"
    proc = _train("-m", *TINY, f"paths.feature_dir={feature_dir}", "split=75_25", "split.id=0,1,42",
                  f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((sweep / "summary.json").read_text())
    text = (sweep / "summary.md").read_text()
    assert "mean" in text and "±" in text
    failed = json.loads((sweep / "75_25_split42_2" / "metrics.json").read_text())
    assert failed["status"] == "failed" and "split_42.list" in failed["error"]
    assert "42" in text  # the failed split is reported, the others kept
    for split in (0, 1):
        assert json.loads((sweep / f"75_25_split{split}_{split}" / "metrics.json").read_text())["status"] == "finished"
    assert summary


def test_unknown_variant_lists_the_choices(tmp_path):
    proc = _train("tfpn=pyramid", f"paths.output_dir={tmp_path}")
    assert proc.returncode != 0
    assert "Available options" in proc.stderr and "transformer" in proc.stderr


def test_sigint_saves_a_checkpoint_and_the_next_run_resumes(feature_dir, tmp_path):
    args = [*TINY, "optim.epochs=30", f"paths.feature_dir={feature_dir}", f"paths.output_dir={tmp_path}"]
    run_dir = tmp_path / "runs" / "tp2detr" / "toy" / "50_50_split0"
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while not (run_dir / "checkpoints" / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.5)
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    doc = json.loads((run_dir / "metrics.json").read_text())
    assert doc["status"] == "interrupted"
    done = len(doc["epochs"])
    resumed = _train(*TINY, f"optim.epochs={done + 1}", f"paths.feature_dir={feature_dir}",
                     f"paths.output_dir={tmp_path}", timeout=240)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    doc = json.loads((run_dir / "metrics.json").read_text())
    assert doc["status"] == "finished" and len(doc["epochs"]) == done + 1
