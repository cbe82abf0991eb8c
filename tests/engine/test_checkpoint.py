"""Reading a checkpoint back for inference (tp2detr/engine/checkpoint.py): the weights without a
wrapper's prefix, the stored config with the command line on top, and how to run it."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from tp2detr.config import compose, repo_root
from tp2detr.engine.checkpoint import (
    CheckpointError,
    checkpoint_config,
    inference_settings,
    unwrap_state_dict,
)
from tp2detr.errors import ConfigError


def test_unwrap_state_dict_strips_wrapper_prefixes() -> None:
    weights = {"module._orig_mod.a.weight": torch.zeros(1), "module._orig_mod.b": torch.ones(1)}
    assert list(unwrap_state_dict(weights)) == ["a.weight", "b"]
    mixed = {"module.a": torch.zeros(1), "b": torch.zeros(1)}
    assert list(unwrap_state_dict(mixed)) == ["module.a", "b"]


def test_checkpoint_config_is_the_stored_one_with_only_the_given_keys_on_top() -> None:
    stored = compose(["dataset=toy", "trainer.precision=bf16", "trainer.eval_batch_size=16"])
    old_root = "/nonexistent/cluster/tp2detr"
    plain = OmegaConf.to_container(stored, resolve=True)
    plain["paths"]["root_dir"] = old_root
    plain["dataset"]["annotations"] = f"{old_root}/data/toy/annotations.json"
    del plain["dataset"]["evaluation"]["stitch_deduplicate"]  # a checkpoint older than the key
    overrides = ["trainer.device=cpu", "dataset.evaluation.stitch_deduplicate=true", "plots=true"]
    composed = compose(overrides, config_name="eval")
    config = checkpoint_config({"config": plain}, composed, overrides, "run.pt", app_keys={"plots"})
    assert config.trainer.device == "cpu" and config.dataset.evaluation.stitch_deduplicate is True
    assert config.trainer.precision == "bf16" and config.trainer.eval_batch_size == 16  # the stored run's
    assert "plots" not in config
    assert config.dataset.annotations == f"{repo_root()}/data/toy/annotations.json"  # rebased
    with pytest.raises(CheckpointError, match="run.pt: field 'config' is list"):
        checkpoint_config({"config": [1]}, composed, [], "run.pt")


def test_inference_settings_read_the_trainer_keys() -> None:
    settings = inference_settings(compose(["trainer.device=cpu", "trainer.eval_batch_size=7"]))
    assert settings.device == torch.device("cpu") and settings.batch_size == 7
    assert settings.amp_dtype is None and settings.precision == "fp32"  # auto on CPU
    with pytest.raises(ConfigError, match="trainer.precision is 'fp16'"):
        inference_settings(compose(["trainer.device=cpu", "trainer.precision=fp16"]))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_stored_cuda_device_on_a_machine_without_one_names_the_key() -> None:
    expected = r"trainer.device is 'cuda' \(the checkpoint's stored value.*expected trainer.device=auto or"
    with pytest.raises(ConfigError, match=expected):
        inference_settings(compose(["trainer.device=cuda"]))
