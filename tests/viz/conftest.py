"""Shared checks of the figure tests: a written PNG decodes and is not blank."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

#: A real figure (axes, text, data) compresses to well above this; a blank canvas to ~2 KB.
MIN_PNG_BYTES = 8_000
#: Figures stay small (the task's budget per figure).
MAX_PNG_BYTES = 150_000


def check_png(path: Path) -> np.ndarray:
    """Assert ``path`` is a decodable, non-trivial PNG of modest size; return its pixels ``[H, W, C]``."""
    assert path.is_file(), f"{path} was not written"
    size = path.stat().st_size
    assert MIN_PNG_BYTES < size < MAX_PNG_BYTES, f"{path}: {size} bytes"
    pixels = imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
    rgb = pixels[..., :3].reshape(-1, 3)
    assert rgb.std(axis=0).max() > 0.05, f"{path}: (nearly) one flat colour"
    packed = (rgb * 255).astype(np.int32) @ np.array([1 << 16, 1 << 8, 1], dtype=np.int32)
    assert len(np.unique(packed)) > 8, f"{path}: too few colours to be a plot"
    return pixels


@pytest.fixture
def png_check():
    return check_png
