"""Writing HDF5 feature stores atomically, and converting a ``.npy`` folder into one."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import h5py
import numpy as np
from tqdm import tqdm

from tp2detr.data.features.checks import check_features, check_finite
from tp2detr.data.features.hdf5_store import HDF5FeatureStore
from tp2detr.data.features.npy_store import NpyFeatureStore
from tp2detr.errors import DataFormatError, MissingDataError
from tp2detr.io import atomic_path

logger = logging.getLogger(__name__)


def write_hdf5_features(
    path: str | Path,
    items: Iterable[tuple[str, np.ndarray]],
    *,
    dtype: str = "float32",
    attrs: Mapping[str, Any] | None = None,
    total: int | None = None,
    progress: bool = True,
    desc: str = "writing features",
    verify: Callable[[Path], None] | None = None,
) -> Path:
    """Write ``(video_id, features [T, C])`` pairs into one HDF5 file, atomically.

    Each array is validated (2-D, finite, and still finite after the cast to ``dtype``), stored as
    ``dtype`` (``float16`` or ``float32``) under its video id, and ``attrs`` become root attributes.
    Everything goes to a temporary file in the destination folder; ``verify(tmp_path)`` (if given)
    runs on the closed temporary file; only then is it renamed onto ``path``. On any error no file
    appears at ``path`` (a previous one is left untouched) and the temporary file is removed.
    """
    if dtype not in ("float16", "float32"):
        raise ValueError(f"dtype is {dtype!r}, expected 'float16' or 'float32'")
    path = Path(path)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as handle:
            for key, value in (attrs or {}).items():
                handle.attrs[key] = value
            for video_id, array in tqdm(items, total=total, desc=desc, unit="video", disable=not progress):
                if video_id in handle:
                    raise ValueError(f"{path}: video '{video_id}' given twice, expected unique ids")
                if "/" in video_id:
                    raise ValueError(f"{path}: video id '{video_id}' contains '/', not allowed in HDF5 names")
                array = np.asarray(array)
                check_features(array, video_id, f"input for {path}")
                with np.errstate(over="ignore"):  # reported below, naming the video
                    stored = array.astype(dtype)
                check_finite(stored, video_id, f"{path} (after the cast to {dtype})")
                handle.create_dataset(video_id, data=stored)
        if verify is not None:
            verify(tmp)
    logger.info("wrote %s (%.1f MiB)", path, path.stat().st_size / 2**20)
    return path


def convert_npy_to_hdf5(
    src: str | Path, dst: str | Path, *, dtype: str = "float32", progress: bool = True
) -> Path:
    """Copy every ``<video_id>.npy`` of the folder ``src`` into one HDF5 file ``dst`` (atomically)
    and verify the copy: each stored video equals the source cast to ``dtype``."""
    source = NpyFeatureStore(src)
    ids = source.video_ids()
    if not ids:
        raise MissingDataError(f"{source.source}: no <video_id>.npy files found, expected at least one")

    def verify(tmp: Path) -> None:
        copy = HDF5FeatureStore(tmp)
        try:
            if copy.video_ids() != ids:
                raise DataFormatError(
                    f"{dst}: the copy holds {len(copy.video_ids())} videos, expected {len(ids)}"
                )
            for video_id in tqdm(ids, desc="verifying", unit="video", disable=not progress):
                expected = source.read(video_id).astype(dtype).astype(np.float32)
                if not np.array_equal(copy.read(video_id), expected):
                    raise DataFormatError(
                        f"{dst}: video '{video_id}' differs from {source._file(video_id)} after the copy"
                    )
        finally:
            copy.close()

    items = ((video_id, source.read(video_id)) for video_id in ids)
    return write_hdf5_features(
        dst,
        items,
        dtype=dtype,
        attrs={"converted_from": str(Path(src).resolve())},
        total=len(ids),
        progress=progress,
        desc="converting",
        verify=verify,
    )
