"""Building the matcher and the criterion from the ``loss`` config group."""

from __future__ import annotations

from omegaconf import DictConfig

from tp2detr.losses.criterion import SetCriterion
from tp2detr.losses.hungarian_matcher import HungarianMatcher


def build_criterion(loss: DictConfig) -> SetCriterion:
    """The :class:`SetCriterion` described by ``cfg.loss``."""
    m = loss.matcher
    matcher = HungarianMatcher(
        cost_l1=float(m.cost_l1),
        cost_iou=float(m.cost_iou),
        cost_focal=float(m.cost_focal),
        alpha=float(m.alpha),
        gamma=float(m.gamma),
    )
    return SetCriterion(
        matcher=matcher,
        weight_l1=float(loss.weight_l1),
        weight_iou=float(loss.weight_iou),
        weight_actionness=float(loss.weight_actionness),
        weight_salient=float(loss.weight_salient),
        salient_fpn_weight=float(loss.salient_fpn_weight),
        salient_enc_weight=float(loss.salient_enc_weight),
        aux_loss=bool(loss.aux_loss),
        salient_loss_form=str(loss.salient_loss_form),
        focal_alpha=float(m.alpha),
        focal_gamma=float(m.gamma),
    )
