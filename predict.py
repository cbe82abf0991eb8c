"""Proposals for your own videos: ``python predict.py input=VIDEO_OR_FEATURES ckpt=PATH
[clip_model=PATH] [top_k=100] [out_dir=...]`` (see tp2detr/cli/predict.py)."""

import sys

from tp2detr.cli.predict import main

if __name__ == "__main__":
    sys.exit(main())
