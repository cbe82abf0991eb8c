"""Opening a run's features from the composed config: the semi-synthetic store built on first use,
a clear message when real features are missing, every file checked before the first step, and
the samples wrapped in datasets over the opened store."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from tp2detr.config import CONFIG_DIR
from tp2detr.data.annotations import load_annotations, load_feature_info
from tp2detr.data.bundle import DataBundle
from tp2detr.data.dataset import ProposalDataset, filter_missing
from tp2detr.data.features import FeatureStore, open_feature_store, scan_feature_store
from tp2detr.data.features.checks import store_not_found
from tp2detr.data.samples import Sample
from tp2detr.errors import ConfigError, DataFormatError, MissingDataError

log = logging.getLogger(__name__)


def missing_features_message(cfg: DictConfig) -> str:
    """What to do when a real dataset's feature store is not where ``dataset.features.path`` says."""
    ds = cfg.dataset
    fmt, path = str(ds.features.format), Path(str(ds.features.path))
    message = (
        f"{store_not_found(fmt, path, format_label=f'dataset.features.format={fmt}')}. "
        f"Point dataset.features.path=... at the {ds.name} CLIP features (or set "
        "dataset.features.format=hdf5 dataset.features.path=FILE.h5 for an HDF5 store made by "
        "scripts/convert_features.py). The real features are the CLIP ViT-B/16 snippet features the "
        f"paper's authors publish: one [T, {int(ds.features.dim)}] float .npy per video, named by its video id."
    )
    synthetic = f"{ds.name}_synth"
    if (CONFIG_DIR / "dataset" / f"{synthetic}.yaml").is_file():
        message += (
            f" To run without them, use the semi-synthetic store (built on first use): "
            f"python train.py dataset={synthetic}"
        )
    return message


def open_features(cfg: DictConfig, bundle: DataBundle) -> FeatureStore:
    """Open ``dataset.features`` with the feature info's lengths and the config's channel count.

    A semi-synthetic dataset (one with a ``synthetic`` block) has its store built on first use and
    rebuilt when the file was generated with other ``dataset.synthetic`` settings (deterministic,
    logged, with a progress bar; :func:`make_synthetic_features`); a file there that this
    generator did not write (a user's own store) is used as it is. A real dataset whose store is
    missing is a :class:`MissingDataError` saying which key to set and where the features come
    from (:func:`missing_features_message`).
    """
    from tp2detr.data.synthetic import is_synthetic_store

    ds = cfg.dataset
    path = Path(str(ds.features.path))
    if "synthetic" in ds and (not path.exists() or is_synthetic_store(path)):
        # A generated store is a cache of dataset.synthetic: built on first use, rebuilt when it
        # was made with other generator settings, used as it is otherwise.
        log.info(
            "semi-synthetic feature store %s: %s", path,
            "building it on first use (deterministic from dataset.synthetic; about 20-30 s for "
            "THUMOS14 at 512 channels)" if not path.exists() else "checking it against dataset.synthetic",
        )
        if make_synthetic_features(cfg, progress=bool(OmegaConf.select(cfg, "trainer.progress", default=True))):
            log.info("semi-synthetic feature store %s: written", path)
    elif not path.exists():
        raise MissingDataError(missing_features_message(cfg))
    return open_feature_store(
        str(ds.features.format),
        str(path),
        expected_dim=int(ds.features.dim),
        expected_lengths={vid: info.snippet_length for vid, info in bundle.feature_info.items()},
        length_tolerance=int(ds.features.get("length_tolerance", 2)),
    )


def build_dataset(
    cfg: DictConfig,
    bundle: DataBundle,
    training: bool,
    samples: list[Sample] | None = None,
    store: FeatureStore | None = None,
) -> ProposalDataset:
    """Wrap the training or evaluation samples (or ``samples``) of ``bundle`` in a dataset over
    ``store`` (default: :func:`open_features`); videos without features are refused or skipped
    per ``data.on_missing``."""
    store = open_features(cfg, bundle) if store is None else store
    if samples is None:
        samples = bundle.train_samples if training else bundle.eval_samples
    samples = filter_missing(samples, store, str(cfg.data.on_missing))
    return ProposalDataset(samples, store, resize=cfg.dataset.windowing.mode == "resize")


def check_features_up_front(cfg: DictConfig, datasets: Sequence[ProposalDataset]) -> None:
    """Check every video the ``datasets`` will read before the first step, per ``data.validate``:
    ``full`` (default) shapes from file headers and every value once for NaN/Inf; ``headers``
    shapes only; ``off`` nothing (each file is then checked when first read).

    Raises:
        DataFormatError: listing every bad video (file, what was found, what was expected).
    """
    mode = str(OmegaConf.select(cfg, "data.validate", default="full"))
    if mode == "off" or not datasets:
        return
    started = time.perf_counter()
    problems: list[str] = []
    videos = 0
    for store, group in groupby_store(datasets):
        ids = {s.video_id for ds in group for s in ds.samples}
        videos += len(ids)
        problems += scan_feature_store(
            store, ids, values=mode == "full",
            progress=bool(OmegaConf.select(cfg, "trainer.progress", default=False)),
        )
    if problems:
        shown = "; ".join(problems[:20]) + (f"; ... ({len(problems)} in all)" if len(problems) > 20 else "")
        raise DataFormatError(
            f"{len(problems)} of {videos} videos have bad features (checked before training, "
            f"data.validate={mode}): {shown}"
        )
    log.info("checked the features of %d videos (%s) in %.1f s", videos, mode, time.perf_counter() - started)


def groupby_store(datasets: Sequence[ProposalDataset]) -> list[tuple[FeatureStore, list[ProposalDataset]]]:
    """The datasets grouped by the store object they read (in first-seen order)."""
    groups: dict[int, tuple[FeatureStore, list[ProposalDataset]]] = {}
    for ds in datasets:
        groups.setdefault(id(ds.store), (ds.store, []))[1].append(ds)
    return list(groups.values())


def make_synthetic_features(cfg: DictConfig, force: bool = False, progress: bool = True) -> bool:
    """Write the semi-synthetic feature store of a dataset that has a ``synthetic`` block
    (``thumos14_synth``, ``anet13_synth``, ``toy``) to ``dataset.features.path``, unless an
    identical one is already there. Returns whether it wrote the file."""
    from tp2detr.data.synthetic import ensure_synthetic_store

    ds = cfg.dataset
    if "synthetic" not in ds:
        raise ConfigError(
            f"dataset={ds.name} has no 'synthetic' block; expected dataset=thumos14_synth, "
            "anet13_synth or toy"
        )
    if str(ds.features.format) != "hdf5":
        raise ConfigError(f"dataset.features.format is {ds.features.format!r}, expected 'hdf5' for a synthetic store")
    return ensure_synthetic_store(
        Path(str(ds.features.path)),
        load_annotations(ds.annotations),
        load_feature_info(ds.feature_info),
        OmegaConf.to_container(ds.synthetic, resolve=True),
        force=force,
        progress=progress,
    )
