"""Command-line entry points (Hydra apps): ``train.py`` / ``tp2detr-train``, ``eval.py`` / ``tp2detr-eval``
and ``predict.py``; ``hydra_app`` is how each of them composes its config and reports a user error."""
