"""tp2detr: zero-shot temporal action proposal generation with TP²-DETR."""

__version__ = "0.1.0"
