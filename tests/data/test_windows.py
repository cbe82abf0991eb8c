"""Sliding windows, window-relative targets and the salient mask (docs/fidelity.md §3, §5.5)."""

from __future__ import annotations

import numpy as np
import pytest

from tp2detr.data.annotations import FeatureInfo, Instance
from tp2detr.data.protocol import ProtocolVideo
from tp2detr.data.samples import build_samples
from tp2detr.data.windows import Window, instances_in_window, salient_mask, sliding_window_ranges
from tp2detr.config import normalise_overrides


@pytest.mark.parametrize("length", [1, 33, 127, 128, 129, 160, 161, 500, 579, 6268])
@pytest.mark.parametrize("training,stride", [(True, 32), (False, 96)])
def test_windows_cover_the_video(length, training, stride):
    ranges = sliding_window_ranges(length, 128, stride, training)
    covered = np.zeros(length, bool)
    for s, e in ranges:
        assert 0 <= s <= e <= length - 1
        covered[s:e + 1] = True
        if training or (s, e) != ranges[-1]:
            assert e - s + 1 == min(128, length)
    assert covered.all()
    starts = [s for s, _ in ranges]
    assert starts == sorted(starts)


def test_window_rules_by_hand():
    assert sliding_window_ranges(100, 128, 32, True) == [(0, 99)]
    # 200 snippets: n = (200-128)//32+1 = 3 full windows reaching 191; training adds [72, 199]
    assert sliding_window_ranges(200, 128, 32, True) == [(0, 127), (32, 159), (64, 191), (72, 199)]
    # inference: n = (200-128)//96+1 = 1; the partial last window starts at 96
    assert sliding_window_ranges(200, 128, 96, False) == [(0, 127), (96, 199)]
    assert sliding_window_ranges(224, 128, 96, False) == [(0, 127), (96, 223)]


def test_window_duration_is_length_minus_one_periods():
    w = Window("v", 32, 159, feature_fps=3.75)
    assert w.length == 128
    assert w.duration == pytest.approx(127 / 3.75)
    assert w.t_start == pytest.approx(32 / 3.75)


def test_integrity_rule_and_clipping():
    w = Window("v", 0, 127, feature_fps=1.0)  # [0, 127] s
    inside = Instance(10, 20, "A")
    mostly = Instance(120, 130, "A")  # 7 of 10 s inside: 0.7 < 0.75 -> dropped
    enough = Instance(119, 127.5, "A")  # 8 of 8.5 s inside -> kept, clipped to 127
    assert instances_in_window([inside, mostly, enough], w, 0.75) == [(10, 20), (119, 127)]


def test_salient_mask_rule():
    # T = 10, D = 10 s: [2.5, 4.2] -> floor 2 .. ceil 5 inclusive
    assert salient_mask([(2.5, 4.2)], 10.0, 10) == [0, 0, 1, 1, 1, 1, 0, 0, 0, 0]
    assert salient_mask([(8.5, 12.0)], 10.0, 10)[-2:] == [1, 1]
    assert sum(salient_mask([], 10.0, 10)) == 0


def _video(length, instances, fps=30.0, fps_frames=8):
    info = FeatureInfo("v", length * fps_frames, fps, length, length * fps_frames / fps)
    return ProtocolVideo("v", info.snippet_duration, info, tuple(instances))


def test_training_samples_drop_windows_without_instances_and_normalise_by_duration():
    video = _video(400, [Instance(2.0, 4.0, "A")])
    cfg = {"mode": "sliding", "size": 128, "train_stride": 32, "eval_stride": 96, "integrity": 0.75}
    train = build_samples([video], cfg, training=True)
    evaluation = build_samples([video], cfg, training=False)
    assert len(evaluation) == len(sliding_window_ranges(400, 128, 96, False))
    assert all(len(s.segments) for s in train)
    first = train[0]
    ffps = 30 / 8
    c, w = first.normalised_targets()[0]
    assert c == pytest.approx(3.0 / (127 / ffps)) and w == pytest.approx(2.0 / (127 / ffps))
    mask = first.salient_target()
    assert mask.shape == (128,) and mask[int(2.0 / (127 / ffps) * 128)] == 1


def test_resize_sample_maps_snippet_duration_to_one():
    video = _video(50, [Instance(0.0, 100.0, "A")], fps=30.0, fps_frames=16)  # beyond the video
    (sample,) = build_samples([video], {"mode": "resize", "size": 256}, training=True)
    assert sample.length == 256 and sample.duration == pytest.approx(50 * 16 / 30)
    np.testing.assert_allclose(sample.normalised_targets(), [[0.5, 1.0]])


def test_split_names_survive_hydra_override_parsing():
    assert normalise_overrides(["split=50_50", "split.id=3", "tfpn=cnn"]) == [
        "split='50_50'", "split.id=3", "tfpn=cnn"]
    assert normalise_overrides(["split=50_50,75_25"]) == ["split='50_50','75_25'"]
