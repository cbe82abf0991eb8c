"""Checkpoints: written atomically, read safely (``weights_only=True``), checked against the model.

A checkpoint is a dict (see :data:`FORMAT`): ``model`` (state_dict), ``optimizer``, ``scheduler``,
``scaler`` (or None), ``epoch`` (completed epochs), ``step_in_epoch`` (optimizer steps already
taken in the next epoch, for a checkpoint written on interruption; 0 otherwise), ``rng``,
``config`` (the resolved config as a plain dict) and ``metrics`` (the history so far).

Reading one back for inference (``eval.py`` checkpoint mode, ``predict.py``): :func:`load_checkpoint`,
:func:`unwrap_state_dict` and :func:`check_architecture` for the weights; :func:`checkpoint_config`
for the config (the stored one, paths rebased, the command line's keys applied on top:
:mod:`tp2detr.stored_config`); :func:`inference_settings` for how to run it (``trainer.device``,
``trainer.precision``, ``trainer.eval_batch_size`` of that config: the stored run's unless given on
the command line).
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from tp2detr.config import repo_root
from tp2detr.engine.device import resolve_precision, select_device
from tp2detr.errors import TP2DETRError
from tp2detr.io import atomic_write_bytes
from tp2detr.stored_config import apply_overrides, rebase_paths

log = logging.getLogger(__name__)

FORMAT = "tp2detr-checkpoint-v1"
#: Prefixes a wrapped model adds to its state_dict keys (DDP, ``torch.compile``).
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


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


def unwrap_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip a prefix that every key shares and a wrapper adds (:data:`WRAPPER_PREFIXES`)."""
    state = dict(state_dict)
    for prefix in WRAPPER_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def stored_config(state: Mapping[str, Any], source: str) -> DictConfig:
    """The run's config stored in a checkpoint (its ``config`` field), as an OmegaConf config.

    Raises:
        CheckpointError: the field is not a dict.
    """
    stored = state.get("config")
    if not isinstance(stored, Mapping):
        raise CheckpointError(
            f"{source}: field 'config' is {type(stored).__name__}, expected the run's config as a dict"
        )
    return OmegaConf.create(dict(stored))


def checkpoint_config(
    state: Mapping[str, Any],
    composed: DictConfig,
    overrides: Sequence[str],
    source: str,
    app_keys: Collection[str] = (),
) -> DictConfig:
    """The config a checkpoint is run with: stored, paths rebased to this repository, then the
    command-line ``overrides`` applied (all but ``app_keys``, the command's own top-level keys);
    see :func:`tp2detr.stored_config.apply_overrides`."""
    config = stored_config(state, source)
    rebase_paths(config, repo_root())
    return apply_overrides(config, composed, overrides, app_keys)


@dataclass(frozen=True)
class InferenceSettings:
    """How a checkpoint's model is run: ``device``, autocast dtype (None: fp32), the precision's
    resolved name (``fp32`` | ``bf16``, never ``auto``) and windows per batch."""

    device: torch.device
    amp_dtype: torch.dtype | None
    precision: str
    batch_size: int


def inference_settings(cfg: DictConfig) -> InferenceSettings:
    """``trainer.device``, ``trainer.precision`` and ``trainer.eval_batch_size`` of a checkpoint's
    config (:func:`checkpoint_config`: the stored run's values unless given on the command line).

    Raises:
        ConfigError: ``trainer.device=cuda`` without a CUDA device (e.g. a run trained with it,
            evaluated on a CPU machine), a bad precision or bf16 on a CPU without native bf16.
    """
    device = select_device(
        str(cfg.trainer.device), origin=" (the checkpoint's stored value unless given on the command line)"
    )
    amp_dtype = resolve_precision(str(cfg.trainer.precision), device, key="trainer.precision")
    return InferenceSettings(
        device=device,
        amp_dtype=amp_dtype,
        precision="bf16" if amp_dtype is torch.bfloat16 else "fp32",
        batch_size=int(cfg.trainer.eval_batch_size),
    )
