"""The tiny model on the toy dataset that the engine and command-line tests train (seconds per run)."""

from __future__ import annotations


def tiny_model(num_queries: int = 6) -> list[str]:
    """Overrides for a one-encoder-layer, two-decoder-layer model on ``dataset=toy``."""
    return ["dataset=toy", "model.dim_feedforward=32", "model.encoder_layers=1", "model.decoder_layers=2",
            f"model.num_queries={num_queries}"]


def tiny_training(epochs: int = 1, num_queries: int = 6, eval_batch_size: int = 16, ar: bool = False,
                  breakdown: bool = False) -> list[str]:
    """:func:`tiny_model` trained ``epochs`` epochs at batch 4, without progress bars; AR@AN and
    the per-length breakdown only when asked (they are the slow part of a toy evaluation)."""
    return [*tiny_model(num_queries), "optim.batch_size=4", f"optim.epochs={epochs}", "trainer.progress=false",
            f"trainer.eval_batch_size={eval_batch_size}", f"trainer.breakdown={str(breakdown).lower()}",
            f"trainer.ar={str(ar).lower()}"]
