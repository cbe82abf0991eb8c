"""The CLIP image tower that turns video frames into projected image embeddings.

The model (``transformers.CLIPVisionModelWithProjection``) and its image processor come from a
local folder, or from the user's Hugging Face cache when a hub id such as
``openai/clip-vit-base-patch16`` is given; both are loaded with ``local_files_only=True``, so
nothing is ever downloaded. A full CLIP checkpoint (text and image towers) works too: its image
tower and projection are loaded, the text tower is ignored.

A frame's feature is the model's ``image_embeds``: the pooled CLS token passed through the visual
projection, ``[D]`` with ``D`` = ``projection_dim`` (512 for the ViT-B CLIP models), not
L2-normalised unless asked (``l2_normalize``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tp2detr.errors import ExtractionError
from tp2detr.extraction.dependencies import require

logger = logging.getLogger(__name__)


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or Path(name).expanduser().exists()


def resolve_model_source(name_or_path: str | Path) -> str:
    """The string to give ``from_pretrained``: an existing folder (made absolute, ``~``
    expanded), else a hub id.

    Raises:
        ExtractionError: ``name_or_path`` looks like a path but is no folder.
    """
    name = str(name_or_path)
    if _looks_like_path(name):
        folder = Path(name).expanduser()
        if not folder.is_dir():
            raise ExtractionError(
                f"clip_model {name}: no such folder; expected a folder holding a saved CLIP model "
                f"(config.json + weights + preprocessor_config.json) or a Hugging Face model id"
            )
        return str(folder.resolve())
    return name


class ClipFrameEncoder:
    """RGB frames → CLIP image embeddings ``[N, D]`` float32, in batches, without autograd.

    Args:
        model: a ``CLIPVisionModelWithProjection`` (moved to ``device`` and put in eval mode here).
        processor: its image processor (resize, centre crop, normalise).
        device: where the model runs.
        batch_size: frames per forward pass.
        l2_normalize: divide each frame embedding by its L2 norm.
        source: where the model came from, for messages and the extraction settings.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        processor: Any,
        device: torch.device | str = "cpu",
        batch_size: int = 64,
        l2_normalize: bool = False,
        source: str = "",
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size is {batch_size}, expected a positive number of frames")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.processor = processor
        self.batch_size = int(batch_size)
        self.l2_normalize = bool(l2_normalize)
        self.source = source

    @classmethod
    def load(
        cls,
        name_or_path: str | Path,
        device: str = "auto",
        batch_size: int = 64,
        l2_normalize: bool = False,
    ) -> ClipFrameEncoder:
        """Load the model and processor from a folder or the Hugging Face cache (never downloads).

        Args:
            name_or_path: a folder written by ``save_pretrained`` or a hub id already in the cache.
            device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.

        Raises:
            ExtractionError: the folder does not exist, or the model or processor is neither there
                nor in the cache (the message says how to get it).
            ImportError: transformers is not installed.
        """
        from tp2detr.engine.device import select_device

        transformers = require("transformers", "loading a CLIP model")
        source = resolve_model_source(name_or_path)
        resolved_device = select_device(device)
        try:
            model = transformers.CLIPVisionModelWithProjection.from_pretrained(source, local_files_only=True)
            processor = transformers.AutoImageProcessor.from_pretrained(source, local_files_only=True)
        except (OSError, ValueError) as err:
            raise ExtractionError(
                f"clip_model {source}: cannot load a CLIP image model and its image processor "
                f"({' '.join(str(err).split())}); nothing is downloaded: expected a local folder "
                f"written by save_pretrained, or a model id already in the Hugging Face cache "
                f"(fetch it once with: huggingface-cli download {source})"
            ) from err
        model = model.float()  # the checkpoint may store half precision; embeddings are float32
        logger.info("CLIP image model %s on %s (embedding dim %d)", source, resolved_device, model.config.projection_dim)
        return cls(model, processor, resolved_device, batch_size, l2_normalize, source=source)

    @property
    def dim(self) -> int:
        """The embedding dimension ``D`` (the model's ``projection_dim``)."""
        return int(self.model.config.projection_dim)

    def pixel_values(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        """The processor's input tensor ``[N, 3, S, S]`` float32 for RGB frames ``[H, W, 3]`` uint8."""
        batch = self.processor(images=list(frames), return_tensors="pt", input_data_format="channels_last")
        return batch["pixel_values"]

    def embed(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """Embed RGB frames (each ``[H, W, 3]`` uint8) → float32 ``[len(frames), D]`` on the CPU.

        Runs ``batch_size`` frames per forward pass under ``torch.inference_mode``.
        """
        outputs = [np.zeros((0, self.dim), dtype=np.float32)]
        with torch.inference_mode():
            for start in range(0, len(frames), self.batch_size):
                pixels = self.pixel_values(frames[start : start + self.batch_size]).to(self.device)
                embeds = self.model(pixel_values=pixels).image_embeds.float()
                if self.l2_normalize:
                    embeds = torch.nn.functional.normalize(embeds, dim=-1)
                outputs.append(embeds.cpu().numpy())
        return np.concatenate(outputs, axis=0)

    def __repr__(self) -> str:
        return f"ClipFrameEncoder({self.source!r}, device={self.device}, batch_size={self.batch_size})"
