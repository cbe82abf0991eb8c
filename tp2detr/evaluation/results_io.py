"""Reading ground-truth and results JSON (ActivityNet format) and writing results JSON.

* ground truth: ``{"database": {video_id: {"annotations": [{"segment": [start, end], ...}],
  "duration": seconds (optional), "subset": str (optional)}}}``
* results: ``{"results": {video_id: [{"segment": [start, end], "score": x}, ...]}}``

Times are seconds. Every malformed file raises :class:`tp2detr.errors.DataFormatError` whose
message names the file, the field, what was found and what was expected; a missing file raises
:class:`tp2detr.errors.MissingDataError`. Order is kept: videos in file order, predictions in list
order (the order decides ties in score, see :mod:`tp2detr.evaluation.detection`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from tp2detr.errors import DataFormatError, MissingDataError
from tp2detr.io import atomic_write_json, finite_number, read_json

logger = logging.getLogger(__name__)

#: How many video ids a warning or error message lists.
IDS_IN_MESSAGES = 5

PredictionArrays = dict[str, tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class GroundTruthSet:
    """Ground truth of an evaluation.

    Attributes:
        segments: ``{video_id: float64 [G, 2]}`` seconds, file order (``G`` may be 0).
        durations: ``{video_id: seconds}`` for the videos whose record has a ``duration``.
    """

    segments: dict[str, np.ndarray]
    durations: dict[str, float]

    @property
    def videos_with_instances(self) -> list[str]:
        """Videos with at least one instance (the only ones the protocol evaluates)."""
        return [video for video, segs in self.segments.items() if len(segs) > 0]


def _segment(value: Any, field: str, path: Path) -> tuple[float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise DataFormatError(f"{path}: {field} is {value!r}, expected a pair [start, end]")
    start = finite_number(value[0], f"{field}[0]", path)
    end = finite_number(value[1], f"{field}[1]", path)
    if end <= start:
        raise DataFormatError(f"{path}: {field} is [{start}, {end}], expected end > start")
    return start, end


def _object_field(obj: Any, key: str, where: str, path: Path) -> Any:
    if not isinstance(obj, dict):
        raise DataFormatError(f"{path}: {where} is {type(obj).__name__}, expected an object")
    if key not in obj:
        raise DataFormatError(f"{path}: {where} has no field '{key}', expected one")
    return obj[key]


def parse_ground_truth(obj: Any, path: str | os.PathLike, subset: str | None = None) -> GroundTruthSet:
    """Validate a decoded GT object (see module docstring).

    Args:
        obj: the decoded JSON.
        path: the file, for messages.
        subset: keep only the videos whose ``subset`` field equals this (None keeps all).
    """
    path = Path(path)
    database = _object_field(obj, "database", "the top level", path)
    if not isinstance(database, dict):
        raise DataFormatError(f"{path}: field 'database' is {type(database).__name__}, expected an object of videos")
    segments: dict[str, np.ndarray] = {}
    durations: dict[str, float] = {}
    for video, record in database.items():
        where = f"database[{video!r}]"
        if subset is not None and _object_field(record, "subset", where, path) != subset:
            continue
        annotations = _object_field(record, "annotations", where, path)
        if not isinstance(annotations, list):
            raise DataFormatError(f"{path}: {where}.annotations is {type(annotations).__name__}, expected a list")
        rows = []
        for i, ann in enumerate(annotations):
            field = f"{where}.annotations[{i}]"
            rows.append(_segment(_object_field(ann, "segment", field, path), f"{field}.segment", path))
        segments[str(video)] = np.array(rows, dtype=np.float64).reshape(-1, 2)
        if "duration" in record and record["duration"] is not None:
            duration = finite_number(record["duration"], f"{where}.duration", path)
            if duration <= 0:
                raise DataFormatError(f"{path}: {where}.duration is {duration}, expected a positive number of seconds")
            durations[str(video)] = duration
    return GroundTruthSet(segments, durations)


def load_ground_truth(path: str | os.PathLike, subset: str | None = None) -> GroundTruthSet:
    """Read and validate an ActivityNet-style GT file (see :func:`parse_ground_truth`)."""
    return parse_ground_truth(read_json(path), path, subset)


def parse_predictions(obj: Any, path: str | os.PathLike) -> PredictionArrays:
    """Validate a decoded results object: ``{video_id: (segments [P, 2] s, scores [P])}``."""
    path = Path(path)
    results = _object_field(obj, "results", "the top level", path)
    if not isinstance(results, dict):
        raise DataFormatError(f"{path}: field 'results' is {type(results).__name__}, expected an object of videos")
    predictions: PredictionArrays = {}
    for video, entries in results.items():
        where = f"results[{video!r}]"
        if not isinstance(entries, list):
            raise DataFormatError(f"{path}: {where} is {type(entries).__name__}, expected a list of predictions")
        rows, scores = [], []
        for i, entry in enumerate(entries):
            field = f"{where}[{i}]"
            rows.append(_segment(_object_field(entry, "segment", field, path), f"{field}.segment", path))
            scores.append(finite_number(_object_field(entry, "score", field, path), f"{field}.score", path))
        predictions[str(video)] = (np.array(rows, dtype=np.float64).reshape(-1, 2), np.array(scores, dtype=np.float64))
    return predictions


def load_predictions(path: str | os.PathLike) -> PredictionArrays:
    """Read and validate a results file (see :func:`parse_predictions`)."""
    return parse_predictions(read_json(path), path)


def restrict_to_ground_truth(
    predictions: Mapping[str, tuple[np.ndarray, np.ndarray]],
    ground_truth: GroundTruthSet,
    strict: bool = False,
    source: str = "predictions",
    log_level: int = logging.WARNING,
) -> PredictionArrays:
    """Drop the predictions of videos without GT instances, as the released code does
    (docs/fidelity.md §5.4).

    Args:
        predictions: ``{video_id: (segments, scores)}``.
        ground_truth: the evaluation's GT; videos listed with no instance count as absent.
        strict: raise instead of dropping.
        source: the predictions' file or name, for messages.
        log_level: the level of the one message logged when some are dropped.

    Returns:
        The kept predictions, order unchanged.

    Raises:
        DataFormatError: ``strict`` and some predictions belong to videos without GT.
    """
    evaluated = set(ground_truth.videos_with_instances)
    dropped = [video for video in predictions if video not in evaluated]
    if dropped:
        count = sum(len(predictions[video][1]) for video in dropped)
        shown = ", ".join(dropped[:IDS_IN_MESSAGES]) + (", ..." if len(dropped) > IDS_IN_MESSAGES else "")
        message = f"{source}: {count} predictions of {len(dropped)} videos without ground truth ({shown})"
        if strict:
            raise DataFormatError(f"{message}, expected only videos of the ground truth (strict mode)")
        logger.log(log_level, "%s were dropped, as the evaluation protocol does", message)
    return {video: entry for video, entry in predictions.items() if video in evaluated}


def predictions_to_json(predictions: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> dict:
    """``{"results": {video_id: [{"segment": [s, e], "score": x}]}}`` from arrays (seconds)."""
    results = {}
    for video, (segments, scores) in predictions.items():
        segments = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if len(segments) != len(scores):
            raise ValueError(
                f"predictions[{video!r}]: {len(segments)} segments but {len(scores)} scores, expected equal counts"
            )
        results[str(video)] = [
            {"segment": [float(s), float(e)], "score": float(x)}
            for (s, e), x in zip(segments.tolist(), scores.tolist())
        ]
    return {"results": results}


def write_predictions(path: str | os.PathLike, predictions: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Write a results file atomically (floats round-trip exactly through JSON)."""
    atomic_write_json(path, predictions_to_json(predictions), indent=None)
