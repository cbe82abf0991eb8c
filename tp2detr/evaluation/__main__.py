"""Command line: ``python -m tp2detr.evaluation --gt GT.json --pred PRED.json [options]``.

Prints the evaluation's ``METRICS`` (:mod:`tp2detr.evaluation.evaluate`, the same dict the
trainer and ``eval.py`` write) as one JSON object on stdout: ``tiou``, ``ap`` ({"0.3": value, ...},
fractions), ``mAP``, ``num_gt``, ``num_predictions``, ``num_videos``; ``ar`` (AR@1..AR@100 and
AUC) with ``--ar``, else null; ``breakdown`` (per-length bins, the preset's dataset's bins) with
``--breakdown``, else null. Warnings go to stderr. Bad input: one line ``error: ...`` on stderr
and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Sequence

from tp2detr.errors import TP2DETRError
from tp2detr.evaluation.detection import ANET_MAP_TIOU, THUMOS_MAP_TIOU
from tp2detr.evaluation.average_recall import ANET_AR_TIOU, THUMOS_AR_TIOU
from tp2detr.evaluation.evaluate import evaluate_proposals
from tp2detr.evaluation.map_by_length import length_bins_for
from tp2detr.evaluation.results_io import load_ground_truth, load_predictions

#: ``--preset`` → (mAP thresholds, AR thresholds, dataset name for the length bins).
PRESETS = {
    "thumos14": (THUMOS_MAP_TIOU, THUMOS_AR_TIOU, "thumos14"),
    "activitynet": (ANET_MAP_TIOU, ANET_AR_TIOU, "anet13"),
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
    map_tiou, ar_tiou, dataset_name = PRESETS[args.preset]
    absolute_bins, relative_bins = length_bins_for(dataset_name)
    try:
        ground_truth = load_ground_truth(args.gt, subset=args.subset)
        predictions = load_predictions(args.pred)
        report = evaluate_proposals(
            predictions,
            ground_truth.segments,
            ground_truth.durations,
            tiou_thresholds=args.tiou or map_tiou,
            ar_tiou_thresholds=(args.ar_tiou or ar_tiou) if args.ar else None,
            breakdown=args.breakdown,
            absolute_bins=absolute_bins,
            relative_bins=relative_bins,
            strict=args.strict,
            source=str(args.pred),
            ground_truth_source=str(args.gt),
        )
    except (TP2DETRError, ValueError, OSError) as err:
        message = " ".join(str(err).split())
        print(f"error: {message}", file=sys.stderr)
        return 2
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
