"""Checkpoints: written atomically, read safely (``weights_only=True``), checked against the model.

A checkpoint is a dict (see :data:`FORMAT`): ``model`` (state_dict), ``optimizer``, ``scheduler``,
``scaler`` (or None), ``epoch`` (completed epochs), ``step_in_epoch`` (optimizer steps already
taken in the next epoch, for a checkpoint written on interruption; 0 otherwise), ``rng``,
``config`` (the resolved config as a plain dict) and ``metrics`` (the history so far).
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tp2detr.errors import TP2DETRError
from tp2detr.io import atomic_write_bytes

log = logging.getLogger(__name__)

FORMAT = "tp2detr-checkpoint-v1"


class CheckpointError(TP2DETRError):
    """A checkpoint is missing, unreadable, of another format, or does not fit the model."""


def checkpoint_bytes(state: dict[str, Any]) -> bytes:
    """``state`` serialised as a checkpoint file's bytes (with the :data:`FORMAT` tag)."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buffer)
    return buffer.getvalue()


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Serialise ``state`` in memory, then write it atomically: on any failure (a full disk
    included) the previous file at ``path`` is left intact."""
    atomic_write_bytes(path, checkpoint_bytes(state))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors and plain data only)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for truncated / corrupt / foreign files
        raise CheckpointError(
            f"{path}: cannot read the checkpoint ({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
            "the file is corrupt, truncated, or not a tp2detr checkpoint"
        ) from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path}: format is {found!r}, expected {FORMAT!r}")
    for key in ("model", "config", "epoch"):
        if key not in state:
            raise CheckpointError(f"{path}: missing field {key!r}")
    return state


def check_architecture(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Raise :class:`CheckpointError` listing every missing, unexpected or mis-shaped key."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    mismatched = sorted(
        f"{k} (checkpoint {tuple(state_dict[k].shape)}, model {tuple(own[k].shape)})"
        for k in set(own) & set(state_dict)
        if tuple(own[k].shape) != tuple(state_dict[k].shape)
    )
    if missing or unexpected or mismatched:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if keys:
                shown = ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")
                parts.append(f"{label}: {shown}")
        raise CheckpointError(
            f"{source} does not match the model built from the config; " + "; ".join(parts)
        )
