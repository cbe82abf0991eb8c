"""Where extracted features go, and how a rerun knows which videos are already done.

* :class:`NpyOutput`: ``<out>/<video_id>.npy`` per video (``[T, D]`` float32), each written
  atomically as soon as the video is done.
* :class:`HDF5Output`: one HDF5 file. Each finished video is first written atomically as
  ``<file>.parts/<video_id>.npy``; :meth:`HDF5Output.finish` packs the videos already in the file
  and the new parts into a new file with :func:`tp2detr.data.features.write_hdf5_features`
  (atomically, so an interruption never loses finished work) and removes the parts.
* :class:`FeatureInfoFile`: the feature-info JSON (``{video_id: entry}``), read once, updated in
  memory and written atomically; entries of other videos already in the file are kept.
* :func:`check_settings`: ``<out>/extraction.json`` records the model and snippet settings, so a
  rerun with other settings does not silently mix features of two models in one folder.

A video counts as done when its stored features load, are ``[T, D]`` with the encoder's ``D``,
finite, and its feature-info entry has ``snippet_length == T``; anything else (a missing or
corrupted file, a missing entry) is extracted again.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tp2detr.data.features import HDF5FeatureStore, check_features, write_hdf5_features
from tp2detr.errors import DataFormatError, ExtractionError, MissingDataError
from tp2detr.io import atomic_open, atomic_write_json

logger = logging.getLogger(__name__)

#: Name of the settings record inside the output folder.
SETTINGS_FILE = "extraction.json"
#: The reason :meth:`NpyOutput.problem` / :meth:`HDF5Output.problem` give for a video never extracted.
NOT_EXTRACTED = "no features yet"
#: Keys of one feature-info entry, in the order written.
FEATURE_INFO_KEYS = ("frame_length", "frame_duration", "video_fps", "snippet_length", "snippet_duration")


def write_npy_atomic(path: Path, array: np.ndarray) -> None:
    """Save ``array`` as ``.npy`` at ``path`` through a temporary file + rename."""
    with atomic_open(path, "wb") as handle:
        np.save(handle, array, allow_pickle=False)


def _npy_problem(path: Path, dim: int, entry: Mapping[str, Any] | None, video_id: str) -> str | None:
    """Why ``path`` is not a finished video's features (``None`` when it is)."""
    if not path.is_file():
        return NOT_EXTRACTED
    try:
        array = np.load(path, allow_pickle=False)
        check_features(array, video_id, path, expected_dim=dim)
    except (ValueError, OSError, EOFError) as err:
        return f"unreadable or invalid ({' '.join(str(err).split())})"
    return _entry_problem(entry, len(array))


def _entry_problem(entry: Mapping[str, Any] | None, rows: int) -> str | None:
    if entry is None:
        return "no feature-info entry"
    if entry.get("snippet_length") != rows:
        return f"{rows} rows but feature info says snippet_length {entry.get('snippet_length')}"
    return None


class NpyOutput:
    """A folder of ``<video_id>.npy`` files ``[T, D]`` (the format ``open_feature_store('npy')`` reads)."""

    format = "npy"

    def __init__(self, folder: str | Path, dim: int) -> None:
        self.folder = Path(folder)
        self.dim = int(dim)
        self.folder.mkdir(parents=True, exist_ok=True)

    @property
    def location(self) -> Path:
        """What to give ``dataset.features.path``."""
        return self.folder

    def problem(self, video_id: str, entry: Mapping[str, Any] | None) -> str | None:
        """Why ``video_id`` must be (re)extracted, or ``None`` when it is done."""
        return _npy_problem(self.folder / f"{video_id}.npy", self.dim, entry, video_id)

    def put(self, video_id: str, features: np.ndarray) -> None:
        """Store one video's features ``[T, D]`` (atomically)."""
        write_npy_atomic(self.folder / f"{video_id}.npy", np.asarray(features, dtype=np.float32))

    def finish(self, attrs: Mapping[str, Any]) -> None:
        """Nothing to do: every video was written when it was put."""

    def close(self) -> None:
        """Nothing to release."""


