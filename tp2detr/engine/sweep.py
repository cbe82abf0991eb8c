"""The ten-split summary: finished run folders → the paper's Table-1 layout, mean ± std over splits.

A *run folder* is what ``train.py`` writes (``metrics.json``, ``config.yaml``, ``.hydra/``, ...);
a *sweep folder* holds one run folder per job of a Hydra multirun. :func:`collect_runs` finds every
run folder under the given folders, :func:`summarise` groups the runs into variants and averages
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

import json
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from tp2detr.engine.evaluation import format_table
from tp2detr.errors import MissingDataError
from tp2detr.evaluation.detection import threshold_key
from tp2detr.io import atomic_open, atomic_write_json

logger = logging.getLogger(__name__)

SUMMARY_FORMAT = "tp2detr-sweep-summary-v1"
METRICS_FILE = "metrics.json"
#: Thresholds shown in the headline of a table whose runs use ActivityNet's ten (paper Table 1).
ANET_HEADLINE_TIOU = ("0.5", "0.75", "0.95")
#: Columns of a table none of whose runs finished (no thresholds recorded): the dataset's own.
FALLBACK_TIOU = {
    "anet": ("0.5", "0.55", "0.6", "0.65", "0.7", "0.75", "0.8", "0.85", "0.9", "0.95"),
    "thumos": ("0.3", "0.4", "0.5", "0.6", "0.7"),
}
#: The selection rule whose numbers are an oracle, not an honest estimate (FACTS §8).
ORACLE_SELECTION = "test_best"


@dataclass(frozen=True)
class RunRecord:
    """One run folder, as far as the summary needs it.

    Attributes:
        path: the run folder.
        name, dataset, split, split_id, tfpn, seed: the run's identity (``metrics.json``, else its
            config); None where neither says.
        selection: the model-selection rule (``last`` | ``val`` | ``test_best``) and its label.
        status: ``finished`` | ``failed`` | ``interrupted`` | ``running`` (from ``metrics.json``),
            ``missing`` (no ``metrics.json``) or ``invalid`` (unreadable, or finished without a
            selected epoch).
        selected_epoch: the reported epoch (0-based, as in ``metrics.json``), when finished.
        metrics: the reported epoch's ``METRICS`` (fractions in [0, 1]), when finished.
        error: why the run did not finish, when known.
        wall_time_s: the run's wall time in seconds, when recorded.
    """

    path: Path
    name: str | None
    dataset: str | None
    split: str | None
    split_id: int | None
    tfpn: str | None
    seed: int | None
    selection: str | None
    selection_label: str | None
    status: str
    selected_epoch: int | None = None
    metrics: Mapping[str, Any] | None = None
    error: str | None = None
    wall_time_s: float | None = None

    @property
    def finished(self) -> bool:
        """Whether the run finished and has the metrics of a selected epoch."""
        return self.status == "finished" and self.metrics is not None

    @property
    def variant(self) -> str:
        """The label that groups runs into one table row: the experiment name, else the TFPN."""
        return self.name or self.tfpn or "unnamed"


# -- finding and reading run folders -----------------------------------------------------------


def _is_run_dir(path: Path) -> bool:
    return (path / METRICS_FILE).is_file() or (path / ".hydra").is_dir()


def find_run_dirs(root: str | Path) -> list[Path]:
    """Every run folder at or under ``root``: folders holding ``metrics.json`` or Hydra's ``.hydra/``.

    A folder inside another run folder is not a run of its own. Sorted by path.

    Raises:
        MissingDataError: ``root`` does not exist.
    """
    root = Path(root)
    if not root.exists():
        raise MissingDataError(f"{root}: no such run or sweep folder")
    if _is_run_dir(root):
        return [root]
    candidates = {p.parent for p in root.rglob(METRICS_FILE) if p.is_file()}
    candidates |= {p.parent for p in root.rglob(".hydra") if p.is_dir()}
    ordered = sorted(candidates)
    return [d for d in ordered if not any(a in candidates for a in d.parents)]


def _config_identity(run_dir: Path) -> dict[str, Any]:
    """``name``/``dataset``/``split``/... from the run's saved config (resolved or Hydra's)."""
    for candidate in (run_dir / "config.yaml", run_dir / ".hydra" / "config.yaml"):
        if not candidate.is_file():
            continue
        try:
            cfg = OmegaConf.load(candidate)
        except (OSError, yaml.YAMLError, OmegaConfBaseException) as exc:  # must not hide the run
            logger.warning("%s: unreadable config (%s)", candidate, exc)
            continue
        wanted = {
            "name": "name",
            "dataset": "dataset.name",
            "split": "split.setting",
            "split_id": "split.id",
            "tfpn": "tfpn.name",
            "seed": "seed",
            "selection": "trainer.selection",
        }
        identity: dict[str, Any] = {}
        for field, key in wanted.items():
            try:
                identity[field] = OmegaConf.select(cfg, key, default=None)
            except OmegaConfBaseException:  # an interpolation that cannot resolve outside its run
                identity[field] = None
        return identity
    return {}


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b(: .*)?$")
_LOG_TAIL_BYTES = 200_000


def last_logged_exception(run_dir: Path) -> str | None:
    """The last ``SomeError: message`` line of the run's ``*.log`` files (a traceback's last line),
    prefixed by the log's name; None when there is none."""
    for log_path in sorted(run_dir.glob("*.log")):
        try:
            with open(log_path, "rb") as handle:
                handle.seek(max(0, log_path.stat().st_size - _LOG_TAIL_BYTES))
                lines = handle.read().decode("utf-8", errors="replace").splitlines()
        except OSError:
            continue
        for line in reversed(lines):
            if _EXCEPTION_LINE.match(line.strip()):
                return f"{log_path.name}: {line.strip()}"
    return None


