"""Semi-synthetic snippet features: real videos, lengths and annotations; generated features.

``thumos14_synth`` / ``anet13_synth`` keep every real video id, snippet count, fps and annotated
instance, and replace the CLIP features by a documented generative model, so the whole pipeline can
run, and be measured, without the (unpublished-here) real features. ``docs/synthetic.md`` explains
the model and the measured difficulty. The features of a video are a pure function of
``(seed, video id, its annotation, its feature info, the knobs)``; every random draw comes from a
generator seeded by a SHA-256 hash of those names, never Python's ``hash()``.

Per video (``T`` snippets, ``D`` channels, snippet ``i`` covering ``[i, i+1) · F / fps`` seconds,
``F`` frames per snippet), before the optional L2 normalisation::

    x[i] = b_scene(i)                                  per-video base + per-scene offset (cuts)
         + drift[i]                                    slow isotropic AR(1) drift (redundancy)
         + g[i] · a                                    slow action-like background along a
         + Σ_k α_k · e_k[i] · (s_a · a + s_c · p_k)    instances: shared + class-specific signal
         + n[i]                                        per-snippet white noise

``a`` is the action direction shared by all classes (seed only); ``p_k`` is the prototype of
instance ``k``'s label (seed + label name) jittered per instance, both unit vectors with ``p ⟂ a``.
The base, scene offsets and isotropic drift are drawn orthogonal to ``a``, so the only background
energy along ``a`` is the action-like process ``g`` and the noise. ``e_k`` is a trapezoid in time
with ramps of ``ramp_snippets`` centred on the annotated boundaries (half strength at the boundary),
averaged over the ``F`` frames of each snippet. ``α_k`` ~ U[strength_min, strength_max].
Every annotated instance gets a signal, whatever its label: THUMOS's ``Ambiguous`` instances are
real actions and get the shared signal plus a prototype of their own. Zero-length instances get
none.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
from scipy.signal import lfilter

from tp2detr.data.annotations import AnnotatedVideo, AnnotationSet, FeatureInfo
from tp2detr.data.features import HDF5FeatureStore, write_hdf5_features
from tp2detr.errors import DataFormatError, MissingDataError

logger = logging.getLogger(__name__)

# Bump when the generative model changes: stores written by another version are regenerated.
GENERATOR_VERSION = 1


@dataclass(frozen=True)
class SyntheticParams:
    """The knobs of the generative model (norms are relative to the unit base vector).

    Attributes:
        dim: channels ``D`` of the features.
        scene_cut_rate_per_minute: Poisson rate of scene cuts; each scene adds its own offset to
            the per-video base (abrupt background changes that are not actions).
        scene_change_scale: norm of a scene's offset.
        drift_scale: RMS norm of the slow isotropic background drift (AR(1) per channel).
        drift_timescale_seconds: correlation time of the drift, in seconds.
        background_actionness_scale: standard deviation of the action-like background process
            along the shared action direction (false-positive bait that no threshold removes).
        background_actionness_timescale_seconds: its correlation time, in seconds.
        noise_scale: RMS norm of the per-snippet white noise.
        shared_action_scale: amplitude of the signal shared by all classes (what transfers).
        class_action_scale: amplitude of the class-specific prototype signal.
        instance_prototype_jitter: norm of the per-instance perturbation of the class prototype.
        strength_min: lower bound of the per-instance amplitude ``α``.
        strength_max: upper bound of the per-instance amplitude ``α``.
        ramp_snippets: length of each soft boundary ramp, in snippets, centred on the boundary.
        l2_normalize: divide each snippet by its L2 norm (as CLIP embeddings usually are).
        unlisted_action_labels: labels that are not in the class list but are real actions.
    """

    dim: int = 512
    scene_cut_rate_per_minute: float = 1.0
    scene_change_scale: float = 0.5
    drift_scale: float = 0.4
    drift_timescale_seconds: float = 10.0
    background_actionness_scale: float = 0.12
    background_actionness_timescale_seconds: float = 3.0
    noise_scale: float = 0.25
    shared_action_scale: float = 0.8  # calibrated on the baseline (docs/RESULTS.md); 0.35 before
    class_action_scale: float = 0.5
    instance_prototype_jitter: float = 0.5
    strength_min: float = 0.4
    strength_max: float = 1.2
    ramp_snippets: float = 2.0
    l2_normalize: bool = True
    unlisted_action_labels: tuple[str, ...] = field(default=("Ambiguous",))

    def __post_init__(self) -> None:
        if int(self.dim) != self.dim or self.dim < 2:
            raise ValueError(f"synthetic.dim is {self.dim!r}, expected an integer >= 2")
        nonnegative = (
            "scene_cut_rate_per_minute", "scene_change_scale", "drift_scale",
            "background_actionness_scale", "noise_scale", "shared_action_scale",
            "class_action_scale", "instance_prototype_jitter", "strength_min", "ramp_snippets",
        )
        for name in nonnegative:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"synthetic.{name} is {value!r}, expected a finite number >= 0")
        for name in ("drift_timescale_seconds", "background_actionness_timescale_seconds"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"synthetic.{name} is {value!r}, expected a finite number > 0")
        if not self.strength_max >= self.strength_min:
            raise ValueError(
                f"synthetic.strength_max is {self.strength_max}, expected >= strength_min "
                f"({self.strength_min})"
            )
        object.__setattr__(self, "dim", int(self.dim))
        object.__setattr__(self, "unlisted_action_labels", tuple(self.unlisted_action_labels))

    @classmethod
    def from_mapping(
        cls, knobs: Mapping[str, Any], ignore: Sequence[str] = ("seed", "dtype")
    ) -> "SyntheticParams":
        """Build from a config block (e.g. ``cfg.dataset.synthetic``); keys in ``ignore`` are
        skipped, unknown keys raise ``ValueError`` (a typo must not silently use a default)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(knobs) - names - set(ignore))
        if unknown:
            raise ValueError(
                f"dataset.synthetic has unknown knob(s) {unknown}; expected a subset of {sorted(names)}"
            )
        values = {k: knobs[k] for k in names if k in knobs}
        if "unlisted_action_labels" in values:
            values["unlisted_action_labels"] = tuple(values["unlisted_action_labels"])
        return cls(**values)

    def to_json(self) -> str:
        """Canonical JSON of every knob (sorted keys), stored in the HDF5 attributes."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


# ----------------------------------------------------------------------------------------------
# Deterministic randomness
# ----------------------------------------------------------------------------------------------


def stable_generator(*parts: object) -> np.random.Generator:
    """A numpy generator seeded by the SHA-256 of ``parts`` (stable across processes/platforms)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(int.from_bytes(digest[:16], "big"))))


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector, axis=-1, keepdims=True)


