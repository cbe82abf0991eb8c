"""The numbers behind the figures: selections, curves, correlations, histograms, breakdown files."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tp2detr.config import compose
from tp2detr.data.annotations import load_annotations
from tp2detr.data.bundle import load_data
from tp2detr.evaluation.evaluate import evaluate_proposals
from tp2detr.errors import DataFormatError, MissingDataError
from tp2detr.evaluation import average_precision_detection
from tp2detr.viz.map_by_length_figure import breakdown_runs, load_breakdown
from tp2detr.viz.canvas import file_stem
from tp2detr.viz.confidence import confidence_points, correlations
from tp2detr.viz.durations import (
    action_durations,
    annotation_durations,
    duration_histograms,
    histogram_counts,
)
from tp2detr.viz.precision_recall import precision_recall_curves
from tp2detr.losses.hungarian_matcher import build_matcher
from tp2detr.viz.proposal_timelines import (
    assign_lanes,
    mean_best_tiou,
    normalised_centre_width,
    score_logits,
    top_k_by_matching_cost,
    top_k_by_score,
)
from tp2detr.viz.report import example_videos
from released_config import released_matcher

# --- proposals: top-k by score and by Hungarian matching cost ------------------------------------------

GT = np.array([[10.0, 20.0], [50.0, 60.0]])
#            A: exact gt0   B: near gt1    C: far, best score  D: far, second score
PROPOSALS = np.array([[10.0, 20.0], [50.0, 61.0], [30.0, 40.0], [70.0, 90.0]])
SCORES = np.array([0.6, 0.55, 0.9, 0.85])


def test_top_k_by_score_takes_the_best_scores_and_ignores_where_they_are() -> None:
    assert top_k_by_score(SCORES, len(GT)).tolist() == [2, 3]
    assert top_k_by_score(np.array([0.5, 0.7, 0.5]), 3).tolist() == [1, 0, 2]  # ties keep input order
    assert top_k_by_score(SCORES, 10).tolist() == [2, 3, 0, 1]


def test_top_k_by_matching_cost_picks_each_ground_truths_obvious_proposal() -> None:
    matcher = released_matcher()
    proposals, gts = top_k_by_matching_cost(PROPOSALS, SCORES, GT, 100.0, matcher)
    assert proposals.tolist() == [0, 1] and gts.tolist() == [0, 1]
    # the same assignment as the training matcher on the normalised (centre, width) inputs
    rows, cols = matcher(
        torch.from_numpy(normalised_centre_width(PROPOSALS, 100.0))[None],
        torch.from_numpy(score_logits(SCORES))[None],
        [torch.from_numpy(normalised_centre_width(GT, 100.0))],
    )[0]
    assert sorted(zip(cols.tolist(), rows.tolist())) == list(zip(gts.tolist(), proposals.tolist()))
    # GT order decides the output order; fewer proposals than GT assigns what there is
    proposals, gts = top_k_by_matching_cost(PROPOSALS, SCORES, GT[::-1], 100.0, matcher)
    assert proposals.tolist() == [1, 0] and gts.tolist() == [0, 1]
    proposals, gts = top_k_by_matching_cost(PROPOSALS[:1], SCORES[:1], GT, 100.0, matcher)
    assert proposals.tolist() == [0] and gts.tolist() == [0]
    empty = top_k_by_matching_cost(np.zeros((0, 2)), np.zeros(0), GT, 100.0, matcher)
    assert [len(x) for x in empty] == [0, 0]


def test_matching_cost_weights_come_from_the_config() -> None:
    matcher = build_matcher(compose([]).loss.matcher)
    assert (matcher.cost_l1, matcher.cost_iou, matcher.cost_focal) == (5.0, 2.0, 2.0)
    # only the focal cost: the two highest scores win, wherever they are
    focal_only = released_matcher(cost_l1=0.0, cost_iou=0.0, cost_focal=1.0)
    proposals, _ = top_k_by_matching_cost(PROPOSALS, SCORES, GT, 100.0, focal_only)
    assert sorted(proposals.tolist()) == [2, 3]
    with pytest.raises(ValueError, match="loss.matcher: missing"):
        build_matcher({"cost_l1": 5})


def test_score_logits_invert_the_sigmoid_and_survive_0_and_1() -> None:
    scores = np.array([0.1, 0.5, 0.9])
    np.testing.assert_allclose(torch.sigmoid(torch.from_numpy(score_logits(scores))).numpy(), scores)
    assert np.isfinite(score_logits(np.array([0.0, 1.0]))).all()


def test_mean_best_tiou_and_lanes() -> None:
    assert mean_best_tiou(PROPOSALS[[0, 2]], GT) == pytest.approx(0.5)
    assert math.isnan(mean_best_tiou(np.zeros((0, 2)), GT))
    segments = np.array([[0.0, 10.0], [5.0, 15.0], [10.0, 20.0], [6.0, 7.0], [30.0, 31.0]])
    lanes = assign_lanes(segments)
    assert lanes.tolist() == [0, 1, 0, 2, 0]
    for lane in set(lanes.tolist()):
        on_lane = segments[lanes == lane][np.argsort(segments[lanes == lane, 0])]
        assert (on_lane[1:, 0] >= on_lane[:-1, 1]).all()


def test_example_videos_are_those_with_the_most_ground_truth() -> None:
    gt = {"b": np.zeros((3, 2)), "a": np.zeros((3, 2)), "c": np.zeros((5, 2)), "d": np.zeros((0, 2))}
    assert example_videos(gt, 2) == ["c", "a"]
    assert example_videos(gt, 10) == ["c", "a", "b"]
    assert file_stem("v_a/b c") == "v_a_b_c"


# --- precision-recall: the evaluator's points -------------------------------------------------------------


def test_precision_recall_points_on_a_hand_made_video() -> None:
    gt = {"v": np.array([[0.0, 10.0]])}
    predictions = {"v": (np.array([[0.0, 10.0], [20.0, 30.0], [1.0, 10.0]]), np.array([0.9, 0.8, 0.7]))}
    curves = precision_recall_curves(gt, predictions, [0.5])
    # the third proposal overlaps the GT (tIoU 0.9) but it is already taken: a false positive
    np.testing.assert_allclose(curves.precision[0], [1.0, 0.5, 1.0 / 3.0])
    np.testing.assert_allclose(curves.recall[0], [1.0, 1.0, 1.0])
    assert curves.average_precision.tolist() == [1.0]


def _random_case(seed: int) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    gt, predictions = {}, {}
    for v in range(5):
        starts = rng.uniform(0, 100, size=rng.integers(1, 6))
        gt[f"v{v}"] = np.stack([starts, starts + rng.uniform(1, 15, size=len(starts))], axis=1)
        count = int(rng.integers(0, 30))
        centres = rng.uniform(0, 110, size=count)
        widths = rng.uniform(0.5, 20, size=count)
        scores = rng.choice([0.1, 0.3, 0.5, 0.7, 0.9], size=count) if v % 2 else rng.uniform(size=count)  # ties too
        predictions[f"v{v}"] = (np.stack([centres - widths / 2, centres + widths / 2], axis=1), scores)
    predictions["no_gt"] = (np.array([[0.0, 5.0]]), np.array([0.95]))  # a false positive for the evaluator
    return gt, predictions


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ap_of_the_curve_equals_the_evaluators_ap(seed: int) -> None:
    gt, predictions = _random_case(seed)
    thresholds = [0.3, 0.5, 0.7]
    curves = precision_recall_curves(gt, predictions, thresholds)
    assert curves.precision.shape == (len(thresholds), sum(len(s) for _, s in predictions.values()))
    expected = average_precision_detection(gt, predictions, thresholds).ap
    np.testing.assert_allclose(curves.average_precision, expected, rtol=0, atol=1e-12)
    assert (np.diff(curves.recall, axis=1) >= 0).all()
    # per video, and the protocol's numbers (videos without GT dropped) as eval_metrics.json has them
    for video in gt:
        one = precision_recall_curves({video: gt[video]}, {video: predictions[video]}, thresholds)
        np.testing.assert_allclose(
            one.average_precision,
            average_precision_detection({video: gt[video]}, {video: predictions[video]}, thresholds).ap,
            atol=1e-12,
        )
    kept = {video: entry for video, entry in predictions.items() if video in gt}
    metrics = evaluate_proposals(kept, gt, {}, thresholds, None, breakdown=False)
    protocol_curves = precision_recall_curves(gt, kept, thresholds)
    assert protocol_curves.average_precision.tolist() == pytest.approx(
        [metrics["ap"][key] for key in ("0.3", "0.5", "0.7")], abs=1e-12
    )


# --- confidence vs best tIoU -------------------------------------------------------------------------------


def test_confidence_points_on_a_hand_made_example() -> None:
    gt = {"a": np.array([[0.0, 10.0], [20.0, 30.0]]), "c": np.zeros((0, 2))}
    predictions = {
        "a": (np.array([[0.0, 10.0], [5.0, 15.0], [40.0, 50.0], [18.0, 30.0]]), np.array([0.9, 0.5, 0.1, 0.7])),
        "b": (np.array([[0.0, 10.0]]), np.array([0.99])),  # no GT: not a point
        "c": (np.array([[0.0, 10.0]]), np.array([0.98])),  # no instance: not a point
    }
    points = confidence_points(gt, predictions)
    np.testing.assert_allclose(points.scores, [0.9, 0.5, 0.1, 0.7])
    np.testing.assert_allclose(points.best_tiou, [1.0, 5.0 / 15.0, 0.0, 10.0 / 12.0])
    assert points.num_videos == 1
    corr = correlations(points)
    assert corr.pearson == pytest.approx(np.corrcoef(points.scores, points.best_tiou)[0, 1])
    assert corr.spearman == pytest.approx(1.0)  # the scores rank the tIoUs perfectly
    flat = confidence_points(gt, {"a": (np.array([[0.0, 10.0], [1.0, 9.0]]), np.array([0.5, 0.5]))})
    assert all(math.isnan(x) for x in (correlations(flat).pearson, correlations(flat).spearman))


# --- durations -----------------------------------------------------------------------------------------


def test_duration_histograms_count_every_annotated_instance() -> None:
    annotations = load_annotations(compose(["dataset=toy"]).dataset.annotations)
    every = annotation_durations(annotations)
    instances = [i for v in annotations.videos.values() for i in v.instances]
    assert len(every.seconds) == len(every.relative) == len(instances) > 0
    edges = (0.0, 2.0, 5.0, math.inf)
    counts = histogram_counts(every.seconds, edges)
    assert counts.tolist() == [
        sum(1 for i in instances if low <= i.length < high) for low, high in itertools.pairwise(edges)
    ]
    test = annotation_durations(annotations, subset="test", ignore_labels=("Ambiguous",))
    assert len(test.seconds) == sum(
        1 for v in annotations.videos.values() if v.subset == "test" for i in v.instances if i.label != "Ambiguous"
    )
    histograms = duration_histograms({"all": every, "test": test})
    assert [int(h.sum()) for h in histograms["all"]] == [len(instances), len(instances)]
    assert [int(h.sum()) for h in histograms["test"]] == [len(test.seconds), len(test.relative)]
    with pytest.raises(ValueError, match="no video of subset 'nope'"):
        annotation_durations(annotations, subset="nope")
    # the protocol's videos work the same way
    protocol = load_data(compose(["dataset=toy"])).protocol
    evaluation = action_durations(protocol.eval_videos)
    assert len(evaluation.seconds) == sum(len(s) for s in protocol.eval_ground_truth.values())


def test_histogram_counts_bin_edges() -> None:
    values = np.array([0.0, 0.05, 0.0999, 0.1, 0.95, 1.0, 1.2])
    # [0, .1) [.1, .95) [.95, 1] and beyond: the last bin is closed and takes what lies above it
    assert histogram_counts(values, (0.0, 0.1, 0.95, 1.0)).tolist() == [3, 1, 3]
    with pytest.raises(ValueError, match="increasing"):
        histogram_counts(values, (0.0, 0.0))


# --- breakdown files -----------------------------------------------------------------------------------------

BREAKDOWN = {
    "absolute_s": [
        {"bin": "[0, 2)", "low": 0.0, "high": 2.0, "n_gt": 3, "ap": {"0.5": 0.25}, "mAP": 0.25},
        {"bin": "[2, inf]", "low": 2.0, "high": None, "n_gt": 0, "ap": None, "mAP": None},
    ],
    "relative": None,
}


def test_breakdown_is_read_from_eval_and_training_metrics(tmp_path: Path) -> None:
    evaluated = tmp_path / "eval"
    evaluated.mkdir()
    (evaluated / "eval_metrics.json").write_text(
        json.dumps({"dataset": "toy", "split": "50_50", "split_id": 1, "epoch": 4, "eval": {"breakdown": BREAKDOWN}})
    )
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text(
        json.dumps({"name": "demo", "dataset": "toy", "split": "50_50", "split_id": 0,
                    "selected": {"epoch": 2, "eval": {"breakdown": BREAKDOWN}}})
    )
    assert load_breakdown(evaluated) == ("toy 50_50/1 (epoch 4)", BREAKDOWN)
    assert load_breakdown(run / "metrics.json") == ("demo toy 50_50/0", BREAKDOWN)
    runs = breakdown_runs([run, run])
    assert list(runs) == ["demo toy 50_50/0", "demo toy 50_50/0 #2"]
    assert list(breakdown_runs([run, evaluated], labels=["x", "y"])) == ["x", "y"]
    (run / "metrics.json").write_text(json.dumps({"selected": {"eval": {"breakdown": None}}}))
    with pytest.raises(DataFormatError, match="trainer.breakdown=true"):
        load_breakdown(run)
    with pytest.raises(MissingDataError, match="no eval_metrics.json or metrics.json"):
        load_breakdown(tmp_path)
