"""The ten-split summary: finished run folders → the paper's Table-1 layout, mean ± std over splits.

A *run folder* is what ``train.py`` writes (``metrics.json``, ``config.yaml``, ``.hydra/``, ...);
a *sweep folder* holds one run folder per job of a Hydra multirun.
:func:`tp2detr.engine.runs.collect_runs` finds every run folder under the given folders, :func:`summarise` groups the runs into variants and averages
the selected epoch's metrics over the finished splits, and :func:`write_summary` writes
``summary.json`` and ``summary.md``. :class:`SweepSummaryCallback` does this at the end of every
multirun (registered in ``configs/hydra/default.yaml``); ``scripts/report.py`` does it for any
set of folders, several variants side by side.

Numbers in the summary are percent (``metrics.json`` holds fractions). The mean is over the
finished runs of a variant, the std is the sample std (ddof = 1; absent with a single run). A run
whose ``status`` is not ``finished`` — failed, interrupted, still running, no ``metrics.json`` at
all, or an unreadable one — is listed as not finished, never dropped.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from tp2detr.evaluation.tables import format_table
from tp2detr.engine.runs import RunRecord, collect_runs
from tp2detr.evaluation.detection import threshold_key
from tp2detr.io import atomic_open, atomic_write_json

logger = logging.getLogger(__name__)

SUMMARY_FORMAT = "tp2detr-sweep-summary-v1"
#: Thresholds shown in the headline of a table whose runs use ActivityNet's ten (paper Table 1).
ANET_HEADLINE_TIOU = ("0.5", "0.75", "0.95")
#: Columns of a table none of whose runs finished (no thresholds recorded): the dataset's own.
FALLBACK_TIOU = {
    "anet": ("0.5", "0.55", "0.6", "0.65", "0.7", "0.75", "0.8", "0.85", "0.9", "0.95"),
    "thumos": ("0.3", "0.4", "0.5", "0.6", "0.7"),
}
#: The selection rule whose numbers are an oracle, not an honest estimate (docs/fidelity.md §8).
ORACLE_SELECTION = "test_best"


def _mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample std (ddof = 1; None with fewer than two values)."""
    if not values:
        return None, None
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), (float(arr.std(ddof=1)) if arr.size > 1 else None)


def _percent(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else 100.0 * value


def _tiou_keys(runs: Sequence[RunRecord]) -> list[str]:
    """The thresholds of the finished runs, in the first run's order, then any others."""
    keys: list[str] = []
    for run in runs:
        listed = run.metrics.get("tiou") or list(run.metrics["ap"])
        for t in listed:
            key = threshold_key(float(t))
            if key not in keys:
                keys.append(key)
    return keys


def headline_tiou(keys: Sequence[str]) -> list[str]:
    """The columns of the markdown tables: ActivityNet's ten thresholds → 0.5, 0.75, 0.95 (as in the
    paper's Table 1); any shorter list (THUMOS14's five) → all of them. AVG is always over all."""
    if len(keys) > 5 and all(k in keys for k in ANET_HEADLINE_TIOU):
        return list(ANET_HEADLINE_TIOU)
    return list(keys)


def _run_entry(run: RunRecord) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "split_id": run.split_id,
        "status": run.status,
        "selected_epoch": run.selected_epoch,
        "selection": run.selection,
        "selection_label": run.selection_label,
        "seed": run.seed,
        "tfpn": run.tfpn,
        "path": str(run.path),
        "wall_time_s": run.wall_time_s,
        "error": run.error,
    }
    if run.finished:
        ap = run.metrics["ap"]
        entry["ap"] = {threshold_key(float(k)): _percent(v) for k, v in ap.items()}
        entry["mAP"] = _percent(run.metrics["mAP"])
        bins = (run.metrics.get("breakdown") or {}).get("absolute_s")
        if isinstance(bins, list):  # mAP by action length (seconds) of the reported epoch
            entry["by_length"] = [
                {"bin": b.get("bin"), "num_gt": b.get("num_gt", b.get("n_gt")),  # n_gt: metrics written before 2026-11-29
                 "mAP": _percent(b["mAP"]) if b.get("mAP") is not None else None}
                for b in bins if isinstance(b, dict)
            ]
        if run.best_metrics is not None:  # the oracle, labelled: best epoch on the evaluation set
            entry["test_best"] = {"epoch": run.best_epoch, "mAP": _percent(run.best_metrics["mAP"])}
        ar = run.metrics.get("ar")
        entry["ar"] = {k: _percent(v) for k, v in ar.items()} if isinstance(ar, dict) else None
    return entry


