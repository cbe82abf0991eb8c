"""Video files → CLIP snippet features ``[T, D]`` and their feature-info entries.

* :func:`extract_video`: one video, in memory; writes nothing (what ``predict.py`` uses).
* :func:`extract_videos`: many videos into a feature store (a folder of ``.npy`` files or one
  HDF5 file) plus the feature-info JSON, resumable: videos whose stored features are valid are
  skipped, anything missing or broken is extracted again. A video that cannot be read is logged,
  listed in the summary and skipped; the others finish.

Frames are streamed: each chunk of ``encoder.batch_size`` decoded frames is embedded and folded
into the running snippet sums before the next chunk is decoded.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from tp2detr.errors import ExtractionError
from tp2detr.extraction.clip_encoder import ClipFrameEncoder
from tp2detr.extraction.outputs import (
    NOT_EXTRACTED,
    FeatureInfoFile,
    HDF5Output,
    NpyOutput,
    check_settings,
)
from tp2detr.extraction.snippets import (
    SnippetAccumulator,
    check_enough_frames,
    feature_info_entry,
)
from tp2detr.extraction.video import (
    find_videos,
    iter_frame_chunks,
    probe_video,
    video_id_of,
)

logger = logging.getLogger(__name__)

OUTPUT_FORMATS = ("npy", "hdf5")


@dataclass(frozen=True)
class VideoFeatures:
    """One video's extraction result.

    Attributes:
        video_id: the file name without suffix.
        path: the video file.
        features: float32 ``[T, D]``, ``T = floor(frame_length / frames_per_snippet)``.
        info: its feature-info entry (``frame_length``, ``frame_duration``, ``video_fps``,
            ``snippet_length``, ``snippet_duration``; see :mod:`tp2detr.extraction.snippets`).
    """

    video_id: str
    path: Path
    features: np.ndarray
    info: dict[str, Any]


@dataclass(frozen=True)
class FailedVideo:
    """A video a batch run skipped, and why."""

    video_id: str
    path: Path
    error: str


@dataclass
class ExtractionSummary:
    """What :func:`extract_videos` did.

    Attributes:
        format: ``npy`` or ``hdf5``.
        features: the store to give ``dataset.features.path`` (folder or HDF5 file).
        feature_info: the feature-info JSON.
        extracted: ids extracted in this run; skipped: ids already done; failed: the bad videos.
    """

    format: str
    features: Path
    feature_info: Path
    extracted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[FailedVideo] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every video was extracted or already done."""
        return not self.failed


def extract_video(
    path: str | Path,
    encoder: ClipFrameEncoder,
    frames_per_snippet: int = 8,
    *,
    video_id: str | None = None,
    progress: bool = False,
) -> VideoFeatures:
    """Extract one video's snippet features in memory (nothing is written).

    Args:
        path: the video file.
        encoder: the CLIP image model (see :meth:`ClipFrameEncoder.load`); frames are decoded and
            embedded ``encoder.batch_size`` at a time.
        frames_per_snippet: frames averaged into one feature row (8 THUMOS14, 16 ActivityNet1.3).
        video_id: defaults to the file name without suffix.
        progress: show a per-frame progress bar.

    Raises:
        ExtractionError: the file cannot be decoded, or has fewer than ``frames_per_snippet``
            frames (the message names the file).
    """
    path = Path(path)
    video_id = video_id or video_id_of(path)
    video = probe_video(path)
    snippets = SnippetAccumulator(frames_per_snippet, encoder.dim)
    with tqdm(total=video.header_frames, desc=video_id, unit="frame", disable=not progress, leave=False) as bar:
        for chunk in iter_frame_chunks(path, encoder.batch_size):
            snippets.add(encoder.embed(chunk))
            bar.update(len(chunk))
    check_enough_frames(snippets.frame_count, frames_per_snippet, path)
    features = snippets.result()
    if not np.isfinite(features).all():
        raise ExtractionError(f"{path}: the CLIP model gave non-finite embeddings; expected finite values")
    info = feature_info_entry(snippets.frame_count, video.fps, frames_per_snippet)
    return VideoFeatures(video_id=video_id, path=path, features=features, info=info)


