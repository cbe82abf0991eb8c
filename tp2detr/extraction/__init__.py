"""CLIP snippet features from video files (``scripts/extract_features.py``).

``video`` decodes (PyAV), ``clip_encoder`` embeds frames (transformers CLIP, local files only),
``snippets`` averages frames into snippets and writes the feature-info entry, ``outputs`` stores
the results resumably, ``extract`` ties them together. PyAV and transformers are optional
(``pip install -e .[video]``) and imported only when used.
"""

from tp2detr.extraction.clip_encoder import ClipFrameEncoder
from tp2detr.extraction.extract import (
    ExtractionSummary,
    FailedVideo,
    VideoFeatures,
    extract_video,
    extract_videos,
)
from tp2detr.extraction.snippets import feature_info_entry
from tp2detr.extraction.video import find_videos, probe_video

__all__ = [
    "ClipFrameEncoder",
    "ExtractionSummary",
    "FailedVideo",
    "VideoFeatures",
    "extract_video",
    "extract_videos",
    "feature_info_entry",
    "find_videos",
    "probe_video",
]
