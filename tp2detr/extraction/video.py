"""Decoding a video file with PyAV: its frame rate, and its RGB frames streamed in chunks.

Frames are decoded in presentation order, every one of them (no resampling to another frame
rate): frame ``k`` of the file is frame ``k`` of the features. Only one chunk of decoded frames
is held at a time, so a long video never sits in memory whole.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tp2detr.errors import ExtractionError
from tp2detr.extraction.dependencies import require

#: File name endings treated as videos when a folder is given.
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp")


@dataclass(frozen=True)
class VideoInfo:
    """What a video's container says about its first video stream.

    Attributes:
        path: the file.
        fps: frames per second (the stream's average frame rate, e.g. 30000/1001 → 29.97002997…).
        width, height: frame size in pixels.
        header_frames: the frame count the container declares, or ``None`` when it declares none;
            decoding may find a different number (the decoded count is the one that counts).
    """

    path: Path
    fps: float
    width: int
    height: int
    header_frames: int | None


def _av() -> Any:
    return require("av", "decoding videos")


@contextlib.contextmanager
def _open_video(path: Path) -> Iterator[tuple[Any, Any]]:
    """``(container, stream)``: the opened file and its first video stream; errors name the file."""
    av = _av()
    if not path.is_file():
        raise ExtractionError(f"{path}: video file not found (expected a readable video file)")
    try:
        container = av.open(str(path), mode="r")
    except (av.error.FFmpegError, OSError) as err:
        raise ExtractionError(
            f"{path}: cannot open as a video ({err}); expected a video file FFmpeg can decode"
        ) from err
    try:
        if not container.streams.video:
            raise ExtractionError(
                f"{path}: holds no video stream (it has {len(container.streams)} other stream(s)); "
                f"expected a video with at least one frame"
            )
        yield container, container.streams.video[0]
    finally:
        container.close()


def _stream_fps(stream: Any, path: Path) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0:
            return float(rate)
    raise ExtractionError(f"{path}: the video stream declares no frame rate; expected a positive fps")


def probe_video(path: str | Path) -> VideoInfo:
    """Read a video's frame rate, size and declared frame count without decoding it.

    Raises:
        ExtractionError: the file is missing, not a video FFmpeg can open, has no video stream or
            no frame rate (the message names the file).
    """
    path = Path(path)
    with _open_video(path) as (_container, stream):
        context = stream.codec_context
        frames = int(stream.frames or 0)
        return VideoInfo(
            path=path,
            fps=_stream_fps(stream, path),
            width=int(context.width),
            height=int(context.height),
            header_frames=frames if frames > 0 else None,
        )


def iter_frame_chunks(path: str | Path, chunk_frames: int) -> Iterator[list[np.ndarray]]:
    """Decode ``path`` and yield its frames in order, ``chunk_frames`` at a time.

    Yields:
        Lists of at most ``chunk_frames`` frames, each an RGB ``uint8`` array ``[H, W, 3]``; only
        the last list may be shorter. A video without decodable frames yields nothing.

    Raises:
        ExtractionError: the file cannot be opened or decoding fails part-way (naming the file
            and how many frames were decoded before the failure).
    """
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames is {chunk_frames}, expected a positive number of frames")
    path = Path(path)
    av = _av()
    decoded = 0
    with _open_video(path) as (container, stream):
        stream.thread_type = "AUTO"  # frame- and slice-threaded decoding; output is unchanged
        chunk: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                chunk.append(frame.to_ndarray(format="rgb24"))
                decoded += 1
                if len(chunk) == chunk_frames:
                    yield chunk
                    chunk = []
        except av.error.FFmpegError as err:
            raise ExtractionError(
                f"{path}: decoding failed after {decoded} frame(s) ({err}); expected a video "
                f"that decodes to the end"
            ) from err
        if chunk:
            yield chunk


def find_videos(source: str | Path) -> list[Path]:
    """The videos to extract: ``source`` itself if it is a file, else the video files directly
    inside the folder ``source`` (by suffix, see :data:`VIDEO_SUFFIXES`), sorted by name.

    Raises:
        ExtractionError: ``source`` does not exist, the folder holds no video, or two videos would
            get the same id (file name without suffix, e.g. ``a.mp4`` and ``a.mkv``).
    """
    source = Path(source)
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise ExtractionError(f"input {source}: not found; expected a video file or a folder of videos")
    videos = sorted(
        p for p in source.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in VIDEO_SUFFIXES
    )
    if not videos:
        raise ExtractionError(
            f"input {source}: the folder holds no video file; expected files ending in {', '.join(VIDEO_SUFFIXES)}"
        )
    check_unique_video_ids(videos, source, ExtractionError)
    return videos


def check_unique_video_ids(paths: list[Path], source: str | Path, error: type[Exception]) -> None:
    """Raise ``error`` naming ``source`` and both files when two of ``paths`` share a video id
    (:func:`video_id_of`: the file name without its suffix)."""
    seen: dict[str, Path] = {}
    for path in paths:
        video_id = video_id_of(path)
        if video_id in seen:
            raise error(
                f"input {source}: {seen[video_id].name} and {path.name} would both get the video id "
                f"'{video_id}'; expected one file per video id (file name without suffix)"
            )
        seen[video_id] = path


def video_id_of(path: str | Path) -> str:
    """A video's id: its file name without the suffix (``video_test_0000004.mp4`` →
    ``video_test_0000004``), the key used in feature stores and feature-info files."""
    return Path(path).stem
