"""The trainer on the toy dataset: run folder, exact resume, selection rules, checkpoints."""

from __future__ import annotations

import json

import pytest

from tp2detr.config import compose
from tp2detr.engine import trainer as trainer_module
from tp2detr.engine.checkpoint import CheckpointError, load_checkpoint
from tp2detr.engine.optim import parameter_groups
from tp2detr.engine.trainer import Trainer
from tp2detr.errors import TrainingDiverged
from tp2detr.models.builder import build_model
from tiny_config import tiny_training

TINY = [*tiny_training(epochs=3, ar=True), "optim.lr_drop_epoch=2"]


@pytest.fixture(scope="module")
def feature_dir(toy_feature_dir):
    return toy_feature_dir


def tiny_cfg(feature_dir, *overrides):
    return compose([*TINY, f"paths.feature_dir={feature_dir}", *overrides])


def test_run_folder_contents(feature_dir, tmp_path):
    doc = Trainer(tiny_cfg(feature_dir), tmp_path).fit()
    assert doc["status"] == "finished" and len(doc["epochs"]) == 3
    assert doc["selection"] == "last" and doc["selected"]["epoch"] == 2
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["status"] == "finished"
    record = on_disk["epochs"][-1]
    assert set(record["train"]) >= {"loss", "loss_l1", "loss_iou", "loss_actionness", "loss_salient_enc"}
    assert set(record["lr"]) == {"base", "tfpn", "linear_proj"}
    assert record["eval"]["mAP"] == pytest.approx(sum(record["eval"]["ap"].values()) / 5)
    assert "AR@100" in record["eval"]["ar"]
    # the StepLR drop at epoch 2
    assert on_disk["epochs"][2]["lr"]["base"] == pytest.approx(on_disk["epochs"][1]["lr"]["base"] * 0.1)
    results = json.loads((tmp_path / "predictions.json").read_text())["results"]
    assert results and all(p["segment"][1] > p["segment"][0] for ps in results.values() for p in ps)
    for name in ("last.pt", "selected.pt"):
        state = load_checkpoint(tmp_path / "checkpoints" / name)
        assert state["epoch"] == 3
    assert (tmp_path / "config.yaml").exists()
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


def _strip_times(doc):
    return [{k: v for k, v in e.items() if k not in ("seconds", "timing")} for e in doc["epochs"]]


def test_interrupted_then_resumed_run_ends_exactly_like_an_uninterrupted_one(feature_dir, tmp_path, monkeypatch):
    cfg = tiny_cfg(feature_dir)
    straight = Trainer(cfg, tmp_path / "straight").fit()

    calls = {"n": 0}
    real = trainer_module.broadcast_flag

    def interrupt_at_step_five(flag, ctx):
        calls["n"] += 1
        return True if calls["n"] == 5 else real(flag, ctx)

    monkeypatch.setattr(trainer_module, "broadcast_flag", interrupt_at_step_five)
    interrupted = Trainer(cfg, tmp_path / "resumed").fit()
    assert interrupted["status"] == "interrupted"
    state = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")
    assert state["step_in_epoch"] > 0
    monkeypatch.setattr(trainer_module, "broadcast_flag", real)
    resumed = Trainer(cfg, tmp_path / "resumed").fit()
    assert resumed["status"] == "finished"
    assert _strip_times(resumed) == _strip_times(straight)


def test_resume_after_finishing_changes_nothing(feature_dir, tmp_path, monkeypatch):
    cfg = tiny_cfg(feature_dir, "optim.epochs=1")
    first = Trainer(cfg, tmp_path).fit()
    checkpoint = (tmp_path / "checkpoints" / "last.pt").read_bytes()

    def no_step(self, batch):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(Trainer, "train_step", no_step)  # a full deterministic retrain fails here
    again = Trainer(cfg, tmp_path).fit()
    assert _strip_times(again) == _strip_times(first)
    assert (tmp_path / "checkpoints" / "last.pt").read_bytes() == checkpoint


def test_resume_false_starts_over_and_moves_the_previous_run_aside(feature_dir, tmp_path):
    Trainer(tiny_cfg(feature_dir, "optim.epochs=1"), tmp_path).fit()
    metrics = (tmp_path / "metrics.json").read_bytes()
    Trainer(tiny_cfg(feature_dir, "optim.epochs=1", "trainer.resume=false"), tmp_path).fit()
    assert (tmp_path / "superseded" / "1" / "metrics.json").read_bytes() == metrics
    assert (tmp_path / "superseded" / "1" / "checkpoints" / "last.pt").is_file()
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "finished"


def test_corrupt_checkpoint_is_an_error_and_is_not_overwritten(feature_dir, tmp_path):
    cfg = tiny_cfg(feature_dir, "optim.epochs=1")
    Trainer(cfg, tmp_path).fit()
    path = tmp_path / "checkpoints" / "last.pt"
    path.write_bytes(path.read_bytes()[:1000])  # truncated
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match="corrupt, truncated"):
        Trainer(cfg, tmp_path).fit()
    assert path.read_bytes() == before


