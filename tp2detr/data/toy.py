"""A tiny THUMOS-like dataset for fast tests (committed under ``data/toy/``).

Eight invented classes; a ``val`` subset (zero-shot training) and a ``test`` subset (evaluation)
of 16 videos each; 64-400 snippets per video at 30 fps with 8-frame snippets; 1-6 instances per
video from about a snippet to tens of seconds long, a few of them ``Ambiguous`` and one per subset
shorter than a snippet (so the protocol's length filter has something to drop). Every class occurs
in both subsets, so every split has seen-class training GT and unseen-class evaluation GT. Ten
``50_50`` (4/4) and ten ``75_25`` (6/2) splits, pairwise different.

Files, in the real schemas (``data/README.md`` §3): ``annotations.json``, ``feature_info.json``
and ``splits/{50_50,75_25}/{train,test}/split_K.list``. ``scripts/make_toy.py`` regenerates them
byte for byte from the seed. Features come from the synthetic generator (``configs/dataset/toy.yaml``).
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tp2detr.data.synthetic import stable_generator
from tp2detr.io import atomic_write_bytes

TOY_CLASSES = (
    "BarVault",
    "BoxJump",
    "DiscSpin",
    "HoopShot",
    "KettleSwing",
    "PoleClimb",
    "RingToss",
    "SledPush",
)
AMBIGUOUS = "Ambiguous"
FPS = 30.0
FRAMES_PER_SNIPPET = 8
SNIPPET_RANGE = (64, 400)          # inclusive, snippets per video
INSTANCES_RANGE = (1, 6)           # inclusive, instances per video
VIDEOS_PER_SUBSET = 16
AMBIGUOUS_PER_SUBSET = 2
SPLIT_SIZES = {"50_50": 4, "75_25": 6}   # seen classes per split (of 8)
NUM_SPLITS = 10
# (probability, shortest, longest) instance length in seconds; "very short" is 1.3-3 snippets.
LENGTH_KINDS = ((0.2, 0.35, 0.8), (0.4, 1.0, 4.0), (0.3, 4.0, 12.0), (0.1, 12.0, 30.0))
TOO_SHORT_SECONDS = 0.2            # < one snippet (8/30 s): dropped by the protocol


@dataclass(frozen=True)
class ToyDataset:
    """The toy dataset as JSON-ready objects: annotations, feature info and the split lists
    ``{(setting, split_id): (seen classes, unseen classes)}``."""

    annotations: dict[str, Any]
    feature_info: dict[str, Any]
    splits: dict[tuple[str, int], tuple[tuple[str, ...], tuple[str, ...]]]


def _place_instances(rng: np.random.Generator, duration: float, count: int) -> list[list[float]]:
    """Up to ``count`` non-overlapping ``[start, end]`` segments (seconds, 0.1 s grid) in
    ``[0, duration]``, sorted by start."""
    kinds = np.array([k[0] for k in LENGTH_KINDS])
    segments: list[list[float]] = []
    for _ in range(count):
        for _attempt in range(50):
            kind = LENGTH_KINDS[int(rng.choice(len(LENGTH_KINDS), p=kinds / kinds.sum()))]
            length = min(float(rng.uniform(kind[1], kind[2])), 0.4 * duration)
            start = round(float(rng.uniform(0.0, duration - length)), 1)
            end = round(math.floor(min(start + max(length, 0.3), duration) * 10) / 10, 1)
            if end - start < 0.3:
                continue
            if all(end <= s or start >= e for s, e in segments):
                segments.append([start, end])
                break
    return sorted(segments)


def _subset(rng: np.random.Generator, subset: str, prefix: str) -> tuple[dict, dict]:
    database: dict[str, Any] = {}
    feature_info: dict[str, Any] = {}
    slots: list[tuple[str, int]] = []  # (video id, instance index)
    for number in range(1, VIDEOS_PER_SUBSET + 1):
        video_id = f"{prefix}_{number:07d}"
        snippets = int(rng.integers(SNIPPET_RANGE[0], SNIPPET_RANGE[1] + 1))
        frames = snippets * FRAMES_PER_SNIPPET + int(rng.integers(0, FRAMES_PER_SNIPPET))
        frame_duration = frames / FPS
        duration = round(frame_duration - float(rng.uniform(0.0, 0.03)), 3)
        count = int(rng.integers(INSTANCES_RANGE[0], INSTANCES_RANGE[1] + 1))
        segments = _place_instances(rng, duration, count)
        database[video_id] = {
            "subset": subset,
            "duration": duration,
            "fps": FPS,
            "annotations": [{"segment": seg, "label": ""} for seg in segments],
        }
        feature_info[video_id] = {
            "frame_length": frames,
            "frame_duration": round(frame_duration, 6),
            "video_fps": FPS,
            "snippet_length": snippets,
            "snippet_duration": round(snippets * FRAMES_PER_SNIPPET / FPS, 6),
        }
        slots.extend((video_id, i) for i in range(len(segments)))
    # Labels: every class at least once, then Ambiguous, then one too-short instance, then random.
    order = [slots[i] for i in rng.permutation(len(slots))]
    n_classes = len(TOY_CLASSES)
    labels = list(TOY_CLASSES) + [AMBIGUOUS] * AMBIGUOUS_PER_SUBSET
    labels += [TOY_CLASSES[int(i)] for i in rng.integers(0, n_classes, size=len(order) - len(labels))]
    for (video_id, index), label in zip(order, labels):
        database[video_id]["annotations"][index]["label"] = label
    # The instance right after the guaranteed ones becomes shorter than one snippet.
    video_id, index = order[n_classes + AMBIGUOUS_PER_SUBSET]
    segment = database[video_id]["annotations"][index]["segment"]
    segment[1] = round(segment[0] + TOO_SHORT_SECONDS, 1)
    return database, feature_info


def _splits(rng: np.random.Generator) -> dict[tuple[str, int], tuple[tuple[str, ...], tuple[str, ...]]]:
    splits = {}
    for setting, n_seen in SPLIT_SIZES.items():
        combos = list(itertools.combinations(TOY_CLASSES, n_seen))
        chosen = rng.choice(len(combos), size=NUM_SPLITS, replace=False)
        for split_id, combo_index in enumerate(chosen):
            seen = combos[int(combo_index)]
            unseen = tuple(c for c in TOY_CLASSES if c not in seen)
            splits[(setting, split_id)] = (seen, unseen)
    return splits


def make_toy_dataset(seed: int = 0) -> ToyDataset:
    """Build the toy dataset deterministically from ``seed`` (same seed, same bytes)."""
    rng = stable_generator("toy-dataset", seed)
    database, feature_info = {}, {}
    for subset, prefix in (("val", "video_validation"), ("test", "video_test")):
        sub_database, sub_info = _subset(rng, subset, prefix)
        database.update(sub_database)
        feature_info.update(sub_info)
    annotations = {"classes": list(TOY_CLASSES), "database": database}
    return ToyDataset(annotations=annotations, feature_info=feature_info, splits=_splits(rng))


def toy_files(dataset: ToyDataset) -> dict[str, bytes]:
    """The dataset's files as ``{relative path: bytes}`` (the committed ``data/toy/`` layout)."""
    files = {
        "annotations.json": (json.dumps(dataset.annotations, indent=1) + "\n").encode(),
        "feature_info.json": (json.dumps(dataset.feature_info, indent=1) + "\n").encode(),
    }
    for (setting, split_id), (seen, unseen) in sorted(dataset.splits.items()):
        for part, names in (("train", seen), ("test", unseen)):
            files[f"splits/{setting}/{part}/split_{split_id}.list"] = "".join(f"{n}\n" for n in names).encode()
    return files


def write_toy_dataset(out_dir: str | Path, seed: int = 0) -> list[Path]:
    """Write the toy dataset under ``out_dir`` (each file atomically); returns the paths written."""
    out_dir = Path(out_dir)
    written = []
    for relative, data in toy_files(make_toy_dataset(seed)).items():
        path = out_dir / relative
        atomic_write_bytes(path, data)
        written.append(path)
    return written
