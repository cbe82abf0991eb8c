"""A run's ``metrics.json`` document: its fields before the first epoch, the record of a run that
failed before it, and which evaluated epoch becomes the selected one (``trainer.selection``).

The trainer (:mod:`tp2detr.engine.trainer`) appends one record per epoch and writes the document
together with the checkpoints; sweep summaries (:mod:`tp2detr.engine.sweep`) read it back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from tp2detr.errors import TrainingDiverged
from tp2detr.io import atomic_write_json

SELECTION_LABELS = {
    "last": "last epoch",
    "val": "best epoch on held-out validation videos (seen classes)",
    "test_best": "best epoch on the TEST set (oracle, as the paper's code; not an honest estimate)",
}


def new_document(cfg: DictConfig) -> dict[str, Any]:
    """A run's ``metrics.json`` before its first epoch (identity fields read leniently, so that a
    run refused for a bad value is still recorded)."""
    def get(key: str, kind: type) -> Any:
        value = OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)
        try:
            return None if value is None else kind(value)
        except (TypeError, ValueError):
            return None

    selection = str(get("trainer.selection", str))
    return {
        "name": get("name", str),
        "dataset": get("dataset.name", str),
        "split": get("split.setting", str),
        "split_id": get("split.id", int),
        "tfpn": get("tfpn.name", str),
        "seed": get("seed", int),
        "selection": selection,
        "selection_label": SELECTION_LABELS.get(selection),
        "status": "running",
        "epochs": [],
        "selected": None,
        "untrained": None,
        "wall_time_s": 0.0,
        "error": None,
    }


def record_failure(cfg: DictConfig, run_dir: Path, err: BaseException) -> None:
    """Write ``metrics.json`` for a run that failed before its first epoch (for sweep summaries),
    unless the folder already holds one (an earlier run's record is never overwritten)."""
    path = Path(run_dir) / "metrics.json"
    if path.exists():
        return
    status = "diverged" if isinstance(err, TrainingDiverged) else "failed"
    atomic_write_json(path, {**new_document(cfg), "status": status, "error": f"{type(err).__name__}: {err}"})


def selects(rule: str, doc: dict[str, Any], record: dict[str, Any]) -> bool:
    """Whether ``record`` (an evaluated epoch) becomes the selected one of ``doc`` under ``rule``:
    ``last`` takes every evaluated epoch; ``val`` / ``test_best`` one whose held-out / test mAP
    beats the selected epoch's (ties keep the earlier epoch)."""
    current = doc["selected"]
    if rule == "last":
        return record["eval"] is not None
    key = "val" if rule == "val" else "eval"
    if record[key] is None:
        return False
    best = None
    if current is not None:
        best = next(e[key]["mAP"] for e in doc["epochs"] if e["epoch"] == current["epoch"])
    return best is None or record[key]["mAP"] > best
