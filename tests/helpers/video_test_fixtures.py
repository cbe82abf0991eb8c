"""Builders for tests of anything that reads videos or runs CLIP: a tiny randomly initialised
CLIP image model saved like a real one, and short synthetic videos written with PyAV.

Both write only to the given paths and need no network. Used by ``tests/extraction`` and by the
tests of the video-to-proposal tools.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from tp2detr.extraction.dependencies import require

#: Encoders tried, in order, for test videos (all are in FFmpeg builds that PyAV wheels ship).
TEST_VIDEO_CODECS = ("mpeg4", "libx264", "mjpeg")


def make_tiny_clip(folder: str | Path, seed: int = 0, projection_dim: int = 512, image_size: int = 32) -> Path:
    """Save a tiny random ``CLIPVisionModelWithProjection`` and its ``CLIPImageProcessor`` to
    ``folder`` (``save_pretrained``); loadable with ``ClipFrameEncoder.load(folder)``.

    The model: hidden size 32, 1 layer, 2 heads, MLP 64, ``image_size`` pixels in patches of
    ``image_size // 2``, projection ``projection_dim``; weights drawn from ``seed``. The processor
    resizes the shorter side to ``image_size`` and centre-crops ``image_size`` × ``image_size``.

    Returns:
        ``folder``.
    """
    transformers = require("transformers", "building a test CLIP model")
    folder = Path(folder)
    config = transformers.CLIPVisionConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=image_size,
        patch_size=image_size // 2,
        projection_dim=projection_dim,
    )
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = transformers.CLIPVisionModelWithProjection(config)
    finally:
        torch.random.set_rng_state(generator_state)
    model.save_pretrained(folder)
    # transformers 5 without torchvision: the PIL backend (same preprocessing, no fallback warning)
    processor_class = getattr(transformers, "CLIPImageProcessorPil", None)
    if processor_class is None or _has_module("torchvision"):
        processor_class = transformers.CLIPImageProcessor
    processor = processor_class(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    processor.save_pretrained(folder)
    return folder


def synthetic_frame(index: int, size: tuple[int, int] = (64, 48)) -> np.ndarray:
    """Frame ``index`` of :func:`write_test_video`: RGB uint8 ``[height, width, 3]`` — a gradient
    whose colours and a bright square's position change from frame to frame."""
    width, height = size
    y, x = np.mgrid[0:height, 0:width]
    frame = np.stack(
        [
            (x * 4 + index * 9) % 256,
            (y * 5 + index * 17) % 256,
            np.full_like(x, (index * 31) % 256),
        ],
        axis=-1,
    ).astype(np.uint8)
    side = max(2, min(width, height) // 4)
    left = (index * 3) % max(1, width - side)
    top = (index * 2) % max(1, height - side)
    frame[top : top + side, left : left + side] = 255
    return frame


def write_test_video(
    path: str | Path, frames: int = 50, fps: int = 25, size: tuple[int, int] = (64, 48), codec: str | None = None
) -> Path:
    """Write a ``frames``-frame video of ``size`` = (width, height) pixels at ``fps`` to ``path``.

    The container follows the suffix (``.mp4``, ``.avi``, ``.mkv``); the codec is ``codec`` or
    the first of :data:`TEST_VIDEO_CODECS` that this PyAV can encode. ``frames=0`` writes a file
    with a header and no frame. Frame ``k`` is :func:`synthetic_frame` ``(k, size)`` before
    lossy compression.

    Returns:
        ``path``.
    """
    av = require("av", "writing a test video")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if codec is None:
        codec = next(c for c in TEST_VIDEO_CODECS if c in av.codecs_available and _can_encode(av, c))
    width, height = size
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        container.start_encoding()
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(synthetic_frame(index, size), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def _can_encode(av: object, codec: str) -> bool:
    try:
        av.codec.Codec(codec, "w")  # type: ignore[attr-defined]
    except (ValueError, av.error.FFmpegError):  # type: ignore[attr-defined]  # no such encoder in this FFmpeg build
        return False
    return True
