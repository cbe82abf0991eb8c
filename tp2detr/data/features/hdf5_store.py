"""One HDF5 file with one ``[T, C]`` dataset per video id, opened once per process."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from tp2detr.data.features.base import FeatureStore
from tp2detr.data.features.checks import check_float_dtype, missing_store_message
from tp2detr.errors import DataFormatError, MissingDataError

class HDF5FeatureStore(FeatureStore):
    """One HDF5 file with one ``[T, C]`` dataset per video id (float16 or float32 on disk).

    The file is opened lazily and once per process (the opening pid is tracked), so a store made
    in the main process can be used by forked or spawned DataLoader workers.
    """

    format = "hdf5"

    def __init__(self, path: str | Path, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        if not self.source.exists():
            raise MissingDataError(missing_store_message("hdf5", self.source))
        if not self.source.is_file():
            raise DataFormatError(
                f"{self.source}: is a folder, expected one HDF5 file (format hdf5); "
                f"use features.format=npy for a folder of .npy files"
            )
        self._file_handle: h5py.File | None = None
        self._pid: int | None = None
        self._ids: list[str] | None = None

    def _h5(self) -> h5py.File:
        pid = os.getpid()
        if self._file_handle is None or self._pid != pid:
            # A handle inherited through fork belongs to the parent: drop it without closing.
            try:
                self._file_handle = h5py.File(self.source, "r")
            except OSError as err:
                raise DataFormatError(
                    f"{self.source}: cannot open as HDF5 ({err}); expected an HDF5 file with one "
                    f"[T, C] dataset per video id"
                ) from err
            self._pid = pid
        return self._file_handle

    def _location(self, video_id: str) -> str:
        return f"{self.source}['{video_id}']"

    def video_ids(self) -> list[str]:
        if self._ids is None:
            handle = self._h5()
            self._ids = sorted(k for k in handle.keys() if isinstance(handle[k], h5py.Dataset))
        return list(self._ids)

    def has(self, video_id: str) -> bool:
        handle = self._h5()
        return video_id in handle and isinstance(handle[video_id], h5py.Dataset)

    def _dataset(self, video_id: str) -> h5py.Dataset:
        handle = self._h5()
        if video_id not in handle:
            raise MissingDataError(
                f"features of video '{video_id}' not found: expected a dataset '{video_id}' "
                f"([T, C]) in the HDF5 file {self.source} (it holds {len(handle)} entries)"
            )
        node = handle[video_id]
        if not isinstance(node, h5py.Dataset):
            raise DataFormatError(
                f"{self.source}: '{video_id}' is a {type(node).__name__}, expected a [T, C] dataset"
            )
        check_float_dtype(node.dtype, video_id, self._location(video_id))
        return node

    def _raw_shape(self, video_id: str) -> tuple[int, ...]:
        return tuple(self._dataset(video_id).shape)

    def _raw_read(self, video_id: str, start: int, stop: int) -> np.ndarray:
        return self._dataset(video_id)[start:stop]

    def attributes(self) -> dict[str, Any]:
        """The file's root attributes (e.g. a synthetic store's generator knobs)."""
        return {k: _plain(v) for k, v in self._h5().attrs.items()}

    def close(self) -> None:
        if self._file_handle is not None and self._pid == os.getpid():
            self._file_handle.close()
        self._file_handle = None
        self._pid = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_file_handle"] = None  # h5py handles do not pickle; each process reopens
        state["_pid"] = None
        return state


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value
