"""``python predict.py`` (console script ``tp2detr-predict``): proposals for your own videos.

    python predict.py input=video.mp4 ckpt=last.pt clip_model=/models/clip-vit-b16
    python predict.py input=videos/ ckpt=last.pt clip_model=openai/clip-vit-base-patch16 top_k=50
    python predict.py input=feats/video.npy ckpt=last.pt feature_fps=3.75
    python predict.py input=OUT/features ckpt=last.pt feature_info=OUT/features/feature_info.json

``input`` is a video file, a ``.npy`` feature file ``[T, C]`` or a folder of them (videos and
``.npy`` files may be mixed; other files in a folder are skipped, with a warning unless they are
``.json`` files such as a feature-info JSON). A video's id is its file name without the suffix,
so two files may not share a stem.

* **Videos** are decoded and embedded with CLIP (:func:`tp2detr.extraction.extract_video`;
  ``clip_model`` is required, ``frames_per_snippet`` defaults to that of the checkpoint's training
  features); the extraction's feature-info entry gives each row's time.
* **.npy files** need their time mapping: the video's entry in ``feature_info=PATH`` if it has one,
  else ``feature_fps`` (snippets per second).

The model, windowing and stitching come from the checkpoint's stored config as in ``eval.py``
checkpoint mode (:func:`tp2detr.engine.checkpoint.checkpoint_config`); keys given on the command
line that are not keys of ``configs/predict.yaml`` (:data:`APP_KEYS`) are applied on top of it. So
does how the model runs: ``trainer.device`` (CLIP too), ``trainer.precision`` (the model's autocast;
CLIP always runs in fp32) and ``trainer.eval_batch_size`` are the stored run's unless given
(``python predict.py ... trainer.device=cpu``). Each video goes through the evaluation pipeline
(:func:`tp2detr.engine.external_videos.predict_video_proposals`): sliding windows at the eval stride
(THUMOS-style) or one resized input (ActivityNet-style), the model, then the cross-window NMS of
``dataset.evaluation.nms_threshold`` (and ``dataset.evaluation.stitch_deduplicate``).

Written to ``out_dir``: ``proposals.json`` (ActivityNet results format, seconds, the ``top_k``
best of each video by descending score), ``features/<video_id>.npy`` and
``features/feature_info.json`` for the video inputs (rerun on them with
``input=OUT/features feature_info=OUT/features/feature_info.json``), ``plots/<video_id>.png``
(``plots=true``: the proposals along each video's timeline), ``predict_config.yaml`` (the model's
config) and Hydra's ``.hydra/`` and ``predict.log``. A summary is printed: the videos, their
proposal counts and each video's top-5 proposals in seconds.

Exit status: 0 on success; 2 on bad input (one ``error: ...`` line on stderr), a key the command
does not have (an unknown key, or one of :data:`MOVED_KEYS`, named with its replacement) included.
"""

from __future__ import annotations

import collections
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from tp2detr.cli.hydra_app import USER_ERRORS, report_error, run_hydra_command
from tp2detr.config_checks import check_config
from tp2detr.data.annotations import FeatureInfo, load_feature_info
from tp2detr.errors import ConfigError, DataFormatError, MissingDataError
from tp2detr.extraction.video import VIDEO_SUFFIXES, check_unique_video_ids
from tp2detr.io import atomic_open

log = logging.getLogger("tp2detr.predict")

#: Top-level keys of ``configs/predict.yaml``: settings of this command, never of the checkpoint.
APP_KEYS = frozenset(
    {
        "input", "ckpt", "out_dir", "top_k", "plots", "plot_top_k", "feature_fps", "feature_info", "clip_model",
        "frames_per_snippet", "clip_batch_size", "l2_normalize", "progress",
    }
)
#: Keys this command had before it read the training config's own: ``{old: new}``.
MOVED_KEYS = {
    "device": "trainer.device",
    "precision": "trainer.precision",
    "batch_size": "trainer.eval_batch_size",
    "stitch_deduplicate": "dataset.evaluation.stitch_deduplicate",
}
#: Errors that mean bad input (exit status 2): the project's own, unreadable or unwritable paths,
#: config keys that cannot be read, and a missing optional dependency (PyAV, transformers).
BAD_INPUT_ERRORS = (*USER_ERRORS, OmegaConfBaseException, ImportError)
#: The suffix of feature files.
NPY_SUFFIX = ".npy"
#: Proposals of each video listed in the printed summary.
SUMMARY_TOP = 5


