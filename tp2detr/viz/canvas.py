"""Matplotlib figures without pyplot: a new :class:`~matplotlib.figure.Figure` on the Agg canvas,
saved atomically as a PNG.

Nothing here touches ``matplotlib.pyplot`` (no global figure registry, no interactive backend,
never ``plt.show``), so figures can be made from library code, tests and headless servers alike.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tp2detr.io import atomic_path

#: Resolution of saved figures: 100 dpi keeps a 10 × 4 in figure at 1000 × 400 px, a few tens of KB.
DEFAULT_DPI = 100

#: Colours shared by the figures (paper Fig. 8: encoder blue, TFPN green, proposals red).
GROUND_TRUTH_COLOUR = "#404040"
ENCODER_COLOUR = "tab:blue"
TFPN_COLOUR = "tab:green"
PROPOSAL_COLOUR = "tab:red"

_UNSAFE_FILE_CHARACTERS = re.compile(r"[^A-Za-z0-9_.-]+")


def new_figure(width_in: float, height_in: float) -> Figure:
    """A blank figure of ``width_in`` × ``height_in`` inches with constrained layout, on an Agg canvas."""
    if not (width_in > 0 and height_in > 0):
        raise ValueError(f"figure size: expected positive inches, found {width_in} × {height_in}")
    figure = Figure(figsize=(width_in, height_in), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_png(figure: Figure, path: str | os.PathLike, dpi: int = DEFAULT_DPI) -> Path:
    """Write ``figure`` as a PNG to ``path`` atomically (temp file + rename) and return the path.

    Raises:
        ValueError: ``path`` does not end in ``.png`` or ``dpi`` is not positive.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"{path}: expected a .png file name, found suffix {path.suffix!r}")
    if dpi <= 0:
        raise ValueError(f"dpi: expected a positive number, found {dpi}")
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=dpi)
    return path


def file_stem(name: str) -> str:
    """``name`` made safe as a file-name part: runs of characters other than letters, digits,
    ``_``, ``.`` and ``-`` become one ``_`` (e.g. a video id)."""
    stem = _UNSAFE_FILE_CHARACTERS.sub("_", str(name)).strip("._")
    return stem or "unnamed"
