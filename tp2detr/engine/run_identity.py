"""A run's identity: which configuration keys name its folder and must stay fixed for it to be
resumed, and which may change while it runs.

* **Folder.** ``train.py`` writes into ``runs/<name>/<dataset>/<setting>_split<id><variant>``
  (``configs/hydra/default.yaml``): :func:`variant_suffix` turns the other command-line
  overrides into ``__key=value,key=value`` (sorted, so their order does not matter; hashed when
  long), so two configurations never share a folder and re-running the same command finds the
  same one. Keys that may change mid-run (below) do not name the folder.
* **Resume.** :func:`resume_changes` compares a checkpoint's configuration with the new one:
  identical → resume; differing only in :data:`MUTABLE_KEYS` → resume, and the changes are logged
  and recorded; anything else → :class:`~tp2detr.errors.ConfigError` listing the keys and the two
  ways out (``trainer.resume=false``, a new ``name=``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import Any

from tp2detr.errors import ConfigError

#: Keys (and key prefixes) that may change between a run and its resumption. They are how far to
#: train, how often to evaluate or log, how to run (threads, workers, device, op backend, bars)
#: and where inputs and outputs live — never what is trained.
MUTABLE_KEYS: tuple[str, ...] = (
    "optim.epochs",               # extend (or shorten) the schedule
    "trainer.eval_every",
    "trainer.eval_untrained",     # only read before the first step
    "trainer.eval_batch_size",
    "trainer.ar",
    "trainer.breakdown",
    "trainer.log_every",
    "trainer.progress",
    "trainer.num_threads",
    "trainer.device",
    "trainer.compile",
    "trainer.resume",
    "trainer.divergence",
    "trainer.loss_check",         # when the loss is read back, not what is trained
    "optim.fused",                # the same AdamW update computed by another kernel
    "model.attn_backend",         # the same function computed by another kernel
    "data.num_workers",
    "data.validate",
    "paths",                      # where things live: a moved repository or feature folder
    "dataset.annotations",
    "dataset.feature_info",
    "dataset.splits_dir",
    "dataset.features.path",
    "dataset.features.format",
    "hydra",
    "launcher",
)

#: Keys already in the folder path (``runs/<name>/<dataset>/<setting>_split<id>``) or that only
#: pick those (``experiment`` sets ``name``); matched exactly (``dataset.synthetic.seed=1`` does
#: name a run).
FOLDER_KEYS: tuple[str, ...] = ("name", "experiment", "dataset", "split", "split.setting", "split.id")

_MAX_SUFFIX = 80
_UNSAFE = re.compile(r"[^A-Za-z0-9=,._+\-]")


def _matches(key: str, prefixes: Iterable[str]) -> bool:
    return any(key == p or key.startswith(p + ".") or key.startswith(p + "/") for p in prefixes)


def is_mutable(key: str) -> bool:
    """Whether ``key`` (dotted) may change between a run and its resumption."""
    return _matches(key, MUTABLE_KEYS)


def _override_key(override: str) -> str:
    key = override.split("=", 1)[0].lstrip("+~")
    return key.split("@", 1)[0]


def variant_suffix(overrides: Iterable[str]) -> str:
    """The folder-name suffix of a run's command-line ``overrides`` (Hydra's task overrides):
    ``""`` without any that names a configuration, else ``"__"`` + the overrides joined by ``,``:
    top-level keys such as the group choice ``tfpn=direct`` first, each part sorted; characters
    other than letters, digits and ``=,._+-`` become ``-``; longer than 80 characters: the first
    60 and an 8-digit hash of the whole. :data:`FOLDER_KEYS` (exactly) and :data:`MUTABLE_KEYS`
    (with everything below them) are left out."""
    def names_the_run(override: str) -> bool:
        key = _override_key(override)
        return key not in FOLDER_KEYS and not _matches(key, MUTABLE_KEYS)

    kept = sorted(
        (str(o) for o in overrides if names_the_run(str(o))),
        key=lambda o: ("." in _override_key(o), o),  # top-level keys (group choices: tfpn=direct) first
    )
    if not kept:
        return ""
    text = _UNSAFE.sub("-", ",".join(kept))
    if len(text) > _MAX_SUFFIX:
        digest = hashlib.sha1(",".join(kept).encode()).hexdigest()[:8]
        text = f"{text[:60]}-{digest}"
    return "__" + text


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}`` (lists are leaves)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


_ABSENT = "(absent)"


#: Keys added to the configs after runs were written, with the value that reproduces what those
#: runs did: a checkpoint without the key behaves as if it held that value, so it still resumes.
KEYS_ADDED_LATER: dict[str, Any] = {
    "dataset.evaluation.stitch_deduplicate": False,  # 2026-11-29; the released (and earlier) stitching
}


def config_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(key, old value, new value)`` of every leaf that differs (``"(absent)"`` where missing; an
    absent :data:`KEYS_ADDED_LATER` key of ``old`` counts as its value there)."""
    a, b = flatten(old), flatten(new)
    a = {**{k: v for k, v in KEYS_ADDED_LATER.items() if k not in a and k in b}, **a}
    return [(k, a.get(k, _ABSENT), b.get(k, _ABSENT)) for k in sorted(set(a) | set(b)) if a.get(k, _ABSENT) != b.get(k, _ABSENT)]


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def resume_changes(stored: Mapping[str, Any], current: Mapping[str, Any], source: str) -> list[tuple[str, Any, Any]]:
    """The :data:`MUTABLE_KEYS` changes between the checkpoint's config ``stored`` and ``current``
    (both resolved plain dicts).

    Raises:
        ConfigError: a key outside :data:`MUTABLE_KEYS` differs; the message lists each with both
            values and says how to start over or start a new run.
    """
    differences = config_differences(stored, current)
    fixed = [d for d in differences if not is_mutable(d[0])]
    if fixed:
        listed = "; ".join(f"{k}: checkpoint {_shown(a)}, now {_shown(b)}" for k, a, b in fixed[:12])
        more = f" (and {len(fixed) - 12} more)" if len(fixed) > 12 else ""
        raise ConfigError(
            f"{source}: cannot resume, the configuration differs from the checkpoint's in "
            f"{len(fixed)} key(s) that may not change mid-run: {listed}{more}. Either start over in "
            "this folder with trainer.resume=false (the previous files are kept under superseded/), "
            "or start a new run with name=<new name>. Keys that may change mid-run: "
            + ", ".join(MUTABLE_KEYS)
        )
    return [d for d in differences if is_mutable(d[0])]
