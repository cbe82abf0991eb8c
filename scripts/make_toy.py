"""Regenerate the committed toy dataset (data/toy/) from its seed, or check it is unchanged.

    python scripts/make_toy.py                 # writes data/toy/{annotations,feature_info}.json + splits/
    python scripts/make_toy.py --check         # exit 1 if the committed files differ from the seed's
    python scripts/make_toy.py --out /tmp/toy --seed 1

Features for it: python scripts/make_synthetic.py dataset=toy
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tp2detr.data.toy import make_toy_dataset, toy_files, write_toy_dataset

REPO_ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "data" / "toy", help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (the committed data uses 0)")
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    if args.check:
        expected = toy_files(make_toy_dataset(args.seed))
        differing = [
            rel for rel, data in expected.items()
            if not (args.out / rel).is_file() or (args.out / rel).read_bytes() != data
        ]
        for rel in differing:
            print(f"differs or missing: {args.out / rel}")
        print(f"{len(expected) - len(differing)}/{len(expected)} files match seed {args.seed}")
        return 1 if differing else 0
    written = write_toy_dataset(args.out, args.seed)
    size = sum(p.stat().st_size for p in written)
    print(f"wrote {len(written)} files ({size / 1024:.1f} KiB) under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
