"""mAP by action-length bin for one or several runs side by side (grouped bars).

Reads the ``breakdown`` entry of the evaluation ``METRICS`` (:mod:`tp2detr.evaluation.evaluate`)::

    {"absolute_s": [BIN, ...], "relative": [BIN, ...] | None}
    BIN = {"bin": "[2, 4)", "low", "high", "num_gt", "ap": {"0.5": f, ...} | None, "mAP": f | None}

(:meth:`tp2detr.evaluation.map_by_length.BinResult.to_dict`), from ``eval_metrics.json`` (``eval.py``:
``{"eval": METRICS}``) or a training run's ``metrics.json`` (``{"selected": {"eval": METRICS}}``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from tp2detr.errors import DataFormatError, MissingDataError
from tp2detr.viz.canvas import new_figure

#: The files :func:`load_breakdown` looks for in a folder, in this order.
METRICS_FILES = ("eval_metrics.json", "metrics.json")
#: The two bin families of a breakdown and their axis labels.
FAMILIES = (("absolute_s", "action length (s)"), ("relative", "action length (fraction of the video's duration)"))

Breakdown = Mapping[str, Any]


def _metrics_file(path: Path) -> Path:
    if path.is_dir():
        for name in METRICS_FILES:
            if (path / name).is_file():
                return path / name
        raise MissingDataError(f"{path}: no {' or '.join(METRICS_FILES)} in this folder, expected a run or eval folder")
    if not path.is_file():
        raise MissingDataError(f"{path}: file not found, expected a metrics JSON file or a run folder")
    return path


def load_breakdown(path: str | os.PathLike) -> tuple[str, Breakdown]:
    """``(label, breakdown)`` from a run / eval folder or its metrics JSON file.

    The label names the run: ``eval_metrics.json`` → ``"<dataset> <split>/<id>"`` plus the epoch;
    ``metrics.json`` → ``"<name> <dataset> <split>/<id>"``.

    Raises:
        MissingDataError: no such file or folder.
        DataFormatError: not JSON, or no breakdown in it (evaluated with ``trainer.breakdown=false``).
    """
    file = _metrics_file(Path(path))
    try:
        document = json.loads(file.read_text())
    except ValueError as err:
        raise DataFormatError(f"{file}: not valid JSON ({err}), expected a metrics document") from err
    if not isinstance(document, dict):
        raise DataFormatError(f"{file}: top level is {type(document).__name__}, expected an object")
    if isinstance(document.get("eval"), dict):  # eval.py's eval_metrics.json
        metrics, where = document["eval"], "eval.breakdown"
        label = f"{document.get('dataset')} {document.get('split')}/{document.get('split_id')}"
        if document.get("epoch") is not None:
            label += f" (epoch {document['epoch']})"
    elif isinstance(document.get("selected"), dict) and isinstance(document["selected"].get("eval"), dict):
        metrics, where = document["selected"]["eval"], "selected.eval.breakdown"
        label = f"{document.get('name')} {document.get('dataset')} {document.get('split')}/{document.get('split_id')}"
    else:
        raise DataFormatError(
            f"{file}: found neither 'eval' (eval_metrics.json) nor 'selected.eval' (a finished run's metrics.json), "
            "expected one of them"
        )
    breakdown = metrics.get("breakdown")
    if not isinstance(breakdown, dict) or not isinstance(breakdown.get("absolute_s"), list):
        raise DataFormatError(
            f"{file}: {where} is {json.dumps(breakdown)[:80]}, expected the per-length breakdown "
            "(evaluate with trainer.breakdown=true)"
        )
    return label, breakdown


def _ordered_bins(runs: Mapping[str, Breakdown], family: str) -> list[str]:
    labels: list[str] = []
    for breakdown in runs.values():
        for entry in breakdown.get(family) or []:
            if entry["bin"] not in labels:
                labels.append(entry["bin"])
    return labels


def _bin_caption(label: str, runs: Mapping[str, Breakdown], family: str) -> str:
    counts = {entry["num_gt"] for b in runs.values() for entry in (b.get(family) or []) if entry["bin"] == label}
    return f"{label}\nn={counts.pop()}" if len(counts) == 1 else label


def _draw_family(axes: Axes, runs: Mapping[str, Breakdown], family: str, xlabel: str) -> None:
    bins = _ordered_bins(runs, family)
    palette = colormaps["tab10"]
    width = 0.8 / max(len(runs), 1)
    positions = np.arange(len(bins), dtype=np.float64)
    top = 0.0
    for index, (name, breakdown) in enumerate(runs.items()):
        values = {entry["bin"]: entry["mAP"] for entry in (breakdown.get(family) or [])}
        x = positions - 0.4 + width * (index + 0.5)
        heights = [100.0 * values[b] if values.get(b) is not None else 0.0 for b in bins]
        bars = axes.bar(x, heights, width=width, color=palette(index % 10), label=name)
        for bar, b in zip(bars, bins):
            if b in values and values[b] is None:
                text = "no GT"
            elif b not in values:
                text = "—"
            else:
                text = f"{100.0 * values[b]:.1f}"
            axes.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), xytext=(0, 2),
                          textcoords="offset points", ha="center", va="bottom", fontsize=7)
        top = max([top, *heights])
    axes.set_xticks(positions, [_bin_caption(b, runs, family) for b in bins], fontsize=8)
    axes.set_ylim(0.0, max(top * 1.1, 1.0))
    axes.set_xlabel(xlabel)
    axes.set_ylabel("mAP (%)")
    axes.grid(axis="y", alpha=0.3)


def breakdown_figure(runs: Mapping[str, Breakdown], title: str = "") -> Figure:
    """mAP (percent, averaged over the tIoU thresholds) per action-length bin, one bar per run:
    absolute bins in seconds (left) and bins relative to the video's duration (right, when any run
    has them). ``n=`` under a bin is its number of ground-truth instances (when the runs agree);
    "no GT" marks a bin without ground truth.

    Args:
        runs: ``{label: breakdown}`` in legend order (:func:`load_breakdown`).
        title: the figure title.

    Raises:
        ValueError: no run.
    """
    if not runs:
        raise ValueError("runs: expected at least one breakdown, found none")
    families = [(key, label) for key, label in FAMILIES if any(b.get(key) for b in runs.values())]
    figure = new_figure(6.0 * len(families) + 0.5 * max(len(runs) - 1, 0), 4.6)
    axes = np.atleast_1d(figure.subplots(1, len(families)))
    for ax, (family, xlabel) in zip(axes, families):
        _draw_family(ax, runs, family, xlabel)
    figure.suptitle(title or "mAP by action length", fontsize=11)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=min(len(runs), 4), fontsize=8, frameon=False)
    return figure


def breakdown_runs(paths: Sequence[str | os.PathLike], labels: Sequence[str] | None = None) -> dict[str, Breakdown]:
    """``{label: breakdown}`` of several runs (:func:`load_breakdown`), labels made unique.

    Args:
        paths: run / eval folders or metrics JSON files.
        labels: optional labels, one per path (default: each run's own label).
    """
    if labels is not None and len(labels) != len(paths):
        raise ValueError(f"labels: expected one per run ({len(paths)}), found {len(labels)}")
    runs: dict[str, Breakdown] = {}
    for index, path in enumerate(paths):
        label, breakdown = load_breakdown(path)
        label = labels[index] if labels is not None else label
        unique, copy = label, 2
        while unique in runs:
            unique, copy = f"{label} #{copy}", copy + 1
        runs[unique] = breakdown
    return runs
