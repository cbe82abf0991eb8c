"""Composing the project's Hydra configuration outside of ``@hydra.main`` (scripts, tests).

``configs/`` lives at the repository root. ``paths.root_dir`` resolves to that root through the
``tp2detr_root`` resolver (or the ``TP2DETR_ROOT`` environment variable), so input paths do not
depend on the working directory that Hydra picks for a run.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig, OmegaConf

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO_ROOT / "configs"


def repo_root() -> str:
    """The repository root (``TP2DETR_ROOT`` when set)."""
    return os.environ.get("TP2DETR_ROOT", str(REPO_ROOT))


def _variant(overrides: object) -> str:
    from tp2detr.engine.run_identity import variant_suffix

    items = OmegaConf.to_container(overrides, resolve=False) if OmegaConf.is_config(overrides) else overrides
    return variant_suffix(items or [])


def register_resolvers() -> None:
    """Register the ``${tp2detr_root:}`` resolver used by ``configs/paths`` and the
    ``${tp2detr_variant:${hydra.overrides.task}}`` resolver that names run folders
    (:func:`tp2detr.engine.run_identity.variant_suffix`); idempotent."""
    if not OmegaConf.has_resolver("tp2detr_root"):
        OmegaConf.register_new_resolver("tp2detr_root", repo_root)
    if not OmegaConf.has_resolver("tp2detr_variant"):
        OmegaConf.register_new_resolver("tp2detr_variant", _variant)


register_resolvers()


_NUMERIC_NAME = re.compile(r"^\d+(_\d+)+$")
_OVERRIDE = re.compile(r"^(?P<key>[~+]{0,2}split)=(?P<value>.+)$")


def normalise_overrides(args: Sequence[str]) -> list[str]:
    """Quote split names such as ``50_50`` in command-line overrides.

    Hydra's override grammar reads ``split=50_50`` as the integer 5050 (Python allows ``_`` in
    int literals) and then refuses it as a group choice. This rewrites ``split=50_50`` to
    ``split='50_50'`` (also inside sweeps: ``split=50_50,75_25``); everything else is unchanged.
    """
    out = []
    for arg in args:
        match = _OVERRIDE.match(arg)
        if match:
            parts = match.group("value").split(",")
            if all(_NUMERIC_NAME.match(p) for p in parts):
                arg = match.group("key") + "=" + ",".join(f"'{p}'" for p in parts)
        out.append(arg)
    return out


def compose(overrides: Sequence[str] = (), config_name: str = "config") -> DictConfig:
    """Compose ``configs/<config_name>.yaml`` with Hydra command-line style ``overrides``."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=normalise_overrides(overrides))