class HDF5Output:
    """One HDF5 file with one ``[T, D]`` dataset per video, filled through a parts folder.

    Args:
        file: the HDF5 file (an existing one is kept and extended).
        dim: the embedding dimension ``D``.
        dtype: the on-disk dtype, ``float32`` or ``float16``.
    """

    format = "hdf5"

    def __init__(self, file: str | Path, dim: int, dtype: str = "float32") -> None:
        self.file = Path(file)
        self.dim = int(dim)
        self.dtype = dtype
        self.parts = self.file.with_name(self.file.name + ".parts")
        self._stored: HDF5FeatureStore | None = None
        if self.file.exists():
            try:
                store = HDF5FeatureStore(self.file, expected_dim=self.dim)
                store.video_ids()
                self._stored = store
            except (DataFormatError, MissingDataError, OSError) as err:
                logger.warning("%s: cannot be read (%s); every video is extracted again", self.file, err)

    @property
    def location(self) -> Path:
        """What to give ``dataset.features.path``."""
        return self.file

    def problem(self, video_id: str, entry: Mapping[str, Any] | None) -> str | None:
        """Why ``video_id`` must be (re)extracted, or ``None`` when it is done (in the file or in
        the parts folder)."""
        part = self.parts / f"{video_id}.npy"
        if part.is_file():
            return _npy_problem(part, self.dim, entry, video_id)
        if self._stored is None or not self._stored.has(video_id):
            return NOT_EXTRACTED
        try:
            rows = self._stored.read(video_id)
        except (DataFormatError, MissingDataError, OSError, ValueError) as err:
            return f"unreadable or invalid ({' '.join(str(err).split())})"
        return _entry_problem(entry, len(rows))

    def put(self, video_id: str, features: np.ndarray) -> None:
        """Store one video's features ``[T, D]`` in the parts folder (atomically)."""
        self.parts.mkdir(parents=True, exist_ok=True)
        write_npy_atomic(self.parts / f"{video_id}.npy", np.asarray(features, dtype=np.float32))

    def _part_ids(self) -> list[str]:
        if not self.parts.is_dir():
            return []
        return sorted(p.stem for p in self.parts.glob("*.npy") if not p.name.startswith("."))

    def _items(self, keep: list[str], part_ids: list[str]) -> Iterator[tuple[str, np.ndarray]]:
        for video_id in keep:
            assert self._stored is not None
            yield video_id, self._stored.read(video_id)
        for video_id in part_ids:
            yield video_id, np.load(self.parts / f"{video_id}.npy", allow_pickle=False)

    def finish(self, attrs: Mapping[str, Any]) -> None:
        """Write the file: the videos it held (unless replaced by a part) plus every part, with
        ``attrs`` as root attributes; then remove the parts folder. Nothing happens when there are
        no parts."""
        part_ids = self._part_ids()
        if not part_ids:
            return
        replaced = set(part_ids)
        keep = [] if self._stored is None else [v for v in self._stored.video_ids() if v not in replaced]
        try:
            write_hdf5_features(
                self.file,
                self._items(keep, part_ids),
                dtype=self.dtype,
                attrs=attrs,
                total=len(keep) + len(part_ids),
                progress=False,
            )
        finally:
            if self._stored is not None:
                self._stored.close()
        self._stored = HDF5FeatureStore(self.file, expected_dim=self.dim)
        shutil.rmtree(self.parts)

    def close(self) -> None:
        """Close the HDF5 file opened to check and copy the videos it already held."""
        if self._stored is not None:
            self._stored.close()


class FeatureInfoFile:
    """The feature-info JSON ``{video_id: {frame_length, frame_duration, video_fps,
    snippet_length, snippet_duration}}``, kept in memory and written atomically by :meth:`save`.

    Raises:
        ExtractionError: an existing file is not a JSON object (it is never overwritten then).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.entries: dict[str, dict[str, Any]] = {}
        self._dirty = False
        if self.path.exists():
            try:
                loaded = json.loads(self.path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise ExtractionError(
                    f"{self.path}: not valid JSON ({err}); expected a feature-info object "
                    f"{{video_id: {{...}}}} (move it away to start a new one)"
                ) from err
            if not isinstance(loaded, dict):
                raise ExtractionError(
                    f"{self.path}: top level is {type(loaded).__name__}, expected a feature-info object {{video_id: {{...}}}}"
                )
            self.entries = loaded

    def get(self, video_id: str) -> dict[str, Any] | None:
        """The entry of ``video_id``, or ``None``."""
        entry = self.entries.get(video_id)
        return entry if isinstance(entry, dict) else None

    def set(self, video_id: str, entry: Mapping[str, Any]) -> None:
        """Add or replace the entry of ``video_id`` (in memory until :meth:`save`)."""
        self.entries[video_id] = {key: entry[key] for key in FEATURE_INFO_KEYS}
        self._dirty = True

    def save(self) -> None:
        """Write the file atomically if anything changed since the last save."""
        if self._dirty:
            atomic_write_json(self.path, self.entries, indent=4)
            self._dirty = False


def check_settings(folder: str | Path, settings: Mapping[str, Any], overwrite: bool) -> None:
    """Record ``settings`` in ``<folder>/extraction.json``, refusing a folder made with others.

    Raises:
        ExtractionError: the folder holds a record with different settings and ``overwrite`` is
            false (the message lists the differences).
    """
    path = Path(folder) / SETTINGS_FILE
    wanted = dict(settings)
    if path.is_file() and not overwrite:
        try:
            found = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ExtractionError(f"{path}: not valid JSON ({err}); expected the extraction settings record") from err
        differences = [
            f"{key}: {found.get(key)!r} there, {wanted.get(key)!r} now"
            for key in sorted(set(found) | set(wanted))
            if found.get(key) != wanted.get(key)
        ]
        if differences:
            raise ExtractionError(
                f"{path}: the features in {folder} were extracted with other settings "
                f"({'; '.join(differences)}); expected the same settings to resume, "
                f"or a new output folder, or overwrite=true to extract everything again"
            )
        return
    atomic_write_json(path, wanted)
