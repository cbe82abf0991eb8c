"""The zero-shot data protocol of the released code (docs/fidelity.md §5.4): which videos and which
instances are used for training and for evaluation under one class split.

* Training: videos of ``train_subset`` that have features, with instances of **seen** classes
  (ignored labels such as THUMOS's ``Ambiguous`` dropped, instances not longer than the minimum
  length dropped). Unseen-class instances inside training videos are simply dropped: they become
  background.
* Evaluation: videos of ``eval_subset`` that have features and are not excluded; the ground truth is
  their **unseen**-class instances after the same filters. Videos without such ground truth are
  removed from the evaluation ground truth; they are still run through the model when
  ``keep_eval_videos_without_gt`` (THUMOS: the released code runs inference on them and the
  evaluator drops their predictions) and not loaded at all otherwise (ActivityNet).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from tp2detr.data.annotations import AnnotationSet, FeatureInfo, Instance
from tp2detr.data.splits import ZeroShotSplit
from tp2detr.errors import DataFormatError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProtocolVideo:
    """A video as the protocol uses it: its feature info and the instances that count as GT."""

    video_id: str
    duration: float
    info: FeatureInfo
    instances: tuple[Instance, ...]


@dataclass(frozen=True)
class ProtocolSettings:
    """Dataset-specific protocol settings (the ``dataset`` config group)."""

    train_subset: str
    eval_subset: str
    exclude_videos: tuple[str, ...] = ()
    ignore_labels: tuple[str, ...] = ()
    min_instance_seconds: float | None = None  # None: one snippet (frames_per_snippet / fps)
    keep_eval_videos_without_gt: bool = True


@dataclass
class ZeroShotProtocol:
    """Training videos (seen classes) and evaluation videos and ground truth (unseen classes)."""

    split: ZeroShotSplit
    train_videos: list[ProtocolVideo]
    eval_videos: list[ProtocolVideo]
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def eval_ground_truth(self) -> dict[str, np.ndarray]:
        """``{video_id: [G, 2]}`` (start, end) seconds of every evaluation video that has GT."""
        return {
            v.video_id: np.array([[i.start, i.end] for i in v.instances], dtype=np.float64)
            for v in self.eval_videos
            if v.instances
        }

    @property
    def eval_durations(self) -> dict[str, float]:
        """Annotation duration in seconds of every evaluation video."""
        return {v.video_id: v.duration for v in self.eval_videos}


def _min_length(settings: ProtocolSettings, info: FeatureInfo) -> float:
    if settings.min_instance_seconds is not None:
        return float(settings.min_instance_seconds)
    return info.frames_per_snippet / info.video_fps


def _select(
    annotations: AnnotationSet,
    feature_info: Mapping[str, FeatureInfo],
    settings: ProtocolSettings,
    subset: str,
    classes: Sequence[str],
    exclude: set[str],
    counts: dict[str, int],
    prefix: str,
) -> list[ProtocolVideo]:
    wanted = set(classes)
    ignored = set(settings.ignore_labels)
    videos = []
    for vid in sorted(annotations.videos):
        rec = annotations.videos[vid]
        if rec.subset != subset:
            continue
        if vid in exclude:
            counts[f"{prefix}_excluded_videos"] += 1
            continue
        info = feature_info.get(vid)
        if info is None:
            counts[f"{prefix}_videos_without_feature_info"] += 1
            continue
        min_len = _min_length(settings, info)
        kept = []
        for inst in rec.instances:
            if inst.label in ignored or inst.label not in wanted:
                continue
            if inst.end - inst.start <= min_len:
                counts[f"{prefix}_too_short_instances"] += 1
                continue
            if inst.end > info.snippet_duration + 1e-6 or inst.end > rec.duration + 1e-6:
                counts[f"{prefix}_instances_beyond_video"] += 1
            kept.append(inst)
        videos.append(ProtocolVideo(vid, rec.duration, info, tuple(kept)))
    return videos


def build_protocol(
    annotations: AnnotationSet,
    feature_info: Mapping[str, FeatureInfo],
    split: ZeroShotSplit,
    settings: ProtocolSettings,
) -> ZeroShotProtocol:
    """Apply the zero-shot protocol; raise if the evaluation set ends up empty."""
    subsets = {rec.subset for rec in annotations.videos.values()}
    for name, subset in (("train_subset", settings.train_subset), ("eval_subset", settings.eval_subset)):
        if subset not in subsets:
            raise DataFormatError(
                f"{annotations.path}: no video has subset {subset!r} (dataset.{name}); "
                f"found subsets {sorted(subsets)}"
            )
    counts: dict[str, int] = {
        k: 0
        for p in ("train", "eval")
        for k in (f"{p}_excluded_videos", f"{p}_videos_without_feature_info",
                  f"{p}_too_short_instances", f"{p}_instances_beyond_video")
    }
    exclude = set(settings.exclude_videos)
    train = _select(annotations, feature_info, settings, settings.train_subset, split.seen,
                    set(), counts, "train")
    train = [v for v in train if v.instances]
    evaluation = _select(annotations, feature_info, settings, settings.eval_subset, split.unseen,
                         exclude, counts, "eval")
    if not settings.keep_eval_videos_without_gt:
        evaluation = [v for v in evaluation if v.instances]
    if not any(v.instances for v in evaluation):
        raise DataFormatError(
            f"{annotations.path}: split {split.setting}/{split.split_id} leaves no evaluation ground "
            f"truth (subset {settings.eval_subset!r}, unseen classes {', '.join(split.unseen[:5])}...); "
            "expected at least one instance after filtering"
        )
    if not train:
        raise DataFormatError(
            f"{annotations.path}: split {split.setting}/{split.split_id} leaves no training instance "
            f"(subset {settings.train_subset!r}); expected at least one"
        )
    for prefix in ("train", "eval"):
        n = counts[f"{prefix}_instances_beyond_video"]
        if n:
            log.info(
                "%s: %d %s instances end after the video's feature duration: kept in the ground "
                "truth, clipped to the window/video in training targets",
                annotations.path, n, prefix,
            )
    log.debug("protocol counts: %s", counts)
    return ZeroShotProtocol(split, train, evaluation, counts)
