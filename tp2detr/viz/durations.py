"""Histograms of action durations, in seconds (paper Fig. 9) and relative to the video's length
(paper Fig. 10), for several datasets or subsets side by side.

Durations come from any records with a ``duration`` (seconds) and ``instances`` (each with
``start`` / ``end`` seconds): the :class:`~tp2detr.data.annotations.AnnotatedVideo` records of an
:class:`~tp2detr.data.annotations.AnnotationSet` (:func:`annotation_durations`) or the protocol's
:class:`~tp2detr.data.protocol.ProtocolVideo` (:func:`action_durations`). The bars show the share
of each group's instances per bin, so groups of different sizes compare; the counts are in the
legend and in :func:`duration_histograms`.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from tp2detr.data.annotations import AnnotationSet
from tp2detr.viz.canvas import new_figure

logger = logging.getLogger(__name__)

#: Absolute bin edges in seconds (the last bin is open: ≥ 256 s), for short THUMOS actions and
#: minutes-long ActivityNet ones alike.
DEFAULT_ABSOLUTE_EDGES_S: tuple[float, ...] = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, math.inf)
#: Relative bin edges, fractions of the video's duration: 5 % bins as in the paper's Fig. 10
#: (a last bin ``[0.95, 1]`` that also takes the few instances annotated past the video's end).
DEFAULT_RELATIVE_EDGES: tuple[float, ...] = tuple(i / 20 for i in range(21))


@dataclass(frozen=True)
class ActionDurations:
    """The instances of one group.

    Attributes:
        seconds: float64 ``[N]`` instance lengths in seconds.
        relative: float64 ``[M]`` lengths as fractions of their video's duration (``M ≤ N``:
            instances of videos without a positive duration are left out).
        num_videos: videos with at least one instance.
    """

    seconds: np.ndarray
    relative: np.ndarray
    num_videos: int


def action_durations(videos: Iterable[Any], ignore_labels: Sequence[str] = ()) -> ActionDurations:
    """Instance lengths of ``videos`` (records with ``duration`` seconds and ``instances``).

    Args:
        videos: e.g. ``AnnotationSet.videos.values()`` or ``ZeroShotProtocol.eval_videos``.
        ignore_labels: instance labels to leave out (e.g. THUMOS's ``Ambiguous``).
    """
    ignored = set(ignore_labels)
    seconds, relative = [], []
    videos_with_instances = 0
    no_duration = 0
    for video in videos:
        lengths = [inst.end - inst.start for inst in video.instances if getattr(inst, "label", None) not in ignored]
        if not lengths:
            continue
        videos_with_instances += 1
        seconds.extend(lengths)
        if video.duration > 0:
            relative.extend(length / video.duration for length in lengths)
        else:
            no_duration += len(lengths)
    if no_duration:
        logger.warning("%d instances of videos without a positive duration left out of the relative durations",
                       no_duration)
    return ActionDurations(np.asarray(seconds, dtype=np.float64), np.asarray(relative, dtype=np.float64),
                           videos_with_instances)


def annotation_durations(
    annotations: AnnotationSet, subset: str | None = None, ignore_labels: Sequence[str] = ()
) -> ActionDurations:
    """Instance lengths of an annotation file's videos, optionally of one ``subset`` only
    (e.g. THUMOS's ``test``, ActivityNet's ``validation``)."""
    videos = [v for v in annotations.videos.values() if subset is None or v.subset == subset]
    if subset is not None and not videos:
        subsets = sorted({v.subset for v in annotations.videos.values()})
        raise ValueError(f"{annotations.path}: no video of subset {subset!r}, expected one of {subsets}")
    return action_durations(videos, ignore_labels)


def histogram_counts(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """int64 ``[len(edges) − 1]`` counts of ``values`` in ``[edges[i], edges[i+1])``; the last bin is
    closed and also takes the values above it, so every value ≥ ``edges[0]`` is counted once.

    Raises:
        ValueError: fewer than 2 edges or edges that do not increase.
    """
    edges = np.asarray(edges, dtype=np.float64)
    if len(edges) < 2 or not np.all(np.diff(edges) > 0):
        raise ValueError(f"bin edges: expected at least 2 increasing values, found {edges.tolist()}")
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    index = np.searchsorted(edges, values, side="right") - 1
    index = index[index >= 0]
    return np.bincount(np.minimum(index, len(edges) - 2), minlength=len(edges) - 1).astype(np.int64)


def duration_histograms(
    groups: Mapping[str, ActionDurations],
    absolute_edges: Sequence[float] = DEFAULT_ABSOLUTE_EDGES_S,
    relative_edges: Sequence[float] = DEFAULT_RELATIVE_EDGES,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{group: (absolute counts [A], relative counts [R])}`` (:func:`histogram_counts`)."""
    return {
        name: (histogram_counts(d.seconds, absolute_edges), histogram_counts(d.relative, relative_edges))
        for name, d in groups.items()
    }


def _edge_text(value: float, percent: bool) -> str:
    return f"{100 * value:g}" if percent else f"{value:g}"


def bin_labels(edges: Sequence[float], percent: bool = False) -> list[str]:
    """``"1–2"`` style labels (percent values for relative bins); an open last bin reads ``"≥256"``."""
    labels = []
    for low, high in itertools.pairwise(edges):
        if math.isinf(high):
            labels.append(f"≥{_edge_text(low, percent)}")
        else:
            labels.append(f"{_edge_text(low, percent)}–{_edge_text(high, percent)}")
    return labels


def _grouped_bars(axes: Axes, shares: Mapping[str, np.ndarray], labels: Sequence[str], colours: Sequence[Any]) -> None:
    count = max(len(shares), 1)
    width = 0.8 / count
    positions = np.arange(len(labels), dtype=np.float64)
    for index, ((name, values), colour) in enumerate(zip(shares.items(), colours)):
        axes.bar(positions - 0.4 + width * (index + 0.5), values, width=width, color=colour, label=name)
    axes.set_xticks(positions, labels, rotation=45, ha="right", fontsize=8)
    axes.set_xlim(-0.6, len(labels) - 0.4)
    axes.grid(axis="y", alpha=0.3)


def _shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return 100.0 * counts / total if total else np.zeros(len(counts))


def duration_histogram_figure(
    groups: Mapping[str, ActionDurations],
    absolute_edges: Sequence[float] = DEFAULT_ABSOLUTE_EDGES_S,
    relative_edges: Sequence[float] = DEFAULT_RELATIVE_EDGES,
    title: str = "",
) -> Figure:
    """Paper Figs. 9 and 10 side by side: the share of each group's instances per duration bin,
    in seconds (left) and in percent of the video's duration (right), one bar colour per group.

    Args:
        groups: ``{label: ActionDurations}`` in legend order (e.g. datasets, or training vs
            evaluation instances of one split).
        absolute_edges: bin edges in seconds (the last may be ``inf``).
        relative_edges: bin edges as fractions of the video's duration.
        title: the figure title.

    Raises:
        ValueError: no group, or bad edges.
    """
    if not groups:
        raise ValueError("groups: expected at least one group of action durations, found none")
    counts = duration_histograms(groups, absolute_edges, relative_edges)
    palette = colormaps["tab10"]
    colours = [palette(i % 10) for i in range(len(groups))]
    figure = new_figure(12.0, 4.6)
    left, right = figure.subplots(1, 2, width_ratios=[len(absolute_edges) - 1, 0.6 * (len(relative_edges) - 1)])
    names = {name: f"{name} ({len(d.seconds)} instances, {d.num_videos} videos)" for name, d in groups.items()}
    _grouped_bars(left, {names[n]: _shares(c[0]) for n, c in counts.items()}, bin_labels(absolute_edges), colours)
    left.set_xlabel("action duration (s)")
    left.set_ylabel("share of instances (%)")
    left.set_title("action durations", fontsize=10)
    left.legend(fontsize=8, loc="upper right")
    _grouped_bars(right, {names[n]: _shares(c[1]) for n, c in counts.items()},
                  bin_labels(relative_edges, percent=True), colours)
    right.set_xlabel("action duration (% of the video's duration)")
    right.set_ylabel("share of instances (%)")
    right.set_title("relative action durations", fontsize=10)
    if title:
        figure.suptitle(title, fontsize=11)
    return figure