@dataclass(frozen=True)
class InputFile:
    """One input: a video file (``kind == "video"``) or a ``.npy`` feature file (``"npy"``)."""

    video_id: str
    path: Path
    kind: str


def input_kind(path: Path) -> str | None:
    """``"npy"``, ``"video"`` (a suffix of :data:`~tp2detr.extraction.video.VIDEO_SUFFIXES`) or None."""
    suffix = path.suffix.lower()
    if suffix == NPY_SUFFIX:
        return "npy"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    return None


def _expected_inputs() -> str:
    return f"a video file ({' '.join(VIDEO_SUFFIXES)}), a .npy feature file [T, C] or a folder of them"


def find_inputs(source: str | Path) -> list[InputFile]:
    """The inputs named by ``input``: the file itself, or the videos and ``.npy`` files directly in
    the folder (sorted by name; hidden files and other files skipped, the latter with a warning
    unless they are ``.json`` files such as the feature info next to extracted features).

    Raises:
        MissingDataError: ``source`` does not exist.
        DataFormatError: a file of an unknown kind, a folder without any input, or two inputs
            with the same video id (file stem).
    """
    source = Path(source)
    if source.is_file():
        kind = input_kind(source)
        if kind is None:
            raise DataFormatError(
                f"input {source}: unknown extension {source.suffix!r}; expected {_expected_inputs()}"
            )
        return [InputFile(source.stem, source, kind)]
    if not source.is_dir():
        raise MissingDataError(f"input {source}: not found; expected {_expected_inputs()}")
    files = sorted(p for p in source.iterdir() if p.is_file() and not p.name.startswith("."))
    inputs = [InputFile(p.stem, p, kind) for p in files if (kind := input_kind(p)) is not None]
    skipped = [p.name for p in files if input_kind(p) is None]
    if not inputs:
        found = f" (it holds only: {', '.join(skipped[:5])}{', ...' if len(skipped) > 5 else ''})" if skipped else ""
        raise DataFormatError(
            f"input {source}: the folder holds no video or .npy file{found}; expected {_expected_inputs()}"
        )
    companions = [name for name in skipped if name.lower().endswith(".json")]  # feature_info.json, extraction.json
    others = [name for name in skipped if name not in companions]
    if companions:
        log.info("input %s: skipped %s", source, ", ".join(companions))
    if others:
        log.warning(
            "input %s: skipped %d file(s) that are neither videos nor .npy: %s", source, len(others), ", ".join(others)
        )
    check_unique_video_ids([item.path for item in inputs], source, DataFormatError)
    return inputs


def check_feature_dim(array: np.ndarray, source: str | Path, dim: int, ckpt: str) -> None:
    """Raise :class:`DataFormatError` unless ``array`` ``[T, C]`` has ``C == dim`` and ``T ≥ 1``."""
    if array.shape[1] != dim:
        raise DataFormatError(
            f"{source}: features have {array.shape[1]} channels (shape {tuple(array.shape)}), expected {dim}: "
            f"the checkpoint {ckpt} was trained with dataset.features.dim={dim}"
        )
    if array.shape[0] == 0:
        raise DataFormatError(
            f"{source}: features have 0 rows (shape {tuple(array.shape)}), expected at least one snippet"
        )


def load_npy_features(path: Path, video_id: str, dim: int, ckpt: str) -> np.ndarray:
    """A ``.npy`` feature file as float32 ``[T, C]``: 2-D, float, finite, ``C == dim``.

    Raises:
        DataFormatError: unreadable, or not such an array (the message names the file).
    """
    from tp2detr.data.features import check_features

    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise DataFormatError(f"{path}: cannot read as a .npy array ({err}); expected a [T, C] float array") from err
    check_features(array, video_id, path)
    check_feature_dim(array, path, dim, ckpt)
    return np.asarray(array, dtype=np.float32)


