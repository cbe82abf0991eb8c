"""Print the zero-shot protocol's counts for one dataset × split as one JSON line.

Usage (the same Hydra overrides as training):

    python scripts/dataset_stats.py dataset=thumos14 split=50_50 split.id=3

Needs only annotations, feature info and split lists — no features.
"""

from __future__ import annotations

import json
import logging
import sys

from tp2detr.config import compose
from tp2detr.data.bundle import load_data
from tp2detr.data.statistics import dataset_statistics
from tp2detr.cli.hydra_app import run_script


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cfg = compose(argv)
    bundle = load_data(cfg)
    stats = {"dataset": cfg.dataset.name, "split": str(cfg.split.setting), "split_id": int(cfg.split.id)}
    stats.update(dataset_statistics(bundle))
    print(json.dumps(stats))
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
