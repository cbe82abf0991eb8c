"""``eval.py``: checkpoint mode, predictions-file mode and bad input, on the toy dataset."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from tp2detr.cli.eval import MOVED_KEYS, main
from tp2detr.stored_config import apply_overrides, rebase_paths
from tp2detr.config import CONFIG_DIR, REPO_ROOT, compose
from tp2detr.data.bundle import load_data
from tp2detr.data.feature_setup import build_dataset
from tp2detr.data.dataset import collate_samples
from tp2detr.evaluation.evaluate import evaluate_on_protocol
from tp2detr.engine.proposal_inference import predict_batches, video_proposals
from tp2detr.evaluation import load_predictions, write_predictions
from tp2detr.models.builder import build_model
from tiny_config import tiny_model

TINY = tiny_model(num_queries=5)
QUIET = ["hydra/job_logging=none", "hydra/hydra_logging=none"]  # in-process runs leave logging alone


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory, toy_checkpoints) -> dict:
    return toy_checkpoints.make(tmp_path_factory.mktemp("eval_cli"), TINY, epoch=3)


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "eval.py"), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )


def test_checkpoint_mode_writes_the_models_predictions_and_their_metrics(toy: dict, tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = run_script(f"ckpt={toy['ckpt']}", f"out_dir={out}", "trainer.precision=fp32", "trainer.device=cpu")
    assert done.returncode == 0, done.stderr
    written = load_predictions(out / "predictions.json")
    # the same model, run here, gives the same proposals (JSON floats round-trip exactly)
    cfg, model = toy["cfg"], toy["model"]
    bundle = load_data(cfg)
    loader = DataLoader(
        build_dataset(cfg, bundle, training=False),
        batch_size=64,
        collate_fn=partial(collate_samples, pad_multiple=model.length_multiple),
    )
    expected = video_proposals(predict_batches(model, loader, "cpu"), cfg.dataset.evaluation.nms_threshold)
    assert list(written) == list(expected)
    assert set(written) == {v.video_id for v in bundle.protocol.eval_videos}  # also videos without GT
    for video in expected:
        np.testing.assert_allclose(written[video][0], expected[video][0], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(written[video][1], expected[video][1], rtol=1e-5, atol=1e-6)
    document = json.loads((out / "eval_metrics.json").read_text())
    assert document["mode"] == "checkpoint" and document["epoch"] == 3 and document["split_id"] == 0
    assert document["dataset"] == "toy" and document["device"] == "cpu" and document["precision"] == "fp32"
    assert document["num_windows"] == len(bundle.eval_samples)
    metrics = evaluate_on_protocol(written, bundle.protocol, cfg.dataset)
    assert document["eval"] == json.loads(json.dumps(metrics))
    assert document["eval"]["num_gt"] == sum(len(s) for s in bundle.protocol.eval_ground_truth.values())
    row = f"| toy 50_50 split 0 (epoch 3) | {100 * metrics['ap']['0.3']:.2f} |"
    assert row in done.stdout and "AR@AN: AR@1" in done.stdout
    assert OmegaConf.load(out / "eval_config.yaml").model.num_queries == 5


def test_checkpoint_overrides_evaluate_another_split(toy: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    status = main(
        [f"ckpt={toy['ckpt']}", "split.id=1", "trainer.breakdown=false", "trainer.eval_batch_size=3",
         "trainer.device=cpu", f"out_dir={out}", *QUIET]
    )
    assert status == 0, capsys.readouterr().err
    document = json.loads((out / "eval_metrics.json").read_text())
    protocol = load_data(compose([*TINY, "split.id=1"])).protocol
    assert document["split_id"] == 1
    assert document["eval"]["num_gt"] == sum(len(s) for s in protocol.eval_ground_truth.values())
    assert document["eval"]["breakdown"] is None and document["eval"]["ar"] is not None
    config = OmegaConf.load(out / "eval_config.yaml")
    assert config.split.id == 1 and config.trainer.eval_batch_size == 3 and config.trainer.breakdown is False


def test_predictions_file_mode_evaluates_under_the_protocol(tmp_path: Path) -> None:
    protocol = load_data(compose(["dataset=toy", "split.id=2"])).protocol
    ground_truth = protocol.eval_ground_truth
    perfect = {video: (segs, np.linspace(0.9, 0.5, len(segs))) for video, segs in ground_truth.items()}
    without_gt = [v.video_id for v in protocol.eval_videos if v.video_id not in ground_truth]
    assert without_gt, "the toy split should have an evaluation video without unseen-class GT"
    perfect[without_gt[0]] = (np.array([[0.0, 3.0], [4.0, 9.0]]), np.array([1.0, 0.95]))  # dropped by the protocol
    results = tmp_path / "results.json"
    write_predictions(results, perfect)
    out = tmp_path / "out"
    done = run_script(f"predictions={results}", "dataset=toy", "split=50_50", "split.id=2", f"out_dir={out}")
    assert done.returncode == 0, done.stderr
    document = json.loads((out / "eval_metrics.json").read_text())
    assert document["mode"] == "predictions" and document["split"] == "50_50" and document["split_id"] == 2
    assert document["eval"]["ap"] == {"0.3": 1.0, "0.4": 1.0, "0.5": 1.0, "0.6": 1.0, "0.7": 1.0}
    assert document["eval"]["num_gt"] == sum(len(s) for s in ground_truth.values())
    assert document["eval"]["num_predictions"] == document["eval"]["num_gt"]
    assert "| toy 50_50 split 2 | 100.00 | 100.00 | 100.00 | 100.00 | 100.00 | 100.00 |" in done.stdout
    assert not (out / "predictions.json").exists()


def test_mismatched_architecture_lists_the_keys(
    toy: dict, tmp_path: Path, capsys: pytest.CaptureFixture, toy_checkpoints
) -> None:
    cfg = toy["cfg"]
    torch.manual_seed(0)
    deeper = build_model(compose([*TINY[:-2], "model.decoder_layers=3", "model.num_queries=6"]))
    bad = tmp_path / "mismatch.pt"
    toy_checkpoints.write(bad, deeper, cfg)  # weights of a 3-layer, 6-query model; config of a 2-layer, 5-query one
    status = main([f"ckpt={bad}", f"out_dir={tmp_path / 'out'}", *QUIET])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and err[0].startswith("error: ")
    assert str(bad) in err[0] and "unexpected: " in err[0] and "heads.bbox.2.layers.0.bias" in err[0]
    assert "shape mismatch: " in err[0] and "query_embed.weight" in err[0]
    # overriding the architecture on the command line is checked the same way
    status = main([f"ckpt={toy['ckpt']}", "model.decoder_layers=3", f"out_dir={tmp_path / 'out2'}", *QUIET])
    err = capsys.readouterr().err
    assert status == 2 and "missing: heads.actionness.2.bias" in err


def test_corrupt_or_foreign_checkpoints_give_a_clear_error(
    toy: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    truncated = tmp_path / "truncated.pt"
    data = toy["ckpt"].read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    status = main([f"ckpt={truncated}", f"out_dir={tmp_path / 'a'}", *QUIET])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and str(truncated) in err[0] and "corrupt" in err[0]
    assert truncated.read_bytes() == data[: len(data) // 2]
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    assert main([f"ckpt={foreign}", f"out_dir={tmp_path / 'b'}", *QUIET]) == 2
    assert "expected 'tp2detr-checkpoint-v1'" in capsys.readouterr().err
    assert main([f"ckpt={tmp_path / 'absent.pt'}", f"out_dir={tmp_path / 'c'}", *QUIET]) == 2
    assert "not found" in capsys.readouterr().err


def test_exactly_one_source_is_required(toy: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main([f"out_dir={tmp_path / 'a'}", *QUIET]) == 2
    assert "expected exactly one of ckpt=PATH" in capsys.readouterr().err
    both = [f"ckpt={toy['ckpt']}", f"predictions={tmp_path / 'x.json'}", f"out_dir={tmp_path / 'b'}", *QUIET]
    assert main(both) == 2
    assert main([f"ckpt={toy['ckpt']}", "trainer.device=gpu", f"out_dir={tmp_path / 'c'}", *QUIET]) == 2
    assert "trainer.device is 'gpu', expected one of auto, cpu, cuda" in capsys.readouterr().err


def test_apply_overrides_sets_replaces_and_deletes_only_what_was_given() -> None:
    stored = compose(["dataset=toy", "model.num_queries=5", "split.id=4"])
    overrides = [
        "split.id=1",
        "dataset=thumos14_synth",
        "~model.attn_backend",
        "+extra.key=7",
        "trainer.eval_batch_size=2",
        "trainer.device=cpu",
        "plots=true",
        "out_dir=/tmp/elsewhere",
    ]
    composed = compose(overrides, config_name="eval")
    config = apply_overrides(stored, composed, overrides, app_keys={"plots", "out_dir"})
    assert config.split.id == 1 and config.split.setting == "50_50"
    assert config.dataset.name == "thumos14_synth" and config.dataset.features.path.endswith(
        "thumos14_synth_d512_s0.h5"
    )
    assert "attn_backend" not in config.model and config.extra.key == 7
    assert config.model.num_queries == 5 and config.model.d_model == 32  # untouched: the checkpoint's
    assert config.trainer.eval_batch_size == 2 and config.trainer.device == "cpu"  # given: applied
    assert config.trainer.precision == stored.trainer.precision == "auto"  # not given: the checkpoint's
    assert "plots" not in config and "out_dir" not in config  # settings of the command, not of the model
    assert stored.split.id == 4 and "attn_backend" in stored.model
    with pytest.raises(ValueError, match="preset cannot be applied"):
        apply_overrides(stored, compose(["experiment=demo"], config_name="eval"), ["experiment=demo"])
    with pytest.raises(ValueError, match="has no key 'model.nothing'"):
        apply_overrides(stored, composed, ["~model.nothing"])


def test_rebase_paths_moves_only_missing_paths_under_the_old_root(tmp_path: Path) -> None:
    old = "/nonexistent/cluster/tp2detr"
    config = OmegaConf.create(
        {
            "paths": {"root_dir": old, "data_dir": f"{old}/data"},
            "dataset": {"annotations": f"{old}/data/toy/annotations.json", "splits": [f"{old}/a", "/elsewhere/b"]},
            "other": str(tmp_path),
        }
    )
    assert rebase_paths(config, "/new/root") == 4
    assert config.paths.root_dir == "/new/root" and config.paths.data_dir == "/new/root/data"
    assert config.dataset.annotations == "/new/root/data/toy/annotations.json"
    assert list(config.dataset.splits) == ["/new/root/a", "/elsewhere/b"] and config.other == str(tmp_path)
    same = OmegaConf.create({"paths": {"root_dir": "/new/root"}, "x": "/new/root/y"})
    assert rebase_paths(same, "/new/root") == 0
    existing = OmegaConf.create({"paths": {"root_dir": str(tmp_path)}, "x": str(tmp_path)})
    assert rebase_paths(existing, "/new/root") == 0  # paths that exist here are kept


@pytest.mark.parametrize("name", ["eval", "predict"])
def test_commands_define_no_run_settings_of_their_own(name: str) -> None:
    """eval.py and predict.py read the training config's keys (trainer.*, dataset.evaluation.*)."""
    own = OmegaConf.load(CONFIG_DIR / f"{name}.yaml")
    for key in ("device", "precision", "batch_size", "eval", "stitch_deduplicate"):
        assert key not in own, f"configs/{name}.yaml defines {key!r}"
    composed = compose([], config_name=name)
    assert composed.trainer.precision == "auto" and composed.trainer.eval_batch_size == 64
    assert composed.dataset.evaluation.stitch_deduplicate is False


