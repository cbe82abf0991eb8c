"""The zero-shot protocol reproduces the released code's counts (docs/fidelity.md §5.6) exactly."""

from __future__ import annotations

import json
import logging

import pytest

from tp2detr.config import compose
from tp2detr.data.bundle import load_data
from tp2detr.data.statistics import dataset_statistics
from tp2detr.errors import DataFormatError

# docs/fidelity.md §5.6: train windows, train instances, eval videos, eval GT instances (THUMOS14 50/50).
THUMOS_50_50 = {
    0: (1823, 6833, 98, 1293),
    1: (1952, 5746, 108, 1442),
    2: (2160, 5779, 130, 1308),
    3: (1779, 6095, 107, 1430),
    4: (1950, 5470, 111, 1536),
    5: (2124, 5862, 107, 1897),
    6: (1536, 5426, 109, 1637),
    7: (1926, 4960, 132, 1693),
    8: (1999, 6494, 109, 1429),
    9: (1746, 4561, 127, 1680),
}
THUMOS_75_25 = {0: (2541, 8488, 50, 778), 1: (2599, 7915, 57, 570)}


def _stats(*overrides: str) -> dict:
    return dataset_statistics(load_data(compose(list(overrides))))


@pytest.mark.parametrize("split_id", sorted(THUMOS_50_50))
def test_thumos_50_50_anchor_counts(split_id):
    s = _stats("dataset=thumos14", "split=50_50", f"split.id={split_id}")
    got = (s["train_windows"], s["train_instances"], s["eval_videos"], s["eval_instances"])
    assert got == THUMOS_50_50[split_id]
    assert s["test_windows"] == 1758
    assert s["test_videos"] == 208


@pytest.mark.parametrize("split_id", sorted(THUMOS_75_25))
def test_thumos_75_25_anchor_counts(split_id):
    s = _stats("dataset=thumos14", "split=75_25", f"split.id={split_id}")
    got = (s["train_windows"], s["train_instances"], s["eval_videos"], s["eval_instances"])
    assert got == THUMOS_75_25[split_id]
    assert s["test_windows"] == 1758


@pytest.mark.parametrize(
    "setting,expected",
    # data/README.md §5, split 0, GAP filters: train videos / instances, eval videos / instances
    [("50_50", (4930, 7681, 2447, 3626)), ("75_25", (7412, 11420, 1225, 1859))],
)
def test_anet_split0_counts(setting, expected):
    s = _stats("dataset=anet13", f"split={setting}", "split.id=0")
    assert (s["train_videos"], s["train_instances"], s["eval_videos"], s["eval_instances"]) == expected
    # whole videos: one sample per video, and evaluation loads only videos with unseen GT
    assert s["train_windows"] == s["train_videos"]
    assert s["test_windows"] == s["eval_videos"]


def test_unseen_classes_never_reach_training():
    bundle = load_data(compose(["dataset=thumos14", "split=50_50", "split.id=0"]))
    unseen = set(bundle.protocol.split.unseen)
    seen = set(bundle.protocol.split.seen)
    for video in bundle.protocol.train_videos:
        assert all(i.label in seen for i in video.instances)
    for video in bundle.protocol.eval_videos:
        assert all(i.label in unseen for i in video.instances)
        assert video.video_id not in {"video_test_0000270", "video_test_0000814"}


