"""The committed toy dataset: reproducible from its seed, in the real schemas, splits consistent."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from tp2detr.config import compose
from tp2detr.data.annotations import load_annotations, load_feature_info
from tp2detr.data.features import open_feature_store
from tp2detr.data.splits import load_split
from tp2detr.data.synthetic import ensure_synthetic_store
from tp2detr.data.toy import AMBIGUOUS, TOY_CLASSES, make_toy_dataset, toy_files

REPO_ROOT = Path(__file__).resolve().parents[2]
TOY = REPO_ROOT / "data" / "toy"


@pytest.fixture(scope="module")
def toy():
    return load_annotations(TOY / "annotations.json"), load_feature_info(TOY / "feature_info.json")


def test_committed_files_are_the_seeds_output() -> None:
    expected = toy_files(make_toy_dataset(0))
    committed = {str(p.relative_to(TOY)) for p in TOY.rglob("*") if p.is_file()}
    assert committed == set(expected)
    for relative, data in expected.items():
        assert (TOY / relative).read_bytes() == data, relative
    assert toy_files(make_toy_dataset(1)) != expected
    assert sum(len(d) for d in expected.values()) < 64 * 1024  # small enough to commit


def test_make_toy_script_writes_and_checks(tmp_path: Path) -> None:
    script = [sys.executable, str(REPO_ROOT / "scripts" / "make_toy.py"), "--out", str(tmp_path)]
    assert subprocess.run(script, capture_output=True, timeout=120).returncode == 0
    assert (tmp_path / "annotations.json").read_bytes() == (TOY / "annotations.json").read_bytes()
    assert subprocess.run(script + ["--check"], capture_output=True, timeout=120).returncode == 0
    (tmp_path / "splits" / "50_50" / "test" / "split_3.list").write_text("BoxJump\n")
    checked = subprocess.run(script + ["--check"], capture_output=True, text=True, timeout=120)
    assert checked.returncode == 1 and "split_3.list" in checked.stdout


def test_videos_and_feature_info(toy) -> None:
    annotations, feature_info = toy
    assert annotations.classes == TOY_CLASSES
    assert set(feature_info) == set(annotations.videos)
    assert Counter(v.subset for v in annotations.videos.values()) == {"val": 16, "test": 16}
    for video_id, info in feature_info.items():
        video = annotations.videos[video_id]
        assert 64 <= info.snippet_length <= 400
        assert info.video_fps == 30.0 and info.frames_per_snippet == 8
        assert info.snippet_length == info.frame_length // 8
        assert info.snippet_duration == pytest.approx(info.snippet_length * 8 / 30.0, abs=1e-5)
        assert 0.0 <= info.frame_length / 30.0 - video.duration <= 0.03
        assert 1 <= len(video.instances) <= 6
        segments = sorted((i.start, i.end) for i in video.instances)
        for (s0, e0), (s1, _e1) in zip(segments, segments[1:]):
            assert e0 <= s1  # no overlaps
        assert all(0.0 <= i.start < i.end <= video.duration for i in video.instances)


def test_instances_cover_every_class_and_the_hard_cases(toy) -> None:
    annotations, _ = toy
    snippet = 8 / 30.0
    for subset in ("val", "test"):
        instances = [i for v in annotations.videos.values() if v.subset == subset for i in v.instances]
        kept = {i.label for i in instances if i.label != AMBIGUOUS and i.length > snippet}
        assert kept == set(TOY_CLASSES), subset
        assert sum(i.label == AMBIGUOUS for i in instances) >= 1
        lengths = np.array([i.length for i in instances])
        assert (lengths < snippet).sum() >= 1  # dropped by the protocol's length filter
        assert ((lengths > snippet) & (lengths < 3 * snippet)).sum() >= 1  # very short actions
        assert lengths.max() > 10.0  # and long ones


@pytest.mark.parametrize("setting, n_seen", [("50_50", 4), ("75_25", 6)])
def test_splits_are_disjoint_complete_and_distinct(toy, setting: str, n_seen: int) -> None:
    annotations, _ = toy
    seen_sets = set()
    for split_id in range(10):
        split = load_split(TOY / "splits", setting, split_id, annotations.classes)
        assert len(split.seen) == n_seen and len(split.unseen) == 8 - n_seen
        assert not set(split.seen) & set(split.unseen)
        assert set(split.seen) | set(split.unseen) == set(annotations.classes)
        for part in ("train", "test"):
            text = (TOY / "splits" / setting / part / f"split_{split_id}.list").read_text()
            assert text.endswith("\n") and "\n\n" not in text and text == text.lstrip()
        seen_sets.add(frozenset(split.seen))
    assert len(seen_sets) == 10
    assert not (TOY / "splits" / setting / "train" / "split_10.list").exists()


def test_toy_config_and_features(tmp_path: Path, toy) -> None:
    annotations, feature_info = toy
    cfg = compose(["dataset=toy", f"paths.feature_dir={tmp_path}"])
    ds = cfg.dataset
    assert ds.name == "toy" and list(ds.exclude_videos) == []
    assert Path(ds.annotations) == TOY / "annotations.json"
    assert Path(ds.feature_info) == TOY / "feature_info.json" and Path(ds.splits_dir) == TOY / "splits"
    assert (ds.windowing.size, ds.windowing.train_stride, ds.windowing.eval_stride) == (128, 32, 96)
    assert ds.features.dim == 32 and Path(ds.features.path) == tmp_path / "toy_d32_s0.h5"
    written = ensure_synthetic_store(
        ds.features.path, annotations, feature_info,
        OmegaConf.to_container(ds.synthetic, resolve=True), progress=False,
    )
    assert written
    lengths = {v: i.snippet_length for v, i in feature_info.items()}
    with open_feature_store(ds.features.format, ds.features.path, expected_dim=32, expected_lengths=lengths) as store:
        assert store.video_ids() == sorted(feature_info)
        for video_id in store.video_ids():
            assert store.read(video_id).shape == (lengths[video_id], 32)
