"""Rebuild the Table-1 style summary from finished run or sweep folders.

    python scripts/report.py outputs/sweeps/paper_thumos14/2025-01-01_10-00-00
    python scripts/report.py outputs/sweeps/table1_thumos14_* --out table1.md --json table1.json

Every folder may be a single run folder (``metrics.json``) or a sweep folder holding many; runs
are grouped by experiment name, dataset and split setting, so several variants come out side by
side, one row each (mean ± std over their finished splits), in the order the folders are given.
Runs that did not finish are listed as such. The markdown goes to stdout (and ``--out``).

Exit status: 0 when at least one run finished, 1 when runs were found but none finished or no
run was found, 2 when a folder does not exist.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tp2detr.engine.runs import collect_runs
from tp2detr.engine.sweep import render_markdown, summarise
from tp2detr.errors import MissingDataError
from tp2detr.io import atomic_open, atomic_write_json


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="run or sweep folders")
    parser.add_argument("--out", type=Path, help="also write the markdown here")
    parser.add_argument("--json", type=Path, help="also write the summary document (JSON) here")
    args = parser.parse_args(argv)

    try:
        runs = collect_runs(args.dirs)
    except MissingDataError as exc:
        print(f"report.py: {exc}", file=sys.stderr)
        return 2
    summary = summarise(runs, sources=args.dirs)
    markdown = render_markdown(summary)
    print(markdown)
    if args.out:
        with atomic_open(args.out) as handle:
            handle.write(markdown)
    if args.json:
        atomic_write_json(args.json, summary)
    if summary["num_finished_runs"] == 0:
        where = ", ".join(str(d) for d in args.dirs)
        print(f"report.py: no finished run under {where}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