def _video_list(inputs: str | Path | Sequence[str | Path]) -> list[Path]:
    if isinstance(inputs, (str, Path)):
        return find_videos(inputs)
    videos = [Path(p) for p in inputs]
    ids = [video_id_of(p) for p in videos]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ExtractionError(f"inputs: video id(s) {', '.join(duplicates)} given more than once; expected one file per id")
    return videos


def extract_videos(
    inputs: str | Path | Sequence[str | Path],
    out: str | Path,
    encoder: ClipFrameEncoder,
    *,
    fmt: str = "npy",
    frames_per_snippet: int = 8,
    feature_info: str | Path | None = None,
    hdf5_file: str | Path | None = None,
    hdf5_dtype: str = "float32",
    overwrite: bool = False,
    progress: bool = True,
    save_every: int = 20,
) -> ExtractionSummary:
    """Extract many videos into a feature store and a feature-info JSON (resumable).

    Args:
        inputs: a video file, a folder of videos (see :func:`find_videos`) or a list of files.
        out: the output folder: ``<video_id>.npy`` files (``fmt="npy"``), ``extraction.json``
            (the settings), and by default ``feature_info.json`` and ``features.h5``.
        encoder: the CLIP image model.
        fmt: ``npy`` or ``hdf5``.
        frames_per_snippet: frames per feature row.
        feature_info: the feature-info JSON to create or update (default ``out/feature_info.json``).
        hdf5_file: the HDF5 file for ``fmt="hdf5"`` (default ``out/features.h5``).
        hdf5_dtype: its on-disk dtype, ``float32`` or ``float16``.
        overwrite: extract every video again, even those already done, and accept an output
            folder made with other settings.
        progress: show a progress bar over the videos.
        save_every: write the feature-info JSON after every this many extracted videos (and at
            the end, also after an error or Ctrl-C).

    Returns:
        The :class:`ExtractionSummary`; bad videos are in ``failed``, not raised.

    Raises:
        ExtractionError: bad ``inputs`` (missing, no video), an unreadable existing feature-info
            file, or an output folder made with other settings (without ``overwrite``).
    """
    if fmt not in OUTPUT_FORMATS:
        raise ValueError(f"format is {fmt!r}, expected one of {', '.join(OUTPUT_FORMATS)}")
    videos = _video_list(inputs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {
        "clip_model": encoder.source,
        "dim": encoder.dim,
        "frames_per_snippet": int(frames_per_snippet),
        "l2_normalize": encoder.l2_normalize,
    }
    info_file = FeatureInfoFile(feature_info if feature_info is not None else out / "feature_info.json")
    check_settings(out, settings, overwrite)
    output: NpyOutput | HDF5Output
    if fmt == "npy":
        output = NpyOutput(out, encoder.dim)
    else:
        output = HDF5Output(hdf5_file if hdf5_file is not None else out / "features.h5", encoder.dim, hdf5_dtype)
    summary = ExtractionSummary(format=fmt, features=output.location, feature_info=info_file.path)
    try:
        with tqdm(videos, desc="extracting", unit="video", disable=not progress) as bar:
            for path in bar:
                video_id = video_id_of(path)
                bar.set_postfix_str(video_id)
                if not overwrite:
                    problem = output.problem(video_id, info_file.get(video_id))
                    if problem is None:
                        summary.skipped.append(video_id)
                        continue
                    if problem != NOT_EXTRACTED:
                        logger.info("%s: extracting again: %s", video_id, problem)
                try:
                    result = extract_video(path, encoder, frames_per_snippet, video_id=video_id)
                except (ExtractionError, ValueError) as err:
                    logger.error("%s: skipped: %s", path, err)
                    summary.failed.append(FailedVideo(video_id, path, str(err)))
                    continue
                output.put(video_id, result.features)
                info_file.set(video_id, result.info)
                summary.extracted.append(video_id)
                if len(summary.extracted) % save_every == 0:
                    info_file.save()
        output.finish({f"extraction_{key}": value for key, value in settings.items()})
    finally:
        info_file.save()
        output.close()
    logger.info(
        "%d extracted, %d already done, %d failed; features in %s, feature info in %s",
        len(summary.extracted),
        len(summary.skipped),
        len(summary.failed),
        summary.features,
        summary.feature_info,
    )
    return summary