def npy_feature_info(
    item: InputFile,
    snippets: int,
    feature_infos: Mapping[str, FeatureInfo] | None,
    feature_info_path: str | None,
    feature_fps: float | None,
) -> FeatureInfo:
    """The time mapping of a ``.npy`` input: its ``feature_info`` entry, else ``feature_fps``.

    Raises:
        MissingDataError: ``feature_info`` lacks the video and no ``feature_fps`` is given.
        ValueError: neither ``feature_info`` nor ``feature_fps`` is given.
    """
    from tp2detr.engine.external_videos import feature_info_from_fps

    if feature_infos is not None and item.video_id in feature_infos:
        return feature_infos[item.video_id]
    if feature_fps is not None:
        return feature_info_from_fps(item.video_id, snippets, float(feature_fps))
    if feature_infos is not None:
        raise MissingDataError(
            f"feature_info {feature_info_path}: no entry for video '{item.video_id}' ({item.path}); expected one, "
            f"or feature_fps=SNIPPETS_PER_SECOND"
        )
    raise ConfigError(
        f"{item.path}: the time of its feature rows is unknown (feature_fps is null, no feature_info); expected "
        f"feature_fps=SNIPPETS_PER_SECOND (e.g. 3.75 for 8-frame snippets of a 30 fps video) or feature_info=PATH "
        f"(a feature-info JSON with an entry for '{item.video_id}')"
    )


def training_frames_per_snippet(cfg: DictConfig) -> int:
    """Frames per feature row of the checkpoint's training features: the most common value in its
    ``dataset.feature_info`` file.

    Raises:
        ValueError: the file cannot be read or holds no video (the message says to set
            ``frames_per_snippet``).
    """
    path = str(cfg.dataset.feature_info)
    try:
        counts = collections.Counter(
            info.frames_per_snippet for info in load_feature_info(path).values() if info.snippet_length > 0
        )
    except (DataFormatError, MissingDataError) as err:
        raise ConfigError(
            f"frames_per_snippet is null and the checkpoint's dataset.feature_info cannot be read ({err}); "
            f"expected frames_per_snippet=8 (THUMOS14-style features) or 16 (ActivityNet1.3-style)"
        ) from err
    if not counts:
        raise ConfigError(f"frames_per_snippet is null and {path} lists no video; expected frames_per_snippet=K")
    return int(counts.most_common(1)[0][0])


@dataclass
class VideoFeatureSet:
    """The features of every input and how they map to time.

    Attributes:
        features: ``{video_id: float32 [T, C]}``.
        infos: ``{video_id: FeatureInfo}``.
        sources: ``{video_id: input file}``.
        extracted: ``{video_id: feature-info entry}`` of the videos extracted here (from video
            files), as :func:`tp2detr.extraction.extract_video` made it.
    """

    features: dict[str, np.ndarray]
    infos: dict[str, FeatureInfo]
    sources: dict[str, Path]
    extracted: dict[str, dict[str, Any]]


def check_timing_inputs(app: DictConfig, inputs: Sequence[InputFile]) -> dict[str, FeatureInfo] | None:
    """Fail before any model is loaded when the inputs cannot be embedded (videos without
    ``clip_model``) or ``feature_fps`` is not positive; return the ``feature_info`` file's
    entries (None when it is not given)."""
    if any(item.kind == "video" for item in inputs) and app.get("clip_model") is None:
        videos = [item.path.name for item in inputs if item.kind == "video"]
        shown = ", ".join(videos[:3]) + (", ..." if len(videos) > 3 else "")
        raise ConfigError(
            f"input {app.input}: {len(videos)} video file(s) ({shown}) "
            f"need CLIP feature extraction but clip_model is null; expected clip_model=PATH_OR_HF_ID"
        )
    if app.get("feature_fps") is not None and not float(app.feature_fps) > 0:
        raise ConfigError(f"feature_fps is {app.feature_fps}, expected a positive number of snippets per second")
    if app.get("feature_info") is None:
        return None
    return load_feature_info(str(app.feature_info))


