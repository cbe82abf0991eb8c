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
"""

from __future__ import annotations

import abc
import logging
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import h5py
import numpy as np
from tqdm import tqdm

from tp2detr.errors import DataFormatError, MissingDataError
from tp2detr.io import atomic_path

logger = logging.getLogger(__name__)

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


def missing_store_message(fmt: str, path: Path) -> str:
    """The message for a feature store path that does not exist, with how to make it if it is a
    synthetic store (named ``<dataset>_d<dim>_s<seed>.h5``)."""
    expected = (
        "a folder of <video_id>.npy files [T, C]"
        if fmt == "npy"
        else "an HDF5 file with one [T, C] dataset per video id"
    )
    message = f"feature store not found: looked for {path} ({fmt}: {expected})"
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


# ----------------------------------------------------------------------------------------------
# Stores
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# Checking a whole store up front
# ----------------------------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------


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
