"""Running a Hydra-configured command (``eval.py``, ``predict.py``) as a function with an exit status."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from tp2detr.config import CONFIG_DIR, normalise_overrides

#: ``run(cfg, command-line overrides, output folder) -> exit status``.
CommandRun = Callable[[DictConfig, list[str], Path], int]


def run_hydra_command(config_name: str, run: CommandRun, argv: Sequence[str] | None = None) -> int:
    """Compose ``configs/<config_name>.yaml`` with ``argv`` (default ``sys.argv[1:]``; split names such
    as ``50_50`` are quoted for Hydra first, :func:`tp2detr.config.normalise_overrides`) under Hydra
    and call ``run`` with the config, the overrides as given and Hydra's output folder.

    Returns:
        ``run``'s exit status (0 when Hydra itself handled the call, e.g. ``--help``).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    outcome: dict[str, int] = {}

    @hydra.main(config_path=str(CONFIG_DIR), config_name=config_name, version_base="1.3")
    def app(cfg: DictConfig) -> None:
        hydra_cfg = HydraConfig.get()
        outcome["status"] = run(cfg, list(hydra_cfg.overrides.task), Path(hydra_cfg.runtime.output_dir))

    saved_argv = sys.argv
    sys.argv = [saved_argv[0], *normalise_overrides(args)]
    try:
        app()
    finally:
        sys.argv = saved_argv
    return outcome.get("status", 0)