def _orthogonal_to(vectors: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Remove the component along the unit ``direction`` from ``vectors`` ``[..., D]``."""
    return vectors - (vectors @ direction)[..., None] * direction


def shared_action_direction(seed: int, dim: int) -> np.ndarray:
    """The unit action direction ``a`` ``[D]`` shared by every class."""
    return _unit(stable_generator("shared-action", seed, dim).standard_normal(dim))


def class_prototype(label: str, seed: int, dim: int) -> np.ndarray:
    """The unit prototype ``[D]`` of class ``label``, orthogonal to the shared action direction."""
    direction = shared_action_direction(seed, dim)
    raw = stable_generator("class-prototype", seed, dim, label).standard_normal(dim)
    return _unit(_orthogonal_to(raw, direction))


# ----------------------------------------------------------------------------------------------
# The generative model
# ----------------------------------------------------------------------------------------------


def _ar1(rng: np.random.Generator, length: int, channels: int, timescale_snippets: float) -> np.ndarray:
    """A stationary AR(1) process ``[T, channels]`` with unit variance per channel and correlation
    ``exp(-1/timescale)`` between neighbouring snippets."""
    white = rng.standard_normal((length, channels))
    if length == 0:
        return white
    rho = math.exp(-1.0 / max(timescale_snippets, 1e-6))
    gain = math.sqrt(1.0 - rho * rho)
    white[0] /= max(gain, 1e-12)  # the first value already has the stationary variance
    return lfilter([gain], [1.0, -rho], white, axis=0)


def instance_envelope(
    start: float, end: float, length: int, frames_per_snippet: int, fps: float, ramp_snippets: float
) -> np.ndarray:
    """Soft presence ``[T]`` in [0, 1] of an instance ``[start, end]`` (seconds) in each snippet.

    A trapezoid in time rising from 0 at ``start - r/2`` to 1 at ``start + r/2`` and falling back
    symmetrically around ``end`` (``r`` = ``ramp_snippets`` snippets; for instances shorter than
    ``r`` the peak is lower), averaged over the snippet's frames (frame ``j`` at time
    ``(j + 0.5) / fps``). ``r = 0`` gives hard boundaries (fractional at edge snippets).
    """
    envelope = np.zeros(length)
    if end <= start or length == 0:
        return envelope
    seconds_per_snippet = frames_per_snippet / fps
    ramp = ramp_snippets * seconds_per_snippet
    first = max(0, int(math.floor((start - ramp / 2) / seconds_per_snippet)))
    last = min(length, int(math.ceil((end + ramp / 2) / seconds_per_snippet)) + 1)
    if first >= last:
        return envelope
    frames = np.arange(first * frames_per_snippet, last * frames_per_snippet)
    times = (frames + 0.5) / fps
    if ramp > 0:
        rise = (times - (start - ramp / 2)) / ramp
        fall = ((end + ramp / 2) - times) / ramp
        presence = np.clip(np.minimum(rise, fall), 0.0, 1.0)
    else:
        presence = ((times >= start) & (times < end)).astype(float)
    envelope[first:last] = presence.reshape(last - first, frames_per_snippet).mean(axis=1)
    return envelope


def generate_video_features(
    video: AnnotatedVideo,
    info: FeatureInfo,
    classes: Sequence[str],
    params: SyntheticParams,
    seed: int,
) -> np.ndarray:
    """Synthetic features ``[T, D]`` float32 of one video (``T`` = ``info.snippet_length``).

    Pure: the result depends only on the arguments. Labels must be in ``classes`` or in
    ``params.unlisted_action_labels``; anything else raises :class:`DataFormatError`.
    See the module docstring for the model.
    """
    if video.video_id != info.video_id:
        raise ValueError(
            f"generate_video_features: annotation is for '{video.video_id}' but feature info is "
            f"for '{info.video_id}'"
        )
    known = set(classes) | set(params.unlisted_action_labels)
    for index, instance in enumerate(video.instances):
        if instance.label not in known:
            raise DataFormatError(
                f"video '{video.video_id}' instance {index}: label '{instance.label}' is not a "
                f"class and not in synthetic.unlisted_action_labels {list(params.unlisted_action_labels)}"
            )
    length, dim = info.snippet_length, params.dim
    frames_per_snippet = info.frames_per_snippet
    if length > 0 and frames_per_snippet <= 0:
        raise DataFormatError(
            f"feature info of '{video.video_id}': snippet_duration {info.snippet_duration} s gives "
            f"{frames_per_snippet} frames per snippet, expected >= 1"
        )
    seconds_per_snippet = frames_per_snippet / info.video_fps if length > 0 else 1.0
    action = shared_action_direction(seed, dim)

    def component_rng(component: str) -> np.random.Generator:
        # One independent stream per component, so a knob of one part never reshuffles another.
        return stable_generator("video", seed, dim, video.video_id, component)

    # Background: per-video base, one offset per scene; everything orthogonal to the action direction.
    scenes = component_rng("scenes")
    base = scenes.standard_normal(dim)
    minutes = length * seconds_per_snippet / 60.0
    n_cuts = int(scenes.poisson(params.scene_cut_rate_per_minute * minutes))
    cut_at = np.sort(scenes.integers(1, max(length, 2), size=n_cuts))
    scene_offsets = params.scene_change_scale * _unit(
        _orthogonal_to(scenes.standard_normal((n_cuts + 1, dim)), action)
    )
    scene_of_snippet = np.searchsorted(cut_at, np.arange(length), side="right")
    features = _unit(_orthogonal_to(base, action))[None, :] + scene_offsets[scene_of_snippet]

    drift = _ar1(component_rng("drift"), length, dim, params.drift_timescale_seconds / seconds_per_snippet)
    features += params.drift_scale / math.sqrt(dim) * _orthogonal_to(drift, action)

    background_actionness = _ar1(
        component_rng("background-actionness"),
        length,
        1,
        params.background_actionness_timescale_seconds / seconds_per_snippet,
    )[:, 0]
    features += (params.background_actionness_scale * background_actionness)[:, None] * action

    # Actions: shared direction plus a jittered class prototype, with a per-instance strength.
    # Each instance draws from its own stream, keyed by its content (and its repeat count), so
    # adding or removing one instance leaves the others unchanged.
    prototypes: dict[str, np.ndarray] = {}
    repeats: dict[tuple[float, float, str], int] = {}
    for instance in video.instances:
        key = (instance.start, instance.end, instance.label)
        repeats[key] = repeats.get(key, 0) + 1
        instance_rng = component_rng(f"instance {instance.start!r} {instance.end!r} {instance.label} #{repeats[key]}")
        strength = instance_rng.uniform(params.strength_min, params.strength_max)
        jitter = _unit(_orthogonal_to(instance_rng.standard_normal(dim), action))
        if instance.label not in prototypes:
            prototypes[instance.label] = class_prototype(instance.label, seed, dim)
        prototype = _unit(prototypes[instance.label] + params.instance_prototype_jitter * jitter)
        envelope = instance_envelope(
            instance.start, instance.end, length, frames_per_snippet, info.video_fps,
            params.ramp_snippets,
        )
        signal = params.shared_action_scale * action + params.class_action_scale * prototype
        features += (strength * envelope)[:, None] * signal

    noise = component_rng("noise").standard_normal((length, dim))
    features += params.noise_scale / math.sqrt(dim) * noise
    if params.l2_normalize and length > 0:
        features = _unit(features)
    return features.astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Stores
# ----------------------------------------------------------------------------------------------


def inputs_fingerprint(annotations: AnnotationSet, feature_info: Mapping[str, FeatureInfo]) -> str:
    """SHA-256 over everything the features depend on besides the knobs: the classes, and per
    video its id, snippet count, fps, frames per snippet and instances."""
    digest = hashlib.sha256()
    digest.update(json.dumps(list(annotations.classes)).encode())
    for video_id in sorted(feature_info):
        info = feature_info[video_id]
        video = annotations.videos.get(video_id)
        instances = [] if video is None else [[i.start, i.end, i.label] for i in video.instances]
        record = [video_id, info.snippet_length, info.video_fps, info.frames_per_snippet, instances]
        digest.update(json.dumps(record).encode())
    return digest.hexdigest()


def synthetic_store_attributes(
    annotations: AnnotationSet,
    feature_info: Mapping[str, FeatureInfo],
    params: SyntheticParams,
    seed: int,
    dtype: str,
) -> dict[str, Any]:
    """The root attributes a synthetic store carries, compared to decide whether to regenerate."""
    return {
        "synthetic_generator_version": GENERATOR_VERSION,
        "synthetic_params": params.to_json(),
        "synthetic_seed": int(seed),
        "synthetic_dtype": dtype,
        "synthetic_inputs_sha256": inputs_fingerprint(annotations, feature_info),
    }


def synthetic_store_matches(path: str | Path, expected: Mapping[str, Any]) -> bool:
    """Whether the HDF5 file at ``path`` exists and carries exactly the ``expected`` attributes."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        with HDF5FeatureStore(path) as store:
            found = store.attributes()
    except (OSError, DataFormatError) as err:
        logger.warning("%s: unreadable, will regenerate (%s)", path, err)
        return False
    return all(found.get(key) == value for key, value in expected.items())


