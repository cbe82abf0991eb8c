"""Measure how learnable and how hard a synthetic benchmark is, per snippet.

A linear probe (Fisher LDA, shrinkage 1e-3) is fit on the training subset to tell snippets inside
seen-class instances from everything else (the zero-shot protocol: unseen and Ambiguous instances
in training videos are background). On the evaluation subset it reports the ROC AUC of
"unseen-class snippet vs background snippet" (what transfers) next to "seen-class snippet vs
background" (what the class-specific signal adds), and the same AUCs for a threshold on the true
shared action direction (an oracle no model is given). A snippet is "inside" an instance when its
centre time lies in ``[start, end]``.

Usage (same Hydra overrides as everywhere; features are generated in memory, no store needed):

    python scripts/probe_synthetic.py dataset=thumos14_synth split=50_50 split.id=0
    python scripts/probe_synthetic.py dataset=toy dataset.synthetic.noise_scale=0.5

Prints one JSON line.
"""

from __future__ import annotations

import json
import logging
import sys
import time

import numpy as np
from scipy.stats import rankdata

from tp2detr.config import compose
from tp2detr.data.annotations import AnnotatedVideo, FeatureInfo, load_annotations, load_feature_info
from tp2detr.data.splits import load_split
from tp2detr.data.synthetic import SyntheticParams, generate_video_features, shared_action_direction
from tp2detr.cli.hydra_app import run_script

BACKGROUND, SEEN, UNSEEN, OTHER = 0, 1, 2, 3
CATEGORIES = (BACKGROUND, SEEN, UNSEEN, OTHER)
VARIANTS = ("raw", "centred")


def snippet_codes(video: AnnotatedVideo, info: FeatureInfo, seen: set[str], unseen: set[str]) -> np.ndarray:
    """Per-snippet category ``[T]``: background, seen, unseen or other (e.g. Ambiguous); where
    instances overlap, other > unseen > seen."""
    centres = (np.arange(info.snippet_length) + 0.5) / info.feature_fps
    codes = np.full(info.snippet_length, BACKGROUND)
    for instance in video.instances:
        inside = (centres >= instance.start) & (centres <= instance.end)
        code = SEEN if instance.label in seen else UNSEEN if instance.label in unseen else OTHER
        codes[inside] = np.maximum(codes[inside], code)
    return codes


class FisherStatistics:
    """Per-category counts, sums and scatter matrices of snippet features ``[T, D]``."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.counts = np.zeros(len(CATEGORIES))
        self.sums = np.zeros((len(CATEGORIES), dim))
        self.scatters = np.zeros((len(CATEGORIES), dim, dim))

    def add(self, feats: np.ndarray, codes: np.ndarray) -> None:
        for code in CATEGORIES:
            rows = feats[codes == code]
            self.counts[code] += len(rows)
            self.sums[code] += rows.sum(axis=0)
            self.scatters[code] += rows.T @ rows

    def fisher(self, positive: list[int], negative: list[int], shrinkage: float = 1e-3) -> np.ndarray:
        """LDA direction ``[D]`` separating the pooled ``positive`` from the pooled ``negative``
        categories (pooled within-class covariance, shrunk towards a multiple of the identity)."""
        within = np.zeros((self.dim, self.dim))
        means = []
        for group in (positive, negative):
            n = self.counts[group].sum()
            mean = self.sums[group].sum(axis=0) / n
            within += self.scatters[group].sum(axis=0) - n * np.outer(mean, mean)
            means.append(mean)
        within /= self.counts[positive + negative].sum()
        within += shrinkage * np.trace(within) / self.dim * np.eye(self.dim)
        return np.linalg.solve(within, means[0] - means[1])


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """ROC AUC (Mann-Whitney U / n_pos n_neg), ties counted half."""
    if len(positive) == 0 or len(negative) == 0:
        return float("nan")
    ranks = rankdata(np.concatenate([positive, negative]))
    u = ranks[: len(positive)].sum() - len(positive) * (len(positive) + 1) / 2
    return float(u / (len(positive) * len(negative)))


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    cfg = compose(argv)
    ds = cfg.dataset
    if "synthetic" not in ds:
        raise SystemExit(f"dataset={ds.name} has no 'synthetic' block; use a *_synth or toy dataset")
    annotations = load_annotations(ds.annotations)
    feature_info = load_feature_info(ds.feature_info)
    split = load_split(ds.splits_dir, str(cfg.split.setting), int(cfg.split.id), annotations.classes)
    seen, unseen = set(split.seen), set(split.unseen)
    params = SyntheticParams.from_mapping(ds.synthetic)
    seed = int(ds.synthetic.seed)
    excluded = set(ds.exclude_videos)

    def videos(subset: str):
        """(variant -> features [T, D], codes [T]) per video; 'centred' subtracts the video mean."""
        for video_id in sorted(feature_info):
            video = annotations.videos.get(video_id)
            if video is None or video.subset != subset or video_id in excluded:
                continue
            info = feature_info[video_id]
            feats = generate_video_features(video, info, annotations.classes, params, seed).astype(np.float64)
            variants = {"raw": feats, "centred": feats - feats.mean(axis=0, keepdims=True)}
            yield variants, snippet_codes(video, info, seen, unseen)

    stats = {variant: FisherStatistics(params.dim) for variant in VARIANTS}
    for variants, codes in videos(str(ds.train_subset)):
        for variant, feats in variants.items():
            stats[variant].add(feats, codes)

    # protocol: unseen/Ambiguous instances of training videos are background, as in training;
    # clean: those snippets are left out (what the shared signal allows without that handicap).
    # oracle: the true shared action direction, which no model is given.
    action = shared_action_direction(seed, params.dim)
    directions = {}
    for variant in VARIANTS:
        directions[f"{variant}_protocol"] = (variant, stats[variant].fisher([SEEN], [BACKGROUND, UNSEEN, OTHER]))
        directions[f"{variant}_clean"] = (variant, stats[variant].fisher([SEEN], [BACKGROUND]))
        directions[f"{variant}_oracle"] = (variant, action)

    scores: dict[str, list[np.ndarray]] = {name: [] for name in directions}
    all_codes = []
    for variants, codes in videos(str(ds.eval_subset)):
        for name, (variant, direction) in directions.items():
            scores[name].append(variants[variant] @ direction)
        all_codes.append(codes)
    codes = np.concatenate(all_codes)
    background = codes == BACKGROUND
    counts = stats["raw"].counts
    result: dict[str, object] = {
        "dataset": str(ds.name),
        "dim": params.dim,
        "seed": seed,
        "split": f"{cfg.split.setting}/{int(cfg.split.id)}",
        "train_snippets": {name: int(counts[code]) for name, code in
                           (("background", BACKGROUND), ("seen", SEEN), ("unseen", UNSEEN), ("other", OTHER))},
        "eval_snippets": {"background": int(background.sum()), "seen": int((codes == SEEN).sum()),
                          "unseen": int((codes == UNSEEN).sum())},
    }
    for name, parts in scores.items():
        score = np.concatenate(parts)
        result[f"auc_unseen_{name}"] = round(auc(score[codes == UNSEEN], score[background]), 4)
        result[f"auc_seen_{name}"] = round(auc(score[codes == SEEN], score[background]), 4)
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
