"""``eval.py ... plots=true`` writes every figure into ``<out_dir>/plots`` (checkpoint and predictions mode)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from tp2detr.cli.eval import main
from tp2detr.config import compose
from tp2detr.data.bundle import load_data
from tp2detr.evaluation import write_predictions
from tp2detr.viz.canvas import file_stem
from tp2detr.viz.report import example_videos
from tiny_config import tiny_model

TINY = tiny_model(num_queries=5)
QUIET = ["hydra/job_logging=none", "hydra/hydra_logging=none"]
GLOBAL_FIGURES = {"pr_all.png", "confidence_vs_tiou.png", "durations.png", "breakdown.png"}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, toy_checkpoints) -> Path:
    """A tiny toy-dataset checkpoint (freshly initialised weights)."""
    return toy_checkpoints.make(tmp_path_factory.mktemp("viz_eval"), TINY, epoch=1)["ckpt"]


def _figure_names(videos: list[str], saliency: bool) -> set[str]:
    kinds = ("proposals", "pr", "saliency") if saliency else ("proposals", "pr")
    return GLOBAL_FIGURES | {f"{kind}_{file_stem(video)}.png" for video in videos for kind in kinds}


def test_plots_true_writes_every_figure(checkpoint: Path, tmp_path: Path, png_check,
                                        capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    args = [f"ckpt={checkpoint}", f"out_dir={out}", "trainer.device=cpu", "plots=true", "plots_videos=2", *QUIET]
    assert main(args) == 0
    assert "wrote 10 figures into" in capsys.readouterr().out
    videos = example_videos(load_data(compose(TINY)).protocol.eval_ground_truth, 2)
    expected = _figure_names(videos, saliency=True)
    assert len(expected) == 10 and {p.name for p in (out / "plots").iterdir()} == expected
    document = json.loads((out / "eval_metrics.json").read_text())
    assert sorted(document["figures"]) == sorted(f"plots/{name}" for name in expected)
    for name in expected:
        png_check(out / "plots" / name)


def test_predictions_mode_writes_the_figures_that_need_no_model(tmp_path: Path, png_check) -> None:
    ground_truth = load_data(compose(TINY)).protocol.eval_ground_truth
    rng = np.random.default_rng(0)
    noisy = {video: (segs + rng.normal(0, 0.3, size=segs.shape), rng.uniform(0.2, 0.9, size=len(segs)))
             for video, segs in ground_truth.items()}
    for segs, _ in noisy.values():
        segs[:, 1] = np.maximum(segs[:, 1], segs[:, 0] + 0.1)
    results = tmp_path / "results.json"
    write_predictions(results, noisy)
    out = tmp_path / "out"
    args = [f"predictions={results}", "dataset=toy", f"out_dir={out}", "plots=true", "plots_videos=1", *QUIET]
    assert main(args) == 0
    expected = _figure_names(example_videos(ground_truth, 1), saliency=False)
    assert {p.name for p in (out / "plots").iterdir()} == expected
    assert len(json.loads((out / "eval_metrics.json").read_text())["figures"]) == len(expected)
    png_check(out / "plots" / "pr_all.png")


def test_plots_do_not_leak_into_the_checkpoint_config(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = [f"ckpt={checkpoint}", f"out_dir={out}", "trainer.device=cpu", "plots=true", "plots_videos=0",
            "trainer.breakdown=false", *QUIET]
    assert main(args) == 0
    config = OmegaConf.load(out / "eval_config.yaml")
    assert "plots" not in config and "plots_videos" not in config
    assert {p.name for p in (out / "plots").iterdir()} == GLOBAL_FIGURES - {"breakdown.png"}  # nothing to plot
    # plots=false (the default) writes none
    plain = tmp_path / "plain"
    assert main([f"ckpt={checkpoint}", f"out_dir={plain}", "trainer.device=cpu", "trainer.ar=false", *QUIET]) == 0
    assert not (plain / "plots").exists()
    assert "figures" not in json.loads((plain / "eval_metrics.json").read_text())