def _aggregate(entries: Sequence[Mapping[str, Any]], field: str, keys: Sequence[str]) -> tuple[dict, dict, dict]:
    """Per-key mean, std and count of ``entry[field][key]`` over the entries that have it."""
    means, stds, counts = {}, {}, {}
    for key in keys:
        values = [e[field][key] for e in entries if e.get(field) and e[field].get(key) is not None]
        means[key], stds[key] = _mean_std(values)
        counts[key] = len(values)
    return means, stds, counts


def _split_sort_key(run: RunRecord) -> tuple:
    return (run.split_id is None, run.split_id if run.split_id is not None else 0, str(run.path))


def _summarise_group(runs: Sequence[RunRecord]) -> dict[str, Any]:
    runs = sorted(runs, key=_split_sort_key)
    finished = [r for r in runs if r.finished]
    entries = [_run_entry(r) for r in runs]
    finished_entries = [e for e, r in zip(entries, runs) if r.finished]
    keys = _tiou_keys(finished)
    finished_ids = sorted({r.split_id for r in finished if r.split_id is not None})
    failed_ids = sorted({r.split_id for r in runs if not r.finished and r.split_id is not None} - set(finished_ids))
    repeated = sorted({i for i in finished_ids if sum(r.split_id == i for r in finished) > 1})
    rules = sorted({r.selection for r in (finished or runs) if r.selection})
    labels = sorted({r.selection_label for r in (finished or runs) if r.selection_label})
    first = runs[0]
    group: dict[str, Any] = {
        "variant": first.variant,
        "name": first.name,
        "dataset": first.dataset,
        "split": first.split,
        "tfpn": sorted({r.tfpn for r in runs if r.tfpn}),
        "tiou": keys,
        "headline_tiou": headline_tiou(keys),
        "selection": rules,
        "selection_labels": labels,
        "oracle": ORACLE_SELECTION in rules,
        "num_runs": len(runs),
        "num_finished_runs": len(finished),
        "finished_splits": finished_ids,
        "failed_splits": failed_ids,
        "num_finished": len(finished_ids) + sum(1 for r in finished if r.split_id is None),
        "num_failed": len(failed_ids) + sum(1 for r in runs if not r.finished and r.split_id is None),
        "repeated_splits": repeated,
        "mean": None,
        "std": None,
        "ar_mean": None,
        "ar_std": None,
        "runs": entries,
    }
    if finished_entries:
        ap_mean, ap_std, _ = _aggregate(finished_entries, "ap", keys)
        maps = [e["mAP"] for e in finished_entries]
        map_mean, map_std = _mean_std(maps)
        group["mean"] = {"ap": ap_mean, "mAP": map_mean}
        group["std"] = None if len(finished_entries) < 2 else {"ap": ap_std, "mAP": map_std}
        ar_keys: list[str] = []
        for e in finished_entries:
            for k in e.get("ar") or {}:
                if k not in ar_keys:
                    ar_keys.append(k)
        if ar_keys:
            ar_mean, ar_std, _ = _aggregate(finished_entries, "ar", ar_keys)
            group["ar_mean"] = ar_mean
            group["ar_std"] = None if len(finished_entries) < 2 else ar_std
    if repeated:
        logger.warning(
            "%s (%s, %s): splits %s have more than one finished run; the mean is over runs",
            group["variant"], group["dataset"], group["split"], repeated,
        )
    return group


