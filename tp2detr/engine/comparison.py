"""Comparing the variants of sweeps from their ``summary.json`` files (:mod:`tp2detr.engine.sweep`):
per-split values, paired differences over the splits two variants share, and mAP by action length
averaged over splits. Everything is in percent, as in the summaries.

A paired difference is the honest way to compare two rows of a table whose splits differ a lot
in difficulty: each split's difference (variant − reference) removes what the split itself
contributes, and the sign count says how many splits agree.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tp2detr.errors import DataFormatError, MissingDataError

Group = Mapping[str, Any]


def load_groups(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Every variant group of the given ``summary.json`` files, each with ``"source"`` (its file).

    Raises:
        MissingDataError: a file does not exist.
        DataFormatError: a file is not a sweep summary.
    """
    groups = []
    for path in map(Path, paths):
        if not path.is_file():
            raise MissingDataError(f"{path}: no such sweep summary, expected a summary.json")
        try:
            document = json.loads(path.read_text())
        except ValueError as err:
            raise DataFormatError(f"{path}: not valid JSON ({err}), expected a sweep summary") from err
        if not isinstance(document, dict) or not isinstance(document.get("groups"), list):
            raise DataFormatError(f"{path}: no 'groups' list, expected a sweep summary (summary.json)")
        groups += [{**group, "source": str(path)} for group in document["groups"]]
    return groups


def find_group(groups: Sequence[Group], variant: str, split: str | None = None) -> Group:
    """The group of ``variant`` (in the split setting ``split`` when given).

    Raises:
        MissingDataError: no such group, or more than one.
    """
    found = [g for g in groups if g["variant"] == variant and (split is None or g["split"] == split)]
    if len(found) != 1:
        available = sorted({f"{g['variant']} ({g['split']})" for g in groups})
        raise MissingDataError(
            f"variant {variant!r}{f' in split setting {split}' if split else ''}: found {len(found)} groups, "
            f"expected one of {', '.join(available)}"
        )
    return found[0]


def per_split(group: Group, key: str = "mAP") -> dict[int, float]:
    """``{split id: value}`` over the group's finished runs: ``key`` is ``"mAP"`` (the average over
    thresholds), a threshold (``"0.5"``) or ``"test_best"`` (the oracle epoch's mAP). A split run
    more than once (seeds) gives the mean of its runs."""
    values: dict[int, list[float]] = {}
    for run in group.get("runs", []):
        if run.get("status") != "finished" or run.get("split_id") is None:
            continue
        if key == "mAP":
            value = run.get("mAP")
        elif key == "test_best":
            value = (run.get("test_best") or {}).get("mAP")
        else:
            value = (run.get("ap") or {}).get(key)
        if value is not None:
            values.setdefault(int(run["split_id"]), []).append(float(value))
    return {split: statistics.fmean(v) for split, v in sorted(values.items())}


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (ddof 1; None for fewer than two values)."""
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def restrict_to_splits(group: Group, splits: Iterable[int] | None) -> Group:
    """The group with only the runs of ``splits`` (all of them when None): compare rows over the
    same splits when one sweep ran more of them than another."""
    if splits is None:
        return group
    keep = {int(s) for s in splits}
    return {**group, "runs": [r for r in group.get("runs", []) if r.get("split_id") is not None and int(r["split_id"]) in keep]}


def paired_values(a: Mapping[int, float], b: Mapping[int, float]) -> dict[str, Any]:
    """``a − b`` on every split both have: ``{"splits", "differences", "mean", "std", "n",
    "better", "worse"}`` (``better``/``worse``: splits where ``a`` is above / below ``b``)."""
    splits = sorted(set(a) & set(b))
    differences = [a[s] - b[s] for s in splits]
    mean, std = mean_std(differences)
    return {
        "splits": splits,
        "differences": differences,
        "mean": mean,
        "std": std,
        "n": len(splits),
        "better": sum(d > 0 for d in differences),
        "worse": sum(d < 0 for d in differences),
    }


def paired_difference(variant: Group, reference: Group, key: str = "mAP") -> dict[str, Any]:
    """``variant − reference`` of ``key`` (see :func:`per_split`) on every split both finished
    (:func:`paired_values`)."""
    return paired_values(per_split(variant, key), per_split(reference, key))


def per_split_by_length(group: Group) -> dict[str, dict[int, float]]:
    """``{bin: {split id: mAP}}`` of the group's finished runs (a bin without ground truth in a
    split has no value there; a split run more than once gives the mean of its runs)."""
    values: dict[str, dict[int, list[float]]] = {}
    for run in group.get("runs", []):
        if run.get("status") != "finished" or run.get("split_id") is None:
            continue
        for entry in run.get("by_length") or []:
            by_split = values.setdefault(entry["bin"], {})
            if entry.get("mAP") is not None:
                by_split.setdefault(int(run["split_id"]), []).append(float(entry["mAP"]))
    return {name: {split: statistics.fmean(v) for split, v in sorted(d.items())} for name, d in values.items()}


def paired_difference_by_length(variant: Group, reference: Group) -> list[dict[str, Any]]:
    """Per action-length bin, ``variant − reference`` over the splits where both have the bin:
    ``[{"bin", **paired_values}]`` in the reference's bin order."""
    a, b = per_split_by_length(variant), per_split_by_length(reference)
    return [{"bin": name, **paired_values(a.get(name, {}), b[name])} for name in b]


def mean_by_length(group: Group) -> list[dict[str, Any]]:
    """mAP by action length (seconds) averaged over the group's finished splits, bin by bin:
    ``[{"bin", "mean", "std", "num_splits", "num_gt"}]`` (``num_gt`` summed over the splits; a bin without
    ground truth in a split does not count there)."""
    bins: dict[str, dict[str, Any]] = {}
    for run in group.get("runs", []):
        if run.get("status") != "finished":
            continue
        for entry in run.get("by_length") or []:
            slot = bins.setdefault(entry["bin"], {"values": [], "num_gt": 0})
            slot["num_gt"] += int(entry.get("num_gt") or 0)
            if entry.get("mAP") is not None:
                slot["values"].append(float(entry["mAP"]))
    rows = []
    for name, slot in bins.items():
        mean, std = mean_std(slot["values"])
        rows.append({"bin": name, "mean": mean, "std": std, "num_splits": len(slot["values"]), "num_gt": slot["num_gt"]})
    return rows
