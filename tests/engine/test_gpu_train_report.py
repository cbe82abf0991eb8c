"""scripts/bench_gpu_train.py's bookkeeping (never its timings): what a run folder's metrics.json and
TensorBoard log say, the projection of the ten-split sweep, and the merged train_gpu.json record."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_gpu_train", ROOT / "scripts" / "bench_gpu_train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _doc(epochs: int = 2, steps: int = 100, train_s=(12.0, 10.0), eval_s=(4.0, 5.0), peaks=(1000.0, 1200.0)) -> dict:
    """A metrics.json of ``epochs`` evaluated epochs (seconds = training + evaluation)."""
    records = []
    for e in range(epochs):
        metrics = {"mAP": 0.1 + e / 100, "ap": {"0.5": 0.2}, "ar": None}
        records.append({"epoch": e, "eval": metrics, "val": None, "seconds": train_s[e] + eval_s[e],
                        "timing": {"train_s": train_s[e], "train_steps": steps, "eval_s": eval_s[e],
                                   "peak_gpu_memory_mb": peaks[e]}})
    return {"status": "interrupted", "epochs": records, "wall_time_s": 60.0, "error": None,
            "selected": {"epoch": epochs - 1, "eval": records[-1]["eval"]} if records else None}


def _tb(created: float = 1000.0, steps: int = 100, epochs: int = 2, rate: float = 10.0, warmup: float = 2.0,
        eval_s=(4.0, 5.0), commit: float = 1.0) -> list[dict]:
    """The TensorBoard timeline of such a run: a step logged every 10, at ``rate`` steps/s after
    ``warmup`` s, each epoch's record after its evaluation and ``commit`` s of writes."""
    points, ends, start = [], {}, created + warmup
    for e in range(epochs):
        for k in range(10, steps + 1, 10):
            points.append((e * steps + k, start + k / rate))
        ends[e] = start + steps / rate + eval_s[e] + commit
        start = ends[e]
    return [{"created": created, "steps": points, "epoch_end": ends}]


def test_a_run_summary_reads_rates_walls_and_start_up(bench):
    s = bench.summarize_run(_doc(), _tb(), launched_at=990.0)
    assert s["epochs_done"] == 2 and s["steps_per_epoch"] == 100
    assert s["tb_steady_steps_per_s"] == pytest.approx(10.0)  # intervals across an evaluation left out
    assert s["metrics_steps_per_s"] == pytest.approx(200 / 22)
    assert s["startup_s"] == pytest.approx(10.0) and s["warmup_s"] == pytest.approx(2.0)
    assert s["epoch_wall_s"] == pytest.approx([17.0, 16.0])
    assert s["commit_s_mean"] == pytest.approx(1.0) and s["eval_s_mean"] == pytest.approx(4.5)
    assert s["train_s_first_epoch"] == 12.0 and s["train_s_per_epoch_steady"] == 10.0
    assert s["peak_gpu_memory_mb"] == 1200.0
    assert s["last_eval"]["epoch"] == 1 and s["selected_mAP"] == pytest.approx(0.11)


def test_the_projection_follows_its_formula(bench):
    p = bench.project_run(bench.summarize_run(_doc(), _tb(), launched_at=990.0))
    assert p["epoch_s"] == pytest.approx(100 / 10 + 4.5 + 1.0)
    assert p["run_s"] == pytest.approx(10.0 + 2.0 + 35 * 15.5)
    runs = [{"run_s": 500.0}, {"run_s": 600.0}]
    assert bench.project_sweep(runs, 5) == pytest.approx(2 * 600.0)
    assert bench.project_sweep(runs, 3) == pytest.approx(math.ceil(10 / 3) * 600.0)
    assert bench.project_sweep(runs, 10) == pytest.approx(600.0)
    assert bench.project_sweep([{"run_s": None}], 1) is None
    assert "ceil(10 / N)" in bench.PROJECTION_FORMULA


def test_a_level_without_a_finished_epoch_borrows_the_evaluation_from_the_nearest_level(bench):
    measured = bench.summarize_run(_doc(), _tb(), launched_at=990.0)
    unfinished = bench.summarize_run({"status": "interrupted", "epochs": []}, _tb(epochs=1, rate=4.0),
                                     launched_at=980.0, steps_per_epoch_hint=100)
    unfinished["epoch_wall_s"], unfinished["commit_s_mean"] = [], None
    assert unfinished["eval_s_mean"] is None and unfinished["steps_per_s"] == pytest.approx(4.0)
    levels = {5: {"runs": [measured]}, 10: {"runs": [unfinished, unfinished]}}
    bench.project_levels(levels)
    ten = levels[10]
    projection = ten["runs"][0]["projection"]
    assert projection["eval_s_from"] == "N=5" and projection["eval_s"] == pytest.approx(4.5)
    assert projection["epoch_s"] == pytest.approx(100 / 4 + 4.5 + 1.0)
    assert ten["projected_sweep_s"] == pytest.approx(20.0 + 2.0 + 35 * 30.5)
    assert ten["aggregate_train_steps_per_s"] == pytest.approx(8.0)
    assert ten["projection_measured_only"] is False and levels[5]["projection_measured_only"] is True
    best = bench.best_level(levels)
    assert best["n"] == 10 and best["meets_goal"] is False
    assert best["projected_sweep_min"] == pytest.approx(ten["projected_sweep_s"] / 60)


