"""A checkpoint's stored config with a command line applied on top of it (``eval.py`` checkpoint
mode, ``predict.py``).

A checkpoint stores its run's resolved config. :func:`apply_overrides` applies the keys given on
the command line, and only those, with the values Hydra composed for them; the command's own keys
(its ``APP_KEYS``: output folder, inputs, figures) are skipped. :func:`rebase_paths` moves the
stored absolute paths of the machine the run was trained on to this repository when they do not
exist here. :func:`refuse_moved_keys` turns a key a command no longer has (``device=cpu``, now
``trainer.device=cpu``) into one error line naming its new key.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, ListConfig, OmegaConf

from tp2detr.config import CONFIG_DIR
from tp2detr.errors import ConfigError

log = logging.getLogger(__name__)


def _is_config_group(key: str) -> bool:
    return "." not in key and (CONFIG_DIR / key).is_dir()


def _plain(value: Any) -> Any:
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def _delete_key(config: DictConfig, key: str) -> None:
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(config, parent_key) if parent_key else config
    if not isinstance(parent, DictConfig) or leaf not in parent:
        raise ConfigError(f"override ~{key}: the checkpoint's config has no key {key!r}, expected an existing key")
    del parent[leaf]


def _top_key(key: str) -> str:
    return key.split(".")[0].split("/")[0]


def apply_overrides(
    stored: DictConfig, composed: DictConfig, overrides: Sequence[str], app_keys: Collection[str] = ()
) -> DictConfig:
    """The checkpoint's config with the command-line ``overrides`` applied on top.

    Each override's value is taken, resolved, from ``composed`` (Hydra's composition of the
    command's config, ``configs/eval.yaml`` or ``configs/predict.yaml``, with the same overrides),
    so values are parsed exactly as Hydra parses them. A group choice (``dataset=toy``) replaces
    the whole group node; ``key=value`` / ``+key=value`` / ``++key=value`` set one key; ``~key``
    deletes it. Overrides of ``app_keys`` (top-level keys: the command's own settings) and
    ``hydra.*`` are skipped. Every other key, ``trainer.precision`` included, is the checkpoint's
    unless given here.

    Args:
        stored: the checkpoint's resolved config.
        composed: the command's composed config.
        overrides: Hydra override strings, in command-line order.
        app_keys: top-level keys of the command's own config, never applied.

    Returns:
        A new config; ``stored`` is not modified.

    Raises:
        ConfigError: ``experiment=`` (a preset cannot be applied to a stored config) or ``~key``
            of a key the checkpoint's config lacks.
    """
    config = OmegaConf.create(OmegaConf.to_container(stored, resolve=True))
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.key_or_group
        top = _top_key(key)
        if top in app_keys or top == "hydra":
            continue
        if key == "experiment":
            raise ConfigError(
                "override experiment=...: a preset cannot be applied to a checkpoint's stored config; "
                "expected single keys (e.g. split.id=3) or group choices (e.g. dataset=thumos14)"
            )
        if override.is_delete():
            _delete_key(config, key)
            continue
        value = _plain(composed[key]) if _is_config_group(key) else _plain(OmegaConf.select(composed, key))
        OmegaConf.update(config, key, value, merge=False, force_add=True)
        log.info("checkpoint config: %s set from the command line", key)
        if top == "paths":
            log.warning(
                "checkpoint config: %s changes that key only; the stored config holds resolved paths, so "
                "override dataset.features.path / dataset.annotations to move the inputs",
                key,
            )
    return config


def _under(value: object, root: str) -> bool:
    return isinstance(value, str) and (value == root or value.startswith(root + "/"))


def rebase_paths(config: DictConfig, new_root: str) -> int:
    """Move paths under the checkpoint's ``paths.root_dir`` that do not exist to ``new_root``.

    A checkpoint stores resolved absolute paths of the machine it was trained on. Every string
    value equal to, or below, its ``paths.root_dir`` that names nothing on this machine is
    rewritten to the same relative path under ``new_root`` (this repository). In place.

    Returns:
        The number of values rewritten.
    """
    old_root = OmegaConf.select(config, "paths.root_dir")
    if not isinstance(old_root, str) or os.path.normpath(old_root) == os.path.normpath(new_root):
        return 0
    old_root = old_root.rstrip("/")
    changed = 0

    def visit(node: DictConfig | ListConfig, where: str) -> None:
        nonlocal changed
        items = node.items() if isinstance(node, DictConfig) else enumerate(node)
        for key, value in list(items):
            field = f"{where}.{key}" if where else str(key)
            if isinstance(value, (DictConfig, ListConfig)):
                visit(value, field)
            elif _under(value, old_root) and not os.path.exists(value):
                node[key] = new_root.rstrip("/") + value[len(old_root) :]
                log.info("checkpoint config: %s %s does not exist here; using %s", field, value, node[key])
                changed += 1

    visit(config, "")
    return changed


def refuse_moved_keys(args: Sequence[str], moved: Mapping[str, str], command: str) -> None:
    """Raise :class:`ConfigError` for a command-line override of a key ``command`` no longer has.

    Hydra would reject ``device=cpu`` with a hint to write ``+device=cpu``, which composes and is
    then ignored; this names the key that replaced it instead (``+``, ``++`` and ``~`` forms too).
    Flags (``-m``) and arguments that do not parse are left to Hydra.

    Args:
        args: the command line's arguments.
        moved: ``{old key: its replacement}``, e.g. ``{"device": "trainer.device"}``.
        command: the script's name for the message (``eval.py``).
    """
    parser = OverridesParser.create()
    problems = []
    for text in args:
        if text.startswith("-"):
            continue
        try:
            key = parser.parse_override(text).key_or_group
        except HydraException:
            continue
        if key in moved:
            value = text.split("=", 1)[1] if "=" in text else "VALUE"
            problems.append(f"{text}: {command} has no key {key!r} any more, expected {moved[key]}={value}")
    if problems:
        raise ConfigError("; ".join(problems))
