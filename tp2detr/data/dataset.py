"""The PyTorch dataset and collate function: samples + a feature store → padded batches.

Batch layout (``collate_samples``):

* ``feats``: ``[B, T, C]`` float32, zero-padded to the longest item rounded up to ``pad_multiple``;
* ``mask``: ``[B, T]`` bool, True = padding;
* ``targets``: list of B dicts ``{"segments": [G_b, 2]}`` (center, width) normalised to [0, 1];
* ``salient_target``: ``[B, T]`` float32 0/1; ``salient_valid``: ``[B, T]`` bool (= ~mask);
* ``samples``: the B :class:`~tp2detr.data.samples.Sample` records (to map predictions back to seconds).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from tp2detr.data.samples import Sample
from tp2detr.errors import MissingDataError

if TYPE_CHECKING:
    from tp2detr.data.features import FeatureStore

log = logging.getLogger(__name__)


def filter_missing(
    samples: Sequence[Sample], store: FeatureStore, on_missing: str
) -> list[Sample]:
    """Drop (``skip``) or refuse (``error``) samples whose video has no features in ``store``."""
    if on_missing not in ("error", "skip"):
        raise ValueError(f"data.on_missing is {on_missing!r}, expected 'error' or 'skip'")
    videos = sorted({s.video_id for s in samples})
    missing = [v for v in videos if not store.has(v)]
    if not missing:
        return list(samples)
    if on_missing == "error":
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise MissingDataError(
            f"{store.source}: features missing for {len(missing)} of {len(videos)} videos "
            f"({shown}); expected one entry per video id. Set data.on_missing=skip to skip them."
        )
    for vid in missing:
        log.warning("%s: no features for video %s: skipped", store.source, vid)
    gone = set(missing)
    kept = [s for s in samples if s.video_id not in gone]
    log.warning(
        "%s: skipped %d of %d videos (%d of %d samples) without features",
        store.source, len(missing), len(videos), len(samples) - len(kept), len(samples),
    )
    return kept


class ProposalDataset(Dataset):
    """Reads each sample's features and builds its training targets.

    The store checks every video once against the feature info (length within tolerance, feature
    dimension) and every slice it reads for NaN/Inf (:mod:`tp2detr.data.features`).

    Args:
        samples: from :func:`tp2detr.data.samples.build_samples`.
        store: the feature store, opened with ``expected_dim`` and ``expected_lengths``.
        resize: True for whole-video resampling (``windowing.mode == "resize"``).
    """

    def __init__(self, samples: Sequence[Sample], store: FeatureStore, resize: bool = False) -> None:
        self.samples = list(samples)
        self.store = store
        self.resize = resize

    def __len__(self) -> int:
        return len(self.samples)

    def _read(self, sample: Sample) -> np.ndarray:
        stored = self.store.length(sample.video_id)
        if self.resize:
            return self.store.read(sample.video_id, 0, stored)
        stop = min(sample.end + 1, stored)
        feats = self.store.read(sample.video_id, min(sample.start, stop - 1), stop)
        short = sample.num_source_snippets - feats.shape[0]
        if short > 0:  # feature file shorter than feature_info (within tolerance): repeat the edge
            feats = np.concatenate([feats, np.repeat(feats[-1:], short, axis=0)], axis=0)
        return feats

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        feats = torch.from_numpy(np.ascontiguousarray(self._read(sample), dtype=np.float32))
        if self.resize:
            feats = F.interpolate(feats.t()[None], size=sample.length, mode="nearest")[0].t()
        return {
            "feats": feats,
            "segments": torch.from_numpy(sample.normalised_targets()),
            "salient": torch.from_numpy(sample.salient_target()),
            "sample": sample,
        }


def round_up(value: int, multiple: int) -> int:
    """Smallest multiple of ``multiple`` that is ≥ ``value``."""
    multiple = max(int(multiple), 1)
    return -(-int(value) // multiple) * multiple


def collate_samples(items: Sequence[dict[str, Any]], pad_multiple: int = 1) -> dict[str, Any]:
    """Pad items to a common length (a multiple of ``pad_multiple``) and stack them."""
    if not items:
        raise ValueError("collate_samples: empty batch")
    lengths = [it["feats"].shape[0] for it in items]
    empty = [it.get("sample") for it, n in zip(items, lengths) if n == 0]
    if empty:
        raise ValueError(f"collate_samples: expected at least one snippet per item, found none in {empty}")
    T = round_up(max(lengths), pad_multiple)
    B, C = len(items), items[0]["feats"].shape[1]
    feats = torch.zeros(B, T, C, dtype=torch.float32)
    mask = torch.ones(B, T, dtype=torch.bool)
    salient = torch.zeros(B, T, dtype=torch.float32)
    for b, (it, n) in enumerate(zip(items, lengths)):
        feats[b, :n] = it["feats"]
        mask[b, :n] = False
        salient[b, :n] = it["salient"]
    return {
        "feats": feats,
        "mask": mask,
        "targets": [{"segments": it["segments"]} for it in items],
        "salient_target": salient,
        "salient_valid": ~mask,
        "samples": [it["sample"] for it in items],
    }