def _step_report() -> dict:
    def entry(backend, compiled, ms):
        return {"device": "cuda", "precision": "bf16", "attn_backend": backend, "compile": compiled,
                "train_step_ms": ms, "first_step_ms": 3 * ms, "train_step_peak_mb": 700.0,
                "first_losses": [10.0, 9.0, 8.0] if backend == "cuda" and not compiled else [10.0, 9.0, 8.4],
                "profile": {"device_busy_ms_per_step": ms / 2, "device_busy_fraction": 0.5}, "host_syncs": {"per_step": 2.0}}

    return {"command": "python scripts/bench_train.py --device cuda", "host": {"gpu": "Some GPU", "cuda": "13.0"},
            "results": {"cuda_bf16_cuda_eager": entry("cuda", False, 100.0),
                        "cuda_bf16_pytorch_eager": entry("pytorch", False, 110.0),
                        "cuda_bf16_cuda_compiled": {"error": "RuntimeError: no", "device": "cuda", "precision": "bf16",
                                                    "attn_backend": "cuda", "compile": True},
                        "cuda_bf16_cuda_reduce-overhead": {**entry("cuda", True, 30.0),
                                                           "compile_mode": "reduce-overhead"}}}


def test_merge_writes_every_part_and_a_table_beside_the_authors_figures(bench, tmp_path):
    run = bench.summarize_run(_doc(), _tb(), launched_at=990.0)
    projection = bench.project_run(run)
    split = {"command": "train.py ...", "target_epochs": 35, "run": run, "projection": projection,
             "projected_run_s": projection["run_s"], "projected_sequential_sweep_s": 10 * projection["run_s"]}
    levels = {10: {"n": 10, "runs": [dict(run) for _ in range(10)], "command": "train.py split.id=<i>"}}
    bench.project_levels(levels)
    concurrency = {"levels": {str(n): lv for n, lv in levels.items()}, "projection_formula": bench.PROJECTION_FORMULA}
    paths = {}
    for name, obj in (("step", _step_report()), ("split", split), ("concurrency", concurrency)):
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps(obj))
    (tmp_path / "env.txt").write_text("NVIDIA H200, 143771 MiB, 580.00\n")
    out = tmp_path / "train_gpu.json"
    status = bench.main(["merge", "--step", str(paths["step"]), "--split", str(paths["split"]), "--concurrency",
                         str(paths["concurrency"]), "--environment", str(tmp_path / "env.txt"), "--out", str(out)])
    assert status == 0
    merged = json.loads(out.read_text())
    assert {"what", "machine", "commands", "authors", "before_h200", "step", "split", "concurrency",
            "projection_formula", "best", "missing", "reports", "table_md"} <= set(merged)
    assert merged["missing"] == [] and merged["machine"]["environment"] == ["NVIDIA H200, 143771 MiB, 580.00"]
    assert merged["authors"]["sweep_10_splits_s"] == 10 * 35 * (81 + 44)
    assert merged["split"]["train_s_per_epoch"] == 10.0 and merged["split"]["eval_s_per_epoch"] == 4.5
    assert merged["concurrency"]["10"]["projected_sweep_s"] == pytest.approx(12.0 + 35 * 15.5)
    assert merged["best"]["n"] == 10 and merged["best"]["meets_goal"] is True
    assert merged["commands"]["concurrency"] == {"10": "train.py split.id=<i>"}
    table = merged["table_md"]
    assert "| training step ms, bf16, cuda attention, eager | – | 121.5 | 100.0 |" in table
    assert "| training step ms, bf16, pytorch attention, eager | – | 132.1 | 110.0 |" in table
    assert "failed: RuntimeError: no" in table
    assert "| training step ms, bf16, cuda attention, torch.compile reduce-overhead | – | – | 30.0 |" in table
    assert "| … first step ms (includes the compilation) | – | – | 90 |" in table
    assert "| … first 3 losses: max relative difference from cuda eager | – | – | 5.0e-02 |" in table  # 8.4 vs 8
    assert ("| … first 3 losses: max relative difference from cuda eager (other dropout masks) | – | – | 5.0e-02 |"
            in table)  # the reduce-overhead row: Inductor draws its own dropout masks
    deviations = {row["name"]: row["loss_deviation"] for row in merged["step"]}
    assert deviations["cuda_bf16_cuda_eager"] is None and deviations["cuda_bf16_cuda_compiled"] is None  # ref, failed
    assert deviations["cuda_bf16_pytorch_eager"]["max_relative"] == pytest.approx(0.05)
    assert "| one run, training s per epoch (split 0) | 81 | – | 10.0 |" in table
    assert "| one run, evaluation s per epoch | 44 | – | 4.5 |" in table
    assert "| ten splits one after the other, h | 12.2 |" in table


def test_merge_names_what_is_missing_and_fails(bench, tmp_path):
    out = tmp_path / "train_gpu.json"
    assert bench.main(["merge", "--step", str(tmp_path / "absent.json"), "--out", str(out)]) == 1
    merged = json.loads(out.read_text())
    assert merged["missing"] == ["step", "split", "concurrency"] and merged["best"] is None


def test_the_tensorboard_log_of_a_run_is_read_back(bench, tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path / "tb"))
    for step, wall in ((10, 2000.0), (20, 2001.0)):
        writer.add_scalar("train_step/loss", 1.0, step, walltime=wall)
    writer.add_scalar("train/loss", 1.0, 0, walltime=2005.0)
    writer.add_scalar("lr/0", 1.0, 0, walltime=2005.0)
    writer.close()
    (tb,) = bench.read_tensorboard(tmp_path / "tb")
    assert tb["steps"] == [(10, 2000.0), (20, 2001.0)] and tb["epoch_end"] == {0: 2005.0}
    assert tb["created"] is not None
    assert bench.read_tensorboard(tmp_path / "nothing") == []
