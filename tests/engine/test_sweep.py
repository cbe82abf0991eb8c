"""The sweep summary: fake run folders → mean ± std over splits, failed splits kept, markdown rows,
variants side by side, the Hydra callback (also inside a real multirun) and scripts/report.py."""

from __future__ import annotations

import importlib.util
import json
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tp2detr.config import REPO_ROOT
from tp2detr.engine.runs import collect_runs, find_run_dirs, read_run
from tp2detr.engine.sweep import (
    SweepSummaryCallback,
    headline_tiou,
    render_markdown,
    summarise,
    write_summary,
)
from tp2detr.errors import MissingDataError

THUMOS_TIOU = [0.3, 0.4, 0.5, 0.6, 0.7]
ANET_TIOU = [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]
LABELS = {
    "last": "last epoch",
    "val": "best epoch on held-out validation videos (seen classes)",
    "test_best": "best epoch on the TEST set (oracle, as the paper's code; not an honest estimate)",
}


def metrics_doc(ap: list[float], tiou=THUMOS_TIOU) -> dict:
    return {
        "tiou": list(tiou),
        "ap": {repr(t): a for t, a in zip(tiou, ap)},
        "mAP": sum(ap) / len(ap),
        "ar": {"AR@1": 0.1, "AR@100": ap[0], "AUC": 0.5},
        "breakdown": None,
        "num_videos": 10,
        "num_gt": 30,
    }


def make_run(
    root: Path,
    sub: str,
    split_id: int,
    status: str = "finished",
    ap: list[float] | None = None,
    name: str = "variant_a",
    dataset: str = "thumos14_synth",
    selection: str = "last",
    epoch: int = 4,
    tiou=THUMOS_TIOU,
    error: str | None = None,
    write_metrics: bool = True,
) -> Path:
    """A run folder as train.py leaves it: .hydra/config.yaml and (unless told not to) metrics.json."""
    run_dir = root / sub
    (run_dir / ".hydra").mkdir(parents=True)
    cfg = {
        "name": name, "seed": 3552,
        "dataset": {"name": dataset}, "split": {"setting": "50_50", "id": split_id},
        "tfpn": {"name": "transformer"}, "trainer": {"selection": selection},
    }
    OmegaConf.save(OmegaConf.create(cfg), run_dir / ".hydra" / "config.yaml")
    if not write_metrics:
        return run_dir
    finished = status == "finished"
    doc = {
        "name": name, "dataset": dataset, "split": "50_50", "split_id": split_id,
        "tfpn": "transformer", "seed": 3552, "selection": selection,
        "selection_label": LABELS[selection], "status": status,
        "epochs": [{"epoch": e, "train": {"loss": 1.0}, "eval": None, "val": None, "seconds": 1.0} for e in range(epoch + 1)],
        "selected": {"epoch": epoch, "eval": metrics_doc(ap, tiou)} if finished else None,
        "wall_time_s": 12.5, "error": error,
    }
    (run_dir / "metrics.json").write_text(json.dumps(doc))
    return run_dir


SPLIT_APS = {
    0: [0.50, 0.40, 0.30, 0.20, 0.10],
    1: [0.60, 0.52, 0.41, 0.33, 0.20],
    3: [0.35, 0.30, 0.22, 0.15, 0.08],
}


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """Splits 0, 1, 3 finished; 2 failed; 4 interrupted; 5 still running; 6 has no metrics.json."""
    root = tmp_path / "sweep"
    for sid, ap in SPLIT_APS.items():
        make_run(root, f"50_50_split{sid}_{sid}", sid, ap=ap, epoch=sid + 2)
    make_run(root, "50_50_split2_2", 2, status="failed", error="RuntimeError: CUDA out of memory | at step 7")
    make_run(root, "50_50_split4_4", 4, status="interrupted", error="SIGTERM")
    make_run(root, "50_50_split5_5", 5, status="running")
    make_run(root, "50_50_split6_6", 6, write_metrics=False)
    (root / "multirun.yaml").write_text("hydra: {}\n")
    return root


