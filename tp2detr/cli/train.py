"""``python train.py [overrides]`` (console script ``tp2detr-train``): train one configuration.

    python train.py tfpn=transformer split=50_50 split.id=3
    python train.py -m split.id='range(10)'          # the ten splits, summarised at the end
    torchrun --nproc_per_node=2 train.py ...           # distributed data parallel

The run folder is named by the experiment, dataset, split and the other overrides given
(``configs/hydra/default.yaml``, :mod:`tp2detr.engine.run_identity`); re-running the same command
resumes from its ``checkpoints/last.pt`` when the configuration still fits the checkpoint's
(:mod:`tp2detr.engine.resume_policy`). The values are checked before anything is read
(:mod:`tp2detr.config_checks`). Exit status: 0 finished (or interrupted and saved); 2 a user error,
one ``error: ...`` line naming the file or key; 3 training diverged (the last good checkpoint is
kept); 1 a bug, with its traceback. In a multirun a failing or diverging split is recorded in its
``metrics.json`` and the sweep goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from tp2detr.cli.hydra_app import USER_ERRORS, one_line, run_hydra_command
from tp2detr.config_checks import check_config

log = logging.getLogger("tp2detr.train")


def run(cfg: DictConfig, overrides: list[str], run_dir: Path) -> tuple[int, float | None]:  # noqa: ARG001
    """Check the config, train; returns (exit status, the selected epoch's mAP for sweepers)."""
    from tp2detr.engine.distributed import shutdown_distributed
    from tp2detr.engine.run_document import record_failure
    from tp2detr.engine.trainer import Trainer

    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        check_config(cfg)
        trainer = Trainer(cfg, run_dir)
        try:
            doc = trainer.fit()
        finally:
            shutdown_distributed(trainer.dist)  # leave torchrun's process group (a no-op otherwise)
    except Exception as err:
        if not multirun:
            raise
        record_failure(cfg, run_dir, err)  # when the trainer had not recorded it yet
        if isinstance(err, USER_ERRORS):  # TrainingDiverged included: a message, no traceback
            log.error("split %s/%s failed; the sweep goes on: %s", cfg.split.setting, cfg.split.id, one_line(err))
        else:
            log.exception("split %s/%s failed; the sweep goes on", cfg.split.setting, cfg.split.id)
        return 0, None
    selected: dict[str, Any] | None = doc.get("selected")
    return 0, None if selected is None else float(selected["eval"]["mAP"])


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``train.py`` and the ``tp2detr-train`` console script; returns the exit status."""
    return run_hydra_command("train", run, argv, check=check_config)


if __name__ == "__main__":
    import sys

    sys.exit(main())
