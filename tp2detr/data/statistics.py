"""The counts of a dataset × split that the tests pin against the released code's logs."""

from __future__ import annotations

from typing import Any

from tp2detr.data.bundle import DataBundle


def dataset_statistics(bundle: DataBundle) -> dict[str, Any]:
    """The counts that docs/fidelity.md §5.6 pins (and a few more)."""
    gt = bundle.protocol.eval_ground_truth
    return {
        "train_windows": len(bundle.train_samples),
        "train_instances": int(sum(len(s.segments) for s in bundle.train_samples)),
        "train_videos": len({s.video_id for s in bundle.train_samples}),
        "eval_videos": len(gt),
        "eval_instances": int(sum(len(v) for v in gt.values())),
        "test_windows": len(bundle.eval_samples),
        "test_videos": len(bundle.protocol.eval_videos),
    }
