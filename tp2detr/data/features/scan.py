"""Checking every video of a store before training, all problems reported at once."""

from __future__ import annotations

from typing import Iterable

from tqdm import tqdm

from tp2detr.data.features.base import FeatureStore
from tp2detr.errors import DataFormatError, MissingDataError

#: Rows read at a time when scanning a video's values (bounds memory on long videos).
SCAN_ROWS = 8192


def scan_feature_store(
    store: FeatureStore, video_ids: Iterable[str], *, values: bool = True, progress: bool = False
) -> list[str]:
    """Check every video of ``video_ids`` in ``store`` and return one line per bad video.

    Shapes (rank, channels, length against the feature info) come from file headers (``.npy``
    memory-mapped, HDF5 metadata); with ``values`` every value is then read once, ``SCAN_ROWS``
    rows at a time, and checked for NaN/Inf. A missing video is a problem too. Nothing is raised
    for a bad video: the caller reports all of them at once.
    """
    problems = []
    ids = sorted(set(video_ids))
    for video_id in tqdm(ids, desc="checking features", unit="video", disable=not progress):
        try:
            length = store.length(video_id)
            if values:
                for start in range(0, length, SCAN_ROWS):
                    store.read(video_id, start, min(start + SCAN_ROWS, length))
        except (DataFormatError, MissingDataError) as err:
            problems.append(" ".join(str(err).split()))
    return problems
