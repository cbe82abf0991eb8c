"""Plot mAP by action length for several runs side by side (grouped bars, one PNG).

    python scripts/plot_breakdown.py outputs/runs/a/thumos14/50_50_split0 outputs/eval/2026-01-01/10-00-00 \
        --labels baseline TP2-DETR --out breakdown.png

Each argument is a training run folder (its ``metrics.json``: the selected epoch), an ``eval.py``
output folder (its ``eval_metrics.json``) or one of those JSON files; each needs the per-length
breakdown (``trainer.breakdown=true``, the default). Absolute bins (seconds) on the left, bins
relative to the video's duration on the right.

Exit status: 0 on success, 2 on bad input (one ``plot_breakdown.py: ...`` line on stderr).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tp2detr.errors import TP2DETRError
from tp2detr.viz.map_by_length_figure import breakdown_figure, breakdown_runs
from tp2detr.viz.canvas import save_png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run / eval folders or their metrics JSON files")
    parser.add_argument("--labels", nargs="+", help="legend labels, one per run (default: each run's own)")
    parser.add_argument("--out", type=Path, default=Path("breakdown.png"), help="the PNG to write")
    parser.add_argument("--title", default="", help="figure title")
    args = parser.parse_args(argv)
    try:
        runs = breakdown_runs(args.runs, args.labels)
        path = save_png(breakdown_figure(runs, args.title), args.out)
    except (TP2DETRError, ValueError, OSError) as err:
        print(f"plot_breakdown.py: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({len(runs)} runs: {', '.join(runs)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