def test_mean_and_sample_std_match_a_hand_computation(sweep: Path) -> None:
    summary = summarise(collect_runs([sweep]))
    (group,) = summary["groups"]
    assert summary["unit"] == "percent"
    assert group["tiou"] == ["0.3", "0.4", "0.5", "0.6", "0.7"]
    for i, key in enumerate(group["tiou"]):
        values = [100 * SPLIT_APS[s][i] for s in (0, 1, 3)]
        assert group["mean"]["ap"][key] == pytest.approx(statistics.mean(values))
        assert group["std"]["ap"][key] == pytest.approx(statistics.stdev(values))  # ddof = 1
    avgs = [100 * sum(ap) / 5 for ap in SPLIT_APS.values()]
    assert group["mean"]["mAP"] == pytest.approx(statistics.mean(avgs))
    assert group["std"]["mAP"] == pytest.approx(statistics.stdev(avgs))
    assert group["ar_mean"]["AR@100"] == pytest.approx(statistics.mean(100 * SPLIT_APS[s][0] for s in (0, 1, 3)))
    finished = {r["split_id"]: r for r in group["runs"] if r["status"] == "finished"}
    assert {s: r["selected_epoch"] for s, r in finished.items()} == {0: 2, 1: 3, 3: 5}
    assert finished[1]["ap"]["0.5"] == pytest.approx(41.0)


def test_runs_that_did_not_finish_are_reported_not_dropped(sweep: Path) -> None:
    runs = collect_runs([sweep])
    assert len(runs) == 7
    status = {r.split_id: r.status for r in runs}
    assert status == {0: "finished", 1: "finished", 2: "failed", 3: "finished", 4: "interrupted", 5: "running", 6: "missing"}
    missing = next(r for r in runs if r.split_id == 6)
    assert missing.name == "variant_a" and missing.dataset == "thumos14_synth"  # identity from .hydra/config.yaml
    summary = summarise(runs)
    (group,) = summary["groups"]
    assert (summary["num_runs"], summary["num_finished_runs"], summary["num_failed_runs"]) == (7, 3, 4)
    assert group["finished_splits"] == [0, 1, 3]
    assert group["failed_splits"] == [2, 4, 5, 6]
    assert (group["num_finished"], group["num_failed"]) == (3, 4)
    assert [r["split_id"] for r in group["runs"]] == [0, 1, 2, 3, 4, 5, 6]
    failed = next(r for r in group["runs"] if r["split_id"] == 2)
    assert "out of memory" in failed["error"] and "ap" not in failed


def test_a_run_without_metrics_reports_the_exception_from_its_log(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, "s9", 9, write_metrics=False)
    (run_dir / "train.log").write_text(
        "[INFO] - model built\n[ERROR] - split 50_50/9 failed; the sweep goes on\n"
        "Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n"
        "tp2detr.errors.MissingDataError: data/splits/50_50/train/split_9.list: split list not found\n"
    )
    record = read_run(run_dir)
    assert record.status == "missing" and record.split_id == 9
    assert "no metrics.json" in record.error
    assert "train.log: tp2detr.errors.MissingDataError: data/splits/50_50/train/split_9.list" in record.error


def test_unreadable_or_incomplete_metrics_count_as_not_finished(tmp_path: Path) -> None:
    bad_json = make_run(tmp_path, "a", 0, ap=SPLIT_APS[0])
    (bad_json / "metrics.json").write_text('{"status": "finished", "sel')
    no_selected = make_run(tmp_path, "b", 1, ap=SPLIT_APS[1])
    doc = json.loads((no_selected / "metrics.json").read_text())
    doc["selected"] = None
    (no_selected / "metrics.json").write_text(json.dumps(doc))
    first, second = read_run(bad_json), read_run(no_selected)
    assert first.status == second.status == "invalid"
    assert not first.finished and not second.finished
    assert "unreadable" in first.error and "selected" in second.error
    summary = summarise([first, second])
    assert summary["num_finished_runs"] == 0 and summary["groups"][0]["mean"] is None


