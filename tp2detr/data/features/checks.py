"""Checks of one video's features ``[T, C]`` (rank, channels, length, dtype, finite values) and
the message for a feature store that is not there."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from tp2detr.errors import DataFormatError

FEATURE_FORMATS = ("npy", "hdf5")

# Synthetic stores are named <dataset>_d<dim>_s<seed>.h5 (configs/dataset/*_synth.yaml, toy.yaml).
_SYNTHETIC_NAME = re.compile(r"^(?P<dataset>.+)_d(?P<dim>\d+)_s(?P<seed>-?\d+)\.h5$")


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------


def check_feature_shape(
    shape: tuple[int, ...],
    video_id: str,
    source: str | Path,
    expected_length: int | None = None,
    expected_dim: int | None = None,
    length_tolerance: int = 2,
) -> None:
    """Check a video's feature shape ``[T, C]`` against what the feature info and config expect.

    ``expected_length`` is the feature-info ``snippet_length`` (snippets); the file may differ from
    it by at most ``length_tolerance`` snippets. Raises :class:`DataFormatError` otherwise.
    """
    if len(shape) != 2:
        raise DataFormatError(
            f"{source}: features of video '{video_id}' have shape {tuple(shape)} ({len(shape)}-D), "
            f"expected a 2-D array [T snippets, C channels]"
        )
    length, dim = int(shape[0]), int(shape[1])
    if expected_dim is not None and dim != expected_dim:
        raise DataFormatError(
            f"{source}: features of video '{video_id}' have {dim} channels (shape {tuple(shape)}), "
            f"expected {expected_dim} (dataset.features.dim)"
        )
    if expected_length is not None and abs(length - expected_length) > length_tolerance:
        raise DataFormatError(
            f"{source}: features of video '{video_id}' have {length} snippets, expected "
            f"{expected_length} (feature info snippet_length) within ±{length_tolerance}"
        )


def check_float_dtype(dtype: np.dtype, video_id: str, source: str | Path) -> None:
    """Raise :class:`DataFormatError` unless ``dtype`` is a real floating-point type."""
    if not np.issubdtype(dtype, np.floating):
        raise DataFormatError(
            f"{source}: features of video '{video_id}' have dtype {dtype}, "
            f"expected a real floating-point array (float16/float32/float64)"
        )


def check_finite(array: np.ndarray, video_id: str, source: str | Path, row_offset: int = 0) -> None:
    """Raise :class:`DataFormatError` if ``array`` ``[T, C]`` holds NaN or Inf.

    The message gives how many values are bad and the first one's (row, column); rows are counted
    from the start of the video (``row_offset`` is the first row of ``array`` in the video).
    """
    if array.size == 0:
        return
    finite = np.isfinite(array)
    if finite.all():
        return
    for kind, mask in (("NaN", np.isnan(array)), ("Inf", np.isinf(array))):
        count = int(mask.sum())
        if count:
            first = np.argwhere(mask)[0]
            where = (
                f"row {int(first[0]) + row_offset}, column {int(first[1])}"
                if array.ndim == 2
                else f"index {tuple(int(i) for i in first)}"
            )
            raise DataFormatError(
                f"{source}: features of video '{video_id}' contain {count} {kind} value(s), "
                f"first at {where}; expected finite values"
            )


def check_features(
    array: np.ndarray,
    video_id: str,
    source: str | Path,
    expected_length: int | None = None,
    expected_dim: int | None = None,
    length_tolerance: int = 2,
) -> None:
    """Validate a whole video's features ``[T, C]``: shape (see :func:`check_feature_shape`) and
    finite values (see :func:`check_finite`). Raises :class:`DataFormatError`."""
    check_feature_shape(
        tuple(array.shape), video_id, source, expected_length, expected_dim, length_tolerance
    )
    check_float_dtype(array.dtype, video_id, source)
    check_finite(array, video_id, source)


def store_not_found(fmt: str, path: Path, format_label: str | None = None) -> str:
    """``feature store not found: looked for <path> (<format_label>: <what that format is>)``,
    the first sentence of every missing-store message (``format_label`` defaults to ``fmt``)."""
    expected = (
        "a folder of <video_id>.npy files [T, C]"
        if fmt == "npy"
        else "an HDF5 file with one [T, C] dataset per video id"
    )
    return f"feature store not found: looked for {path} ({format_label or fmt}: {expected})"


def missing_store_message(fmt: str, path: Path) -> str:
    """The message for a feature store path that does not exist, with how to make it if it is a
    synthetic store (named ``<dataset>_d<dim>_s<seed>.h5``) or an HDF5 copy of a ``.npy`` folder.
    (A run's own missing store gets :func:`tp2detr.data.feature_setup.missing_features_message`,
    which says which config keys to set.)"""
    message = store_not_found(fmt, path)
    match = _SYNTHETIC_NAME.match(path.name)
    if fmt == "hdf5" and match:
        message += (
            "; it looks like a synthetic store, make it with: python scripts/make_synthetic.py "
            f"dataset={match['dataset']} dataset.synthetic.dim={match['dim']} "
            f"dataset.synthetic.seed={match['seed']} paths.feature_dir={path.parent}"
        )
    elif fmt == "hdf5":
        message += "; make one from a .npy folder with: python scripts/convert_features.py --src DIR --dst FILE.h5"
    return message
