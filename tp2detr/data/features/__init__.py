"""Snippet-feature stores: one interface over a folder of ``.npy`` files and one HDF5 file.

Two on-disk formats hold the same thing, one ``[T, C]`` array per video (``T`` snippets, ``C``
channels, snippet ``i`` covering ``[i, i+1) · frames_per_snippet / fps`` seconds):

* ``npy``: a folder of ``<video_id>.npy`` files (GAP's published CLIP features). Files are opened
  memory-mapped and never with ``allow_pickle``.
* ``hdf5``: one file with one dataset per video id, float32 or float16 on disk. Written by
  :func:`write_hdf5_features` (``scripts/convert_features.py``, the synthetic benchmark).

Reads always return float32 and read only the requested rows. A video's shape (rank, channel count,
length against the feature-info length) is checked once, the first time it is touched; the values
actually read are checked for NaN/Inf on every read.

Modules: :mod:`~tp2detr.data.features.checks` (per-video checks), :mod:`~tp2detr.data.features.base`
(the interface), :mod:`~tp2detr.data.features.npy_store`, :mod:`~tp2detr.data.features.hdf5_store`,
:mod:`~tp2detr.data.features.scan` (checking a whole store up front) and
:mod:`~tp2detr.data.features.hdf5_writer` (writing and converting). :func:`open_feature_store` opens
either format.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from tp2detr.data.features.base import FeatureStore
from tp2detr.data.features.checks import (
    FEATURE_FORMATS,
    check_feature_shape,
    check_features,
    check_finite,
    check_float_dtype,
    missing_store_message,
)
from tp2detr.data.features.hdf5_store import HDF5FeatureStore
from tp2detr.data.features.hdf5_writer import convert_npy_to_hdf5, write_hdf5_features
from tp2detr.data.features.npy_store import NpyFeatureStore
from tp2detr.data.features.scan import SCAN_ROWS, scan_feature_store

__all__ = [
    "FEATURE_FORMATS",
    "SCAN_ROWS",
    "FeatureStore",
    "HDF5FeatureStore",
    "NpyFeatureStore",
    "check_feature_shape",
    "check_features",
    "check_finite",
    "check_float_dtype",
    "convert_npy_to_hdf5",
    "missing_store_message",
    "open_feature_store",
    "scan_feature_store",
    "write_hdf5_features",
]


def open_feature_store(
    fmt: str,
    path: str | Path,
    *,
    expected_dim: int | None = None,
    expected_lengths: Mapping[str, int] | None = None,
    length_tolerance: int = 2,
) -> FeatureStore:
    """Open the feature store at ``path`` in format ``fmt`` (``npy`` or ``hdf5``).

    Raises :class:`MissingDataError` if ``path`` does not exist (saying how to make a synthetic
    store) and ``ValueError`` for an unknown format. See :class:`FeatureStore` for the checks.
    """
    kwargs: dict[str, Any] = dict(
        expected_dim=expected_dim, expected_lengths=expected_lengths, length_tolerance=length_tolerance
    )
    if fmt == "npy":
        return NpyFeatureStore(path, **kwargs)
    if fmt == "hdf5":
        return HDF5FeatureStore(path, **kwargs)
    raise ValueError(f"features.format is {fmt!r}, expected one of {', '.join(FEATURE_FORMATS)}")