def gather_features(
    app: DictConfig,
    inputs: Sequence[InputFile],
    feature_infos: Mapping[str, FeatureInfo] | None,
    dim: int,
    model_cfg: DictConfig,
    device: str = "auto",
) -> VideoFeatureSet:
    """Read the ``.npy`` inputs and extract the videos' CLIP features (module docstring).

    Args:
        app: this command's config.
        inputs: from :func:`find_inputs`.
        feature_infos: the ``feature_info`` file's entries, or None.
        dim: the checkpoint's ``dataset.features.dim``.
        model_cfg: the checkpoint's config (for :func:`training_frames_per_snippet`).
        device: where CLIP runs (the model's device).
    """
    from tp2detr.engine.external_videos import feature_info_from_entry

    ckpt = str(app.ckpt)
    result = VideoFeatureSet({}, {}, {}, {})
    for item in inputs:
        if item.kind != "npy":
            continue
        array = load_npy_features(item.path, item.video_id, dim, ckpt)
        result.features[item.video_id] = array
        result.infos[item.video_id] = npy_feature_info(
            item, len(array), feature_infos, app.get("feature_info"), app.get("feature_fps")
        )
        result.sources[item.video_id] = item.path
    videos = [item for item in inputs if item.kind == "video"]
    if not videos:
        return result
    from tp2detr.extraction import ClipFrameEncoder, extract_video

    encoder = ClipFrameEncoder.load(
        str(app.clip_model), device=device, batch_size=int(app.clip_batch_size),
        l2_normalize=bool(app.l2_normalize),
    )
    if encoder.dim != dim:
        raise DataFormatError(
            f"clip_model {encoder.source}: embeds frames into {encoder.dim} channels, expected {dim}: the checkpoint "
            f"{ckpt} was trained with dataset.features.dim={dim}"
        )
    frames = app.get("frames_per_snippet")
    frames = int(frames) if frames is not None else training_frames_per_snippet(model_cfg)
    log.info("extracting %d video(s) with %s, %d frames per snippet", len(videos), encoder.source, frames)
    for item in videos:
        extracted = extract_video(item.path, encoder, frames, video_id=item.video_id, progress=bool(app.progress))
        result.features[item.video_id] = extracted.features
        result.infos[item.video_id] = feature_info_from_entry(item.video_id, extracted.info)
        result.sources[item.video_id] = item.path
        result.extracted[item.video_id] = dict(extracted.info)
    return result


def save_extracted_features(folder: Path, features: VideoFeatureSet) -> None:
    """``folder/<video_id>.npy`` and ``folder/feature_info.json`` (entries of other videos already
    there are kept) for the extracted videos; every file written atomically."""
    from tp2detr.extraction.outputs import FeatureInfoFile, NpyOutput

    if not features.extracted:
        return
    first = next(iter(features.extracted))
    output = NpyOutput(folder, features.features[first].shape[1])
    info_file = FeatureInfoFile(folder / "feature_info.json")
    for video_id, entry in features.extracted.items():
        output.put(video_id, features.features[video_id])
        info_file.set(video_id, entry)
    info_file.save()


def write_timeline_figures(
    folder: Path, predictions: Mapping[str, tuple[np.ndarray, np.ndarray]], durations: Mapping[str, float], top_k: int
) -> list[Path]:
    """``folder/<video_id>.png``: each video's ``top_k`` best proposals along its timeline."""
    from tp2detr.viz.canvas import file_stem, save_png
    from tp2detr.viz.proposal_timelines import proposal_timeline_figure

    paths = []
    for video, (segments, scores) in predictions.items():
        figure = proposal_timeline_figure(segments, scores, top_k=top_k, duration=durations[video], video_id=video)
        paths.append(save_png(figure, folder / f"{file_stem(video)}.png"))
    return paths


def summary_text(
    predictions: Mapping[str, tuple[np.ndarray, np.ndarray]],
    durations: Mapping[str, float],
    infos: Mapping[str, FeatureInfo],
    top_k: int | None,
    written: Sequence[str],
) -> str:
    """The printed summary: counts, then each video's length and top-5 proposals in seconds."""
    total = sum(len(scores) for _, scores in predictions.values())
    limit = "all" if top_k is None else f"at most {top_k}"
    lines = [f"{len(predictions)} videos, {total} proposals ({limit} per video, best score first)"]
    for video, (segments, scores) in predictions.items():
        top = zip(segments[:SUMMARY_TOP], scores[:SUMMARY_TOP])
        best = ", ".join(f"[{s:.2f}, {e:.2f}] {x:.3f}" for (s, e), x in top)
        lines.append(
            f"{video}: {durations[video]:.2f} s, {infos[video].snippet_length} snippets, {len(scores)} proposals; "
            f"top-{min(SUMMARY_TOP, len(scores))}: {best or '-'}"
        )
    lines.extend(f"wrote {entry}" for entry in written)
    return "\n".join(lines)


