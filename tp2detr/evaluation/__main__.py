"""Command line: ``python -m tp2detr.evaluation --gt GT.json --pred PRED.json [options]``.

Prints one JSON object on stdout: ``ap`` ({"0.3": value, ...}, fractions), ``mAP``, ``n_gt``,
``n_pred``, ``n_videos``; with ``--ar`` an ``ar`` object (AR@1..AR@100 and AUC); with
``--breakdown`` a ``breakdown`` object (per-length bins). Warnings go to stderr. Bad input: one
line ``error: ...`` on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Sequence

from tp2detr.errors import TP2DETRError
from tp2detr.evaluation.detection import ANET_MAP_TIOU, THUMOS_MAP_TIOU
from tp2detr.evaluation.evaluate import evaluate_predictions
from tp2detr.evaluation.proposals import ANET_AR_TIOU, THUMOS_AR_TIOU
from tp2detr.evaluation.results_io import load_ground_truth, load_predictions

PRESETS = {
    "thumos14": (THUMOS_MAP_TIOU, THUMOS_AR_TIOU),
    "activitynet": (ANET_MAP_TIOU, ANET_AR_TIOU),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tp2detr.evaluation",
        description="Class-agnostic detection mAP (official ActivityNet semantics), AR@AN and per-length mAP.",
    )
    parser.add_argument("--gt", required=True, help="ground-truth JSON ({'database': {video: {'annotations': [...]}}})")
    parser.add_argument("--pred", required=True, help="results JSON ({'results': {video: [{'segment', 'score'}]}})")
    parser.add_argument(
        "--preset", choices=sorted(PRESETS), default="thumos14", help="default thresholds (default thumos14)"
    )
    parser.add_argument("--tiou", type=float, nargs="+", help="mAP tIoU thresholds (default: the preset's)")
    parser.add_argument("--ar", action="store_true", help="also report AR@{1,5,10,25,40,50,100} and AUC")
    parser.add_argument("--ar-tiou", type=float, nargs="+", help="AR tIoU thresholds (default: the preset's)")
    parser.add_argument("--breakdown", action="store_true", help="also report mAP per action-length bin")
    parser.add_argument("--subset", help="keep only ground-truth videos whose 'subset' field equals this")
    parser.add_argument("--strict", action="store_true", help="fail on predictions of videos without ground truth")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    map_tiou, ar_tiou = PRESETS[args.preset]
    try:
        ground_truth = load_ground_truth(args.gt, subset=args.subset)
        predictions = load_predictions(args.pred)
        report = evaluate_predictions(
            ground_truth,
            predictions,
            tiou_thresholds=args.tiou or map_tiou,
            with_ar=args.ar,
            ar_tiou_thresholds=args.ar_tiou or ar_tiou,
            with_breakdown=args.breakdown,
            strict=args.strict,
            source=str(args.pred),
        )
    except (TP2DETRError, ValueError, OSError) as err:
        message = " ".join(str(err).split())
        print(f"error: {message}", file=sys.stderr)
        return 2
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
