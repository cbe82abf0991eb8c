"""Run by tests/engine/test_distributed.py under torchrun: train the tiny toy model for one epoch."""

import sys

from tp2detr.config import compose
from tp2detr.engine.distributed import shutdown_distributed
from tp2detr.engine.trainer import Trainer

if __name__ == "__main__":
    run_dir, overrides = sys.argv[1], sys.argv[2:]
    trainer = Trainer(compose(overrides), run_dir)
    trainer.fit()
    shutdown_distributed(trainer.dist)
