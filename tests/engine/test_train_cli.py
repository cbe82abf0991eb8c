"""`train.py` as a user runs it (its Hydra app in-process, or a real process where it matters):
a single run, a three-split multirun with its summary, a bad override, and a real SIGINT that
saves a checkpoint the next run resumes from."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tp2detr.cli import train as train_cli
from tiny_config import tiny_training

ROOT = Path(__file__).resolve().parents[2]
TINY = tiny_training(epochs=2)


@pytest.fixture(scope="module")
def feature_dir(toy_feature_dir):
    return toy_feature_dir


def _train(*args, timeout=240, **kwargs):
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, **kwargs)


def test_single_run_and_resume_by_rerunning(feature_dir, tmp_path, capsys):
    args = [*TINY, f"paths.feature_dir={feature_dir}", f"paths.output_dir={tmp_path}", "split=50_50", "split.id=3"]
    assert train_cli.main(args) == 0, capsys.readouterr().err[-2000:]
    (run_dir,) = (tmp_path / "runs" / "tp2detr" / "toy").glob("50_50_split3__*")  # named by the overrides
    doc = json.loads((run_dir / "metrics.json").read_text())
    assert doc["status"] == "finished" and doc["split_id"] == 3 and len(doc["epochs"]) == 2
    assert (run_dir / "train.log").read_text().count("deformable attention backend") == 1
    last = (run_dir / "checkpoints" / "last.pt").read_bytes()
    assert train_cli.main(args) == 0
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == doc["epochs"]
    assert (run_dir / "checkpoints" / "last.pt").read_bytes() == last  # no step ran
    assert "nothing to train" in (run_dir / "train.log").read_text()


def test_multirun_writes_a_summary_with_every_split(feature_dir, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    status = train_cli.main(["-m", *TINY, f"paths.feature_dir={feature_dir}", "split=75_25", "split.id=0,1,42",
                              f"hydra.sweep.dir={sweep}"])
    assert status == 0, capsys.readouterr().err[-2000:]
    summary = json.loads((sweep / "summary.json").read_text())
    text = (sweep / "summary.md").read_text()
    assert "mean" in text and "±" in text
    (failed_dir,) = sweep.glob("tp2detr/toy/75_25_split42__*")
    failed = json.loads((failed_dir / "metrics.json").read_text())
    assert failed["status"] == "failed" and "split.id is 42, expected one of the 10 75_25 splits" in failed["error"]
    assert "Finished splits: 2 (0, 1); not finished: 1 (42)." in text  # the failed split is reported, the others kept
    for split in (0, 1):
        (run_dir,) = sweep.glob(f"tp2detr/toy/75_25_split{split}__*")
        assert json.loads((run_dir / "metrics.json").read_text())["status"] == "finished"
    (group,) = summary["groups"]
    assert group["finished_splits"] == [0, 1] and group["failed_splits"] == [42]


def test_unknown_variant_lists_the_choices(tmp_path):
    proc = _train("tfpn=pyramid", f"paths.output_dir={tmp_path}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "Available options" in proc.stderr and "transformer" in proc.stderr


def test_sigint_saves_a_checkpoint_and_the_next_run_resumes(feature_dir, tmp_path, capsys):
    args = [*TINY, "optim.epochs=30", f"paths.feature_dir={feature_dir}", f"paths.output_dir={tmp_path}"]
    run_dir = tmp_path / "run"
    args.append(f"hydra.run.dir={run_dir}")
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
    status = train_cli.main([*TINY, f"optim.epochs={done + 1}", f"paths.feature_dir={feature_dir}",
                             f"hydra.run.dir={run_dir}"])
    assert status == 0, capsys.readouterr().err[-2000:]
    doc = json.loads((run_dir / "metrics.json").read_text())
    assert doc["status"] == "finished" and len(doc["epochs"]) == done + 1
