"""Command-line entry points (Hydra apps): ``train.py`` / ``tp2detr-train`` and ``eval.py`` / ``tp2detr-eval``."""
