"""Evaluation of temporal action proposals (plain numpy, no torch).

* :mod:`~tp2detr.evaluation.tiou` — segment arrays and the pairwise tIoU matrix.
* :mod:`~tp2detr.evaluation.detection` — class-agnostic AP per tIoU, official ActivityNet semantics.
* :mod:`~tp2detr.evaluation.greedy_matching` — the score-ordered matching of one video.
* :mod:`~tp2detr.evaluation.average_recall` — AR@AN curve, AR@k and AUC.
* :mod:`~tp2detr.evaluation.map_by_length` — mAP per action-length bin (absolute or relative).
* :mod:`~tp2detr.evaluation.stitching` — THUMOS cross-window fusion (temporal NMS in overlaps).
* :mod:`~tp2detr.evaluation.results_io` — GT / results JSON reading, validation and writing.
* :mod:`~tp2detr.evaluation.evaluate` — the one evaluation → ``METRICS``; ``python -m tp2detr.evaluation``.
* :mod:`~tp2detr.evaluation.tables` — ``METRICS`` as markdown.

See docs/evaluation.md for the semantics and where they differ from other toolkits.
"""

from tp2detr.evaluation.map_by_length import (
    DEFAULT_ABSOLUTE_BINS_S,
    DEFAULT_RELATIVE_BINS,
    BinResult,
    LengthBin,
    map_by_absolute_length,
    map_by_length,
    map_by_relative_length,
)
from tp2detr.evaluation.detection import (
    ANET_MAP_TIOU,
    THUMOS_MAP_TIOU,
    DetectionResult,
    average_precision_detection,
    interpolated_average_precision,
)
from tp2detr.evaluation.evaluate import Metrics, evaluate_on_protocol, evaluate_proposals
from tp2detr.evaluation.average_recall import (
    ANET_AR_TIOU,
    AR_AT_K,
    THUMOS_AR_TIOU,
    RecallCurve,
    average_recall_vs_proposals,
)
from tp2detr.evaluation.results_io import (
    GroundTruthSet,
    load_ground_truth,
    load_predictions,
    restrict_to_ground_truth,
    write_predictions,
)
from tp2detr.evaluation.tiou import segment_iou_matrix
from tp2detr.evaluation.stitching import (
    CROSS_WINDOW_NMS_IOU,
    VideoProposals,
    WindowProposals,
    stitch_videos,
    stitch_windows,
    temporal_nms,
)

__all__ = [
    "ANET_AR_TIOU",
    "ANET_MAP_TIOU",
    "AR_AT_K",
    "CROSS_WINDOW_NMS_IOU",
    "DEFAULT_ABSOLUTE_BINS_S",
    "DEFAULT_RELATIVE_BINS",
    "THUMOS_AR_TIOU",
    "THUMOS_MAP_TIOU",
    "BinResult",
    "DetectionResult",
    "GroundTruthSet",
    "LengthBin",
    "RecallCurve",
    "VideoProposals",
    "WindowProposals",
    "average_precision_detection",
    "average_recall_vs_proposals",
    "Metrics",
    "evaluate_on_protocol",
    "evaluate_proposals",
    "interpolated_average_precision",
    "load_ground_truth",
    "load_predictions",
    "map_by_absolute_length",
    "map_by_length",
    "map_by_relative_length",
    "restrict_to_ground_truth",
    "segment_iou_matrix",
    "stitch_videos",
    "stitch_windows",
    "temporal_nms",
    "write_predictions",
]
