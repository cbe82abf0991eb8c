"""Building the protocol, the samples and the datasets from the composed config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from tp2detr.data.annotations import FeatureInfo, load_annotations, load_feature_info
from tp2detr.data.dataset import ProposalDataset, filter_missing
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


def build_dataset(
    cfg: DictConfig, bundle: DataBundle, training: bool, samples: list[Sample] | None = None
) -> ProposalDataset:
    """Open the feature store and wrap the training or evaluation samples (or ``samples``) in a dataset."""
    from tp2detr.data.features import open_feature_store

    ds = cfg.dataset
    store = open_feature_store(
        str(ds.features.format),
        str(ds.features.path),
        expected_dim=int(ds.features.dim),
        expected_lengths={vid: info.snippet_length for vid, info in bundle.feature_info.items()},
        length_tolerance=int(ds.features.get("length_tolerance", 2)),
    )
    if samples is None:
        samples = bundle.train_samples if training else bundle.eval_samples
    samples = filter_missing(samples, store, str(cfg.data.on_missing))
    return ProposalDataset(samples, store, resize=ds.windowing.mode == "resize")


def make_synthetic_features(cfg: DictConfig, force: bool = False, progress: bool = True) -> bool:
    """Write the semi-synthetic feature store of a dataset that has a ``synthetic`` block
    (``thumos14_synth``, ``anet13_synth``, ``toy``) to ``dataset.features.path``, unless an
    identical one is already there. Returns whether it wrote the file."""
    from omegaconf import OmegaConf

    from tp2detr.data.synthetic import ensure_synthetic_store

    ds = cfg.dataset
    if "synthetic" not in ds:
        raise ValueError(
            f"dataset={ds.name} has no 'synthetic' block; expected dataset=thumos14_synth, "
            "anet13_synth or toy"
        )
    if str(ds.features.format) != "hdf5":
        raise ValueError(f"dataset.features.format is {ds.features.format!r}, expected 'hdf5'")
    return ensure_synthetic_store(
        Path(str(ds.features.path)),
        load_annotations(ds.annotations),
        load_feature_info(ds.feature_info),
        OmegaConf.to_container(ds.synthetic, resolve=True),
        force=force,
        progress=progress,
    )


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


def dataset_statistics(bundle: DataBundle) -> dict[str, Any]:
    """The counts that FACTS §5.6 pins (and a few more)."""
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
