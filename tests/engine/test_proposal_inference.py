"""Inference post-processing, video-level merging and the evaluation glue."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from torch import nn

from tp2detr.config import compose
from tp2detr.data.samples import Sample
from tp2detr.evaluation.evaluate import evaluate_on_protocol, evaluate_proposals
from tp2detr.evaluation.map_by_length import ANET_ABSOLUTE_BINS_S, length_bins_for
from tp2detr.evaluation.tables import format_recall, format_table
from tp2detr.engine.device import autocast_dtype, select_device
from tp2detr.engine.proposal_inference import (
    WindowPrediction,
    boxes_to_segments,
    predict_batches,
    video_proposals,
    window_predictions_from_outputs,
)
from tp2detr.evaluation import (
    DEFAULT_ABSOLUTE_BINS_S,
    DEFAULT_RELATIVE_BINS,
    WindowProposals,
    average_precision_detection,
    average_recall_vs_proposals,
    map_by_absolute_length,
    map_by_relative_length,
    stitch_videos,
)

FPS = 3.75  # THUMOS: 30 fps / 8 frames per snippet


def window_sample(video: str, start: int, end: int, fps: float = FPS) -> Sample:
    """A THUMOS-style window sample (offset = start / fps, duration = (end - start) / fps)."""
    return Sample(video, start, end, end - start + 1, start / fps, max(end - start, 1) / fps, np.zeros((0, 2)), fps)


class FixedOutputs(nn.Module):
    """Returns the next rows of fixed boxes / logits for each batch and records how it was called."""

    def __init__(self, boxes: torch.Tensor, logits: torch.Tensor) -> None:
        super().__init__()
        self.boxes, self.logits = boxes, logits  # [n_dec, B, Q, 2], [n_dec, B, Q]
        self.weight = nn.Parameter(torch.ones(1))
        self.calls: list[dict] = []
        self.seen = 0

    def forward(self, feats: torch.Tensor, mask: torch.Tensor) -> dict:
        self.calls.append(
            {
                "training": self.training,
                "inference_mode": torch.is_inference_mode_enabled(),
                "autocast": torch.is_autocast_enabled("cpu"),
                "autocast_dtype": torch.get_autocast_dtype("cpu"),
                "batch": feats.shape[0],
            }
        )
        rows = slice(self.seen, self.seen + feats.shape[0])
        self.seen += feats.shape[0]
        return {"boxes": self.boxes[:, rows] * self.weight, "actionness": self.logits[:, rows], "salient": {}}


def batch_of(samples: list[Sample], channels: int = 4) -> dict:
    t = max(s.length for s in samples)
    return {
        "feats": torch.zeros(len(samples), t, channels),
        "mask": torch.zeros(len(samples), t, dtype=torch.bool),
        "samples": samples,
    }


def test_boxes_map_to_seconds_from_the_last_decoder_layer() -> None:
    samples = [window_sample("v", 0, 127), window_sample("v", 96, 223), window_sample("w", 0, 40)]
    last = torch.tensor(
        [
            [[0.5, 0.2], [0.05, 0.3], [0.9, 0.4]],  # second and third get clamped at 0 / 1
            [[0.25, 0.5], [0.5, 1.0], [0.75, 0.1]],
            [[0.1, 0.1], [0.3, 0.2], [0.6, 0.6]],
        ]
    )
    first = torch.full_like(last, 0.5)
    logits_last = torch.tensor([[2.0, -1.0, 0.0], [0.5, 1.5, -3.0], [0.1, 0.2, 0.3]])
    model = FixedOutputs(torch.stack([first, last]), torch.stack([torch.zeros(3, 3), logits_last]))
    loader = [batch_of(samples[:2]), batch_of(samples[2:])]
    predictions = predict_batches(model, loader, "cpu")
    assert [p.sample for p in predictions] == samples
    for b, (prediction, sample) in enumerate(zip(predictions, samples)):
        c, w = last[b, :, 0].double(), last[b, :, 1].double()
        se = torch.stack([(c - w / 2).clamp(0, 1), (c + w / 2).clamp(0, 1)], dim=1).numpy()
        np.testing.assert_allclose(prediction.relative_segments, se * sample.duration, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(prediction.segments, sample.offset + se * sample.duration, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(prediction.scores, torch.sigmoid(logits_last[b]).double().numpy(), rtol=1e-6)
        assert prediction.segments.dtype == np.float64 and prediction.scores.dtype == np.float64
        assert prediction.segments.shape == (3, 2)
    # hand-computed: window 2 starts at 96 / 3.75 = 25.6 s and lasts 127 / 3.75 s
    duration = 127 / FPS
    assert predictions[1].segments[1] == pytest.approx([25.6 + 0.0, 25.6 + duration])
    assert predictions[0].segments[1, 0] == 0.0 and predictions[0].segments[2, 1] == pytest.approx(duration)


def test_predict_runs_in_eval_inference_mode_and_restores_training() -> None:
    model = FixedOutputs(torch.full((2, 2, 2, 2), 0.5), torch.zeros(2, 2, 2))
    model.train()
    predict_batches(model, [batch_of([window_sample("v", 0, 9)])], torch.device("cpu"))
    assert model.calls[0]["training"] is False and model.calls[0]["inference_mode"] is True
    assert model.calls[0]["autocast"] is False
    assert model.training is True
    model.eval()
    predict_batches(model, [batch_of([window_sample("v", 0, 9)])], "cpu", amp_dtype=torch.bfloat16)
    assert model.calls[1]["autocast"] is True and model.calls[1]["autocast_dtype"] == torch.bfloat16
    assert model.training is False


def test_outputs_computed_in_bf16_are_post_processed_in_float() -> None:
    boxes = torch.tensor([[[[0.5, 0.2]]]], dtype=torch.bfloat16)
    out = window_predictions_from_outputs(
        {"boxes": boxes, "actionness": torch.zeros(1, 1, 1, dtype=torch.bfloat16)}, [window_sample("v", 0, 3)]
    )
    assert out[0].scores.dtype == np.float64 and out[0].scores[0] == 0.5


def test_keeps_all_queries_up_to_100_then_the_top_100() -> None:
    sample = window_sample("v", 0, 127)
    torch.manual_seed(0)
    for queries, kept in ((40, 40), (100, 100), (130, 100)):
        boxes = torch.rand(1, 1, queries, 2) * 0.5 + 0.25
        logits = torch.randn(1, 1, queries)
        out = window_predictions_from_outputs({"boxes": boxes, "actionness": logits}, [sample])[0]
        assert len(out.scores) == kept
        best = np.sort(torch.sigmoid(logits[0, 0]).double().numpy())[::-1][:kept]
        np.testing.assert_allclose(np.sort(out.scores)[::-1], best, rtol=1e-6)


def test_malformed_outputs_are_rejected_with_shapes() -> None:
    with pytest.raises(ValueError, match=r"boxes \[n_dec, B, Q, 2\]"):
        window_predictions_from_outputs(
            {"boxes": torch.zeros(1, 2, 2), "actionness": torch.zeros(1, 2)}, [window_sample("v", 0, 3)]
        )
    with pytest.raises(ValueError, match="batch of 2 but 1 samples"):
        window_predictions_from_outputs(
            {"boxes": torch.zeros(1, 2, 3, 2), "actionness": torch.zeros(1, 2, 3)}, [window_sample("v", 0, 3)]
        )


def test_boxes_to_segments_clamps() -> None:
    out = boxes_to_segments(torch.tensor([[0.1, 0.4], [0.5, 0.2], [0.95, 0.3]]))
    torch.testing.assert_close(out, torch.tensor([[0.0, 0.3], [0.4, 0.6], [0.8, 1.0]]))


def prediction(sample: Sample, normalised: list[list[float]], scores: list[float]) -> WindowPrediction:
    relative = np.asarray(normalised, dtype=np.float64).reshape(-1, 2) * sample.duration
    return WindowPrediction(sample, relative, relative + sample.offset, np.asarray(scores, dtype=np.float64))


def overlapping_windows() -> list[WindowPrediction]:
    """Two overlapping windows of video ``a`` (snippets 0-127 and 96-223) and one window of ``b``.

    The overlap is snippets 96..127 = 25.6 .. 33.87 s. Window 1's proposal [0.8, 0.95] (27.1 .. 32.2 s)
    and window 2's [0.05, 0.2] (26.6 .. 31.7 s) overlap with IoU > 0.4, so NMS drops the lower one.
    """
    w1, w2, w3 = window_sample("a", 0, 127), window_sample("a", 96, 223), window_sample("b", 0, 60)
    return [
        prediction(w1, [[0.1, 0.3], [0.8, 0.95]], [0.9, 0.6]),
        prediction(w2, [[0.05, 0.2], [0.5, 0.7]], [0.8, 0.7]),
        prediction(w3, [[0.2, 0.4], [0.5, 0.6]], [0.4, 0.5]),
    ]


def test_sliding_windows_are_stitched_as_the_stitching_module_does() -> None:
    windows = overlapping_windows()
    merged = video_proposals(windows, nms_threshold=0.4)
    expected = stitch_videos(
        {
            "a": [
                WindowProposals(w.sample.start, w.sample.end, FPS, w.relative_segments, w.scores) for w in windows[:2]
            ],
            "b": [WindowProposals(0, 60, FPS, windows[2].relative_segments, windows[2].scores)],
        },
        iou_threshold=0.4,
    )
    assert list(merged) == ["a", "b"]
    for video in expected:
        np.testing.assert_array_equal(merged[video][0], expected[video][0])
        np.testing.assert_array_equal(merged[video][1], expected[video][1])
    assert len(merged["a"][1]) == 3 and 0.6 not in merged["a"][1].tolist()  # the cross-window duplicate went
    # stitched video seconds are exactly the window predictions' own video-time segments
    own = {tuple(row) for w in windows[:2] for row in w.segments.tolist()}
    assert {tuple(row) for row in merged["a"][0].tolist()} <= own


def test_without_nms_every_proposal_is_kept_by_descending_score_per_window() -> None:
    windows = overlapping_windows()
    merged = video_proposals(windows, nms_threshold=None)
    assert merged["a"][1].tolist() == [0.9, 0.6, 0.8, 0.7]
    np.testing.assert_array_equal(merged["a"][0][2], windows[1].segments[0])
    assert merged["b"][1].tolist() == [0.5, 0.4]
    np.testing.assert_array_equal(merged["b"][0], windows[2].segments[::-1])


def test_a_video_with_one_window_is_the_same_with_and_without_nms() -> None:
    windows = overlapping_windows()[2:]
    with_nms, without = video_proposals(windows, 0.4), video_proposals(windows, None)
    np.testing.assert_array_equal(with_nms["b"][0], without["b"][0])
    np.testing.assert_array_equal(with_nms["b"][1], without["b"][1])


def test_input_order_and_repeated_windows_do_not_change_the_result() -> None:
    windows = overlapping_windows()
    reference = video_proposals(windows, 0.4)
    shuffled = [windows[2], windows[1], windows[0], windows[1]]  # a distributed sampler repeats samples
    again = video_proposals(shuffled, 0.4)
    assert list(again) == list(reference)
    for video in reference:
        np.testing.assert_array_equal(again[video][0], reference[video][0])
        np.testing.assert_array_equal(again[video][1], reference[video][1])


def test_zero_length_proposals_are_dropped_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    sample = window_sample("v", 0, 127)
    windows = [prediction(sample, [[0.2, 0.5], [1.0, 1.0], [0.0, 0.0]], [0.9, 0.8, 0.7])]
    with caplog.at_level(logging.DEBUG, logger="tp2detr.engine.proposal_inference"):
        for threshold in (0.4, None):
            merged = video_proposals(windows, threshold)
            assert merged["v"][1].tolist() == [0.9]
            assert (merged["v"][0][:, 1] > merged["v"][0][:, 0]).all()
    assert sum("2 zero-length proposals dropped" in r.message for r in caplog.records) == 2
    only_zero = video_proposals([prediction(sample, [[1.0, 1.0]], [0.5])], None)
    assert only_zero["v"][0].shape == (0, 2) and only_zero["v"][1].shape == (0,)


def test_dataset_configs_stitch_sliding_windows_and_not_resized_videos() -> None:
    for dataset in ("thumos14", "thumos14_synth", "toy", "anet13", "anet13_synth"):
        ds = compose([f"dataset={dataset}"]).dataset
        assert (ds.evaluation.nms_threshold is not None) == (ds.windowing.mode == "sliding"), dataset


def test_device_and_precision_selection() -> None:
    assert select_device("cpu") == torch.device("cpu")
    assert select_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="expected 'auto', 'cpu' or 'cuda'"):
        select_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            select_device("cuda")
    assert autocast_dtype("fp32") is None and autocast_dtype("bf16") == torch.bfloat16
    with pytest.raises(ValueError, match="precision is 'fp16'"):
        autocast_dtype("fp16")


# --- evaluation glue --------------------------------------------------------------------------------


def random_case(seed: int) -> tuple[dict, dict, dict]:
    rng = np.random.default_rng(seed)
    gt, predictions, durations = {}, {}, {}
    for v in range(6):
        video = f"video_{v}"
        durations[video] = float(rng.uniform(60, 200))
        starts = rng.uniform(0, durations[video] - 30, size=rng.integers(1, 6))
        gt[video] = np.stack([starts, starts + rng.uniform(0.5, 25, size=len(starts))], axis=1)
        p_starts = rng.uniform(0, durations[video] - 30, size=20)
        predictions[video] = (np.stack([p_starts, p_starts + rng.uniform(0.5, 25, size=20)], axis=1), rng.random(20))
    return gt, predictions, durations


def test_evaluate_proposals_equals_the_evaluation_functions() -> None:
    gt, predictions, durations = random_case(1)
    tiou, ar_tiou = (0.3, 0.4, 0.5, 0.6, 0.7), tuple(np.linspace(0.5, 1.0, 11))
    metrics = evaluate_proposals(predictions, gt, durations, tiou, ar_tiou, breakdown=True)
    detection = average_precision_detection(gt, predictions, tiou)
    assert metrics["tiou"] == list(tiou)
    assert metrics["ap"] == {k: pytest.approx(v, abs=0) for k, v in detection.to_dict()["ap"].items()}
    assert metrics["mAP"] == detection.mean_ap and 0 < metrics["mAP"] < 1
    assert metrics["ar"] == average_recall_vs_proposals(gt, predictions, ar_tiou).summary()
    absolute = map_by_absolute_length(gt, predictions, tiou, DEFAULT_ABSOLUTE_BINS_S)
    relative = map_by_relative_length(gt, predictions, durations, tiou, DEFAULT_RELATIVE_BINS)
    assert metrics["breakdown"]["absolute_s"] == [b.to_dict(np.asarray(tiou)) for b in absolute]
    assert metrics["breakdown"]["relative"] == [b.to_dict(np.asarray(tiou)) for b in relative]
    assert metrics["num_videos"] == 6 and metrics["num_gt"] == sum(len(g) for g in gt.values())
    assert metrics["num_predictions"] == 120


def test_predictions_on_videos_without_ground_truth_are_dropped() -> None:
    gt, predictions, durations = random_case(2)
    gt_with_empty = {**gt, "no_gt": np.zeros((0, 2))}
    extra = {
        **predictions,
        "no_gt": (np.array([[0.0, 5.0]] * 10), np.ones(10)),
        "unknown": (np.array([[1.0, 2.0]]), np.ones(1)),
    }
    plain = evaluate_proposals(predictions, gt, durations, (0.5,), None, breakdown=False)
    dropped = evaluate_proposals(extra, gt_with_empty, durations, (0.5,), None, breakdown=False)
    assert dropped == plain and plain["ar"] is None and plain["breakdown"] is None
    # counted as false positives they would lower the AP: the drop is what keeps it equal
    assert average_precision_detection(gt, extra, (0.5,)).ap[0] < plain["ap"]["0.5"]


def test_no_ground_truth_is_an_error() -> None:
    with pytest.raises(ValueError, match="ground_truth: found 0 instances in 1 videos"):
        evaluate_proposals({}, {"v": np.zeros((0, 2))}, {}, (0.5,), None, breakdown=False)


def test_length_bins_follow_the_dataset() -> None:
    assert length_bins_for("thumos14_synth") == (DEFAULT_ABSOLUTE_BINS_S, DEFAULT_RELATIVE_BINS)
    assert length_bins_for("toy")[0] == DEFAULT_ABSOLUTE_BINS_S
    assert length_bins_for("anet13")[0] == ANET_ABSOLUTE_BINS_S and ANET_ABSOLUTE_BINS_S[-1][1] == math.inf


def test_evaluate_on_protocol_uses_the_dataset_thresholds_and_ground_truth() -> None:
    from tp2detr.data.bundle import load_data

    cfg = compose(["dataset=toy", "split.id=1"])
    protocol = load_data(cfg).protocol
    perfect = {video: (segs, np.linspace(1.0, 0.5, len(segs))) for video, segs in protocol.eval_ground_truth.items()}
    metrics = evaluate_on_protocol(perfect, protocol, cfg.dataset)
    assert metrics["tiou"] == list(cfg.dataset.evaluation.tiou_thresholds)
    assert all(value == 1.0 for value in metrics["ap"].values()) and metrics["mAP"] == 1.0
    assert metrics["num_gt"] == sum(len(s) for s in protocol.eval_ground_truth.values())
    assert metrics["ar"]["AR@100"] == 1.0
    assert metrics["breakdown"]["absolute_s"][0]["bin"] == "[0, 2)"
    assert metrics["breakdown"]["relative"] is not None
    bare = evaluate_on_protocol(perfect, protocol, cfg.dataset, breakdown=False, with_ar=False)
    assert bare["ar"] is None and bare["breakdown"] is None and bare["ap"] == metrics["ap"]


def test_format_table_prints_percent_with_two_decimals() -> None:
    row = {"tiou": [0.3, 0.5], "ap": {"0.3": 0.51234, "0.5": 0.2}, "mAP": 0.35617, "ar": {"AR@1": 0.1, "AUC": 0.25}}
    table = format_table({"split 0": row, "split 1 (failed)": None}, (0.3, 0.5))
    lines = table.splitlines()
    assert lines[0] == "| | mAP@0.3 | mAP@0.5 | AVG |"
    assert lines[1] == "|---|---:|---:|---:|"
    assert lines[2] == "| split 0 | 51.23 | 20.00 | 35.62 |"
    assert lines[3] == "| split 1 (failed) | — | — | — |"
    assert format_table({"x": row}, (0.3, 0.7)).splitlines()[2] == "| x | 51.23 | — | 35.62 |"
    assert format_recall(row) == "AR@1 10.00 | AUC 25.00"
    assert format_recall({"ar": None}) == ""
