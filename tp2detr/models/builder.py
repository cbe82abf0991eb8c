"""Building TP²-DETR from the ``model``, ``tfpn`` and ``salient`` config groups."""

from __future__ import annotations

from omegaconf import DictConfig

from tp2detr.models.detector import TP2DETR
from tp2detr.models.heads import build_heads
from tp2detr.models.salient import build_salient
from tp2detr.models.tfpn import build_tfpn
from tp2detr.models.transformer import build_transformer


def build_model(cfg: DictConfig) -> TP2DETR:
    """The model described by ``cfg.model``, ``cfg.tfpn`` and ``cfg.salient``: each part is built
    by the function beside its module from its own config group, so every default lives in
    ``configs/`` only.

    Parameters are initialised from the global torch RNG: seed it first for reproducibility.
    """
    d_model, num_heads = int(cfg.model.d_model), int(cfg.model.n_heads)
    tfpn = build_tfpn(cfg.tfpn, d_model=d_model, num_heads=num_heads)
    transformer = build_transformer(cfg.model, num_levels=tfpn.num_levels)
    heads = build_heads(cfg.model)
    salient = build_salient(cfg.salient, d_model=d_model, num_levels=tfpn.num_levels)
    return TP2DETR(tfpn, transformer, heads, salient)


def parameter_breakdown(model: TP2DETR) -> dict[str, int]:
    """Trainable parameters per module, and ``total``."""
    t = model.transformer
    groups = {
        "tfpn": model.tfpn,
        "encoder": t.encoder,
        "decoder": t.decoder,
        "box_heads": model.heads.bbox,
        "actionness_heads": model.heads.actionness,
        "salient": model.salient,
    }
    counts = {name: sum(p.numel() for p in mod.parameters() if p.requires_grad) for name, mod in groups.items()}
    counts["level_embed"] = t.level_embed.numel()
    counts["query_embed"] = t.query_embed.weight.numel()
    counts["reference_points"] = sum(p.numel() for p in t.reference_points.parameters())
    counts["total"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return counts
