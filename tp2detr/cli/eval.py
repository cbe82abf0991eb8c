"""``python eval.py`` (console script ``tp2detr-eval``): evaluate a checkpoint or a results file.

    python eval.py ckpt=outputs/.../checkpoints/last.pt
    python eval.py ckpt=last.pt dataset.features.path=/data/thumos14_clip split.id=3 data.on_missing=skip
    python eval.py predictions=results.json dataset=thumos14 split=50_50 split.id=3

**Checkpoint mode** (``ckpt=``): the model and data are built from the config stored in the
checkpoint; only the keys given on the command line are applied on top of it
(:mod:`tp2detr.stored_config`: a group choice such as ``dataset=thumos14`` replaces the whole
group; ``~key`` deletes). How it runs is read from that config too: ``trainer.device``,
``trainer.precision``, ``trainer.eval_batch_size``, ``trainer.ar``, ``trainer.breakdown`` and
``dataset.evaluation.{nms_threshold, stitch_deduplicate}`` are the stored run's unless given
(``python eval.py ckpt=PATH trainer.device=cpu trainer.precision=fp32``). Keys of
``configs/eval.yaml`` itself (:data:`APP_KEYS`: ``ckpt``, ``out_dir``, ``plots``, ...) are settings
of this command, never of the checkpoint. Paths under the checkpoint's repository root that do not
exist here are looked up under this repository. The model must match the checkpoint's weights key
for key (else the mismatched keys are listed). The protocol's evaluation windows are run through
the model, the proposals stitched (THUMOS) and evaluated.

**Predictions mode** (``predictions=``): an ActivityNet-style results file is evaluated against
the protocol's ground truth of ``dataset`` / ``split`` (no model, no features needed), with the
composed config's ``trainer.ar`` and ``trainer.breakdown``.

Written to ``out_dir`` (default: the Hydra run folder ``outputs/eval/<date>/<time>``):
``predictions.json`` (checkpoint mode; every evaluation video, ActivityNet results format),
``eval_metrics.json`` (see :func:`result_document`), ``eval_config.yaml`` (the config used), and
Hydra's ``.hydra/`` and ``eval.log``. The Table-1 style metrics table is printed. With
``plots=true``, the figures of :mod:`tp2detr.viz.report` go into ``plots/`` (the saliency figures
need a model: checkpoint mode only) and are listed under ``"figures"``.

Exit status: 0 on success; 2 on bad input (one ``error: ...`` line on stderr), a key the command
does not have (an unknown key or group choice, or one of :data:`MOVED_KEYS`, named with its
replacement) included.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from tp2detr.cli.hydra_app import USER_ERRORS, report_error, run_hydra_command
from tp2detr.config_checks import check_config
from tp2detr.errors import ConfigError
from tp2detr.io import atomic_open, atomic_write_json

log = logging.getLogger("tp2detr.eval")

#: Top-level keys of ``configs/eval.yaml`` that configure this command, not the evaluated model.
APP_KEYS = frozenset({"ckpt", "predictions", "out_dir", "plots", "plots_videos"})
#: Errors that mean bad input (exit status 2): the project's own (``CheckpointError`` included),
#: unreadable or unwritable paths, and config keys that cannot be read. Anything else is a bug.
BAD_INPUT_ERRORS = (*USER_ERRORS, OmegaConfBaseException)
#: Keys this command had before it read the training config's own: ``{old: new}``.
MOVED_KEYS = {
    "device": "trainer.device",
    "precision": "trainer.precision",
    "eval.batch_size": "trainer.eval_batch_size",
    "eval.ar": "trainer.ar",
    "eval.breakdown": "trainer.breakdown",
    "eval.stitch_deduplicate": "dataset.evaluation.stitch_deduplicate",
}


def result_document(
    mode: str,
    source: str,
    cfg: DictConfig,
    metrics: dict[str, Any],
    epoch: int | None = None,
    device: str | None = None,
    precision: str | None = None,
    num_windows: int | None = None,
    inference_seconds: float | None = None,
) -> dict[str, Any]:
    """``eval_metrics.json``: ``{"mode": "checkpoint" | "predictions", "source": path, "dataset",
    "split", "split_id", "epoch", "device", "precision", "num_windows", "inference_seconds",
    "eval": METRICS}`` (see :mod:`tp2detr.evaluation.evaluate`); with ``plots=true`` the caller adds
    ``"figures"``: the written PNGs, relative to the output folder."""
    return {
        "mode": mode,
        "source": source,
        "dataset": str(cfg.dataset.name),
        "split": str(cfg.split.setting),
        "split_id": int(cfg.split.id),
        "epoch": epoch,
        "device": device,
        "precision": precision,
        "num_windows": num_windows,
        "inference_seconds": inference_seconds,
        "eval": metrics,
    }


def write_figures(
    app: DictConfig,
    out_dir: Path,
    predictions: Mapping[str, Any],
    protocol: Any,
    cfg: DictConfig,
    metrics: Mapping[str, Any],
    **model_inputs: Any,
) -> list[str]:
    """``plots=true``: :func:`tp2detr.viz.report.write_eval_figures` into ``out_dir/plots`` with
    ``app.plots_videos`` example videos (``model_inputs``: its ``model``, ``dataset``, ``device``
    in checkpoint mode). Returns the written paths relative to ``out_dir``, each one logged."""
    from tp2detr.viz.report import write_eval_figures

    paths = write_eval_figures(
        out_dir / "plots", predictions, protocol, cfg, metrics, num_videos=int(app.get("plots_videos", 3)),
        **model_inputs,
    )
    for path in paths:
        log.info("figure: %s", path)
    return [str(path.relative_to(out_dir)) for path in paths]


def _save_config(path: Path, cfg: DictConfig) -> None:
    with atomic_open(path, "w") as handle:
        handle.write(OmegaConf.to_yaml(cfg, resolve=True))


def evaluate_checkpoint(app: DictConfig, overrides: Sequence[str], out_dir: Path) -> dict[str, Any]:
    """Checkpoint mode (module docstring); returns the ``eval_metrics.json`` document."""
    from torch.utils.data import DataLoader

    from tp2detr.data.bundle import load_data
    from tp2detr.data.feature_setup import build_dataset
    from tp2detr.data.dataset import collate_samples
    from tp2detr.engine.checkpoint import (
        check_architecture,
        checkpoint_config,
        inference_settings,
        load_checkpoint,
        unwrap_state_dict,
    )
    from tp2detr.engine.proposal_inference import predict_batches, video_proposals
    from tp2detr.evaluation.evaluate import evaluate_on_protocol
    from tp2detr.evaluation.results_io import write_predictions
    from tp2detr.models.builder import build_model

    path = Path(str(app.ckpt))
    state = load_checkpoint(path)
    cfg = checkpoint_config(state, app, overrides, str(path), APP_KEYS)
    check_config(cfg, source=f"{path}'s configuration with the command line's overrides")
    settings = inference_settings(cfg)
    model = build_model(cfg)
    weights = unwrap_state_dict(state["model"])
    check_architecture(model, weights, source=str(path))
    model.load_state_dict(weights)
    model.to(settings.device)
    bundle = load_data(cfg)
    dataset = build_dataset(cfg, bundle, training=False)
    loader = DataLoader(
        dataset,
        batch_size=settings.batch_size,
        shuffle=False,
        collate_fn=partial(collate_samples, pad_multiple=model.length_multiple),
        num_workers=int(cfg.data.num_workers),
    )
    log.info(
        "%s (epoch %s): %d evaluation windows on %s, precision %s (trainer.precision=%s)",
        path,
        state["epoch"],
        len(dataset),
        settings.device,
        settings.precision,
        cfg.trainer.precision,
    )
    started = time.perf_counter()
    windows = predict_batches(model, loader, settings.device, settings.amp_dtype)
    seconds = time.perf_counter() - started
    evaluation = cfg.dataset.evaluation
    # a checkpoint written before dataset.evaluation.stitch_deduplicate existed: the released stitching
    predictions = video_proposals(
        windows, evaluation.get("nms_threshold"), bool(evaluation.get("stitch_deduplicate", False))
    )
    metrics = evaluate_on_protocol(
        predictions, bundle.protocol, cfg.dataset, breakdown=bool(cfg.trainer.breakdown), with_ar=bool(cfg.trainer.ar)
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    write_predictions(out_dir / "predictions.json", predictions)
    _save_config(out_dir / "eval_config.yaml", cfg)
    document = result_document(
        "checkpoint",
        str(path),
        cfg,
        metrics,
        epoch=int(state["epoch"]),
        device=str(settings.device),
        precision=settings.precision,
        num_windows=len(windows),
        inference_seconds=round(seconds, 3),
    )
    if app.get("plots"):
        document["figures"] = write_figures(
            app, out_dir, predictions, bundle.protocol, cfg, metrics,
            model=model, dataset=dataset, device=settings.device,
        )
    return document


def evaluate_results_file(app: DictConfig, out_dir: Path) -> dict[str, Any]:
    """Predictions mode (module docstring); returns the ``eval_metrics.json`` document."""
    from tp2detr.data.bundle import load_data
    from tp2detr.evaluation.evaluate import evaluate_on_protocol
    from tp2detr.evaluation.results_io import load_predictions

    path = Path(str(app.predictions))
    check_config(app)
    predictions = load_predictions(path)
    bundle = load_data(app)
    ground_truth = bundle.protocol.eval_ground_truth
    if predictions and not any(video in ground_truth for video in predictions):
        log.warning(
            "%s: none of its %d videos is an evaluation video of %s split %s/%s; every AP is 0",
            path,
            len(predictions),
            app.dataset.name,
            app.split.setting,
            app.split.id,
        )
    metrics = evaluate_on_protocol(
        predictions, bundle.protocol, app.dataset, breakdown=bool(app.trainer.breakdown), with_ar=bool(app.trainer.ar)
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    _save_config(out_dir / "eval_config.yaml", app)
    document = result_document("predictions", str(path), app, metrics)
    if app.get("plots"):
        document["figures"] = write_figures(app, out_dir, predictions, bundle.protocol, app, metrics)
    return document


def summary_text(document: Mapping[str, Any], out_dir: Path) -> str:
    """The printed summary: the Table-1 style table, the AR line and the files written."""
    from tp2detr.evaluation.tables import format_recall, format_table

    label = f"{document['dataset']} {document['split']} split {document['split_id']}"
    if document.get("epoch") is not None:
        label += f" (epoch {document['epoch']})"
    metrics = document["eval"]
    lines = [format_table({label: metrics}, metrics["tiou"])]
    recall = format_recall(metrics)
    if recall:
        lines.append(f"AR@AN: {recall}")
    lines.append(
        f"{metrics['num_videos']} videos, {metrics['num_gt']} ground-truth instances, "
        f"{metrics['num_predictions']} proposals evaluated"
    )
    written = [name for name in ("predictions.json", "eval_metrics.json") if (out_dir / name).is_file()]
    lines.append("wrote " + ", ".join(str(out_dir / name) for name in written))
    if document.get("figures"):
        lines.append(f"wrote {len(document['figures'])} figures into {out_dir / 'plots'}")
    return "\n".join(lines)


def run(app: DictConfig, overrides: Sequence[str], out_dir: Path) -> int:
    """Run one evaluation; print the summary, or one ``error:`` line. Returns the exit status."""
    try:
        if (app.get("ckpt") is None) == (app.get("predictions") is None):
            raise ConfigError(
                "expected exactly one of ckpt=PATH (evaluate a checkpoint) or predictions=FILE "
                f"(evaluate a results file), found ckpt={app.get('ckpt')}, predictions={app.get('predictions')}"
            )
        if app.ckpt is not None:
            document = evaluate_checkpoint(app, overrides, out_dir)
        else:
            document = evaluate_results_file(app, out_dir)
        atomic_write_json(out_dir / "eval_metrics.json", document)
    except BAD_INPUT_ERRORS as err:
        return report_error(err)
    print(summary_text(document, out_dir))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``eval.py`` and the ``tp2detr-eval`` console script.

    Args:
        argv: Hydra overrides (default ``sys.argv[1:]``); split names such as ``50_50`` are quoted
            for Hydra first (:func:`tp2detr.config.normalise_overrides`).

    Returns:
        The exit status (0 ok, 2 bad input: :data:`MOVED_KEYS` are refused before Hydra starts).
    """
    return run_hydra_command("eval", run, argv, moved_keys=MOVED_KEYS)


if __name__ == "__main__":
    sys.exit(main())
