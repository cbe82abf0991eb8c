"""A folder of ``<video_id>.npy`` files (GAP's published CLIP features), read memory-mapped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tp2detr.data.features.base import FeatureStore
from tp2detr.data.features.checks import check_float_dtype, missing_store_message
from tp2detr.errors import DataFormatError, MissingDataError

class NpyFeatureStore(FeatureStore):
    """A folder of ``<video_id>.npy`` files, each ``[T, C]``; read memory-mapped, no pickles."""

    format = "npy"

    def __init__(self, path: str | Path, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        if not self.source.exists():
            raise MissingDataError(missing_store_message("npy", self.source))
        if not self.source.is_dir():
            raise DataFormatError(
                f"{self.source}: is a file, expected a folder of <video_id>.npy files (format npy)"
            )
        self._ids: list[str] | None = None

    def _file(self, video_id: str) -> Path:
        return self.source / f"{video_id}.npy"

    def _location(self, video_id: str) -> str:
        return str(self._file(video_id))

    def video_ids(self) -> list[str]:
        if self._ids is None:
            self._ids = sorted(
                p.name[: -len(".npy")]
                for p in self.source.iterdir()
                if p.name.endswith(".npy") and not p.name.startswith(".") and p.is_file()
            )
        return list(self._ids)

    def has(self, video_id: str) -> bool:
        return self._file(video_id).is_file()

    def _open(self, video_id: str) -> np.ndarray:
        file = self._file(video_id)
        if not file.is_file():
            raise MissingDataError(
                f"features of video '{video_id}' not found: expected the file {file} "
                f"([T, C] array) in the feature folder {self.source}"
            )
        _check_npy_magic(file, video_id)
        try:
            array = np.load(file, mmap_mode="r", allow_pickle=False)
        except ValueError as err:
            if "pickle" in str(err) or "Python objects" in str(err):
                raise DataFormatError(
                    f"{file}: holds Python objects (an object array), not numbers; expected a .npy "
                    f"file holding a [T, C] float array for video '{video_id}'"
                ) from err
            raise DataFormatError(
                f"{file}: not a valid .npy array ({err}); expected a .npy file holding a [T, C] "
                f"float array for video '{video_id}'"
            ) from err
        except (EOFError, OSError) as err:
            raise DataFormatError(
                f"{file}: cannot read features of video '{video_id}' ({err}); "
                f"expected a .npy file holding a [T, C] float array"
            ) from err
        if not isinstance(array, np.ndarray):
            raise DataFormatError(
                f"{file}: holds {type(array).__name__}, expected a single .npy array [T, C] "
                f"for video '{video_id}'"
            )
        check_float_dtype(array.dtype, video_id, file)
        return array

    def _raw_shape(self, video_id: str) -> tuple[int, ...]:
        return tuple(self._open(video_id).shape)

    def _raw_read(self, video_id: str, start: int, stop: int) -> np.ndarray:
        array = self._open(video_id)
        rows = np.array(array[start:stop], dtype=np.float32)  # copy: detaches from the mmap
        del array
        return rows


_NPY_MAGIC = b"\x93NUMPY"


def _check_npy_magic(file: Path, video_id: str) -> None:
    """Raise :class:`DataFormatError` unless ``file`` starts with the ``.npy`` magic bytes (numpy
    would otherwise try to read it as a pickle and hint at ``allow_pickle``)."""
    try:
        with open(file, "rb") as handle:
            head = handle.read(len(_NPY_MAGIC))
    except OSError as err:
        raise DataFormatError(f"{file}: cannot read features of video '{video_id}' ({err})") from err
    if head != _NPY_MAGIC:
        raise DataFormatError(
            f"{file}: not a valid .npy array file (its first bytes are {head!r}, a .npy file starts "
            f"with {_NPY_MAGIC!r}); expected a .npy file holding a [T, C] float array for video '{video_id}'"
        )
