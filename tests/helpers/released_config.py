"""Modules built from the committed config groups, for tests: the released defaults live in
``configs/`` only (the constructors take every value explicitly), so a test that wants "the
released criterion, except X" builds it from the YAML and overrides X."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from tp2detr.losses.criterion import SetCriterion, criterion_arguments
from tp2detr.losses.hungarian_matcher import HungarianMatcher, build_matcher

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


def config_group(group: str, option: str = "default") -> DictConfig:
    """``configs/<group>/<option>.yaml`` as a config (no interpolation is resolved)."""
    return OmegaConf.load(CONFIG_DIR / group / f"{option}.yaml")


def released_matcher(**overrides: Any) -> HungarianMatcher:
    """The matcher of ``configs/loss/default.yaml``, with ``overrides`` of its keys."""
    return build_matcher({**OmegaConf.to_container(config_group("loss").matcher), **overrides})


def released_criterion(**overrides: Any) -> SetCriterion:
    """The criterion of ``configs/loss/default.yaml``; ``overrides`` are :class:`SetCriterion`
    arguments (e.g. ``weight_actionness=2.0``, ``matcher=...``)."""
    return SetCriterion(**{**criterion_arguments(config_group("loss")), **overrides})


def config_tfpn(name: str, d_model: int = 512, num_heads: int = 8, **overrides: Any):
    """``build_tfpn`` of ``configs/tfpn/<name>.yaml`` with ``overrides`` of its keys (an unknown
    ``name`` keeps the transformer file's other keys, so that the builder's own check runs)."""
    from tp2detr.models.tfpn import build_tfpn

    option = name if (CONFIG_DIR / "tfpn" / f"{name}.yaml").is_file() else "transformer"
    tfpn = {**OmegaConf.to_container(config_group("tfpn", option)), "name": name, **overrides}
    return build_tfpn(tfpn, d_model=d_model, num_heads=num_heads)


def _model_group(d_model: int) -> dict[str, Any]:
    return {**OmegaConf.to_container(config_group("model", "tp2detr")), "d_model": d_model}


def config_transformer(d_model: int = 512, num_levels: int = 4, **overrides: Any):
    """``DeformableTransformer`` of ``configs/model/tp2detr.yaml``; ``overrides`` are its
    constructor arguments (``n_heads=4``, ``num_queries=6``, ...)."""
    from tp2detr.models.transformer import DeformableTransformer, transformer_arguments

    return DeformableTransformer(**{**transformer_arguments(_model_group(d_model), num_levels), **overrides})


def config_heads(d_model: int = 512, n_decoder_layers: int = 5, **overrides: Any):
    """``PredictionHeads`` with ``configs/model/tp2detr.yaml``'s ``separate_heads`` and ``head_init``
    unless overridden (``separate=``, ``init=``)."""
    from tp2detr.models.heads import PredictionHeads

    model = _model_group(d_model)
    arguments = {"separate": model["separate_heads"], "init": model["head_init"], **overrides}
    return PredictionHeads(d_model=d_model, n_decoder_layers=n_decoder_layers, **arguments)


def config_salient(d_model: int = 512, num_levels: int = 4, option: str = "mlp", **overrides: Any):
    """``SalientHeads`` of ``configs/salient/<option>.yaml`` (the default ``mlp``), with
    ``overrides`` of its keys (``mode``, ``design``, ``fusion``, ``upsample``)."""
    from tp2detr.models.salient import build_salient

    return build_salient({**OmegaConf.to_container(config_group("salient", option)), **overrides}, d_model, num_levels)
