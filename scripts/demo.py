"""`make demo`: train a small TP²-DETR on the semi-synthetic THUMOS14 benchmark and print the
paper's Table-1 style summary.

Builds the semi-synthetic THUMOS14 store at the demo's width (once, a few seconds), runs
``python train.py experiment=demo`` (split 50_50/0; about 4 minutes on 2 CPU cores, with the
compiled attention op: ``TP2DETR_BUILD_OPS=1`` unless set), then prints
the summary of the run folder — the freshly initialised model's mAP first, as the baseline the
trained one must beat. Re-running resumes the finished run and only prints. Extra arguments are
Hydra overrides passed to training, e.g. ``python scripts/demo.py optim.epochs=3``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tp2detr.config import REPO_ROOT, compose, normalise_overrides
from tp2detr.data.bundle import load_data
from tp2detr.data.feature_setup import make_synthetic_features
from tp2detr.data.statistics import dataset_statistics
from tp2detr.evaluation.tables import format_table
from tp2detr.engine.runs import collect_runs
from tp2detr.engine.sweep import render_markdown, summarise
from tp2detr.cli.hydra_app import run_script


def main(argv: list[str]) -> int:
    overrides = ["experiment=demo", *normalise_overrides(argv)]
    cfg = compose(overrides)
    run_dir = Path(cfg.paths.output_dir) / "demo" / f"{cfg.dataset.name}_{cfg.split.setting}_split{cfg.split.id}"
    make_synthetic_features(cfg)
    stats = dataset_statistics(load_data(cfg))
    print(f"dataset {cfg.dataset.name} (features {cfg.dataset.features.dim}-d), split "
          f"{cfg.split.setting}/{cfg.split.id}: {stats['train_windows']} training windows, "
          f"{stats['eval_videos']} evaluation videos with {stats['eval_instances']} unseen-class instances")
    command = [sys.executable, str(REPO_ROOT / "train.py"), *overrides, f"hydra.run.dir={run_dir}"]
    print("$ " + " ".join(command[1:]), flush=True)
    # The compiled CPU attention op (built on first use, about 25 s, then cached) makes a training
    # step about 1.6x faster; if it cannot be built, training falls back to PyTorch with a warning.
    env = {**os.environ, "TP2DETR_BUILD_OPS": os.environ.get("TP2DETR_BUILD_OPS", "1")}
    status = subprocess.run(command, cwd=REPO_ROOT, env=env).returncode
    if status != 0:
        print(f"training failed (exit {status}); see {run_dir / 'train.log'}", file=sys.stderr)
        return status
    doc = json.loads((run_dir / "metrics.json").read_text())
    tiou = list(cfg.dataset.evaluation.tiou_thresholds)
    rows = {"untrained (initialisation)": doc.get("untrained")}
    selected = doc.get("selected") or {}
    rows[f"trained, {doc['selection_label']} (epoch {selected.get('epoch')})"] = selected.get("eval")
    print()
    print(format_table(rows, tiou))
    print()
    print(render_markdown(summarise(collect_runs([run_dir]), sources=[run_dir])))
    print(f"run folder: {run_dir} (metrics.json, predictions.json, checkpoints/, tb/)")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
