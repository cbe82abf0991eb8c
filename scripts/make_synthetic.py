"""Write a semi-synthetic feature store (HDF5) for a dataset with a ``synthetic`` block.

Usage (Hydra overrides of configs/config.yaml; no output folders are created):

    python scripts/make_synthetic.py dataset=thumos14_synth
    python scripts/make_synthetic.py dataset=anet13_synth dataset.synthetic.dim=64
    python scripts/make_synthetic.py dataset=toy paths.feature_dir=/tmp/features
    python scripts/make_synthetic.py dataset=thumos14_synth +force=true   # regenerate anyway

The store goes to ``dataset.features.path``. It is skipped when a file there already carries the
same knobs, seed, dtype, generator version and input fingerprint (HDF5 root attributes).
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from tp2detr.config import compose
from tp2detr.data.feature_setup import make_synthetic_features
from tp2detr.errors import TP2DETRError
from tp2detr.cli.hydra_app import run_script


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = compose(argv)
    path = Path(str(cfg.dataset.features.path))
    started = time.perf_counter()
    try:
        written = make_synthetic_features(cfg, force=bool(cfg.get("force", False)))
    except (TP2DETRError, ValueError) as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    size_mib = path.stat().st_size / 2**20
    if written:
        print(f"wrote {path} ({size_mib:.1f} MiB) in {time.perf_counter() - started:.1f} s")
    else:
        print(f"{path} is up to date ({size_mib:.1f} MiB); pass +force=true to regenerate")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
