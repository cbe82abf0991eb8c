"""Annotation, feature-info and split-list readers reject malformed input with clear messages."""

from __future__ import annotations

import json

import pytest

from tp2detr.data.annotations import load_annotations, load_feature_info
from tp2detr.data.splits import load_split
from tp2detr.errors import DataFormatError, MissingDataError


def _write(tmp_path, obj, name="ann.json"):
    path = tmp_path / name
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


def test_real_files_load():
    ann = load_annotations("data/thumos14/annotations.json")
    assert len(ann.classes) == 20 and len(ann.videos) == 413
    info = load_feature_info("data/thumos14/feature_info_8frame.json")
    assert len(info) == 412
    v = info["video_test_0001064"]
    assert v.frames_per_snippet == 8 and v.feature_fps == pytest.approx(30 / 8)
    anet = load_feature_info("data/activitynet13/feature_info.json")
    assert all(i.frames_per_snippet == 16 for i in list(anet.values())[:100])


@pytest.mark.parametrize(
    "obj,match",
    [
        ("", "file is empty"),
        ("{not json", "not valid JSON"),
        ([], "expected an object"),
        ({"database": {}}, "missing field 'classes'"),
        ({"classes": ["A"]}, "missing field 'database'"),
        ({"classes": ["A"], "database": {"v": {"subset": "val", "duration": 3}}},
         r"database\['v'\] is missing field 'annotations'"),
        ({"classes": ["A"], "database": {"v": {"subset": "val", "duration": "long", "annotations": []}}},
         r"database\['v'\].duration is 'long' \(str\), expected a number"),
        ({"classes": ["A"], "database": {"v": {"subset": "val", "duration": 9,
                                              "annotations": [{"segment": [1], "label": "A"}]}}},
         r"annotations\[0\].segment is \[1\], expected \[start, end\]"),
        ({"classes": ["A"], "database": {"v": {"subset": "val", "duration": 9,
                                              "annotations": [{"segment": [5, 2], "label": "A"}]}}},
         r"end < start"),
        ({"classes": ["A"], "database": {"v": {"subset": "val", "duration": 9,
                                              "annotations": [{"segment": [1, 2]}]}}},
         r"must be an object with 'segment' and 'label'"),
    ],
)
def test_malformed_annotations(tmp_path, obj, match):
    path = _write(tmp_path, obj)
    with pytest.raises(DataFormatError, match=match) as err:
        load_annotations(path)
    assert str(path) in str(err.value)


def test_missing_annotation_file(tmp_path):
    with pytest.raises(MissingDataError, match="file not found"):
        load_annotations(tmp_path / "nope.json")


def test_zero_length_instance_is_accepted_by_the_reader(tmp_path):
    # ActivityNet's official annotations contain [0, 0] instances; the protocol's length filter drops them
    path = _write(tmp_path, {"classes": ["A"], "database": {"v": {
        "subset": "train", "duration": 9, "annotations": [{"segment": [0, 0], "label": "A"}]}}})
    assert load_annotations(path).videos["v"].instances[0].length == 0


@pytest.mark.parametrize(
    "rec,match",
    [
        ({"frame_length": 10, "video_fps": 30.0, "snippet_length": 1}, "missing field 'snippet_duration'"),
        ({"frame_length": 10, "video_fps": 0, "snippet_length": 1, "snippet_duration": 1.0}, "video_fps is 0"),
        ({"frame_length": 10, "video_fps": 30, "snippet_length": -1, "snippet_duration": 1.0},
         "snippet_length is -1"),
    ],
)
def test_malformed_feature_info(tmp_path, rec, match):
    path = _write(tmp_path, {"vid": rec}, "info.json")
    with pytest.raises(DataFormatError, match=match):
        load_feature_info(path)


def test_split_list_errors(tmp_path):
    (tmp_path / "50_50" / "train").mkdir(parents=True)
    (tmp_path / "50_50" / "test").mkdir(parents=True)
    (tmp_path / "50_50" / "train" / "split_0.list").write_text("A\nB\n")
    (tmp_path / "50_50" / "test" / "split_0.list").write_text("C\n")
    split = load_split(tmp_path, "50_50", 0, ["A", "B", "C"])
    assert split.seen == ("A", "B") and split.unseen == ("C",)
    with pytest.raises(MissingDataError, match="split list not found"):
        load_split(tmp_path, "50_50", 1, ["A", "B", "C"])
    with pytest.raises(MissingDataError, match="expected one of \\['50_50'\\]"):
        load_split(tmp_path, "90_10", 0, ["A", "B", "C"])
    (tmp_path / "50_50" / "test" / "split_0.list").write_text("C\nC\n")
    with pytest.raises(DataFormatError, match="listed twice"):
        load_split(tmp_path, "50_50", 0, ["A", "B", "C"])


def test_all_eighty_published_split_lists_are_valid():
    for dataset, n_classes in (("thumos14", 20), ("activitynet13", 200)):
        classes = load_annotations(f"data/{dataset}/annotations.json").classes
        assert len(classes) == n_classes
        for setting, frac in (("50_50", 0.5), ("75_25", 0.75)):
            for k in range(10):
                s = load_split(f"data/splits/{dataset}", setting, k, classes)
                assert len(s.seen) == round(frac * n_classes)
                assert set(s.seen) | set(s.unseen) == set(classes)