def test_dataset_stats_cli_prints_one_json_line(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / "dataset_stats.py"
    spec = importlib.util.spec_from_file_location("dataset_stats", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["dataset=thumos14", "split=50_50", "split.id=7"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    stats = json.loads(out[0])
    assert (stats["train_windows"], stats["eval_instances"]) == (1926, 1693)


def _write_dataset(tmp_path, database, classes=("A", "B", "C", "D"), seen=("A", "B"), unseen=("C", "D")):
    ann = tmp_path / "annotations.json"
    ann.write_text(json.dumps({"classes": list(classes), "database": database}))
    info = {
        vid: {"frame_length": 3000, "frame_duration": 100.0, "video_fps": 30.0,
              "snippet_length": 375, "snippet_duration": 100.0}
        for vid in database
    }
    (tmp_path / "info.json").write_text(json.dumps(info))
    for part, names in (("train", seen), ("test", unseen)):
        d = tmp_path / "splits" / "50_50" / part
        d.mkdir(parents=True, exist_ok=True)
        (d / "split_0.list").write_text("".join(f"{n}\n" for n in names))
    return [
        f"dataset.annotations={ann}",
        f"dataset.feature_info={tmp_path / 'info.json'}",
        f"dataset.splits_dir={tmp_path / 'splits'}",
        "dataset.exclude_videos=[]",
    ]


def _video(subset, *anns, duration=100.0):
    return {"subset": subset, "duration": duration,
            "annotations": [{"segment": list(seg), "label": lab} for seg, lab in anns]}


def test_segment_beyond_video_is_kept_in_gt_and_clipped_in_targets(tmp_path, caplog):
    db = {
        "video_validation_1": _video("val", ((10.0, 20.0), "A"), ((90.0, 130.0), "B")),
        "video_test_1": _video("test", ((5.0, 9.0), "C"), ((95.0, 140.0), "D")),
    }
    overrides = _write_dataset(tmp_path, db)
    with caplog.at_level(logging.INFO, logger="tp2detr.data.protocol"):
        bundle = load_data(compose(overrides))
    assert bundle.protocol.counts["eval_instances_beyond_video"] == 1
    assert bundle.protocol.counts["train_instances_beyond_video"] == 1
    assert any("end after the video" in r.message for r in caplog.records)
    gt = bundle.protocol.eval_ground_truth["video_test_1"]
    assert gt.tolist() == [[5.0, 9.0], [95.0, 140.0]]  # evaluation GT unchanged
    for sample in bundle.train_samples:
        assert (sample.normalised_targets() >= 0).all() and (sample.normalised_targets() <= 1).all()


def test_empty_evaluation_set_is_an_error(tmp_path):
    db = {
        "video_validation_1": _video("val", ((10.0, 20.0), "A")),
        "video_test_1": _video("test", ((5.0, 9.0), "A")),  # only a seen class in the test video
    }
    with pytest.raises(DataFormatError, match="no evaluation ground truth"):
        load_data(compose(_write_dataset(tmp_path, db)))


def test_unknown_class_in_split_list(tmp_path):
    db = {"video_validation_1": _video("val", ((1.0, 5.0), "A")),
          "video_test_1": _video("test", ((1.0, 5.0), "C"))}
    overrides = _write_dataset(tmp_path, db, seen=("A", "Bogus"))
    with pytest.raises(DataFormatError, match=r"split_0.list:2: unknown class 'Bogus'"):
        load_data(compose(overrides))


def test_overlapping_train_test_classes(tmp_path):
    db = {"video_validation_1": _video("val", ((1.0, 5.0), "A")),
          "video_test_1": _video("test", ((1.0, 5.0), "C"))}
    overrides = _write_dataset(tmp_path, db, seen=("A", "B", "C"), unseen=("C", "D"))
    with pytest.raises(DataFormatError, match="overlap.*C"):
        load_data(compose(overrides))


def test_unknown_subset_names_the_field(tmp_path):
    db = {"video_validation_1": _video("training", ((1.0, 5.0), "A")),
          "video_test_1": _video("test", ((1.0, 5.0), "C"))}
    with pytest.raises(DataFormatError, match="dataset.train_subset"):
        load_data(compose(_write_dataset(tmp_path, db)))


def test_short_instances_are_dropped_strictly(tmp_path):
    # one snippet = 8 / 30 s: an instance of exactly that length is dropped, a longer one kept
    db = {"video_validation_1": _video("val", ((0.0, 8 / 30), "A"), ((20.0, 21.0), "A")),
          "video_test_1": _video("test", ((5.0, 9.0), "C"))}
    bundle = load_data(compose(_write_dataset(tmp_path, db)))
    (video,) = bundle.protocol.train_videos
    assert [(i.start, i.end) for i in video.instances] == [(20.0, 21.0)]
    assert bundle.protocol.counts["train_too_short_instances"] == 1