@pytest.mark.parametrize(
    "arg,expected",
    [
        ("device=cpu", "eval.py has no key 'device' any more, expected trainer.device=cpu"),
        ("+precision=bf16", "expected trainer.precision=bf16"),
        ("eval.batch_size=8", "expected trainer.eval_batch_size=8"),
        ("eval.ar=false", "expected trainer.ar=false"),
        ("eval.breakdown=false", "expected trainer.breakdown=false"),
        ("eval.stitch_deduplicate=true", "expected dataset.evaluation.stitch_deduplicate=true"),
    ],
)
def test_a_moved_key_is_refused_naming_its_replacement(
    toy: dict, tmp_path: Path, capsys: pytest.CaptureFixture, arg: str, expected: str
) -> None:
    assert main([f"ckpt={toy['ckpt']}", arg, f"out_dir={tmp_path / 'out'}", *QUIET]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {arg}: ") and expected in err[0], err
    assert not (tmp_path / "out").exists()
    assert set(MOVED_KEYS) >= {"device", "precision", "eval.batch_size", "eval.ar", "eval.breakdown"}


def test_stitch_deduplicate_is_read_from_the_dataset_evaluation_block(
    toy: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tp2detr.engine import proposal_inference

    calls = []
    original = proposal_inference.video_proposals

    def spy(windows, nms_threshold, stitch_deduplicate=False):
        calls.append((nms_threshold, stitch_deduplicate))
        return original(windows, nms_threshold, stitch_deduplicate)

    monkeypatch.setattr(proposal_inference, "video_proposals", spy)
    out = tmp_path / "out"
    args = [f"ckpt={toy['ckpt']}", "trainer.device=cpu", "trainer.ar=false", "trainer.breakdown=false",
            "dataset.evaluation.stitch_deduplicate=true", f"out_dir={out}", *QUIET]
    assert main(args) == 0
    assert calls == [(0.4, True)]
    assert OmegaConf.load(out / "eval_config.yaml").dataset.evaluation.stitch_deduplicate is True
