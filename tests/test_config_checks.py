"""The value rules checked before a run reads anything (tp2detr/config_checks.py)."""

from __future__ import annotations

import pytest

from tp2detr.config import compose
from tp2detr.config_checks import available_split_ids, check_config, config_problems
from tp2detr.errors import ConfigError


def test_the_default_and_every_preset_pass():
    assert config_problems(compose([])) == []
    assert config_problems(compose(["experiment=paper_anet13"])) == []


@pytest.mark.parametrize("command", ["eval", "predict"])
def test_the_commands_configs_pass_and_are_checked_on_the_keys_they_read(command):
    assert config_problems(compose([], config_name=command)) == []
    problems = config_problems(compose(["trainer.precision=fp16"], config_name=command))
    assert "trainer.precision is 'fp16', expected one of auto, fp32, bf16" in problems


@pytest.mark.parametrize("override,expected", [
    ("optim.lr=abc", "optim.lr is 'abc', expected a number > 0"),
    ("optim.lr=-1", "optim.lr is -1, expected a number > 0"),
    ("optim.epochs=2.5", "optim.epochs is 2.5, expected an integer >= 1"),
    ("optim.batch_size=true", "optim.batch_size is True, expected an integer >= 1"),
    ("model.dropout=1.0", "model.dropout is 1.0, expected a number >= 0 and < 1"),
    ("trainer.precision=fp16", "trainer.precision is 'fp16', expected one of auto, fp32, bf16"),
    ("trainer.device=gpu", "trainer.device is 'gpu', expected one of auto, cpu, cuda"),
    ("trainer.eval_batch_size=0", "trainer.eval_batch_size is 0, expected an integer >= 1"),
    ("trainer.ar=yes", "trainer.ar is 'yes', expected true or false"),
    ("dataset.evaluation.nms_threshold=1.5",
     "dataset.evaluation.nms_threshold is 1.5, expected a number >= 0 and <= 1 or null"),
    ("dataset.evaluation.stitch_deduplicate=1", "dataset.evaluation.stitch_deduplicate is 1, expected true or false"),
    ("trainer.resume=maybe", "trainer.resume is 'maybe', expected one of auto, True, False"),
    ("salient.fusion=median", "salient.fusion is 'median', expected one of max, mean, mix, adaptive"),
    ("data.validate=some", "data.validate is 'some', expected one of full, headers, off"),
    ("split.id=12", "split.id is 12, expected one of the 10 50_50 splits of thumos14: 0..9"),
    ("model.n_heads=7", "model.d_model is 512 (= dataset.features.dim), expected a multiple of model.n_heads=7"),
])
def test_a_bad_value_is_named_with_what_was_expected(override, expected):
    problems = config_problems(compose([override]))
    assert expected in problems, problems


def test_all_problems_are_reported_at_once():
    with pytest.raises(ConfigError, match=r"has 3 bad value\(s\): optim.lr .*trainer.eval_every .*split.id"):
        check_config(compose(["optim.lr=x", "trainer.eval_every=0", "split.id=-1"]))


def test_split_ids_come_from_the_lists_on_disk(tmp_path):
    for i in (0, 2, 5):
        (tmp_path / "50_50" / "train").mkdir(parents=True, exist_ok=True)
        (tmp_path / "50_50" / "train" / f"split_{i}.list").write_text("a\n")
    assert available_split_ids(tmp_path, "50_50") == [0, 2, 5]
    problems = config_problems(compose([f"dataset.splits_dir={tmp_path}", "split.id=1"]))
    assert any("expected one of the 3 50_50 splits of thumos14: 0, 2, 5" in p for p in problems)
    problems = config_problems(compose([f"dataset.splits_dir={tmp_path}", "split=75_25"]))
    assert any("split.setting is '75_25', expected one of 50_50" in p for p in problems)
