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


class ConfigError(TP2DETRError, ValueError):
    """A configuration value is of the wrong type, out of range, or names nothing that exists
    (``optim.lr=abc``, ``split.id=12``), or a resumed run's configuration differs from its
    checkpoint's in a key that may not change mid-run."""


class TrainingDiverged(TP2DETRError, FloatingPointError):
    """Training diverged: a non-finite loss or model output, or a loss that exploded
    (``trainer.divergence``); the last good checkpoint is kept."""


class OutputWriteError(TP2DETRError, OSError):
    """A run's output file could not be written (a full disk, no permission); the files written
    before are left as they were."""
