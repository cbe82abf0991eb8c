"""The faults a real user meets, through the real entry points (``train.py``/``eval.py`` as a
subprocess or their Hydra app in-process): one clean message (exit 2, no traceback) naming the
file or key, run folders and resume that cannot be fooled, a full disk that leaves agreeing files,
divergence as a failure (exit 3), a precision the CPU cannot compute natively, and bad data found
before the first step."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from tp2detr.cli import eval as eval_cli
from tp2detr.cli import train as train_cli
from tp2detr.config import compose
from tp2detr.engine.checkpoint import load_checkpoint
from tiny_config import tiny_training

ROOT = Path(__file__).resolve().parents[1]
TRACEBACK = "Traceback (most recent call last)"
TINY = tiny_training(epochs=1)


@pytest.fixture(scope="module")
def feature_dir(toy_feature_dir):
    return toy_feature_dir


@pytest.fixture(autouse=True)
def _threads(one_thread):
    yield


def train(capsys, *args) -> tuple[int, str]:
    """``train.py ARGS`` in-process: (exit status, stderr)."""
    status = train_cli.main(list(args))
    return status, capsys.readouterr().err


def tiny(feature_dir, run_dir, *extra):
    return [*TINY, f"paths.feature_dir={feature_dir}", f"hydra.run.dir={run_dir}", *extra]


def snapshot(run_dir: Path) -> dict[str, bytes]:
    """The bytes of every file a run wrote that must not be lost."""
    names = ["metrics.json", "predictions.json", "config.yaml", "checkpoints/last.pt", "checkpoints/selected.pt"]
    return {n: (run_dir / n).read_bytes() for n in names if (run_dir / n).exists()}


def assert_clean_error(status: int, err: str, *words: str) -> None:
    assert status == 2, err
    assert TRACEBACK not in err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    for word in words:
        assert word in lines[0], (word, lines[0])


# -- the headline command and first use --------------------------------------------------------


def test_headline_command_without_features_prints_what_to_do(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "tfpn=transformer", "split=50_50",
         f"paths.output_dir={tmp_path}", f"paths.feature_dir={tmp_path / 'nothing'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert TRACEBACK not in proc.stderr + proc.stdout
    assert_clean_error(
        proc.returncode, proc.stderr, "feature store not found", str(tmp_path / "nothing" / "thumos14_clip"),
        "dataset.features.path=", "dataset.features.format=hdf5", ".npy", "python train.py dataset=thumos14_synth",
    )


def test_a_synthetic_store_is_built_on_first_use(tmp_path, capsys):
    features = tmp_path / "features"
    run_dir = tmp_path / "run"
    status, err = train(capsys, *tiny(features, run_dir))
    assert status == 0, err
    assert (features / "toy_d32_s0.h5").is_file()
    assert "building it on first use" in (run_dir / "train.log").read_text()


# -- bad values and Hydra errors ---------------------------------------------------------------


def test_bad_values_are_refused_before_anything_is_read(feature_dir, tmp_path, capsys):
    run_dir = tmp_path / "run"
    status, err = train(capsys, *tiny(feature_dir, run_dir, "optim.lr=abc", "split.id=12"))
    assert_clean_error(status, err, "optim.lr is 'abc'", "expected a number > 0", "split.id is 12", "0..9")
    assert not run_dir.exists()  # refused before Hydra made the run folder


def test_hydra_full_error_still_shows_the_message(feature_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    status, err = train(capsys, *tiny(feature_dir, tmp_path / "run", "trainer.eval_every=0"))
    assert status == 2 and TRACEBACK in err
    last = err.rstrip().splitlines()[-1]
    assert last.startswith("error: ") and "trainer.eval_every is 0, expected an integer >= 1" in last


def test_unknown_key_and_group_choice_are_user_errors(feature_dir, tmp_path, capsys):
    status, err = train(capsys, *tiny(feature_dir, tmp_path / "run", "optim.lrr=1"))
    assert_clean_error(status, err, "optim.lrr")
    status, err = train(capsys, *tiny(feature_dir, tmp_path / "run", "tfpn=pyramid"))
    assert_clean_error(status, err, "pyramid", "transformer")


def test_a_bug_keeps_its_traceback(feature_dir, tmp_path, capsys, monkeypatch):
    from tp2detr.engine.trainer import Trainer

    def broken(self):
        raise RuntimeError("an internal bug")

    monkeypatch.setattr(Trainer, "fit", broken)
    with pytest.raises(SystemExit) as exit_info:
        train(capsys, *tiny(feature_dir, tmp_path / "run"))
    assert exit_info.value.code == 1
    assert "RuntimeError: an internal bug" in capsys.readouterr().err


def test_eval_of_a_checkpoint_that_does_not_fit(feature_dir, tmp_path, capsys, monkeypatch):
    run_dir = tmp_path / "run"
    assert train(capsys, *tiny(feature_dir, run_dir))[0] == 0
    ckpt = run_dir / "checkpoints" / "last.pt"
    status = eval_cli.main([f"ckpt={ckpt}", "model.num_queries=9", f"out_dir={tmp_path / 'eval'}"])
    assert_clean_error(status, capsys.readouterr().err, str(ckpt), "does not match the model", "query_embed")
    status = eval_cli.main([f"ckpt={ckpt}", "split.id=42", f"out_dir={tmp_path / 'eval'}"])
    assert_clean_error(status, capsys.readouterr().err, "split.id is 42", "0..9")
    # how it runs: the checkpoint's trainer.* keys unless given, checked the same way
    status = eval_cli.main([f"ckpt={ckpt}", "trainer.eval_batch_size=0", f"out_dir={tmp_path / 'eval'}"])
    assert_clean_error(status, capsys.readouterr().err, "trainer.eval_batch_size is 0", "an integer >= 1")
    status = eval_cli.main([f"ckpt={ckpt}", "device=cpu", f"out_dir={tmp_path / 'eval'}"])  # the old key
    assert_clean_error(status, capsys.readouterr().err, "no key 'device'", "expected trainer.device=cpu")
    if not torch.cuda.is_available():
        status = eval_cli.main([f"ckpt={ckpt}", "trainer.device=cuda", f"out_dir={tmp_path / 'eval'}"])
        assert_clean_error(status, capsys.readouterr().err, "trainer.device is 'cuda'", "trainer.device=cpu")
    from tp2detr.engine import hardware

    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda flags=None: False)
    args = [f"ckpt={ckpt}", "trainer.device=cpu", "trainer.precision=bf16", f"out_dir={tmp_path / 'eval'}"]
    assert_clean_error(eval_cli.main(args), capsys.readouterr().err, "trainer.precision=bf16", "no native bf16")


# -- run folders and resume --------------------------------------------------------------------


def test_different_configurations_never_share_a_run_folder(feature_dir, tmp_path, capsys):
    common = [*TINY, f"paths.feature_dir={feature_dir}", f"paths.output_dir={tmp_path}"]
    assert train(capsys, *common)[0] == 0
    assert train(capsys, *common, "tfpn=direct")[0] == 0
    runs = sorted(p.name for p in (tmp_path / "runs" / "tp2detr" / "toy").iterdir())
    assert len(runs) == 2 and all(r.startswith("50_50_split0__") for r in runs)
    direct = [r for r in runs if "tfpn=direct" in r]
    assert len(direct) == 1
    # the same command in another order is the same run: it resumes, no step runs
    folder = tmp_path / "runs" / "tp2detr" / "toy" / direct[0]
    before = snapshot(folder)
    assert train(capsys, "tfpn=direct", *reversed(common))[0] == 0
    assert snapshot(folder)["checkpoints/last.pt"] == before["checkpoints/last.pt"]
    assert "nothing to train" in (folder / "train.log").read_text()


def test_a_changed_setting_is_refused_on_resume_and_nothing_is_lost(feature_dir, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert train(capsys, *tiny(feature_dir, run_dir))[0] == 0
    before = snapshot(run_dir)
    status, err = train(capsys, *tiny(feature_dir, run_dir, "optim.epochs=2", "optim.lr=1e6",
                                      "optim.lr_drop_gamma=0.5"))
    assert_clean_error(status, err, "cannot resume", "optim.lr: checkpoint 0.0001, now 1000000.0",
                       "optim.lr_drop_gamma", "trainer.resume=false", "name=")
    assert snapshot(run_dir) == before


def test_keys_that_may_change_mid_run_resume_and_are_recorded(feature_dir, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert train(capsys, *tiny(feature_dir, run_dir))[0] == 0
    assert train(capsys, *tiny(feature_dir, run_dir, "optim.epochs=2", "trainer.eval_every=2"))[0] == 0
    doc = json.loads((run_dir / "metrics.json").read_text())
    assert len(doc["epochs"]) == 2 and doc["status"] == "finished"
    assert {"epoch": 1, "key": "optim.epochs", "from": 1, "to": 2} in doc["config_changes"]
    assert "epochs: 2" in (run_dir / "config.yaml").read_text()  # what actually ran


def test_resume_false_starts_over_and_keeps_the_previous_files(feature_dir, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert train(capsys, *tiny(feature_dir, run_dir))[0] == 0
    before = snapshot(run_dir)
    assert train(capsys, *tiny(feature_dir, run_dir, "trainer.resume=false", "optim.lr=2e-4"))[0] == 0
    kept = run_dir / "superseded" / "1"
    assert snapshot(kept) == before
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "finished"
    assert "lr: 0.0002" in (run_dir / "config.yaml").read_text()


def test_a_full_disk_leaves_metrics_predictions_and_checkpoints_in_agreement(feature_dir, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert train(capsys, *tiny(feature_dir, run_dir))[0] == 0
    before = snapshot(run_dir)
    limit = len(before["checkpoints/last.pt"]) // 2  # a checkpoint no longer fits: EFBIG, like ENOSPC

    def small_disk():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *tiny(feature_dir, run_dir, "optim.epochs=2")],
        cwd=ROOT, capture_output=True, text=True, timeout=120, preexec_fn=small_disk,
    )
    assert_clean_error(proc.returncode, proc.stderr, "selected.pt: cannot write", "after epoch 0", "agree")
    after = snapshot(run_dir)
    for name in ("predictions.json", "checkpoints/last.pt", "checkpoints/selected.pt"):
        assert after[name] == before[name], name
    doc = json.loads(after["metrics.json"])
    assert doc["status"] == "failed" and doc["selected"]["epoch"] == 0 and len(doc["epochs"]) == 1
    assert load_checkpoint(run_dir / "checkpoints" / "selected.pt")["epoch"] == 1
    assert not [p for p in run_dir.rglob("*.tmp")]


# -- divergence ----------------------------------------------------------------------------------


def test_an_exploding_loss_stops_the_run_as_diverged(feature_dir, tmp_path, capsys):
    run_dir = tmp_path / "run"
    status, err = train(capsys, *tiny(feature_dir, run_dir, "optim.lr=1e4", "optim.lr_tfpn=1e4"))
    assert status == 3 and TRACEBACK not in err
    line = err.strip().splitlines()[-1]
    for word in ("training diverged", "epoch 0, step 1", "exceeds 10x", "learning rates: base 1e+04",
                 "last finite loss", "no checkpoint was written"):
        assert word in line, (word, line)
    doc = json.loads((run_dir / "metrics.json").read_text())
    assert doc["status"] == "diverged" and "TrainingDiverged" in doc["error"]


def test_a_nan_after_a_good_epoch_keeps_the_last_good_checkpoint(feature_dir, tmp_path, capsys, monkeypatch):
    from tp2detr.models.detector import TP2DETR

    run_dir = tmp_path / "run"
    assert train(capsys, *tiny(feature_dir, run_dir))[0] == 0
    before = snapshot(run_dir)
    forward = TP2DETR.forward

    def poisoned(self, *args, **kwargs):
        out = forward(self, *args, **kwargs)
        if self.training:
            out["boxes"] = out["boxes"] * float("nan")
        return out

    monkeypatch.setattr(TP2DETR, "forward", poisoned)
    status, err = train(capsys, *tiny(feature_dir, run_dir, "optim.epochs=2"))
    assert status == 3
    line = err.strip().splitlines()[-1]
    assert "epoch 1, step 0" in line and "pred_boxes" in line and "the last good checkpoint" in line
    assert snapshot(run_dir)["checkpoints/last.pt"] == before["checkpoints/last.pt"]
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "diverged"


def test_a_sweep_records_a_diverged_split_and_goes_on(feature_dir, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    status = train_cli.main(["-m", *TINY, f"paths.feature_dir={feature_dir}", "optim.lr=1e-4,1e4",
                             f"hydra.sweep.dir={sweep}"])
    assert status == 0
    docs = [json.loads(p.read_text()) for p in sorted(sweep.glob("tp2detr/toy/*/metrics.json"))]
    assert len(docs) == 2
    assert sorted(d["status"] for d in docs) == ["diverged", "finished"]
    assert json.loads((sweep / "summary.json").read_text())


# -- precision -----------------------------------------------------------------------------------


def test_bf16_is_refused_on_a_cpu_without_native_bf16(feature_dir, tmp_path, capsys, monkeypatch):
    from tp2detr.engine import hardware
    from tp2detr.engine.device import resolve_precision

    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda flags=None: False)
    status, err = train(capsys, *tiny(feature_dir, tmp_path / "run", "trainer.precision=bf16"))
    assert_clean_error(status, err, "trainer.precision=bf16", "no native bf16", "fp32")
    assert resolve_precision("auto", torch.device("cpu")) is None
    assert resolve_precision("bf16", torch.device("cpu"), native_bf16=True) is torch.bfloat16


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path):
    from tp2detr.engine.hardware import cpu_flags, cpu_has_native_bf16, cpu_model

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC 7B13\ncpu family\t: 25\nmodel\t\t: 1\n"
                    "flags\t\t: fpu avx2 fma\n\nprocessor\t: 1\nflags\t\t: other\n")
    assert cpu_has_native_bf16(cpu_flags(info)) is False
    assert cpu_has_native_bf16(frozenset({"avx2", "avx512_bf16"})) is True
    assert cpu_model(info) == "AMD EPYC 7B13 (family 25 model 1)"
    assert cpu_flags(tmp_path / "absent") is None


# -- data checked before the first step ------------------------------------------------------------


def test_bad_annotations_name_the_file_and_entry(feature_dir, tmp_path, capsys):
    source = json.loads((ROOT / "data" / "toy" / "annotations.json").read_text())
    video, record = next(iter(source["database"].items()))
    text = json.dumps(source)
    duplicate = tmp_path / "duplicate.json"
    duplicate.write_text(text[:-2] + f', "{video}": ' + json.dumps(record) + "}}")
    status, err = train(capsys, *tiny(feature_dir, tmp_path / "run", f"dataset.annotations={duplicate}"))
    assert_clean_error(status, err, str(duplicate), f"'{video}' is given twice")
    record["annotations"][0]["segment"][0] = -3.0
    negative = tmp_path / "negative.json"
    negative.write_text(json.dumps(source))
    status, err = train(capsys, *tiny(feature_dir, tmp_path / "run", f"dataset.annotations={negative}"))
    assert_clean_error(status, err, str(negative), f"database['{video}'].annotations[0].segment", "start >= 0")


def test_every_bad_feature_file_is_reported_at_once_before_training(feature_dir, tmp_path, capsys):
    import shutil

    store = tmp_path / "features" / "toy_d32_s0.h5"
    store.parent.mkdir()
    shutil.copy(feature_dir / "toy_d32_s0.h5", store)
    cfg = compose(["dataset=toy"])
    from tp2detr.data.bundle import load_data

    bundle = load_data(cfg)
    train_video = bundle.train_samples[0].video_id
    eval_video = bundle.eval_samples[-1].video_id
    with h5py.File(store, "r+") as handle:
        data = handle[train_video][...]
        data[5, 3] = np.inf
        handle[train_video][...] = data
        data = handle[eval_video][...]
        data[-1, 0] = np.nan
        handle[eval_video][...] = data
    run_dir = tmp_path / "run"
    status, err = train(capsys, *tiny(store.parent, run_dir))
    assert_clean_error(status, err, "2 of", "videos have bad features", f"'{train_video}' contain 1 Inf",
                       f"'{eval_video}' contain 1 NaN", "checked before training")
    assert not (run_dir / "checkpoints").exists()


def test_a_npy_store_with_a_random_bytes_file_names_it(feature_dir, tmp_path, capsys):
    from tp2detr.data.features import HDF5FeatureStore

    source = HDF5FeatureStore(feature_dir / "toy_d32_s0.h5")
    folder = tmp_path / "npy"
    folder.mkdir()
    for video_id in source.video_ids():
        np.save(folder / f"{video_id}.npy", source.read(video_id))
    victim = source.video_ids()[0]
    (folder / f"{victim}.npy").write_bytes(os.urandom(2048))
    status, err = train(capsys, *tiny(feature_dir, tmp_path / "run", "dataset.features.format=npy",
                                      f"dataset.features.path={folder}"))
    assert_clean_error(status, err, f"{folder / victim}.npy: not a valid .npy array file")
    assert "allow_pickle" not in err


def test_random_bytes_are_not_a_valid_npy_array(tmp_path):
    from tp2detr.data.features import NpyFeatureStore
    from tp2detr.errors import DataFormatError

    (tmp_path / "video_a.npy").write_bytes(os.urandom(4096))
    with pytest.raises(DataFormatError, match="not a valid .npy array file") as info:
        NpyFeatureStore(tmp_path).read("video_a")
    assert "allow_pickle" not in str(info.value)
    np.save(tmp_path / "video_b.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataFormatError, match="holds Python objects"):
        NpyFeatureStore(tmp_path).read("video_b")
