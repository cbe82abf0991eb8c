"""Evaluation ``METRICS`` as text: the Table-1 style markdown table and the AR@AN line (percent)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tp2detr.evaluation.detection import as_thresholds, threshold_key
from tp2detr.evaluation.evaluate import Metrics


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100.0 * float(value):.2f}"


def format_table(metrics_by_row: Mapping[str, Metrics | None], tiou: Sequence[float]) -> str:
    """Table-1 style markdown: one row per entry, ``mAP@t`` for each threshold and ``AVG``.

    Values are percent with two decimals; a row whose metrics are None (e.g. a failed run) or that
    lacks a threshold shows ``—``. ``AVG`` is the row's ``mAP`` (the mean over its own thresholds).

    Args:
        metrics_by_row: ``{row label: METRICS | None}``, in display order.
        tiou: the thresholds that make the columns.

    Returns:
        The markdown table (header, separator, one line per row), no trailing newline.
    """
    keys = [threshold_key(t) for t in as_thresholds(tiou)]
    header = "| | " + " | ".join(f"mAP@{k}" for k in keys) + " | AVG |"
    separator = "|---|" + "---:|" * (len(keys) + 1)
    lines = [header, separator]
    for label, metrics in metrics_by_row.items():
        ap = (metrics or {}).get("ap") or {}
        cells = [_percent(ap.get(k)) for k in keys]
        cells.append(_percent(None if metrics is None else metrics.get("mAP")))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_recall(metrics: Metrics) -> str:
    """One line ``AR@1 x | AR@5 x | ... | AUC x`` (percent), or ``""`` when AR was not computed."""
    ar = metrics.get("ar")
    if not ar:
        return ""
    return " | ".join(f"{name} {_percent(value)}" for name, value in ar.items())
