"""``python -m tp2detr.evaluation`` on tiny temporary files."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

GT = {
    "database": {
        "v1": {"duration": 60.0, "annotations": [{"segment": [0.0, 10.0]}, {"segment": [20.0, 30.0]}]},
        "v2": {"duration": 30.0, "annotations": [{"segment": [1.0, 2.0]}]},
    }
}
PRED = {
    "results": {
        "v1": [{"segment": [0.0, 10.0], "score": 0.9}, {"segment": [40.0, 50.0], "score": 0.8}, {"segment": [20.0, 26.0], "score": 0.7}],
        "v2": [{"segment": [1.0, 2.0], "score": 0.6}],
        "not_in_gt": [{"segment": [1.0, 2.0], "score": 0.99}],
    }
}


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "tp2detr.evaluation", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def files(tmp_path):
    gt, pred = tmp_path / "gt.json", tmp_path / "pred.json"
    gt.write_text(json.dumps(GT))
    pred.write_text(json.dumps(PRED))
    return str(gt), str(pred)


def test_prints_one_json_object_with_ap_map_ar_and_breakdown(files):
    gt, pred = files
    done = run_cli("--gt", gt, "--pred", pred, "--tiou", "0.5", "0.7", "--ar", "--breakdown")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)  # exactly one JSON document
    # ranking v1[0,10] TP, v1[40,50] FP, v1[20,26] (tIoU 0.6) TP@0.5 / FP@0.7, v2 TP
    # @0.5: P=[1, 1/2, 2/3, 3/4] R=[1/3, 1/3, 2/3, 1] -> 1/3 + 1/3*3/4 + 1/3*3/4 = 0.8333...
    # @0.7: TP, FP, FP, TP -> P=[1, 1/2, 1/3, 1/2] R=[1/3, 1/3, 1/3, 2/3] -> 1/3 + 1/3*1/2
    assert report["ap"]["0.5"] == pytest.approx(1 / 3 + 2 * (1 / 3) * 0.75)
    assert report["ap"]["0.7"] == pytest.approx(1 / 3 + 1 / 6)
    assert report["mAP"] == pytest.approx((report["ap"]["0.5"] + report["ap"]["0.7"]) / 2)
    assert report["num_predictions"] == 4 and report["num_gt"] == 3
    assert set(report["ar"]) == {"AR@1", "AR@5", "AR@10", "AR@25", "AR@40", "AR@50", "AR@100", "AUC"}
    assert len(report["breakdown"]["absolute_s"]) == 5 and len(report["breakdown"]["relative"]) == 5
    assert "1 predictions of 1 videos without ground truth (not_in_gt)" in done.stderr


def test_defaults_are_the_thumos_thresholds(files):
    gt, pred = files
    report = json.loads(run_cli("--gt", gt, "--pred", pred).stdout)
    assert list(report["ap"]) == ["0.3", "0.4", "0.5", "0.6", "0.7"]
    anet = json.loads(run_cli("--gt", gt, "--pred", pred, "--preset", "activitynet").stdout)
    assert list(anet["ap"])[0] == "0.5" and list(anet["ap"])[-1] == "0.95" and len(anet["ap"]) == 10


def test_strict_mode_fails_on_unknown_videos(files):
    gt, pred = files
    done = run_cli("--gt", gt, "--pred", pred, "--strict")
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "not_in_gt" in lines[0]


@pytest.mark.parametrize(
    "pred_content, expected",
    [
        ("", "file is empty"),
        ('{"results": {"v1": [{"segment": [3, 1], "score": 0.5}]}}', "expected end > start"),
        ('{"results": {"v1": [{"segment": [0, 1], "score": NaN}]}}', "expected a finite number"),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_exit_code_2(tmp_path, files, pred_content, expected):
    gt, _ = files
    bad = tmp_path / "bad.json"
    bad.write_text(pred_content)
    done = run_cli("--gt", gt, "--pred", str(bad))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0] and str(bad) in lines[0]


def test_missing_file_and_empty_ground_truth(tmp_path, files):
    _, pred = files
    done = run_cli("--gt", str(tmp_path / "absent.json"), "--pred", pred)
    assert done.returncode == 2 and "file not found" in done.stderr
    empty_gt = tmp_path / "empty_gt.json"
    empty_gt.write_text(json.dumps({"database": {"v1": {"annotations": []}}}))
    done = run_cli("--gt", str(empty_gt), "--pred", pred)
    assert done.returncode == 2 and "found 0 instances" in done.stderr
