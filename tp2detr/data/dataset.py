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
from tp2detr.errors import DataFormatError, MissingDataError

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

    Args:
        samples: from :func:`tp2detr.data.samples.build_samples`.
        store: the feature store.
        expected_lengths: ``{video_id: snippet_length}`` from the feature info.
        feature_dim: expected C.
        length_tolerance: snippets a feature file may differ from its feature-info length.
        resize: True for whole-video resampling (``windowing.mode == "resize"``).
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        store: FeatureStore,
        expected_lengths: dict[str, int],
        feature_dim: int,
        length_tolerance: int = 2,
        resize: bool = False,
    ) -> None:
        self.samples = list(samples)
        self.store = store
        self.expected_lengths = dict(expected_lengths)
        self.feature_dim = int(feature_dim)
        self.length_tolerance = int(length_tolerance)
        self.resize = resize
        self._checked: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def _stored_length(self, video_id: str) -> int:
        if video_id in self._checked:
            return self._checked[video_id]
        found = self.store.length(video_id)
        expected = self.expected_lengths.get(video_id)
        if expected is not None and abs(found - expected) > self.length_tolerance:
            raise DataFormatError(
                f"{self.store.source}: video {video_id} has {found} feature rows, expected "
                f"{expected} (feature_info snippet_length) ± {self.length_tolerance}"
            )
        self._checked[video_id] = found
        return found

    def _read(self, sample: Sample) -> np.ndarray:
        stored = self._stored_length(sample.video_id)
        if self.resize:
            feats = self.store.read(sample.video_id, 0, stored)
        else:
            stop = min(sample.end + 1, stored)
            feats = self.store.read(sample.video_id, min(sample.start, stop - 1), stop)
            short = sample.num_source_snippets - feats.shape[0]
            if short > 0:  # feature file shorter than feature_info (within tolerance): repeat the edge
                feats = np.concatenate([feats, np.repeat(feats[-1:], short, axis=0)], axis=0)
        if feats.ndim != 2 or feats.shape[1] != self.feature_dim:
            raise DataFormatError(
                f"{self.store.source}: video {sample.video_id} features have shape "
                f"{tuple(feats.shape)}, expected [T, {self.feature_dim}]"
            )
        if not np.isfinite(feats).all():
            bad = np.argwhere(~np.isfinite(feats))[0]
            raise DataFormatError(
                f"{self.store.source}: video {sample.video_id} has NaN/Inf features "
                f"(first at snippet {sample.start + int(bad[0])}, channel {int(bad[1])}); expected finite values"
            )
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
