"""Time the evaluator on seeded synthetic data: mAP, AR@AN and the per-length breakdown.

Default workload: 200 videos x 500 proposals, 1-30 ground-truth instances per video (THUMOS14 has
~14 per evaluated video), half of the proposals jittered copies of ground truth, the rest random;
mAP at the 5 THUMOS thresholds, AR@AN at the 11 THUMOS AR thresholds.

Usage: python scripts/bench_eval.py --out docs/bench/eval_cpu.json [--videos 200 --proposals 500 --repeats 7]

Times are medians after one warm-up call and peak memory the growth of the process's resident set
(:func:`tp2detr.engine.benchmark.measure`); the JSON records the machine (``write_report``).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from tp2detr.evaluation import (
    THUMOS_AR_TIOU,
    THUMOS_MAP_TIOU,
    average_precision_detection,
    average_recall_vs_proposals,
    map_by_absolute_length,
)
from tp2detr.cli.hydra_app import run_script
from tp2detr.engine.benchmark import measure, write_report


def make_workload(num_videos: int, num_proposals: int, seed: int) -> tuple[dict, dict]:
    """Seeded ground truth ``{video: [G, 2]}`` and proposals ``{video: ([P, 2], [P])}`` in seconds."""
    rng = np.random.default_rng(seed)
    gt, proposals = {}, {}
    for v in range(num_videos):
        duration = rng.uniform(60, 600)
        num_gt = int(rng.integers(1, 31))
        starts = rng.uniform(0, duration - 30, num_gt)
        gt_segments = np.stack([starts, starts + rng.uniform(0.5, 30, num_gt)], axis=1)
        num_near = num_proposals // 2
        base = gt_segments[rng.integers(0, num_gt, num_near)]
        length = base[:, 1] - base[:, 0]
        jitter = rng.normal(0, 0.15, (num_near, 2)) * length[:, None]
        near = np.sort(base + jitter, axis=1)
        starts = rng.uniform(0, duration - 10, num_proposals - num_near)
        far = np.stack([starts, starts + rng.uniform(0.5, 40, len(starts))], axis=1)
        segments = np.concatenate([near, far])
        segments[:, 1] = np.maximum(segments[:, 1], segments[:, 0] + 1e-3)
        scores = np.concatenate([rng.uniform(0.3, 1.0, num_near), rng.uniform(0.0, 0.7, len(starts))])
        gt[f"video_{v:04d}"] = gt_segments
        proposals[f"video_{v:04d}"] = (segments, scores)
    return gt, proposals


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="JSON file for the timings")
    parser.add_argument("--videos", type=int, default=200)
    parser.add_argument("--proposals", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    gt, proposals = make_workload(args.videos, args.proposals, args.seed)
    cases = {
        "mAP (5 thresholds)": lambda: average_precision_detection(gt, proposals, THUMOS_MAP_TIOU),
        "AR@AN (11 thresholds)": lambda: average_recall_vs_proposals(gt, proposals, THUMOS_AR_TIOU),
        "mAP by length (5 bins)": lambda: map_by_absolute_length(gt, proposals, THUMOS_MAP_TIOU),
    }
    results = {name: measure(fn, args.repeats) for name, fn in cases.items()}
    detection = average_precision_detection(gt, proposals, THUMOS_MAP_TIOU)
    curve = average_recall_vs_proposals(gt, proposals, THUMOS_AR_TIOU)
    report = {
        "workload": {
            "videos": args.videos,
            "proposals_per_video": args.proposals,
            "ground_truth": detection.num_ground_truth,
            "seed": args.seed,
            "repeats": args.repeats,
        },
        "timings": results,
        "values": {"mAP": detection.to_dict(), "AR": curve.summary()},
        "command": "python scripts/bench_eval.py " + " ".join(argv),
    }
    written = write_report(args.out, report)
    workload = f"{args.videos} videos x {args.proposals} proposals, {detection.num_ground_truth} GT"
    print(f"{workload}, median of {args.repeats}")
    print(f"{'case':<26}{'median (ms)':>12}{'peak MB':>9}")
    for name, entry in results.items():
        peak = "-" if entry["peak_mb"] is None else f"{entry['peak_mb']:.0f}"
        print(f"{name:<26}{entry['ms']:>12.0f}{peak:>9}")
    print(f"mAP {detection.mean_ap:.4f}  AR@100 {curve.summary()['AR@100']:.4f}")
    if written is not None:
        print(f"-> {written}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