def predict(app: DictConfig, overrides: Sequence[str], out_dir: Path) -> str:
    """Run the whole command (module docstring) and return the summary text."""
    from tp2detr.engine.checkpoint import (
        check_architecture,
        checkpoint_config,
        inference_settings,
        load_checkpoint,
        unwrap_state_dict,
    )
    from tp2detr.engine.external_videos import (
        predict_video_proposals,
        top_k_per_video,
        video_duration,
    )
    from tp2detr.evaluation.results_io import write_predictions
    from tp2detr.models.builder import build_model

    OmegaConf.to_container(app, resolve=True, throw_on_missing=True)
    inputs = find_inputs(str(app.input))
    feature_infos = check_timing_inputs(app, inputs)
    top_k = None if app.top_k is None else int(app.top_k)
    if top_k is not None and top_k < 1:
        raise ConfigError(f"top_k is {top_k}, expected a positive number of proposals per video (or null for all)")
    path = Path(str(app.ckpt))
    state = load_checkpoint(path)
    cfg = checkpoint_config(state, app, overrides, str(path), APP_KEYS)
    check_config(cfg, source=f"{path}'s configuration with the command line's overrides")
    settings = inference_settings(cfg)
    dim = int(cfg.dataset.features.dim)
    features = gather_features(app, inputs, feature_infos, dim, cfg, device=str(settings.device))
    written = []
    if features.extracted:  # saved first: a failure below does not lose the extraction
        folder = out_dir / "features"
        save_extracted_features(folder, features)
        written.append(f"{len(features.extracted)} extracted feature file(s) and feature_info.json into {folder}")
    model = build_model(cfg)
    weights = unwrap_state_dict(state["model"])
    check_architecture(model, weights, source=str(path))
    model.load_state_dict(weights)
    model.to(settings.device)
    log.info(
        "%s (epoch %s): %d video(s) on %s, precision %s (trainer.precision=%s)",
        path, state["epoch"], len(features.features), settings.device, settings.precision, cfg.trainer.precision,
    )
    # a checkpoint written before dataset.evaluation.stitch_deduplicate existed: the released stitching
    stitch_deduplicate = bool(cfg.dataset.evaluation.get("stitch_deduplicate", False))
    proposals = predict_video_proposals(
        model, cfg.dataset, features.features, features.infos, settings.device, settings.amp_dtype,
        batch_size=settings.batch_size, stitch_deduplicate=stitch_deduplicate, sources=features.sources,
    )
    proposals = top_k_per_video(proposals, top_k)
    durations = {video: video_duration(features.infos[video]) for video in proposals}
    out_dir.mkdir(parents=True, exist_ok=True)
    write_predictions(out_dir / "proposals.json", proposals)
    with atomic_open(out_dir / "predict_config.yaml", "w") as handle:
        handle.write(OmegaConf.to_yaml(cfg, resolve=True))
    written.insert(0, str(out_dir / "proposals.json"))
    if app.plots:
        figures = write_timeline_figures(out_dir / "plots", proposals, durations, int(app.plot_top_k))
        written.append(f"{len(figures)} figure(s) into {out_dir / 'plots'}")
    return summary_text(proposals, durations, features.infos, top_k, written)


def run(app: DictConfig, overrides: Sequence[str], out_dir: Path) -> int:
    """Run the command; print the summary, or one ``error:`` line. Returns the exit status."""
    try:
        text = predict(app, overrides, out_dir)
    except BAD_INPUT_ERRORS as err:
        return report_error(err)
    print(text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``predict.py`` and the ``tp2detr-predict`` console script.

    Args:
        argv: Hydra overrides (default ``sys.argv[1:]``).

    Returns:
        The exit status (0 ok, 2 bad input: :data:`MOVED_KEYS` are refused before Hydra starts).
    """
    return run_hydra_command("predict", run, argv, moved_keys=MOVED_KEYS)


if __name__ == "__main__":
    sys.exit(main())