def test_architecture_mismatch_lists_the_keys(feature_dir, tmp_path):
    from tp2detr.engine.checkpoint import check_architecture
    from tp2detr.errors import ConfigError

    Trainer(tiny_cfg(feature_dir, "optim.epochs=1"), tmp_path).fit()
    with pytest.raises(ConfigError, match=r"cannot resume.*model.decoder_layers: checkpoint 2, now 1"):
        Trainer(tiny_cfg(feature_dir, "optim.epochs=1", "model.decoder_layers=1"), tmp_path).fit()
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")["model"]
    with pytest.raises(CheckpointError, match=r"does not match the model.*unexpected: heads.actionness.1.bias.*\(30 in all\)"):
        check_architecture(build_model(tiny_cfg(feature_dir, "model.decoder_layers=1")), state)


@pytest.mark.parametrize("rule,label", [("val", "held-out validation"), ("test_best", "TEST set (oracle")])
def test_selection_rules(feature_dir, tmp_path, rule, label):
    doc = Trainer(tiny_cfg(feature_dir, f"trainer.selection={rule}", "trainer.val_fraction=0.25"), tmp_path).fit()
    assert label in doc["selection_label"]
    key = "val" if rule == "val" else "eval"
    scored = [e for e in doc["epochs"] if e[key] is not None]
    best = max(scored, key=lambda e: e[key]["mAP"])
    assert doc["selected"]["epoch"] == best["epoch"]
    if rule == "val":
        assert all(e["val"]["num_videos"] > 0 for e in scored)
    state = load_checkpoint(tmp_path / "checkpoints" / "selected.pt")
    assert state["epoch"] == best["epoch"] + 1


def test_parameter_groups_follow_the_released_code(feature_dir):
    cfg = tiny_cfg(feature_dir)
    model = build_model(cfg)
    groups = {g["name"]: g for g in parameter_groups(model, cfg.optim)}
    ids = {name: {id(p) for p in g["params"]} for name, g in groups.items()}
    named = dict(model.named_parameters())
    assert groups["base"]["lr"] == pytest.approx(1e-4)
    assert groups["tfpn"]["lr"] == pytest.approx(2e-5)
    assert groups["linear_proj"]["lr"] == pytest.approx(1e-5)
    assert id(named["transformer.reference_points.weight"]) in ids["linear_proj"]
    assert all(id(p) in ids["tfpn"] for n, p in named.items() if n.startswith("tfpn."))
    assert all(id(p) in ids["linear_proj"] for n, p in named.items() if "sampling_offsets" in n)
    assert id(named["transformer.level_embed"]) in ids["base"]
    assert sum(len(v) for v in ids.values()) == len(named)


def test_nan_loss_stops_with_a_clear_error(feature_dir, tmp_path, monkeypatch):
    import dataclasses

    real_build = trainer_module.build_criterion

    def poisoned(loss_cfg):
        criterion = real_build(loss_cfg)

        def call(*args, **kwargs):
            out = criterion(*args, **kwargs)
            return dataclasses.replace(out, total=out.total * float("nan"))

        return call

    monkeypatch.setattr(trainer_module, "build_criterion", poisoned)
    with pytest.raises(TrainingDiverged, match="epoch 0, step 0: the loss is nan"):
        Trainer(tiny_cfg(feature_dir, "optim.epochs=1"), tmp_path).fit()
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "diverged"


def test_a_full_disk_while_writing_a_checkpoint_keeps_the_previous_one(feature_dir, tmp_path, monkeypatch):
    import errno
    import os

    from tp2detr.engine.checkpoint import save_checkpoint

    Trainer(tiny_cfg(feature_dir, "optim.epochs=1"), tmp_path).fit()
    path = tmp_path / "checkpoints" / "last.pt"
    before = path.read_bytes()

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)  # the write reaches the temp file, the flush fails
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(path, {"model": {}, "epoch": 9, "config": {}})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt", "selected.pt"]


def test_atomic_write_leaves_no_partial_file_on_failure(tmp_path, monkeypatch):
    import errno
    import os

    from tp2detr.io import atomic_write_bytes

    target = tmp_path / "file.bin"
    target.write_bytes(b"old")
    real_fsync = os.fsync

    def failing_fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new contents")
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]


def test_a_group_write_changes_all_files_or_none(tmp_path, monkeypatch):
    import errno
    import os

    from tp2detr.errors import OutputWriteError
    from tp2detr.io import atomic_write_group

    a, b = tmp_path / "a.bin", tmp_path / "sub" / "b.json"
    atomic_write_group([(a, b"A1"), (b, b"B1")])
    assert (a.read_bytes(), b.read_bytes()) == (b"A1", b"B1")
    calls = []
    real_fsync = os.fsync

    def second_fails(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", second_fails)
    with pytest.raises(OutputWriteError, match=r"b.json: cannot write \(No space left on device\); none of a.bin, b.json"):
        atomic_write_group([(a, b"A2"), (b, b"B2")])
    monkeypatch.undo()
    assert (a.read_bytes(), b.read_bytes()) == (b"A1", b"B1")  # the first file was not renamed either
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.bin", "b.json", "sub"]


def test_compile_is_refused_on_cpu_with_a_reason(feature_dir, tmp_path):
    trainer = Trainer(tiny_cfg(feature_dir, "trainer.compile=true", "trainer.device=cpu"), tmp_path)
    with pytest.raises(ValueError, match="trainer.compile=true on CPU"):
        trainer.setup()
