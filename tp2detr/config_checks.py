"""Checking a composed configuration's values before any data is read or any model is built.

Hydra checks that keys exist and that group choices name a file; it does not check values:
``optim.lr=abc`` or ``split.id=12`` would otherwise fail deep inside training (or, for a split
list, after the annotations are read). :func:`check_config` runs every rule of :data:`RULES`
over the keys a config has and raises one :class:`~tp2detr.errors.ConfigError` that lists every
bad key, the value found and the value expected. ``train.py`` checks its composed config;
``eval.py`` and ``predict.py`` check the config they run a checkpoint with (the stored one with the
command line's keys on top), and ``eval.py`` its composed config in predictions mode.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from tp2detr.errors import ConfigError

#: A rule returns None for a good value, else what it expected (e.g. "a number > 0").
Rule = Callable[[Any], "str | None"]


def _number(value: Any, whole: bool) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def real(low: float | None = None, high: float | None = None, *, low_open: bool = False,
         high_open: bool = False, optional: bool = False, whole: bool = False) -> Rule:
    """A finite number (an integer when ``whole``) in [low, high]; ``low_open``/``high_open``
    exclude the bound, ``optional`` accepts null."""
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    kind = "an integer" if whole else "a number"
    expected = kind + (" " + " and ".join(parts) if parts else "") + (" or null" if optional else "")

    def rule(value: Any) -> str | None:
        if value is None and optional:
            return None
        x = _number(value, whole)
        if x is None:
            return expected
        if low is not None and (x < low or (low_open and x == low)):
            return expected
        if high is not None and (x > high or (high_open and x == high)):
            return expected
        return None

    return rule


def integer(low: int | None = None, high: int | None = None, *, optional: bool = False) -> Rule:
    """An integer in [low, high] (null too when ``optional``)."""
    return real(low, high, optional=optional, whole=True)


def boolean(value: Any) -> str | None:
    """true or false."""
    return None if isinstance(value, bool) else "true or false"


def choice(*options: Any) -> Rule:
    """One of ``options``."""
    expected = "one of " + ", ".join(str(o) for o in options)

    def rule(value: Any) -> str | None:
        return None if value in options and not (isinstance(value, bool) and True not in options) else expected

    return rule


def _rules() -> dict[str, Rule]:
    from tp2detr.data.features import FEATURE_FORMATS
    from tp2detr.engine.compilation import COMPILE_MODES
    from tp2detr.losses.criterion import SALIENT_LOSS_FORMS
    from tp2detr.models.heads import HEAD_INITS
    from tp2detr.models.salient import SALIENT_DESIGNS, SALIENT_FUSIONS, SALIENT_MODES, SALIENT_UPSAMPLING
    from tp2detr.models.tfpn import TFPN_NAMES

    positive, non_negative, fraction = real(0, low_open=True), real(0), real(0, 1, high_open=True)
    return {
        "seed": integer(0),
        # optim/
        "optim.lr": positive,
        "optim.lr_tfpn": non_negative,
        "optim.lr_linear_proj_mult": non_negative,
        "optim.weight_decay": non_negative,
        "optim.epochs": integer(1),
        "optim.lr_drop_epoch": integer(1),
        "optim.lr_drop_gamma": real(0, 1, low_open=True),
        "optim.batch_size": integer(1),
        "optim.clip_max_norm": real(0, optional=True),
        # model/
        "model.d_model": integer(1),
        "model.n_heads": integer(1),
        "model.encoder_layers": integer(0),
        "model.decoder_layers": integer(1),
        "model.dim_feedforward": integer(1),
        "model.dropout": fraction,
        "model.encoder_points": integer(1),
        "model.decoder_points": integer(1),
        "model.num_queries": integer(1),
        "model.box_refine": boolean,
        "model.separate_heads": boolean,
        "model.head_init": choice(*HEAD_INITS),
        "model.attn_backend": choice("auto", "pytorch", "cpp", "cuda"),
        # tfpn/ and salient/
        "tfpn.name": choice(*TFPN_NAMES),
        "tfpn.num_levels": integer(1),
        "tfpn.stem_layers": integer(0),
        "tfpn.window_size": integer(1),
        "tfpn.qkv_norm": boolean,
        "tfpn.attn_dropout": fraction,
        "tfpn.proj_dropout": fraction,
        "tfpn.sgp_window_size": integer(1),
        "tfpn.sgp_mlp_dim": integer(1),
        "tfpn.sgp_mean_over_valid": boolean,
        "salient.mode": choice(*SALIENT_MODES),
        "salient.design": choice(*SALIENT_DESIGNS),
        "salient.fusion": choice(*SALIENT_FUSIONS),
        "salient.upsample": choice(*SALIENT_UPSAMPLING),
        # loss/
        "loss.matcher.cost_l1": non_negative,
        "loss.matcher.cost_iou": non_negative,
        "loss.matcher.cost_focal": non_negative,
        "loss.matcher.alpha": real(0, 1),
        "loss.matcher.gamma": non_negative,
        "loss.weight_l1": non_negative,
        "loss.weight_iou": non_negative,
        "loss.weight_actionness": non_negative,
        "loss.weight_salient": non_negative,
        "loss.salient_loss_form": choice(*SALIENT_LOSS_FORMS),
        "loss.salient_fpn_weight": non_negative,
        "loss.salient_enc_weight": non_negative,
        "loss.aux_loss": boolean,
        # trainer/ and data/ (eval.py and predict.py read trainer.device, trainer.precision,
        # trainer.eval_batch_size, trainer.ar and trainer.breakdown too)
        "trainer.device": choice("auto", "cpu", "cuda"),
        "trainer.precision": choice("auto", "fp32", "bf16"),
        "trainer.num_threads": integer(1, optional=True),
        "trainer.compile": choice(*COMPILE_MODES, False),
        "trainer.eval_every": integer(1),
        "trainer.eval_untrained": boolean,
        "trainer.eval_batch_size": integer(1),
        "trainer.selection": choice("last", "val", "test_best"),
        "trainer.val_fraction": real(0, 1, low_open=True, high_open=True),
        "trainer.resume": choice("auto", True, False),
        "trainer.ar": boolean,
        "trainer.breakdown": boolean,
        "trainer.log_every": integer(1),
        "trainer.progress": boolean,
        "trainer.divergence.factor": real(1, low_open=True, optional=True),
        "data.on_missing": choice("error", "skip"),
        "data.num_workers": integer(0),
        "data.validate": choice("full", "headers", "off"),
        # dataset/
        "dataset.features.format": choice(*FEATURE_FORMATS),
        "dataset.features.dim": integer(1),
        "dataset.features.length_tolerance": integer(0),
        "dataset.windowing.size": integer(1),
        "dataset.evaluation.nms_threshold": real(0, 1, optional=True),
        "dataset.evaluation.stitch_deduplicate": boolean,
    }


def _select(cfg: DictConfig, key: str) -> tuple[bool, Any]:
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, DictConfig) or part not in node:
            return False, None
        node = node[part]
    if isinstance(node, DictConfig) or OmegaConf.is_list(node):
        return True, OmegaConf.to_container(node, resolve=True)
    return True, node


def available_split_ids(splits_dir: str | Path, setting: str) -> list[int]:
    """The split ids that have a seen-class list under ``splits_dir/setting/train/``."""
    folder = Path(splits_dir) / str(setting) / "train"
    ids = []
    for path in folder.glob("split_*.list"):
        suffix = path.stem[len("split_"):]
        if suffix.isdigit():
            ids.append(int(suffix))
    return sorted(ids)


def _split_problems(cfg: DictConfig) -> list[str]:
    ok_dir, splits_dir = _select(cfg, "dataset.splits_dir")
    ok_setting, setting = _select(cfg, "split.setting")
    ok_id, split_id = _select(cfg, "split.id")
    if not (ok_dir and ok_setting and ok_id) or not Path(str(splits_dir)).is_dir():
        return []  # a missing folder is reported, naming it, when the split is read
    settings = sorted(p.name for p in Path(str(splits_dir)).iterdir() if (p / "train").is_dir())
    if str(setting) not in settings:
        return [f"split.setting is {setting!r}, expected one of {', '.join(settings)} (folders of {splits_dir})"]
    ids = available_split_ids(str(splits_dir), str(setting))
    if isinstance(split_id, bool) or not isinstance(split_id, int) or split_id not in ids:
        shown = f"{ids[0]}..{ids[-1]}" if ids == list(range(ids[0], ids[-1] + 1)) else ", ".join(map(str, ids))
        return [f"split.id is {split_id!r}, expected one of the {len(ids)} {setting} splits of "
                f"{cfg.dataset.name}: {shown}"]
    return []


def config_problems(cfg: DictConfig) -> list[str]:
    """Every problem of ``cfg``'s values, one line each (empty when the config is good)."""
    problems = []
    for key, rule in _rules().items():
        try:
            present, value = _select(cfg, key)
        except OmegaConfBaseException as err:
            problems.append(f"{key}: cannot be resolved ({err})")
            continue
        if not present:
            continue
        expected = rule(value)
        if expected is not None:
            problems.append(f"{key} is {value!r}, expected {expected}")
    present_d, d_model = _select(cfg, "model.d_model")
    present_h, heads = _select(cfg, "model.n_heads")
    if present_d and present_h and isinstance(d_model, int) and isinstance(heads, int) and heads > 0:
        if d_model % heads:
            problems.append(
                f"model.d_model is {d_model} (= dataset.features.dim), expected a multiple of model.n_heads={heads}"
            )
    problems += _split_problems(cfg)
    return problems


def check_config(cfg: DictConfig, source: str = "the configuration") -> None:
    """Raise :class:`ConfigError` naming every bad value of ``cfg`` (see :func:`config_problems`)."""
    problems = config_problems(cfg)
    if problems:
        raise ConfigError(f"{source} has {len(problems)} bad value(s): " + "; ".join(problems))