def test_markdown_has_every_split_row_and_the_mean(sweep: Path) -> None:
    summary = write_summary(sweep)
    text = (sweep / "summary.md").read_text()
    assert json.loads((sweep / "summary.json").read_text()) == summary
    for sid in range(7):
        assert f"| split {sid} · " in text
    assert "| split 0 · epoch 2 | 50.00 | 40.00 | 30.00 | 20.00 | 10.00 | 30.00 |" in text
    assert "split 2 · **failed**: RuntimeError: CUDA out of memory \\| at step 7" in text
    assert "split 4 · **interrupted**" in text and "split 5 · **running**" in text and "split 6 · **missing**" in text
    mean = summary["groups"][0]["mean"]["ap"]["0.3"]
    std = summary["groups"][0]["std"]["ap"]["0.3"]
    assert f"{mean:.2f} ± {std:.2f}" in text
    assert "**mean ± std** (3 finished)" in text
    assert "Finished splits: 3 (0, 1, 3); not finished: 4 (2, 4, 5, 6)." in text
    assert "Model selection: last epoch." in text
    assert "oracle" not in text.lower()
    assert not list(sweep.glob(".summary*"))  # no temporary files left behind


def test_single_finished_split_has_no_std(tmp_path: Path) -> None:
    make_run(tmp_path, "only", 7, ap=SPLIT_APS[0])
    summary = summarise(collect_runs([tmp_path / "only"]))
    group = summary["groups"][0]
    assert group["std"] is None and group["ar_std"] is None
    assert group["mean"]["mAP"] == pytest.approx(30.0)
    text = render_markdown(summary)
    assert "±" not in text.split("## ")[1].split("###")[0]  # the variants table
    assert "**mean** (1 finished)" in text


def test_variants_side_by_side_in_the_order_given(tmp_path: Path) -> None:
    for sid in (0, 1):
        make_run(tmp_path / "b", f"s{sid}", sid, ap=[0.4] * 5, name="table1_thumos14_sgp")
        make_run(tmp_path / "a", f"s{sid}", sid, ap=[0.5 + 0.1 * sid] * 5, name="table1_thumos14_transformer")
    make_run(tmp_path / "c", "s0", 0, ap=[0.3] * 10, tiou=ANET_TIOU, name="paper_anet13", dataset="anet13")
    summary = summarise(collect_runs([tmp_path / "b", tmp_path / "a", tmp_path / "c"]))
    assert [g["variant"] for g in summary["groups"]] == ["table1_thumos14_sgp", "table1_thumos14_transformer", "paper_anet13"]
    transformer = summary["groups"][1]
    assert transformer["mean"]["mAP"] == pytest.approx(55.0)
    assert transformer["std"]["mAP"] == pytest.approx(statistics.stdev([50.0, 60.0]))
    text = render_markdown(summary)
    thumos_section = text.split("## thumos14_synth · split 50/50")[1].split("###")[0]
    rows = [line for line in thumos_section.splitlines() if line.startswith("| table1_")]
    assert [r.split(" | ")[0] for r in rows] == ["| table1_thumos14_sgp", "| table1_thumos14_transformer"]
    assert "| table1_thumos14_transformer | 2 | 0 | 55.00 ± 7.07 |" in text
    assert "## anet13 · split 50/50" in text  # another dataset: its own table


def test_activitynet_headline_has_three_thresholds_and_json_all_ten(tmp_path: Path) -> None:
    assert headline_tiou(["0.3", "0.4", "0.5", "0.6", "0.7"]) == ["0.3", "0.4", "0.5", "0.6", "0.7"]
    ap = [0.5 - 0.04 * i for i in range(10)]
    make_run(tmp_path, "r", 0, ap=ap, tiou=ANET_TIOU, name="paper_anet13", dataset="anet13")
    summary = summarise(collect_runs([tmp_path]))
    group = summary["groups"][0]
    assert group["headline_tiou"] == ["0.5", "0.75", "0.95"]
    assert len(group["tiou"]) == 10 and len(group["mean"]["ap"]) == 10
    text = render_markdown(summary)
    assert "| variant | splits finished | splits failed | mAP@0.5 | mAP@0.75 | mAP@0.95 | AVG |" in text
    assert "mAP@0.55" not in text
    assert f"{100 * sum(ap) / 10:.2f}" in text  # AVG over all ten


def test_oracle_selection_is_flagged_in_bold(tmp_path: Path) -> None:
    make_run(tmp_path, "s0", 0, ap=SPLIT_APS[0], selection="test_best")
    make_run(tmp_path, "s1", 1, ap=SPLIT_APS[1], selection="test_best")
    summary = summarise(collect_runs([tmp_path]))
    assert summary["oracle"] and summary["groups"][0]["selection"] == ["test_best"]
    text = render_markdown(summary)
    assert "**best epoch on the TEST set (oracle, as the paper's code; not an honest estimate)**" in text
    assert "**Some numbers below use oracle model selection" in text


