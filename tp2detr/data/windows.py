"""Turning a video's snippet sequence into model inputs: sliding windows (THUMOS14) and the
seconds ↔ snippet ↔ normalised-coordinate conventions of the released code (docs/fidelity.md §5.5).

Conventions:

* Snippet ``i`` is placed at time ``i / feature_fps`` seconds (its start, not its centre).
* A window is the inclusive snippet range ``[start, end]``; its duration is
  ``(end - start) / feature_fps`` — (length − 1) snippet periods, so normalised 1.0 maps to the
  start of the last snippet (docs/fidelity.md §11.12, reproduced for fidelity).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from tp2detr.data.annotations import Instance


@dataclass(frozen=True)
class Window:
    """An inclusive snippet range ``[start, end]`` of one video."""

    video_id: str
    start: int
    end: int
    feature_fps: float

    @property
    def length(self) -> int:
        """Number of snippets."""
        return self.end - self.start + 1

    @property
    def t_start(self) -> float:
        """Start time in seconds."""
        return self.start / self.feature_fps

    @property
    def t_end(self) -> float:
        """End time in seconds (the start of the last snippet)."""
        return self.end / self.feature_fps

    @property
    def duration(self) -> float:
        """``(length − 1)`` snippet periods in seconds; one period for a single-snippet window."""
        return max(self.end - self.start, 1) / self.feature_fps


def sliding_window_ranges(
    num_snippets: int, size: int, stride: int, training: bool
) -> list[tuple[int, int]]:
    """Inclusive ``(start, end)`` snippet ranges covering ``num_snippets`` snippets.

    * ``num_snippets <= size``: one window ``[0, num_snippets − 1]``.
    * Otherwise ``n = (num_snippets − size) // stride + 1`` full windows; if they stop short of
      the end, one more: shifted left to be full in training, ``[stride·n, num_snippets − 1]``
      (partial) at inference.
    """
    if num_snippets <= 0:
        return []
    if size <= 0 or stride <= 0:
        raise ValueError(f"window size and stride must be > 0, found size={size}, stride={stride}")
    if num_snippets <= size:
        return [(0, num_snippets - 1)]
    n = (num_snippets - size) // stride + 1
    ranges = [(i * stride, i * stride + size - 1) for i in range(n)]
    if ranges[-1][1] < num_snippets - 1:
        if training:
            ranges.append((max(0, num_snippets - size), num_snippets - 1))
        else:
            ranges.append((stride * n, num_snippets - 1))
    return ranges


def instances_in_window(
    instances: Sequence[Instance], window: Window, integrity: float
) -> list[tuple[float, float]]:
    """Window-relative ``(start, end)`` seconds of the instances kept in ``window``.

    An instance is kept when its overlap with ``[t_start, t_end]`` covers at least ``integrity`` of
    its own length; it is then clipped to the window and shifted to window-relative time.
    """
    kept = []
    ws, we = window.t_start, window.t_end
    for inst in instances:
        length = inst.end - inst.start
        if length <= 0:
            continue
        overlap = min(inst.end, we) - max(inst.start, ws)
        if overlap / length >= integrity:
            kept.append((max(inst.start, ws) - ws, min(inst.end, we) - ws))
    return kept


def salient_mask(segments: Sequence[tuple[float, float]], duration: float, length: int) -> list[int]:
    """Indices marked as foreground by the salient ground truth (docs/fidelity.md §3).

    For each segment (seconds, relative to the window/video start) ``s = start/duration·length``,
    ``e = end/duration·length``; indices ``⌊s⌋ … ⌈e⌉`` inclusive, clipped to ``[0, length − 1]``.
    Returns a 0/1 list of ``length`` entries.
    """
    import math

    mask = [0] * length
    if duration <= 0:
        return mask
    for start, end in segments:
        lo = max(int(math.floor(start / duration * length)), 0)
        hi = min(int(math.ceil(end / duration * length)) + 1, length)
        for i in range(lo, hi):
            mask[i] = 1
    return mask
