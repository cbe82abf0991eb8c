"""The optional packages feature extraction needs (``pip install -e .[video]``).

PyAV and transformers are imported only when a video is decoded or a CLIP model loaded, so
``tp2detr.extraction`` imports without them and says what to install when they are used.
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: The pyproject extra that installs PyAV and transformers.
VIDEO_EXTRA = "video"


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise ``ImportError`` naming the extra that installs it.

    Args:
        module: the importable name (``"av"``, ``"transformers"``).
        purpose: what it is needed for, for the message (``"decoding videos"``).
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"{purpose} needs the Python package '{module}', which is not installed; "
            f"install the optional dependencies with: pip install -e '.[{VIDEO_EXTRA}]'"
        ) from err
