"""Convert a folder of per-video ``<video_id>.npy`` features ``[T, C]`` into one HDF5 file.

    python scripts/convert_features.py --src data/features/thumos14_clip --dst data/features/thumos14_clip.h5
    python scripts/convert_features.py --src DIR --dst FILE.h5 --dtype float16

The file is written to a temporary name next to ``--dst``, checked video by video against the
source (equal after the cast to ``--dtype``), and only then renamed to ``--dst``. Use it with
``dataset.features.format=hdf5 dataset.features.path=FILE.h5``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from tp2detr.data.features import convert_npy_to_hdf5
from tp2detr.errors import TP2DETRError
from tp2detr.cli.hydra_app import run_script


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", required=True, type=Path, help="folder of <video_id>.npy files")
    parser.add_argument("--dst", required=True, type=Path, help="HDF5 file to write")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16"), help="on-disk dtype")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --dst")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.dst.exists() and not args.overwrite:
        print(f"{args.dst} exists; pass --overwrite to replace it", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        convert_npy_to_hdf5(args.src, args.dst, dtype=args.dtype)
    except TP2DETRError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(
        f"wrote {args.dst} ({args.dst.stat().st_size / 2**20:.1f} MiB, {args.dtype}) "
        f"in {time.perf_counter() - started:.1f} s; verified against {args.src}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