def summarise(runs: Sequence[RunRecord], sources: Sequence[str | Path] = ()) -> dict[str, Any]:
    """Group runs by (dataset, split setting, variant) and average each group over its splits.

    Args:
        runs: from :func:`collect_runs`; the order of first appearance orders the variants.
        sources: the folders the runs came from (recorded in the summary).

    Returns:
        The ``summary.json`` document: ``format``, ``unit`` (``"percent"``), ``sources``, run
        counts, and ``groups`` — one per variant with ``tiou`` (every threshold),
        ``headline_tiou``, ``selection`` rules (``oracle`` when one is ``test_best``),
        ``finished_splits`` / ``failed_splits``, ``mean`` / ``std`` (``{"ap": {tiou: %},
        "mAP": %}``; ``std`` is None with fewer than two finished runs), ``ar_mean`` / ``ar_std``,
        and ``runs`` (every run, finished or not, by split id).
    """
    grouped: dict[tuple, list[RunRecord]] = {}
    for run in runs:
        grouped.setdefault((run.dataset, run.split, run.variant), []).append(run)
    groups = [_summarise_group(members) for members in grouped.values()]
    num_finished = sum(r.finished for r in runs)
    return {
        "format": SUMMARY_FORMAT,
        "unit": "percent",
        "sources": [str(s) for s in sources],
        "num_runs": len(runs),
        "num_finished_runs": num_finished,
        "num_failed_runs": len(runs) - num_finished,
        "oracle": any(g["oracle"] for g in groups),
        "groups": groups,
    }


