"""A feature store over arrays already in memory (``predict.py``: features just extracted from a
video, or read from ``.npy`` files given one by one).

It is a :class:`~tp2detr.data.features.FeatureStore`, so :class:`~tp2detr.data.dataset.ProposalDataset`
reads it exactly as it reads a store on disk: the same shape checks against the feature info
(``expected_dim``, ``expected_lengths`` within ``length_tolerance`` snippets) and the same NaN/Inf
check of every slice read.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tp2detr.data.features import FeatureStore
from tp2detr.errors import DataFormatError, MissingDataError


class InMemoryFeatureStore(FeatureStore):
    """``{video_id: features [T, C]}`` held in memory behind the feature-store interface.

    Args:
        arrays: one float array ``[T, C]`` per video id (kept by reference, never modified).
        sources: optional ``{video_id: where the array came from}`` (a file), used in messages;
            default ``<memory>/<video_id>``.
        label: the store's ``source``, for messages.
        **kwargs: ``expected_dim``, ``expected_lengths``, ``length_tolerance`` (see
            :class:`~tp2detr.data.features.FeatureStore`).

    Raises:
        DataFormatError: an array that is not of a real floating-point type.
    """

    format = "memory"

    def __init__(
        self,
        arrays: Mapping[str, np.ndarray],
        sources: Mapping[str, str | Path] | None = None,
        label: str = "<memory>",
        **kwargs: Any,
    ) -> None:
        super().__init__(Path(label), **kwargs)
        self._arrays = dict(arrays)
        self._sources = {video_id: str(path) for video_id, path in (sources or {}).items()}
        for video_id, array in self._arrays.items():
            if not np.issubdtype(np.asarray(array).dtype, np.floating):
                raise DataFormatError(
                    f"{self._location(video_id)}: features of video '{video_id}' have dtype "
                    f"{np.asarray(array).dtype}, expected a real floating-point array"
                )

    def _location(self, video_id: str) -> str:
        return self._sources.get(video_id, f"{self.source}/{video_id}")

    def video_ids(self) -> list[str]:
        return sorted(self._arrays)

    def has(self, video_id: str) -> bool:
        return video_id in self._arrays

    def _array(self, video_id: str) -> np.ndarray:
        if video_id not in self._arrays:
            raise MissingDataError(
                f"features of video '{video_id}' not found in {self.source} "
                f"(it holds {len(self._arrays)} videos); expected one array per video id"
            )
        return self._arrays[video_id]

    def _raw_shape(self, video_id: str) -> tuple[int, ...]:
        return tuple(np.shape(self._array(video_id)))

    def _raw_read(self, video_id: str, start: int, stop: int) -> np.ndarray:
        return np.array(self._array(video_id)[start:stop], dtype=np.float32)