def is_synthetic_store(path: str | Path) -> bool:
    """Whether ``path`` is an HDF5 file written by this generator (it carries its attributes)."""
    try:
        with HDF5FeatureStore(path) as store:
            return "synthetic_generator_version" in store.attributes()
    except (OSError, DataFormatError, MissingDataError):
        return False


def _empty_video(video_id: str) -> AnnotatedVideo:
    return AnnotatedVideo(video_id=video_id, subset="", duration=0.0, instances=())


def iter_synthetic_videos(
    annotations: AnnotationSet,
    feature_info: Mapping[str, FeatureInfo],
    params: SyntheticParams,
    seed: int,
) -> Iterator[tuple[str, np.ndarray]]:
    """``(video_id, features [T, D])`` for every video of the feature info, sorted by id. A video
    without an annotation record gets background only."""
    for video_id in sorted(feature_info):
        video = annotations.videos.get(video_id) or _empty_video(video_id)
        yield video_id, generate_video_features(
            video, feature_info[video_id], annotations.classes, params, seed
        )


def write_synthetic_store(
    path: str | Path,
    annotations: AnnotationSet,
    feature_info: Mapping[str, FeatureInfo],
    params: SyntheticParams,
    seed: int,
    *,
    dtype: str = "float16",
    progress: bool = True,
) -> Path:
    """Generate every video of ``feature_info`` and write them into one HDF5 file at ``path``
    (atomically, ``dtype`` on disk, the knobs as root attributes). Returns ``path``."""
    started = time.perf_counter()
    attrs = synthetic_store_attributes(annotations, feature_info, params, seed, dtype)
    write_hdf5_features(
        path,
        iter_synthetic_videos(annotations, feature_info, params, seed),
        dtype=dtype,
        attrs=attrs,
        total=len(feature_info),
        progress=progress,
        desc=f"synthetic {Path(path).name}",
    )
    logger.info(
        "synthetic store %s: %d videos, %.1f MiB, %.1f s",
        path, len(feature_info), Path(path).stat().st_size / 2**20, time.perf_counter() - started,
    )
    return Path(path)


def ensure_synthetic_store(
    path: str | Path,
    annotations: AnnotationSet,
    feature_info: Mapping[str, FeatureInfo],
    knobs: Mapping[str, Any],
    *,
    force: bool = False,
    progress: bool = True,
) -> bool:
    """Write the synthetic store described by the config block ``knobs`` (``seed``, ``dtype`` and
    the :class:`SyntheticParams` knobs) unless a file with the same attributes already exists.
    Returns whether it wrote the file."""
    if "seed" not in knobs:
        raise ValueError("dataset.synthetic.seed is missing, expected an integer")
    seed = int(knobs["seed"])
    dtype = str(knobs.get("dtype", "float16"))
    params = SyntheticParams.from_mapping(knobs)
    expected = synthetic_store_attributes(annotations, feature_info, params, seed, dtype)
    if not force and synthetic_store_matches(path, expected):
        logger.info("%s: up to date, not regenerated", path)
        return False
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Runs started together (a joblib sweep) wait for the one that writes the store, then reuse it.
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not force and synthetic_store_matches(path, expected):
            return False
        write_synthetic_store(path, annotations, feature_info, params, seed, dtype=dtype, progress=progress)
    return True
