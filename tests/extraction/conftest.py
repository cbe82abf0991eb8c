"""Shared fixtures for the extraction tests: a tiny random CLIP image model saved to disk, its
encoder, and short synthetic videos (built by tests/helpers/video_test_fixtures.py).

The fixtures import PyAV / transformers only when used; test modules that need them skip
themselves with ``pytest.importorskip`` when they are not installed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="module", autouse=True)
def _tiny_models_on_one_thread(one_thread):
    """Every extraction test module runs its tiny CLIP models on one intra-op thread."""


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> Path:
    """A folder holding a tiny random CLIPVisionModelWithProjection (projection 512) + processor."""
    from video_test_fixtures import make_tiny_clip

    return make_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))


@pytest.fixture(scope="session")
def encoder(tiny_clip):
    """The tiny model loaded as a :class:`ClipFrameEncoder` on the CPU, 16 frames per batch."""
    from tp2detr.extraction.clip_encoder import ClipFrameEncoder

    return ClipFrameEncoder.load(tiny_clip, device="cpu", batch_size=16)


@pytest.fixture(scope="session")
def video_50(tmp_path_factory) -> Path:
    """A 50-frame 64×48 video at 25 fps (written once; copy it, do not modify it)."""
    from video_test_fixtures import write_test_video

    return write_test_video(tmp_path_factory.mktemp("videos") / "clip50.mp4", frames=50, fps=25, size=(64, 48))


@pytest.fixture
def copy_video(video_50):
    """``copy_video(dest)``: copy the 50-frame video to ``dest`` and return ``dest``."""

    def copy(dest: Path) -> Path:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(video_50, dest)
        return dest

    return copy