def test_mixed_selection_rules_are_named_per_split(tmp_path: Path) -> None:
    make_run(tmp_path, "s0", 0, ap=SPLIT_APS[0], selection="last")
    make_run(tmp_path, "s1", 1, ap=SPLIT_APS[1], selection="test_best")
    text = render_markdown(summarise(collect_runs([tmp_path])))
    assert "**mixed rules:" in text
    assert "split 0 · epoch 4 · last epoch" in text
    assert "split 1 · epoch 4 · **best epoch on the TEST set" in text


def test_repeated_split_is_noted(tmp_path: Path) -> None:
    make_run(tmp_path / "first", "s0", 0, ap=SPLIT_APS[0])
    make_run(tmp_path / "again", "s0", 0, ap=SPLIT_APS[1])
    summary = summarise(collect_runs([tmp_path / "first", tmp_path / "again"]))
    group = summary["groups"][0]
    assert group["repeated_splits"] == [0] and group["num_finished"] == 1 and group["num_finished_runs"] == 2
    assert "more than one finished run" in render_markdown(summary)


def test_collect_runs_counts_each_run_once_and_ignores_nested_folders(sweep: Path, tmp_path: Path) -> None:
    nested = sweep / "50_50_split0_0" / "extra"
    nested.mkdir()
    (nested / "metrics.json").write_text("{}")
    assert len(find_run_dirs(sweep)) == 7
    assert find_run_dirs(sweep / "50_50_split1_1") == [sweep / "50_50_split1_1"]
    assert len(collect_runs([sweep, sweep / "50_50_split1_1", sweep])) == 7
    with pytest.raises(MissingDataError, match="no-such-folder"):
        collect_runs([tmp_path / "no-such-folder"])


def test_callback_on_an_empty_sweep_writes_a_summary_that_says_so(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweeps" / "empty"
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep_dir)}}})
    SweepSummaryCallback().on_multirun_end(config=config)
    assert "**No run was found**" in (sweep_dir / "summary.md").read_text()
    assert json.loads((sweep_dir / "summary.json").read_text())["num_runs"] == 0

    make_run(sweep_dir, "s0", 0, status="failed", error="ValueError: bad")
    SweepSummaryCallback().on_multirun_end(config=config)
    text = (sweep_dir / "summary.md").read_text()
    assert "**No run finished**" in text and "split 0 · **failed**: ValueError: bad" in text


def test_callback_does_not_raise_when_the_summary_cannot_be_written(tmp_path: Path, caplog) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(blocker / "sweep")}}})
    SweepSummaryCallback().on_multirun_end(config=config)
    assert "scripts/report.py" in caplog.text


