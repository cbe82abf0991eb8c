"""Zero-shot class splits: which classes are seen in training and which are unseen at evaluation.

A split is a pair of list files, ``{splits_dir}/{setting}/train/split_{id}.list`` (seen classes)
and ``.../test/split_{id}.list`` (unseen classes), one class name per line (GAP's format).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from tp2detr.errors import DataFormatError, MissingDataError

log = logging.getLogger(__name__)

SETTINGS = ("50_50", "75_25")
NUM_SPLITS = 10


@dataclass(frozen=True)
class ZeroShotSplit:
    """Seen (training) and unseen (evaluation) class names of one split."""

    setting: str
    split_id: int
    seen: tuple[str, ...]
    unseen: tuple[str, ...]


def split_list_path(splits_dir: str | Path, setting: str, split_id: int, part: str) -> Path:
    """Path of one split list; ``part`` is ``train`` (seen) or ``test`` (unseen)."""
    return Path(splits_dir) / str(setting) / part / f"split_{int(split_id)}.list"


def read_class_list(path: Path, known_classes: Sequence[str] | None = None) -> tuple[str, ...]:
    """Read one class name per line; every name must be one of ``known_classes`` when given."""
    if not path.is_file():
        raise MissingDataError(f"{path}: split list not found")
    names = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        name = line.strip()
        if not name:
            continue
        if name != line:
            log.warning("%s:%d: stripped surrounding whitespace from %r", path, lineno, line)
        if known_classes is not None and name not in known_classes:
            raise DataFormatError(
                f"{path}:{lineno}: unknown class {name!r}; expected one of the "
                f"{len(known_classes)} annotation classes (e.g. {', '.join(list(known_classes)[:3])})"
            )
        if name in names:
            raise DataFormatError(f"{path}:{lineno}: class {name!r} is listed twice")
        names.append(name)
    if not names:
        raise DataFormatError(f"{path}: no class names found, expected one per line")
    return tuple(names)


def load_split(
    splits_dir: str | Path, setting: str, split_id: int, known_classes: Sequence[str]
) -> ZeroShotSplit:
    """Load and validate split ``setting``/``split_id`` against the annotation class list."""
    setting = str(setting)
    if not isinstance(split_id, int) or isinstance(split_id, bool) or split_id < 0:
        raise DataFormatError(f"split.id is {split_id!r}, expected an integer 0..{NUM_SPLITS - 1}")
    train_path = split_list_path(splits_dir, setting, split_id, "train")
    test_path = split_list_path(splits_dir, setting, split_id, "test")
    if not train_path.parent.is_dir():
        available = sorted(p.name for p in Path(splits_dir).glob("*") if p.is_dir())
        raise MissingDataError(
            f"{train_path.parent}: no split setting {setting!r} in {splits_dir}; "
            f"expected one of {available}"
        )
    seen = read_class_list(train_path, known_classes)
    unseen = read_class_list(test_path, known_classes)
    overlap = sorted(set(seen) & set(unseen))
    if overlap:
        raise DataFormatError(
            f"{train_path} and {test_path}: seen and unseen classes overlap ({', '.join(overlap)}); "
            "expected disjoint lists"
        )
    missing = sorted(set(known_classes) - set(seen) - set(unseen))
    if missing:
        log.warning(
            "split %s/%d covers %d of %d classes; not in either list: %s",
            setting, split_id, len(seen) + len(unseen), len(known_classes), ", ".join(missing[:5]),
        )
    return ZeroShotSplit(setting, split_id, seen, unseen)
