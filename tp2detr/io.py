"""Reading JSON inputs strictly, and atomic file writes: a crash or a full disk never leaves a
half-written file behind.

:func:`read_json` refuses a missing, empty or invalid file and a key given twice in one object
(``json`` would keep the last silently: a video id listed twice); :func:`finite_number` is the
number check of every JSON input. Both raise the project's errors naming the file and field.

Writes: the content goes to a temporary file in the destination folder, is flushed and fsync-ed, then
renamed over the destination (``os.replace`` is atomic on POSIX). On any error the temporary file
is removed and the previous file, if any, is untouched.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path next to ``path`` for a writer that needs a file name (e.g. h5py).

    On clean exit the temporary file is fsync-ed, given the usual mode (mkstemp makes 0600) and
    renamed onto ``path``; on error it is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file next to ``path``; on clean exit rename it to ``path``."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open: mode must be 'w' or 'wb', found {mode!r}")
    with atomic_path(path) as tmp, open(tmp, mode) as handle:
        yield handle
        handle.flush()


def json_bytes(obj: Any, indent: int | None = 2) -> bytes:
    """``obj`` as the bytes of a JSON file (UTF-8, a final newline)."""
    return (json.dumps(obj, indent=indent) + "\n").encode()


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    """Write ``obj`` as JSON to ``path`` atomically."""
    atomic_write_bytes(path, json_bytes(obj, indent))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def atomic_write_group(files: list[tuple[str | os.PathLike, bytes]]) -> None:
    """Write several files so that either all of them change or none does.

    Each content goes to a temporary file beside its destination (in the order given: put the
    largest, e.g. a checkpoint, first), is flushed and fsync-ed; only when every one is written
    are they renamed onto their destinations, in the same order. A failure while writing (a full
    disk) removes the temporary files and leaves every destination as it was.

    Raises:
        OutputWriteError: a file could not be written; names it and the OS's reason.
    """
    from tp2detr.errors import OutputWriteError

    written: list[tuple[str, Path]] = []
    try:
        for path, data in files:
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            written.append((tmp, path))
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
            except OSError as err:
                raise OutputWriteError(
                    f"{path}: cannot write ({err.strerror or err}); none of "
                    f"{', '.join(str(Path(p).name) for p, _ in files)} was changed"
                ) from err
            os.chmod(tmp, 0o666 & ~_current_umask())
    except BaseException:
        for tmp, _ in written:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise
    for tmp, path in written:
        os.replace(tmp, path)


def read_json(path: str | os.PathLike) -> Any:
    """Decode the JSON file ``path``.

    Raises:
        MissingDataError: no such file.
        DataFormatError: empty, not valid JSON, or a key given twice in one object.
    """
    from tp2detr.errors import DataFormatError, MissingDataError

    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"{path}: file not found, expected a JSON file")
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise DataFormatError(f"{path}: file is empty ({path.stat().st_size} bytes), expected a JSON object")

    def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for key, value in pairs:
            if key in obj:
                raise DataFormatError(
                    f"{path}: entry {key!r} is given twice in one object (e.g. a video id listed twice); "
                    "expected each key once"
                )
            obj[key] = value
        return obj

    try:
        return json.loads(text, object_pairs_hook=unique_keys)
    except json.JSONDecodeError as err:
        raise DataFormatError(f"{path}: not valid JSON ({err}), expected a JSON object") from err


def finite_number(value: Any, field: str, path: str | os.PathLike) -> float:
    """``value`` as a float when it is a finite JSON number (not a bool); else
    :class:`~tp2detr.errors.DataFormatError` naming ``path`` and ``field``."""
    from tp2detr.errors import DataFormatError

    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataFormatError(f"{path}: {field} is {value!r} ({type(value).__name__}), expected a number")
    if not math.isfinite(value):
        raise DataFormatError(f"{path}: {field} is {value!r}, expected a finite number")
    return float(value)
