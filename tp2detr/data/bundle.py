"""What the zero-shot protocol defines for one dataset × split, read from the composed config:
the protocol, the feature info, the training and evaluation samples, and an optional held-out
validation set of seen-class training videos."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from tp2detr.data.annotations import FeatureInfo, load_annotations, load_feature_info
from tp2detr.data.protocol import ProtocolSettings, ZeroShotProtocol, build_protocol
from tp2detr.data.samples import Sample, build_samples
from tp2detr.data.splits import load_split


@dataclass
class DataBundle:
    """Everything the protocol defines for one dataset × split."""

    protocol: ZeroShotProtocol
    feature_info: dict[str, FeatureInfo]
    train_samples: list[Sample]
    eval_samples: list[Sample]
    val_samples: list[Sample] | None = None
    val_ground_truth: dict[str, Any] | None = None
    val_durations: dict[str, float] | None = None


def protocol_settings(dataset: DictConfig) -> ProtocolSettings:
    """The ``dataset`` config group → :class:`ProtocolSettings`."""
    return ProtocolSettings(
        train_subset=str(dataset.train_subset),
        eval_subset=str(dataset.eval_subset),
        exclude_videos=tuple(dataset.get("exclude_videos") or ()),
        ignore_labels=tuple(dataset.get("ignore_labels") or ()),
        min_instance_seconds=dataset.get("min_instance_seconds"),
        keep_eval_videos_without_gt=bool(dataset.keep_eval_videos_without_gt),
    )


def load_data(cfg: DictConfig) -> DataBundle:
    """Read annotations, feature info and the split; apply the protocol; build the samples."""
    ds = cfg.dataset
    annotations = load_annotations(ds.annotations)
    feature_info = load_feature_info(ds.feature_info)
    split = load_split(ds.splits_dir, str(cfg.split.setting), int(cfg.split.id), annotations.classes)
    protocol = build_protocol(annotations, feature_info, split, protocol_settings(ds))
    train = build_samples(protocol.train_videos, ds.windowing, training=True)
    evaluation = build_samples(protocol.eval_videos, ds.windowing, training=False)
    return DataBundle(protocol, feature_info, train, evaluation)


def hold_out_validation(bundle: DataBundle, cfg: DictConfig, fraction: float, seed: int) -> DataBundle:
    """Move a seeded ``fraction`` of the training videos into a validation set (seen classes).

    Returns a bundle whose ``train_samples`` exclude those videos and whose ``val_samples`` are
    their evaluation-style windows (all windows, eval stride) with ``val_ground_truth`` the
    seen-class instances — for honest model selection without looking at unseen classes.
    """
    import numpy as np

    videos = sorted(bundle.protocol.train_videos, key=lambda v: v.video_id)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"trainer.val_fraction is {fraction}, expected 0 < fraction < 1")
    n_val = max(1, int(round(fraction * len(videos))))
    if n_val >= len(videos):
        raise ValueError(
            f"trainer.val_fraction={fraction} leaves no training video ({len(videos)} in all)"
        )
    order = np.random.default_rng(seed).permutation(len(videos))
    val_videos = [videos[i] for i in sorted(order[:n_val])]
    val_ids = {v.video_id for v in val_videos}
    return DataBundle(
        protocol=bundle.protocol,
        feature_info=bundle.feature_info,
        train_samples=[s for s in bundle.train_samples if s.video_id not in val_ids],
        eval_samples=bundle.eval_samples,
        val_samples=build_samples(val_videos, cfg.dataset.windowing, training=False),
        val_ground_truth={
            v.video_id: np.array([[i.start, i.end] for i in v.instances], dtype=np.float64)
            for v in val_videos
        },
        val_durations={v.video_id: v.duration for v in val_videos},
    )