def _optional_int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _record(run_dir: Path, identity: Mapping[str, Any], status: str, **extra: Any) -> RunRecord:
    return RunRecord(
        path=run_dir,
        name=_optional_str(identity.get("name")),
        dataset=_optional_str(identity.get("dataset")),
        split=_optional_str(identity.get("split")),
        split_id=_optional_int(identity.get("split_id")),
        tfpn=_optional_str(identity.get("tfpn")),
        seed=_optional_int(identity.get("seed")),
        selection=_optional_str(identity.get("selection")),
        selection_label=_optional_str(identity.get("selection_label")),
        status=status,
        **extra,
    )


def read_run(run_dir: str | Path) -> RunRecord:
    """The :class:`RunRecord` of one run folder; never raises for a broken run (it is recorded)."""
    run_dir = Path(run_dir)
    identity = _config_identity(run_dir)
    metrics_path = run_dir / METRICS_FILE
    if not metrics_path.is_file():
        logged = last_logged_exception(run_dir)
        return _record(
            run_dir, identity, "missing",
            error=f"no {METRICS_FILE} (the run stopped before its first epoch ended, or never started)"
            + (f"; {logged}" if logged else ""),
        )
    try:
        doc = json.loads(metrics_path.read_text())
    except (OSError, ValueError) as exc:
        return _record(run_dir, identity, "invalid", error=f"{metrics_path}: unreadable ({exc})")
    if not isinstance(doc, dict):
        return _record(
            run_dir, identity, "invalid",
            error=f"{metrics_path}: unreadable (expected a JSON object, found {type(doc).__name__})",
        )
    identity = dict(identity)
    for key in ("name", "dataset", "split", "split_id", "tfpn", "seed", "selection", "selection_label"):
        if doc.get(key) is not None:
            identity[key] = doc[key]
    status = str(doc.get("status") or "missing status")
    wall = doc.get("wall_time_s")
    extra: dict[str, Any] = {
        "error": _optional_str(doc.get("error")),
        "wall_time_s": float(wall) if isinstance(wall, (int, float)) else None,
    }
    if status != "finished":
        return _record(run_dir, identity, status, **extra)
    selected = doc.get("selected")
    metrics = selected.get("eval") if isinstance(selected, dict) else None
    if not isinstance(metrics, dict) or not isinstance(metrics.get("ap"), dict) or metrics.get("mAP") is None:
        extra["error"] = (
            f"{metrics_path}: status is 'finished' but 'selected' holds no evaluation "
            f"(found {json.dumps(selected)[:120]}); expected {{'epoch': int, 'eval': METRICS}}"
        )
        return _record(run_dir, identity, "invalid", **extra)
    return _record(
        run_dir, identity, "finished",
        selected_epoch=_optional_int(selected.get("epoch")), metrics=metrics, **extra,
    )


def collect_runs(dirs: Iterable[str | Path]) -> list[RunRecord]:
    """Every run under ``dirs`` (run folders or sweep folders), in the order given, each once.

    Raises:
        MissingDataError: one of ``dirs`` does not exist.
    """
    seen: set[Path] = set()
    runs = []
    for root in dirs:
        for run_dir in find_run_dirs(root):
            key = run_dir.resolve()
            if key in seen:
                continue
            seen.add(key)
            runs.append(read_run(run_dir))
    return runs


# -- aggregation --------------------------------------------------------------------------------


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
