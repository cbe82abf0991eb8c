"""Segment geometry, Hungarian matching and the training criterion of TP²-DETR (paper §3.3)."""

from __future__ import annotations

from tp2detr.losses.criterion import (
    SALIENT_HEADS,
    SALIENT_LOSS_FORMS,
    LossOutput,
    SetCriterion,
    build_criterion,
    criterion_arguments,
    weighted_total,
)
from tp2detr.losses.focal import focal_match_cost, sigmoid_focal_loss
from tp2detr.losses.hungarian_matcher import HungarianMatcher, MatchIndices, build_matcher
from tp2detr.losses.segment_geometry import (
    clamp_unit,
    cw_to_se,
    pairwise_segment_iou,
    se_to_cw,
    segment_iou,
    segment_length,
)

__all__ = [
    "SALIENT_HEADS",
    "SALIENT_LOSS_FORMS",
    "HungarianMatcher",
    "LossOutput",
    "MatchIndices",
    "SetCriterion",
    "build_criterion",
    "build_matcher",
    "criterion_arguments",
    "clamp_unit",
    "cw_to_se",
    "focal_match_cost",
    "pairwise_segment_iou",
    "se_to_cw",
    "segment_iou",
    "segment_length",
    "sigmoid_focal_loss",
    "weighted_total",
]
