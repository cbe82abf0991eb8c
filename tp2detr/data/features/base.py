"""The feature-store interface: per-video ``[T, C]`` reads, each video's shape checked once."""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Mapping

import numpy as np

from tp2detr.data.features.checks import check_feature_shape, check_finite
from tp2detr.errors import MissingDataError

class FeatureStore(abc.ABC):
    """Per-video snippet features ``[T, C]`` behind one interface (see the module docstring).

    ``expected_dim`` (channels) and ``expected_lengths`` (``{video_id: snippet_length}`` from the
    feature info) are optional; when given, every video is checked against them once, the first
    time it is touched. ``length_tolerance`` is in snippets.
    """

    format: str = ""

    def __init__(
        self,
        path: str | Path,
        *,
        expected_dim: int | None = None,
        expected_lengths: Mapping[str, int] | None = None,
        length_tolerance: int = 2,
    ) -> None:
        self.source = Path(path)
        self.expected_dim = expected_dim
        self.expected_lengths = dict(expected_lengths) if expected_lengths is not None else None
        self.length_tolerance = int(length_tolerance)
        self._checked_lengths: dict[str, int] = {}

    # -- format-specific -----------------------------------------------------------------------
    @abc.abstractmethod
    def video_ids(self) -> list[str]:
        """Sorted ids of the videos this store holds."""

    @abc.abstractmethod
    def has(self, video_id: str) -> bool:
        """Whether the store holds features for ``video_id``."""

    @abc.abstractmethod
    def _raw_shape(self, video_id: str) -> tuple[int, ...]:
        """The stored shape of ``video_id``; raises :class:`MissingDataError` if absent."""

    @abc.abstractmethod
    def _raw_read(self, video_id: str, start: int, stop: int) -> np.ndarray:
        """Stored rows ``[start, stop)`` of ``video_id`` (any float dtype)."""

    @abc.abstractmethod
    def _location(self, video_id: str) -> str:
        """Where ``video_id`` lives (file, or file + key), for messages."""

    def close(self) -> None:
        """Release open handles (the store can still be used afterwards; it reopens lazily)."""

    # -- shared --------------------------------------------------------------------------------
    def _checked_length(self, video_id: str) -> int:
        length = self._checked_lengths.get(video_id)
        if length is None:
            shape = self._raw_shape(video_id)
            expected = None
            if self.expected_lengths is not None:
                expected = self.expected_lengths.get(video_id)
            check_feature_shape(
                shape,
                video_id,
                self._location(video_id),
                expected_length=expected,
                expected_dim=self.expected_dim,
                length_tolerance=self.length_tolerance,
            )
            length = int(shape[0])
            self._checked_lengths[video_id] = length
        return length

    def length(self, video_id: str) -> int:
        """Number of snippets ``T`` of ``video_id`` (reads the shape only)."""
        return self._checked_length(video_id)

    def read(self, video_id: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows ``[start, stop)`` of ``video_id`` as float32 ``[stop - start, C]`` (only those rows
        are read). ``stop=None`` means the end of the video."""
        length = self._checked_length(video_id)
        if stop is None:
            stop = length
        if not (isinstance(start, (int, np.integer)) and isinstance(stop, (int, np.integer))):
            raise ValueError(f"read('{video_id}'): start/stop must be integers, found {start!r}, {stop!r}")
        if not 0 <= start <= stop <= length:
            raise ValueError(
                f"read('{video_id}'): rows [{start}, {stop}) are outside the video's "
                f"{length} snippets; expected 0 <= start <= stop <= {length}"
            )
        array = np.asarray(self._raw_read(video_id, int(start), int(stop)), dtype=np.float32)
        check_finite(array, video_id, self._location(video_id), row_offset=int(start))
        return array

    def __enter__(self) -> "FeatureStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.source)!r})"
