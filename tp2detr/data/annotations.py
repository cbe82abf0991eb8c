"""Reading the annotation and feature-info JSON files into typed records.

Schemas (see ``data/README.md``):

* annotations: ``{"classes": [str], "database": {video_id: {"subset": str, "duration": float,
  "annotations": [{"segment": [start_s, end_s], "label": str}], ...}}}``
* feature info: ``{video_id: {"frame_length": int, "frame_duration": s, "video_fps": float,
  "snippet_length": int, "snippet_duration": s}}`` — one feature row per snippet.

A video id given twice is an error (``json`` would silently keep the last record), and so is a
segment that starts before the video (beyond a small clip, :data:`NEGATIVE_START_TOLERANCE_S`).
Times are in seconds. Nothing here applies the zero-shot protocol; see :mod:`tp2detr.data.protocol`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from tp2detr.errors import DataFormatError
from tp2detr.io import finite_number, read_json

log = logging.getLogger(__name__)

#: Segment starts in [-NEGATIVE_START_TOLERANCE_S, 0) are clipped to 0 (an annotation tool's
#: rounding; half a second is under two THUMOS14 snippets) and counted in one warning; an earlier
#: start is an error. The shipped THUMOS14 and ActivityNet1.3 annotations have no negative start.
NEGATIVE_START_TOLERANCE_S = 0.5


@dataclass(frozen=True)
class Instance:
    """One annotated action instance: ``[start, end]`` in seconds and its class name."""

    start: float
    end: float
    label: str

    @property
    def length(self) -> float:
        """Length in seconds."""
        return self.end - self.start


@dataclass(frozen=True)
class AnnotatedVideo:
    """A video's annotation record: subset, duration (s) and instances in file order."""

    video_id: str
    subset: str
    duration: float
    instances: tuple[Instance, ...]


@dataclass(frozen=True)
class FeatureInfo:
    """How a video's features map to time.

    ``snippet_length`` feature rows, each covering ``frames_per_snippet`` frames at ``video_fps``;
    ``snippet_duration`` = snippet_length · frames_per_snippet / video_fps seconds.
    """

    video_id: str
    frame_length: int
    video_fps: float
    snippet_length: int
    snippet_duration: float

    @property
    def frames_per_snippet(self) -> int:
        """Frames summarised by one feature row (8 for THUMOS14, 16 for ActivityNet1.3)."""
        if self.snippet_length <= 0:
            return 0
        return int(round(self.snippet_duration * self.video_fps / self.snippet_length))

    @property
    def feature_fps(self) -> float:
        """Feature rows per second."""
        return self.snippet_length / self.snippet_duration if self.snippet_duration > 0 else 0.0


@dataclass(frozen=True)
class AnnotationSet:
    """All annotations of a dataset: the class list and the per-video records."""

    path: Path
    classes: tuple[str, ...]
    videos: Mapping[str, AnnotatedVideo]


def parse_annotations(obj: Any, path: Path) -> AnnotationSet:
    """Validate an annotation object (already decoded from JSON) and build an :class:`AnnotationSet`."""
    if not isinstance(obj, dict):
        raise DataFormatError(f"{path}: top level is {type(obj).__name__}, expected an object")
    for key in ("classes", "database"):
        if key not in obj:
            raise DataFormatError(f"{path}: missing field '{key}' at the top level")
    classes = obj["classes"]
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise DataFormatError(f"{path}: field 'classes' must be a list of strings")
    if not isinstance(obj["database"], dict):
        raise DataFormatError(f"{path}: field 'database' must be an object mapping video ids")
    videos: dict[str, AnnotatedVideo] = {}
    clipped = 0
    for vid, rec in obj["database"].items():
        where = f"database['{vid}']"
        if not isinstance(rec, dict):
            raise DataFormatError(f"{path}: {where} is {type(rec).__name__}, expected an object")
        for key in ("subset", "annotations", "duration"):
            if key not in rec:
                raise DataFormatError(f"{path}: {where} is missing field '{key}'")
        duration = finite_number(rec["duration"], f"{where}.duration", path)
        if not isinstance(rec["annotations"], list):
            raise DataFormatError(f"{path}: {where}.annotations must be a list")
        instances = []
        for i, ann in enumerate(rec["annotations"]):
            w = f"{where}.annotations[{i}]"
            if not isinstance(ann, dict) or "segment" not in ann or "label" not in ann:
                raise DataFormatError(f"{path}: {w} must be an object with 'segment' and 'label'")
            seg = ann["segment"]
            if not isinstance(seg, (list, tuple)) or len(seg) != 2:
                raise DataFormatError(f"{path}: {w}.segment is {seg!r}, expected [start, end]")
            start = finite_number(seg[0], f"{w}.segment[0]", path)
            end = finite_number(seg[1], f"{w}.segment[1]", path)
            if start < 0:
                if start < -NEGATIVE_START_TOLERANCE_S:
                    raise DataFormatError(
                        f"{path}: {w}.segment is [{start}, {end}]: the start is before the video begins, "
                        f"expected start >= 0 (starts down to -{NEGATIVE_START_TOLERANCE_S} s are clipped to 0)"
                    )
                clipped += 1
                start = 0.0
            if end < start:
                raise DataFormatError(
                    f"{path}: {w}.segment is [{start}, {end}]: end < start, expected start <= end"
                )
            if not isinstance(ann["label"], str):
                raise DataFormatError(f"{path}: {w}.label is {ann['label']!r}, expected a string")
            instances.append(Instance(start, end, ann["label"]))
        videos[vid] = AnnotatedVideo(vid, str(rec["subset"]), duration, tuple(instances))
    if clipped:
        log.warning("%s: clipped %d segment start(s) slightly below 0 s to 0", path, clipped)
    return AnnotationSet(Path(path), tuple(classes), videos)


def load_annotations(path: str | Path) -> AnnotationSet:
    """Read and validate an ActivityNet-style annotation file."""
    path = Path(path)
    return parse_annotations(read_json(path), path)


def load_feature_info(path: str | Path) -> dict[str, FeatureInfo]:
    """Read and validate a feature-info file: ``{video_id: {...}}`` → ``{video_id: FeatureInfo}``."""
    path = Path(path)
    obj = read_json(path)
    if not isinstance(obj, dict):
        raise DataFormatError(f"{path}: top level is {type(obj).__name__}, expected an object")
    infos: dict[str, FeatureInfo] = {}
    for vid, rec in obj.items():
        where = f"['{vid}']"
        if not isinstance(rec, dict):
            raise DataFormatError(f"{path}: {where} is {type(rec).__name__}, expected an object")
        for key in ("frame_length", "video_fps", "snippet_length", "snippet_duration"):
            if key not in rec:
                raise DataFormatError(f"{path}: {where} is missing field '{key}'")
        fps = finite_number(rec["video_fps"], f"{where}.video_fps", path)
        if fps <= 0:
            raise DataFormatError(f"{path}: {where}.video_fps is {fps}, expected > 0")
        length = rec["snippet_length"]
        if isinstance(length, bool) or not isinstance(length, int) or length < 0:
            raise DataFormatError(
                f"{path}: {where}.snippet_length is {length!r}, expected a non-negative integer"
            )
        infos[vid] = FeatureInfo(
            video_id=vid,
            frame_length=int(finite_number(rec["frame_length"], f"{where}.frame_length", path)),
            video_fps=fps,
            snippet_length=length,
            snippet_duration=finite_number(rec["snippet_duration"], f"{where}.snippet_duration", path),
        )
    return infos
