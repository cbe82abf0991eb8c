"""Exception types raised on bad input.

Every message names the file or field, what was found and what was expected.
"""


class TP2DETRError(Exception):
    """Base class of the project's own errors."""


class DataFormatError(TP2DETRError, ValueError):
    """An input file (annotations, split list, features, predictions) is malformed."""


class MissingDataError(TP2DETRError, FileNotFoundError):
    """An input file, video or key that the protocol needs does not exist."""


class ExtractionError(TP2DETRError, ValueError):
    """A video cannot be turned into features (unreadable, no video stream, too short), or the
    CLIP model to embed it with cannot be loaded."""
