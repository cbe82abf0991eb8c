"""What ``trainer.resume`` does with a run folder: its mode, moving an earlier run's outputs aside
(``false``), and skipping the batches an interrupted epoch already took.

The checkpoint itself (writing, reading, checking its architecture) is
:mod:`tp2detr.engine.checkpoint`'s; which configuration changes a resume accepts is
:mod:`tp2detr.engine.run_identity`'s.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Iterator

from torch.utils.data import Sampler

from tp2detr.errors import ConfigError

log = logging.getLogger(__name__)

#: Files of a run folder that ``trainer.resume=false`` moves into ``superseded/<n>/``.
RUN_OUTPUTS = ("metrics.json", "predictions.json", "config.yaml", "checkpoints", "tb")


def resume_mode(value: Any) -> str:
    """``auto``, ``true`` or ``false`` for a ``trainer.resume`` value (YAML booleans included)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    mode = str(value).lower()
    if mode not in ("auto", "true", "false"):
        raise ConfigError(f"trainer.resume is {value!r}, expected auto, true or false")
    return mode


def supersede_previous(run_dir: Path) -> Path | None:
    """Move an earlier run's outputs in ``run_dir`` into ``superseded/<n>/`` (the first free n);
    returns that folder, or None when there was nothing to move."""
    present = [name for name in RUN_OUTPUTS if (run_dir / name).exists()]
    if not present:
        return None
    number = 1
    while (run_dir / "superseded" / str(number)).exists():
        number += 1
    target = run_dir / "superseded" / str(number)
    target.mkdir(parents=True)
    for name in present:
        shutil.move(str(run_dir / name), str(target / name))
    log.warning("trainer.resume=false: moved the previous run's %s into %s", ", ".join(present), target)
    return target


class SkipFirst(Sampler):
    """Yields ``sampler``'s indices without the first ``skip`` (to resume inside an epoch)."""

    def __init__(self, sampler: Sampler, skip: int) -> None:
        self.sampler, self.skip = sampler, skip

    def __iter__(self) -> Iterator[int]:
        for i, index in enumerate(self.sampler):
            if i >= self.skip:
                yield index

    def __len__(self) -> int:
        return max(len(self.sampler) - self.skip, 0)