def test_report_script_rebuilds_the_summary(sweep: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    make_run(other, "s0", 0, ap=[0.2] * 5, name="variant_b")
    out, js = tmp_path / "t.md", tmp_path / "t.json"
    script = REPO_ROOT / "scripts" / "report.py"
    proc = subprocess.run(
        [sys.executable, str(script), str(sweep), str(other), "--out", str(out), "--json", str(js)],
        check=False, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == out.read_text().strip()
    summary = json.loads(js.read_text())
    assert [g["variant"] for g in summary["groups"]] == ["variant_a", "variant_b"]
    assert summary["groups"][0]["mean"]["mAP"] == pytest.approx(summarise(collect_runs([sweep]))["groups"][0]["mean"]["mAP"])
    assert "| variant_b | 1 | 0 | 20.00 |" in proc.stdout

    missing = subprocess.run([sys.executable, str(script), str(tmp_path / "nope")], check=False, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "nope" in missing.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    none = subprocess.run([sys.executable, str(script), str(empty)], check=False, capture_output=True, text=True, timeout=60)
    assert none.returncode == 1 and "No run was found" in none.stdout


FAKE_TRAIN = textwrap.dedent(
    '''
    """A stand-in for train.py: the real configs and Hydra settings, a task that only writes metrics.json."""
    import json
    import sys
    from pathlib import Path

    import hydra
    from hydra.core.hydra_config import HydraConfig

    from tp2detr.config import CONFIG_DIR, normalise_overrides


    @hydra.main(config_path=str(CONFIG_DIR), config_name="train", version_base="1.3")
    def app(cfg):
        sid = int(cfg.split.id)
        failed = sid == 2
        ap = {"0.3": 0.1 * (sid + 1), "0.5": 0.05 * (sid + 1)}
        doc = {
            "name": str(cfg.name), "dataset": str(cfg.dataset.name), "split": str(cfg.split.setting),
            "split_id": sid, "tfpn": str(cfg.tfpn.name), "seed": int(cfg.seed),
            "selection": str(cfg.trainer.selection), "selection_label": "last epoch",
            "status": "failed" if failed else "finished", "epochs": [],
            "selected": None if failed else {"epoch": 0, "eval": {"tiou": [0.3, 0.5], "ap": ap, "mAP": sum(ap.values()) / 2}},
            "wall_time_s": 0.1, "error": "boom" if failed else None,
        }
        (Path(HydraConfig.get().runtime.output_dir) / "metrics.json").write_text(json.dumps(doc))


    if __name__ == "__main__":
        sys.argv = [sys.argv[0], *normalise_overrides(sys.argv[1:])]
        app()
    '''
)


def _multirun(tmp_path: Path, *extra: str) -> Path:
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAIN)
    out = tmp_path / "outputs"
    proc = subprocess.run(
        [sys.executable, str(script), "-m", "split.id=range(3)", f"paths.output_dir={out}",
         "experiment=table4_baseline", "dataset=toy", "split=75_25", *extra],
        check=False, capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep_dir,) = (out / "sweeps" / "table4_baseline").iterdir()
    runs = sweep_dir / "table4_baseline" / "toy"
    assert sorted(p.name for p in runs.iterdir() if p.is_dir()) == [f"75_25_split{i}" for i in range(3)]
    return sweep_dir


def _check_multirun_summary(sweep_dir: Path) -> None:
    summary = json.loads((sweep_dir / "summary.json").read_text())
    (group,) = summary["groups"]
    assert (group["variant"], group["dataset"], group["split"]) == ("table4_baseline", "toy", "75_25")
    assert group["finished_splits"] == [0, 1] and group["failed_splits"] == [2]
    assert group["mean"]["ap"]["0.3"] == pytest.approx(15.0)
    assert group["std"]["ap"]["0.3"] == pytest.approx(statistics.stdev([10.0, 20.0]))
    text = (sweep_dir / "summary.md").read_text()
    assert "split 2 · **failed**: boom" in text


def test_a_real_multirun_writes_the_summary_into_its_sweep_folder(tmp_path: Path) -> None:
    _check_multirun_summary(_multirun(tmp_path))


@pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_joblib_launcher") is None,
    reason="hydra-joblib-launcher is not installed (optional: pip install hydra-joblib-launcher)",
)
def test_a_joblib_multirun_writes_the_summary_too(tmp_path: Path) -> None:
    _check_multirun_summary(_multirun(tmp_path, "+launcher=joblib"))


def test_a_run_entry_keeps_the_oracle_epoch_and_the_by_length_map_labelled(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, "run", 0, ap=SPLIT_APS[0], epoch=2)
    doc = json.loads((run_dir / "metrics.json").read_text())
    better = metrics_doc([0.9, 0.8, 0.7, 0.6, 0.5], THUMOS_TIOU)
    doc["epochs"][1]["eval"] = better  # an earlier epoch scored higher on the evaluation set
    doc["epochs"][2]["eval"] = doc["selected"]["eval"]
    doc["selected"]["eval"]["breakdown"] = {"absolute_s": [
        {"bin": "[0, 2)", "low": 0.0, "high": 2.0, "num_gt": 4, "ap": None, "mAP": 0.25},
        {"bin": "[2, 4)", "low": 2.0, "high": 4.0, "n_gt": 0, "ap": None, "mAP": None},  # as metrics written before 2026-11-29
    ], "relative": None}
    (run_dir / "metrics.json").write_text(json.dumps(doc))
    (entry,) = summarise(collect_runs([tmp_path]))["groups"][0]["runs"]
    assert entry["selected_epoch"] == 2 and entry["mAP"] == pytest.approx(30.0)
    assert entry["test_best"] == {"epoch": 1, "mAP": pytest.approx(70.0)}
    assert entry["by_length"] == [{"bin": "[0, 2)", "num_gt": 4, "mAP": 25.0}, {"bin": "[2, 4)", "num_gt": 0, "mAP": None}]
