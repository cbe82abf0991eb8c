"""Paired differences and by-length means from sweep summaries (tp2detr/engine/comparison.py)."""

from __future__ import annotations

import json

import pytest

from tp2detr.engine.comparison import (
    find_group,
    load_groups,
    mean_by_length,
    paired_difference,
    paired_difference_by_length,
    per_split,
    restrict_to_splits,
)
from tp2detr.errors import DataFormatError, MissingDataError


def run(split, mAP, status="finished", best=None, by_length=None):
    return {"split_id": split, "status": status, "mAP": mAP, "ap": {"0.5": mAP + 1},
            "test_best": {"epoch": 1, "mAP": best if best is not None else mAP}, "by_length": by_length or []}


def group(variant, runs, split="50_50"):
    return {"variant": variant, "split": split, "runs": runs}


def test_paired_differences_use_only_the_splits_both_finished():
    base = group("base", [run(0, 30.0), run(1, 40.0), run(2, 50.0), run(3, 20.0, status="failed")])
    new = group("new", [run(0, 35.0), run(1, 38.0), run(3, 99.0), run(4, 60.0)])
    diff = paired_difference(new, base)
    assert diff["splits"] == [0, 1] and diff["differences"] == [5.0, -2.0]
    assert diff["mean"] == pytest.approx(1.5) and diff["std"] == pytest.approx(4.9497, abs=1e-4)
    assert (diff["better"], diff["worse"], diff["n"]) == (1, 1, 2)
    assert per_split(new, "0.5") == {0: 36.0, 1: 39.0, 3: 100.0, 4: 61.0}
    assert per_split(base, "test_best") == {0: 30.0, 1: 40.0, 2: 50.0}


def test_repeated_splits_are_averaged_and_by_length_means_skip_empty_bins():
    bins_a = [{"bin": "[0, 2)", "num_gt": 3, "mAP": 10.0}, {"bin": "[2, 4)", "num_gt": 0, "mAP": None}]
    bins_b = [{"bin": "[0, 2)", "num_gt": 5, "mAP": 20.0}, {"bin": "[2, 4)", "num_gt": 2, "mAP": 40.0}]
    g = group("seeds", [run(0, 10.0, by_length=bins_a), run(0, 20.0, by_length=bins_b)])
    assert per_split(g) == {0: 15.0}
    rows = {r["bin"]: r for r in mean_by_length(g)}
    assert rows["[0, 2)"]["mean"] == 15.0 and rows["[0, 2)"]["num_gt"] == 8 and rows["[0, 2)"]["num_splits"] == 2
    assert rows["[2, 4)"]["mean"] == 40.0 and rows["[2, 4)"]["std"] is None


def test_loading_and_finding_name_the_problem(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text(json.dumps({"groups": [group("a", []), group("a", [], split="75_25")]}))
    groups = load_groups([path])
    assert find_group(groups, "a", "75_25")["source"] == str(path)
    with pytest.raises(MissingDataError, match=r"variant 'a': found 2 groups"):
        find_group(groups, "a")
    with pytest.raises(MissingDataError, match="no such sweep summary"):
        load_groups([tmp_path / "absent.json"])
    path.write_text("[]")
    with pytest.raises(DataFormatError, match="no 'groups' list"):
        load_groups([path])


def test_by_length_differences_are_paired_per_bin_and_restriction_keeps_the_named_splits():
    def bins(short, long):
        return [{"bin": "[0, 2)", "num_gt": 1, "mAP": short}, {"bin": "[2, 4)", "num_gt": 1 if long is not None else 0, "mAP": long}]

    base = group("base", [run(0, 1.0, by_length=bins(10.0, 50.0)), run(1, 1.0, by_length=bins(20.0, None)),
                          run(2, 1.0, by_length=bins(30.0, 40.0))])
    new = group("new", [run(0, 2.0, by_length=bins(12.0, 45.0)), run(1, 2.0, by_length=bins(19.0, 60.0)),
                        run(2, 2.0, by_length=bins(33.0, 47.0))])
    short, long = paired_difference_by_length(new, base)
    assert short["bin"] == "[0, 2)" and short["differences"] == [2.0, -1.0, 3.0] and (short["better"], short["worse"]) == (2, 1)
    assert long["splits"] == [0, 2] and long["differences"] == [-5.0, 7.0]  # split 1 has no long action in the reference
    assert per_split(restrict_to_splits(new, [0, 2])) == {0: 2.0, 2: 2.0}
    assert restrict_to_splits(new, None) is new
