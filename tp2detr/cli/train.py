"""``python train.py [overrides]`` (console script ``tp2detr-train``): train one configuration.

    python train.py tfpn=transformer split=50_50 split.id=3
    python train.py -m split.id='range(10)'          # the ten splits, summarised at the end
    torchrun --nproc_per_node=2 train.py ...           # distributed data parallel

The run folder is Hydra's run directory (``configs/hydra/default.yaml``); re-running the same
command resumes from its ``checkpoints/last.pt``. In a multirun a failing split is recorded as
failed in its ``metrics.json`` and the sweep goes on; a single run exits with status 1.
"""

from __future__ import annotations

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from tp2detr.config import CONFIG_DIR, normalise_overrides

log = logging.getLogger("tp2detr.train")


@hydra.main(config_path=str(CONFIG_DIR), config_name="train", version_base="1.3")
def _run(cfg: DictConfig) -> float | None:
    from tp2detr.engine.trainer import Trainer

    hydra_cfg = HydraConfig.get()
    run_dir = hydra_cfg.runtime.output_dir
    try:
        doc = Trainer(cfg, run_dir).fit()
    except Exception:
        if hydra_cfg.mode == RunMode.MULTIRUN:
            log.exception("split %s/%s failed; the sweep goes on", cfg.split.setting, cfg.split.id)
            return None
        raise
    selected = doc.get("selected")
    return None if selected is None else float(selected["eval"]["mAP"])


def main() -> None:
    """Console-script entry point (split names such as ``50_50`` are quoted for Hydra first)."""
    sys.argv = [sys.argv[0], *normalise_overrides(sys.argv[1:])]
    _run()


if __name__ == "__main__":
    main()
