"""Train TP²-DETR: ``python train.py tfpn=transformer split=50_50`` (see tp2detr/cli/train.py)."""

import sys

from tp2detr.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