# -- markdown -----------------------------------------------------------------------------------


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _pm(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "—"
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def _group_cells(group: Mapping[str, Any], keys: Sequence[str]) -> list[str]:
    mean, std = group["mean"], group["std"]
    if mean is None:
        return ["—"] * (len(keys) + 1)
    cells = [_pm(mean["ap"].get(k), (std or {}).get("ap", {}).get(k)) for k in keys]
    cells.append(_pm(mean["mAP"], (std or {}).get("mAP")))
    return cells


def _selection_text(group: Mapping[str, Any]) -> str:
    labels = group["selection_labels"] or group["selection"] or ["unknown"]
    text = "; ".join(labels)
    if len(group["selection"]) > 1:
        text = f"mixed rules: {text}"
    return f"**{text}**" if group["oracle"] or len(group["selection"]) > 1 else text


def _variants_table(groups: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> str:
    header = ["variant", "splits finished", "splits failed", *(f"mAP@{k}" for k in keys), "AVG", "model selection"]
    lines = [
        "| " + " | ".join(header) + " |",
        "|---|---:|---:|" + "---:|" * (len(keys) + 1) + "---|",
    ]
    for g in groups:
        row = [_cell(g["variant"]), str(g["num_finished"]), str(g["num_failed"]), *_group_cells(g, keys), _selection_text(g)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _split_label(entry: Mapping[str, Any], mixed_selection: bool) -> str:
    split = "?" if entry["split_id"] is None else entry["split_id"]
    if entry["status"] == "finished":
        label = f"split {split} · epoch {entry['selected_epoch']}"
        if mixed_selection:
            sel = entry["selection_label"] or entry["selection"] or "unknown selection"
            label += f" · {'**' + sel + '**' if entry['selection'] == ORACLE_SELECTION else sel}"
        return label
    error = (entry["error"] or "").strip()
    if len(error) > 200:
        error = error[:197] + "..."
    return f"split {split} · **{entry['status']}**" + (f": {_cell(error)}" if error else "")


def _splits_table(group: Mapping[str, Any], keys: Sequence[str]) -> str:
    mixed = len(group["selection"]) > 1
    rows: dict[str, Any] = {}
    for i, entry in enumerate(group["runs"]):
        metrics = None
        if entry["status"] == "finished":
            metrics = {"ap": {k: v / 100.0 for k, v in entry["ap"].items() if v is not None},
                       "mAP": entry["mAP"] / 100.0}
        label = _split_label(entry, mixed)
        rows[label if label not in rows else f"{label} ({i})"] = metrics
    table = format_table(rows, [float(k) for k in keys])
    n = group["num_finished_runs"]
    label = f"**mean ± std** ({n} finished)" if n > 1 else f"**mean** ({n} finished)"
    return table + "\n| " + " | ".join([label, *_group_cells(group, keys)]) + " |"


def _split_setting_text(split: str | None) -> str:
    return "split ?" if not split else "split " + split.replace("_", "/")


def render_markdown(summary: Mapping[str, Any]) -> str:
    """``summary.md``: per (dataset, split setting), the variants side by side (mean ± std over the
    finished splits, like the paper's Table 1), then every variant's per-split rows."""
    out = ["# Sweep summary", ""]
    if summary["sources"]:
        out += ["Runs read from: " + ", ".join(f"`{s}`" for s in summary["sources"]), ""]
    out += [
        (
            f"{summary['num_runs']} runs: {summary['num_finished_runs']} finished, "
            f"{summary['num_failed_runs']} not finished (failed, interrupted, still running or without metrics)."
        ),
        "",
    ]
    if summary["num_runs"] == 0:
        out += ["**No run was found**: nothing to summarise.", ""]
        return "\n".join(out)
    if summary["num_finished_runs"] == 0:
        out += ["**No run finished**: there is nothing to average; the runs that did not finish are listed below.", ""]
    if summary["oracle"]:
        out += [
            (
                "**Some numbers below use oracle model selection: the best epoch on the TEST set (as the "
                "paper's code; not an honest estimate).**"
            ),
            "",
        ]
    out += [
        (
            "mAP (%) at each tIoU; AVG is the mean over all of the dataset's thresholds (THUMOS14 "
            "0.3:0.1:0.7, ActivityNet1.3 0.5:0.05:0.95; every threshold is in summary.json). "
            "Mean ± sample std (ddof = 1) over the finished splits; epochs are counted from 0 as in metrics.json."
        ),
        "",
    ]
    sections: dict[tuple, list[Mapping[str, Any]]] = {}
    for g in summary["groups"]:
        sections.setdefault((g["dataset"], g["split"]), []).append(g)
    for (dataset, split), groups in sections.items():
        fallback = FALLBACK_TIOU["anet" if str(dataset).lower().startswith("anet") else "thumos"]
        keys = next((g["headline_tiou"] for g in groups if g["headline_tiou"]), headline_tiou(fallback))
        out += [f"## {dataset or 'unknown dataset'} · {_split_setting_text(split)}", "", _variants_table(groups, keys), ""]
        for g in groups:
            g_keys = g["headline_tiou"] or keys
            out += [f"### {g['variant']} — {dataset or 'unknown dataset'} · {_split_setting_text(split)}", ""]
            out += [f"Model selection: {_selection_text(g)}.", ""]
            finished = ", ".join(map(str, g["finished_splits"])) or "none"
            failed = ", ".join(map(str, g["failed_splits"])) or "none"
            out += [f"Finished splits: {g['num_finished']} ({finished}); not finished: {g['num_failed']} ({failed}).", ""]
            if g["repeated_splits"]:
                out += [f"Splits with more than one finished run (the mean is over runs): {g['repeated_splits']}.", ""]
            out += [_splits_table(g, g_keys), ""]
    return "\n".join(out)


def write_summary(sweep_dir: str | Path, runs: Sequence[RunRecord] | None = None) -> dict[str, Any]:
    """Write ``summary.json`` and ``summary.md`` (atomically) in ``sweep_dir``.

    Args:
        sweep_dir: where to write; also where the runs are looked for when ``runs`` is None.
        runs: the runs to summarise (default: :func:`collect_runs` of ``sweep_dir``).

    Returns:
        The summary document (see :func:`summarise`).
    """
    sweep_dir = Path(sweep_dir)
    if runs is None:
        runs = collect_runs([sweep_dir]) if sweep_dir.exists() else []
    summary = summarise(runs, sources=[sweep_dir])
    sweep_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(sweep_dir / "summary.json", summary)
    with atomic_open(sweep_dir / "summary.md") as handle:
        handle.write(render_markdown(summary))
    return summary


class SweepSummaryCallback(Callback):
    """Hydra callback: at the end of a multirun, write the summary into the sweep folder.

    Registered in ``configs/hydra/default.yaml`` (``hydra.callbacks.sweep_summary``). A sweep in
    which no run finished still gets a summary that says so; an unexpected error while writing it
    is logged (with the command that rebuilds it) and does not fail the finished sweep.
    """

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        try:
            summary = write_summary(sweep_dir)
        except Exception:
            logger.exception(
                "could not write the sweep summary in %s; rebuild it with: python scripts/report.py %s",
                sweep_dir, sweep_dir,
            )
            return
        logger.info(
            "sweep summary: %s (%d of %d runs finished)",
            sweep_dir / "summary.md", summary["num_finished_runs"], summary["num_runs"],
        )
        for group in summary["groups"]:
            mean, std = group["mean"], group["std"]
            logger.info(
                "%s (%s, split %s): AVG mAP %s %% over %d finished splits, %d failed",
                group["variant"], group["dataset"], group["split"],
                _pm(None if mean is None else mean["mAP"], None if std is None else std["mAP"]),
                group["num_finished"], group["num_failed"],
            )
