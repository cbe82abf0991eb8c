"""From per-frame embeddings to snippet features, and the feature-info entry that describes them.

A snippet is ``frames_per_snippet`` consecutive frames (8 for THUMOS14, 16 for ActivityNet1.3);
its feature is the mean of their embeddings. A video of ``F`` frames has ``floor(F / k)``
snippets: the trailing partial group is dropped, as in the released features (THUMOS14
``frame_length`` 8273 → ``snippet_length`` 1034).

The feature-info entry reproduces the released files' arithmetic exactly (checked against every
THUMOS14 entry in ``data/thumos14/feature_info_8frame.json``):

* ``frame_duration`` = (frame_length − 1) / video_fps seconds — the time of the last frame
  (8273 frames at 30 fps → 275.7333…), not frame_length / video_fps;
* ``snippet_duration`` = snippet_length · frames_per_snippet / video_fps seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tp2detr.errors import ExtractionError


def snippet_count(frame_count: int, frames_per_snippet: int) -> int:
    """Snippets of a video with ``frame_count`` frames: ``floor(frame_count / frames_per_snippet)``."""
    if frames_per_snippet < 1:
        raise ValueError(f"frames_per_snippet is {frames_per_snippet}, expected a positive integer")
    return frame_count // frames_per_snippet


def feature_info_entry(frame_length: int, video_fps: float, frames_per_snippet: int) -> dict[str, int | float]:
    """The feature-info record of one video, in the project's schema (see the module docstring).

    Args:
        frame_length: decoded frames.
        video_fps: frames per second.
        frames_per_snippet: frames averaged into one feature row.

    Returns:
        ``{"frame_length": int, "frame_duration": s, "video_fps": float, "snippet_length": int,
        "snippet_duration": s}``.
    """
    if video_fps <= 0:
        raise ValueError(f"video_fps is {video_fps}, expected > 0")
    snippets = snippet_count(frame_length, frames_per_snippet)
    return {
        "frame_length": int(frame_length),
        "frame_duration": (frame_length - 1) / video_fps if frame_length > 0 else 0.0,
        "video_fps": float(video_fps),
        "snippet_length": int(snippets),
        "snippet_duration": snippets * frames_per_snippet / video_fps,
    }


class SnippetAccumulator:
    """Averages a stream of frame embeddings into snippet features, chunk by chunk.

    Feed the embeddings of consecutive frames with :meth:`add` in any chunk sizes; :meth:`result`
    returns the mean of each complete group of ``frames_per_snippet`` frames. Only the finished
    snippet means and one partial group's running sum are kept (sums in float64).

    Args:
        frames_per_snippet: frames per snippet ``k``.
        dim: embedding dimension ``D``.
    """

    def __init__(self, frames_per_snippet: int, dim: int) -> None:
        if frames_per_snippet < 1:
            raise ValueError(f"frames_per_snippet is {frames_per_snippet}, expected a positive integer")
        self.frames_per_snippet = int(frames_per_snippet)
        self.dim = int(dim)
        self._snippets: list[np.ndarray] = []
        self._partial_sum = np.zeros(self.dim, dtype=np.float64)
        self._partial_count = 0
        self.frame_count = 0

    def add(self, embeddings: np.ndarray) -> None:
        """Append the embeddings ``[N, D]`` of the next ``N`` frames."""
        embeddings = np.asarray(embeddings, dtype=np.float64)
        if embeddings.ndim != 2 or embeddings.shape[1] != self.dim:
            raise ValueError(f"embeddings have shape {embeddings.shape}, expected [N, {self.dim}]")
        self.frame_count += len(embeddings)
        k = self.frames_per_snippet
        if self._partial_count:
            take = min(k - self._partial_count, len(embeddings))
            self._partial_sum += embeddings[:take].sum(axis=0)
            self._partial_count += take
            embeddings = embeddings[take:]
            if self._partial_count == k:
                self._snippets.append((self._partial_sum / k)[None].astype(np.float32))
                self._partial_sum = np.zeros(self.dim, dtype=np.float64)
                self._partial_count = 0
        whole = len(embeddings) // k * k
        if whole:
            self._snippets.append(embeddings[:whole].reshape(-1, k, self.dim).mean(axis=1).astype(np.float32))
        rest = embeddings[whole:]
        if len(rest):
            self._partial_sum += rest.sum(axis=0)
            self._partial_count += len(rest)

    @property
    def snippet_count(self) -> int:
        """Complete snippets so far."""
        return snippet_count(self.frame_count, self.frames_per_snippet)

    def result(self) -> np.ndarray:
        """The snippet features so far, float32 ``[floor(frames / k), D]`` (the partial group is
        left out)."""
        if not self._snippets:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(self._snippets, axis=0)


def check_enough_frames(frame_count: int, frames_per_snippet: int, path: str | Path) -> None:
    """Raise :class:`ExtractionError` (naming ``path``) unless the video gives at least one snippet."""
    if frame_count == 0:
        raise ExtractionError(
            f"{path}: no frame could be decoded; expected a video of at least {frames_per_snippet} frames"
        )
    if frame_count < frames_per_snippet:
        raise ExtractionError(
            f"{path}: has {frame_count} frame(s), fewer than one snippet of {frames_per_snippet} frames; "
            f"expected at least {frames_per_snippet} frames (frames_per_snippet)"
        )
