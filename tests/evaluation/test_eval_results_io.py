"""Reading / validating / writing GT and results JSON, and the evaluate_proposals report."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from tp2detr.errors import DataFormatError, MissingDataError
from tp2detr.evaluation.average_recall import THUMOS_AR_TIOU
from tp2detr.evaluation.evaluate import evaluate_proposals
from tp2detr.evaluation.results_io import (
    load_ground_truth,
    load_predictions,
    restrict_to_ground_truth,
    write_predictions,
)

GT = {
    "database": {
        "v1": {"subset": "test", "duration": 100.0, "annotations": [{"segment": [0.0, 10.0], "label": "x"}, {"segment": [20, 25]}]},
        "v2": {"subset": "test", "duration": 50.0, "annotations": [{"segment": [5.0, 6.0]}]},
        "v3": {"subset": "val", "annotations": []},
    }
}
RESULTS = {
    "results": {
        "v1": [{"segment": [0.0, 10.0], "score": 0.9}, {"segment": [20.0, 25.0], "score": 0.5}],
        "v2": [{"segment": [5.0, 6.0], "score": 1}],
    }
}


def write(tmp_path, name, obj):
    path = tmp_path / name
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


def test_ground_truth_is_read_in_file_order(tmp_path):
    gt = load_ground_truth(write(tmp_path, "gt.json", GT))
    assert list(gt.segments) == ["v1", "v2", "v3"]
    np.testing.assert_array_equal(gt.segments["v1"], [[0, 10], [20, 25]])
    assert gt.segments["v3"].shape == (0, 2)
    assert gt.durations == {"v1": 100.0, "v2": 50.0}
    assert gt.videos_with_instances == ["v1", "v2"]
    assert list(load_ground_truth(tmp_path / "gt.json", subset="val").segments) == ["v3"]


def test_predictions_are_read_in_file_order(tmp_path):
    preds = load_predictions(write(tmp_path, "pred.json", RESULTS))
    assert list(preds) == ["v1", "v2"]
    np.testing.assert_array_equal(preds["v1"][0], [[0, 10], [20, 25]])
    np.testing.assert_array_equal(preds["v1"][1], [0.9, 0.5])


def test_write_then_read_round_trips_exactly(tmp_path):
    preds = {"a": (np.array([[0.1, 0.30000000000000004], [1 / 3, 2 / 3]]), np.array([0.123456789123, 1e-12]))}
    write_predictions(tmp_path / "out" / "p.json", preds)
    back = load_predictions(tmp_path / "out" / "p.json")
    np.testing.assert_array_equal(back["a"][0], preds["a"][0])
    np.testing.assert_array_equal(back["a"][1], preds["a"][1])


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "file is empty"),
        ("{not json", "not valid JSON"),
        ([], "the top level is list, expected an object"),
        ({"results": {}}, "no field 'database'"),
        ({"database": []}, "expected an object of videos"),
        ({"database": {"v": {"duration": 3}}}, r"database\['v'\] has no field 'annotations'"),
        ({"database": {"v": {"annotations": [{"label": "x"}]}}}, r"annotations\[0\] has no field 'segment'"),
        ({"database": {"v": {"annotations": [{"segment": [1.0]}]}}}, r"annotations\[0\].segment is \[1.0\], expected a pair"),
        ({"database": {"v": {"annotations": [{"segment": [0, 1]}, {"segment": [3, 2]}]}}}, r"database\['v'\].annotations\[1\].segment is \[3.0, 2.0\], expected end > start"),
        ({"database": {"v": {"annotations": [{"segment": [1, 1]}]}}}, "expected end > start"),
        ({"database": {"v": {"annotations": [{"segment": ["0", 1]}]}}}, r"segment\[0\] is '0' \(str\), expected a number"),
        ({"database": {"v": {"duration": -1, "annotations": []}}}, "duration is -1.0, expected a positive"),
    ],
)
def test_bad_ground_truth_names_file_field_and_expectation(tmp_path, content, message):
    path = write(tmp_path, "gt.json", content)
    with pytest.raises(DataFormatError, match=message) as info:
        load_ground_truth(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "content, message",
    [
        ("   \n", "file is empty"),
        ({"database": {}}, "no field 'results'"),
        ({"results": {"v": {}}}, "expected a list of predictions"),
        ({"results": {"v": [{"segment": [0, 1]}]}}, r"results\['v'\]\[0\] has no field 'score'"),
        ({"results": {"v": [{"score": 0.5}]}}, "has no field 'segment'"),
        ({"results": {"v": [{"segment": [0, 1, 2], "score": 0.5}]}}, "expected a pair"),
        ({"results": {"v": [{"segment": [0, 1], "score": 0.5}, {"segment": [2, 2], "score": 0.5}]}}, r"results\['v'\]\[1\].segment is \[2.0, 2.0\], expected end > start"),
        ({"results": {"v": [{"segment": [0, 1], "score": "high"}]}}, r"score is 'high' \(str\), expected a number"),
        ({"results": {"v": [{"segment": [0, 1], "score": True}]}}, "expected a number"),
        ({"results": {"v": [{"segment": [0, 1], "score": None}]}}, "expected a number"),
        ('{"results": {"v": [{"segment": [0, 1], "score": NaN}]}}', "score is nan, expected a finite number"),
        ('{"results": {"v": [{"segment": [0, Infinity], "score": 1}]}}', r"segment\[1\] is inf, expected a finite number"),
    ],
)
def test_bad_results_name_file_field_and_expectation(tmp_path, content, message):
    path = write(tmp_path, "pred.json", content)
    with pytest.raises(DataFormatError, match=message) as info:
        load_predictions(path)
    assert str(path) in str(info.value)


def test_zero_byte_and_missing_files(tmp_path):
    (tmp_path / "zero.json").write_bytes(b"")
    with pytest.raises(DataFormatError, match="0 bytes"):
        load_predictions(tmp_path / "zero.json")
    with pytest.raises(MissingDataError, match="file not found"):
        load_ground_truth(tmp_path / "absent.json")


def test_predictions_of_videos_without_gt_are_dropped_with_one_warning(tmp_path, caplog):
    gt = load_ground_truth(write(tmp_path, "gt.json", GT))
    preds = {name: (np.array([[0.0, 1.0]]), np.array([0.5])) for name in ["v1", "x1", "v3", "x2", "x3", "x4", "x5", "x6"]}
    with caplog.at_level(logging.WARNING, logger="tp2detr.evaluation.results_io"):
        kept = restrict_to_ground_truth(preds, gt, source="p.json")
    assert list(kept) == ["v1"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    text = warnings[0].getMessage()
    assert "7 predictions of 7 videos" in text and "x1, v3, x2, x3, x4, ..." in text and "p.json" in text
    with pytest.raises(DataFormatError, match="strict"):
        restrict_to_ground_truth(preds, gt, strict=True)


def test_evaluate_report_values(tmp_path):
    gt = load_ground_truth(write(tmp_path, "gt.json", GT))
    predictions = load_predictions(write(tmp_path, "p.json", RESULTS))
    report = evaluate_proposals(predictions, gt.segments, gt.durations, (0.3, 0.5), THUMOS_AR_TIOU, breakdown=True)
    assert report["ap"] == {"0.3": 1.0, "0.5": 1.0} and report["mAP"] == 1.0
    assert (report["num_gt"], report["num_predictions"], report["num_videos"]) == (3, 3, 2)
    assert report["tiou"] == [0.3, 0.5]
    assert report["ar"]["AR@100"] == 1.0
    absolute = report["breakdown"]["absolute_s"]
    assert [b["num_gt"] for b in absolute] == [1, 0, 1, 1, 0]
    assert absolute[1]["mAP"] is None and absolute[0]["mAP"] == 1.0
    assert [b["num_gt"] for b in report["breakdown"]["relative"]] == [1, 1, 1, 0, 0]
    json.dumps(report)  # JSON-ready


def test_results_without_predictions_give_zero_with_a_warning(tmp_path, caplog):
    gt = load_ground_truth(write(tmp_path, "gt.json", GT))
    with caplog.at_level(logging.WARNING):
        report = evaluate_proposals({}, gt.segments, gt.durations, (0.5,), THUMOS_AR_TIOU, breakdown=True)
    assert report["ap"] == {"0.5": 0.0} and report["mAP"] == 0.0 and report["ar"] is None
    assert any("no predictions" in r.getMessage() for r in caplog.records)


def test_relative_breakdown_skipped_without_durations(tmp_path, caplog):
    gt_obj = {"database": {"v": {"annotations": [{"segment": [0, 1]}]}}}
    gt = load_ground_truth(write(tmp_path, "gt.json", gt_obj))
    with caplog.at_level(logging.WARNING):
        report = evaluate_proposals({"v": (np.array([[0.0, 1.0]]), np.array([1.0]))}, gt.segments, gt.durations, (0.5,),
                                    breakdown=True)
    assert report["breakdown"]["relative"] is None
    assert any("no duration" in r.getMessage() for r in caplog.records)


def test_a_video_listed_twice_in_a_results_file_is_an_error(tmp_path):
    path = tmp_path / "results.json"
    path.write_text('{"results": {"v1": [{"segment": [0, 1], "score": 0.5}], "v1": []}}')
    with pytest.raises(DataFormatError, match=r"results.json: entry 'v1' is given twice"):
        load_predictions(path)
