"""Model inputs as index records: which snippets of which video, and what they map to in time.

A :class:`Sample` is built from the protocol alone (no features are read), so counts such as
``scripts/dataset_stats.py`` prints need no feature files.

* ``sliding`` (THUMOS14): one sample per window (docs/fidelity.md §5.5). Training keeps only windows with at
  least one instance; evaluation keeps all windows.
* ``resize`` (ActivityNet1.3): one sample per video, the whole video resampled to ``size`` snippets;
  normalised 1.0 is the video's ``snippet_duration``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np

from tp2detr.data.protocol import ProtocolVideo
from tp2detr.data.windows import Window, instances_in_window, salient_mask, sliding_window_ranges


@dataclass(frozen=True)
class Sample:
    """One model input.

    Attributes:
        video_id: the source video.
        start, end: inclusive snippet range read from the video's features.
        length: T, the number of snippets the model sees (window length, or the resize length).
        offset: seconds of normalised coordinate 0 in the video.
        duration: seconds spanned by normalised coordinates 0 → 1.
        segments: ``[G, 2]`` float64 (start, end) seconds relative to ``offset``, the targets.
        feature_fps: snippets per second of the source video.
    """

    video_id: str
    start: int
    end: int
    length: int
    offset: float
    duration: float
    segments: np.ndarray
    feature_fps: float

    @property
    def num_source_snippets(self) -> int:
        """Snippets read from the feature file."""
        return self.end - self.start + 1

    def normalised_targets(self) -> np.ndarray:
        """``[G, 2]`` (center, width) in [0, 1] of the window/video duration, float32."""
        if len(self.segments) == 0:
            return np.zeros((0, 2), dtype=np.float32)
        se = np.clip(self.segments / self.duration, 0.0, 1.0)
        center = (se[:, 0] + se[:, 1]) / 2
        width = se[:, 1] - se[:, 0]
        return np.stack([center, width], axis=1).astype(np.float32)

    def salient_target(self) -> np.ndarray:
        """``[length]`` float32 0/1 foreground mask (docs/fidelity.md §3)."""
        segs = [(float(s), float(e)) for s, e in self.segments]
        return np.asarray(salient_mask(segs, self.duration, self.length), dtype=np.float32)


def _sliding_samples(
    video: ProtocolVideo, size: int, stride: int, integrity: float, training: bool
) -> list[Sample]:
    info = video.info
    ffps = info.feature_fps
    samples = []
    for s, e in sliding_window_ranges(info.snippet_length, size, stride, training):
        window = Window(video.video_id, s, e, ffps)
        segs = instances_in_window(video.instances, window, integrity)
        if training and not segs:
            continue
        samples.append(
            Sample(video.video_id, s, e, window.length, window.t_start, window.duration,
                   np.asarray(segs, dtype=np.float64).reshape(-1, 2), ffps)
        )
    return samples


def _resize_sample(video: ProtocolVideo, size: int) -> Sample:
    info = video.info
    duration = info.snippet_duration
    segs = np.array([[i.start, i.end] for i in video.instances], dtype=np.float64).reshape(-1, 2)
    segs = np.clip(segs, 0.0, duration)
    return Sample(video.video_id, 0, info.snippet_length - 1, size, 0.0, duration, segs,
                  info.feature_fps)


def build_samples(
    videos: Iterable[ProtocolVideo], windowing: Mapping[str, Any], training: bool
) -> list[Sample]:
    """All samples of ``videos`` under the ``dataset.windowing`` config."""
    mode = windowing["mode"]
    out: list[Sample] = []
    for video in videos:
        if video.info.snippet_length <= 0:
            continue
        if mode == "sliding":
            stride = windowing["train_stride"] if training else windowing["eval_stride"]
            out.extend(_sliding_samples(video, int(windowing["size"]), int(stride),
                                        float(windowing["integrity"]), training))
        elif mode == "resize":
            out.append(_resize_sample(video, int(windowing["size"])))
        else:
            raise ValueError(
                f"dataset.windowing.mode is {mode!r}, expected 'sliding' or 'resize'"
            )
    return out
