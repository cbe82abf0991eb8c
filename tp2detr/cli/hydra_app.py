"""Running a Hydra-configured command (``train.py``, ``eval.py``, ``predict.py``) as a function
with an exit status, and the one way every command reports a user's mistake.

Exit status: 0 success; 2 a user error (bad data, a bad config value, a Hydra composition error
such as an unknown key or group choice, a checkpoint that does not fit): one ``error: ...`` line
on stderr naming the file or key, what was found and what was expected, no traceback (with
``HYDRA_FULL_ERROR=1`` the traceback is printed above that line); 3 training diverged
(``train.py``); anything else is a bug and keeps its traceback (exit 1).
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from tp2detr.config import CONFIG_DIR, normalise_overrides
from tp2detr.errors import TP2DETRError, TrainingDiverged
from tp2detr.stored_config import refuse_moved_keys

#: Errors that are the user's to fix (exit status 2). ``OSError`` covers unreadable or unwritable
#: paths and a full disk; the project's own errors name the file or key.
USER_ERRORS: tuple[type[BaseException], ...] = (TP2DETRError, OSError)
EXIT_USER_ERROR = 2
EXIT_DIVERGED = 3

#: ``run(cfg, command-line overrides, output folder) -> exit status`` (or ``(status, value)``:
#: the value is returned to Hydra, e.g. for a sweeper that optimises it).
CommandRun = Callable[[DictConfig, list[str], Path], "int | tuple[int, Any]"]


def one_line(err: BaseException) -> str:
    """The error's message on one line (whitespace runs folded)."""
    return " ".join(str(err).split()) or type(err).__name__


def report_error(err: BaseException) -> int:
    """Print ``error: <message>`` to stderr (the traceback above it when ``HYDRA_FULL_ERROR=1``);
    return the exit status of its kind (3 for a divergence, else 2)."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        traceback.print_exception(err, file=sys.stderr)
    prefix = "training diverged" if isinstance(err, TrainingDiverged) else "error"
    print(f"{prefix}: {one_line(err)}", file=sys.stderr, flush=True)
    return EXIT_DIVERGED if isinstance(err, TrainingDiverged) else EXIT_USER_ERROR


def is_multirun(args: Sequence[str]) -> bool:
    return any(a in ("-m", "--multirun") for a in args)


def first_of_each_sweep(overrides: Sequence[str]) -> list[str]:
    """``overrides`` with each sweep (``a=1,2``, ``range(3)``) replaced by its first value, so the
    first job of a multirun can be composed up front. Unparsable overrides are kept as given
    (composing them then reports the syntax error)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException:
        return list(overrides)
    out = []
    for override in parsed:
        if override.is_sweep_override():
            try:
                first = next(iter(override.sweep_string_iterator()))
            except Exception:  # noqa: BLE001 - e.g. glob() needs Hydra's config loader: leave it to Hydra
                continue
            out.append(f"{override.get_key_element()}={first}")
        else:
            out.append(override.input_line)
    return out


def compose_up_front(config_name: str, args: Sequence[str]) -> DictConfig:
    """Compose ``configs/<config_name>.yaml`` (with Hydra's own config) from the command-line
    ``args`` as Hydra will, before Hydra starts: a composition error becomes a
    :class:`~tp2detr.errors.ConfigError`. Flags (``-m``, ``--cfg``, ...) are ignored; a sweep is
    composed with its first value."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from tp2detr.errors import ConfigError

    overrides = first_of_each_sweep([a for a in args if not a.startswith("-")])
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(f"the command line does not compose: {one_line(err)}") from err
    finally:
        GlobalHydra.instance().clear()


def run_hydra_command(
    config_name: str,
    run: CommandRun,
    argv: Sequence[str] | None = None,
    check: Callable[[DictConfig], None] | None = None,
    moved_keys: Mapping[str, str] | None = None,
) -> int:
    """Compose ``configs/<config_name>.yaml`` with ``argv`` (default ``sys.argv[1:]``; split names
    such as ``50_50`` are quoted for Hydra first, :func:`tp2detr.config.normalise_overrides`) under
    Hydra and call ``run`` with the config, the overrides as given and Hydra's output folder.

    The command line is composed once up front, so an unknown key or group choice is a user error
    (exit 2) before Hydra makes any folder; ``check(cfg)`` (e.g. the value rules of
    :mod:`tp2detr.config_checks`) runs on that composition too, except in a multirun, where each
    job checks its own values. A :data:`USER_ERRORS` exception from ``run`` is reported by
    :func:`report_error`; any other exception keeps its traceback. ``moved_keys`` (``{old key: new
    key}``) are refused before anything else, naming the new key
    (:func:`tp2detr.stored_config.refuse_moved_keys`).

    Returns:
        ``run``'s exit status (0 when Hydra itself handled the call, e.g. ``--help``).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if moved_keys:
        try:
            refuse_moved_keys(args, moved_keys, f"{config_name}.py")
        except USER_ERRORS as err:
            return report_error(err)
    args = normalise_overrides(args)
    flags = [a for a in args if a.startswith("-")]
    if all(flag in ("-m", "--multirun") for flag in flags):  # not --help, --cfg, -c, ...
        try:
            composed = compose_up_front(config_name, args)
            if check is not None and not is_multirun(args):
                check(composed)
        except USER_ERRORS as err:
            return report_error(err)
    outcome: dict[str, int] = {}

    @hydra.main(config_path=str(CONFIG_DIR), config_name=config_name, version_base="1.3")
    def app(cfg: DictConfig) -> Any:
        hydra_cfg = HydraConfig.get()
        try:
            result = run(cfg, list(hydra_cfg.overrides.task), Path(hydra_cfg.runtime.output_dir))
        except USER_ERRORS as err:
            outcome["status"] = report_error(err)
            return None
        status, value = result if isinstance(result, tuple) else (result, None)
        outcome["status"] = max(outcome.get("status", 0), int(status))
        return value

    saved_argv = sys.argv
    sys.argv = [saved_argv[0], *args]
    try:
        app()
    finally:
        sys.argv = saved_argv
    return outcome.get("status", 0)


def run_script(main: Callable[[list[str]], int], argv: Sequence[str] | None = None) -> int:
    """Run a script's ``main(argv)`` (``scripts/*.py``): a user error — the project's own, an
    ``OSError``, or a Hydra composition error from its overrides — becomes the one
    ``error: ...`` line and exit status 2 (:func:`report_error`); anything else keeps its
    traceback."""
    try:
        return int(main(list(sys.argv[1:] if argv is None else argv)) or 0)
    except (*USER_ERRORS, HydraException, OmegaConfBaseException) as err:
        return report_error(err)
