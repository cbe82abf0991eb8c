"""Reading run folders: what ``train.py`` left in each (``metrics.json``, else its config and log)
as a :class:`RunRecord`, whether the run finished, failed, was interrupted or never started.

Used by :mod:`tp2detr.engine.sweep` (summaries) and ``scripts/report.py``.
"""

from __future__ import annotations

import logging

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from tp2detr.errors import MissingDataError

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"


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
        best_epoch, best_metrics: the evaluated epoch with the highest evaluation mAP and its
            ``METRICS`` — the oracle that selects on the test set itself (``test_best``), kept
            beside the run's own selection for labelled comparison, when finished.
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
    best_epoch: int | None = None
    best_metrics: Mapping[str, Any] | None = None

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
    evaluated = [
        e for e in doc.get("epochs") or []
        if isinstance(e, dict) and isinstance(e.get("eval"), dict) and isinstance(e["eval"].get("mAP"), (int, float))
    ]
    best = max(evaluated, key=lambda e: e["eval"]["mAP"]) if evaluated else None
    return _record(
        run_dir, identity, "finished",
        selected_epoch=_optional_int(selected.get("epoch")), metrics=metrics,
        best_epoch=_optional_int(best["epoch"]) if best else None, best_metrics=best["eval"] if best else None,
        **extra,
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
