"""Evaluate a checkpoint or a results file: ``python eval.py ckpt=PATH`` / ``python eval.py
predictions=FILE dataset=... split=... split.id=...`` (see tp2detr/cli/eval.py)."""

import sys

from tp2detr.cli.eval import main

if __name__ == "__main__":
    sys.exit(main())
