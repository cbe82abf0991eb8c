"""Building TP²-DETR from the ``model``, ``tfpn`` and ``salient`` config groups."""

from __future__ import annotations

from omegaconf import DictConfig

from tp2detr.models.detector import TP2DETR
from tp2detr.models.heads import PredictionHeads
from tp2detr.models.salient import SalientHeads
from tp2detr.models.tfpn import build_tfpn
from tp2detr.models.transformer import DeformableTransformer


def build_model(cfg: DictConfig) -> TP2DETR:
    """The model described by ``cfg.model``, ``cfg.tfpn`` and ``cfg.salient``.

    Parameters are initialised from the global torch RNG: seed it first for reproducibility.
    """
    m, t, s = cfg.model, cfg.tfpn, cfg.salient
    d_model = int(m.d_model)
    tfpn = build_tfpn(
        str(t.name),
        d_model=d_model,
        num_levels=int(t.num_levels),
        stem_layers=int(t.stem_layers),
        window_size=int(t.window_size),
        qkv_norm=bool(t.qkv_norm),
        num_heads=int(m.n_heads),
        attn_dropout=float(t.attn_dropout),
        proj_dropout=float(t.proj_dropout),
        sgp_window_size=int(t.sgp_window_size),
        sgp_mlp_dim=int(t.sgp_mlp_dim),
        sgp_mean_over_valid=bool(t.sgp_mean_over_valid),
    )
    transformer = DeformableTransformer(
        d_model=d_model,
        n_heads=int(m.n_heads),
        n_levels=tfpn.num_levels,
        n_encoder_layers=int(m.encoder_layers),
        n_decoder_layers=int(m.decoder_layers),
        dim_feedforward=int(m.dim_feedforward),
        dropout=float(m.dropout),
        encoder_points=int(m.encoder_points),
        decoder_points=int(m.decoder_points),
        num_queries=int(m.num_queries),
        box_refine=bool(m.box_refine),
        backend=str(m.attn_backend),
    )
    heads = PredictionHeads(
        d_model=d_model,
        n_decoder_layers=int(m.decoder_layers),
        separate=bool(m.separate_heads),
        init=str(m.get("head_init", "shared")),
    )
    salient = SalientHeads(
        d_model=d_model,
        num_levels=tfpn.num_levels,
        mode=str(s.mode),
        design=str(s.design),
        fusion=str(s.fusion),
        upsample=str(s.upsample),
    )
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
