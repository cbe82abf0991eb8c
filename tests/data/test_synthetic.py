"""The semi-synthetic generator: deterministic, annotation-driven the documented way, every knob
has an effect, and stores are written atomically and regenerated only when something changed."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from tp2detr.config import compose
from tp2detr.data.annotations import AnnotatedVideo, FeatureInfo, Instance, load_annotations, load_feature_info
from tp2detr.data.features import HDF5FeatureStore, open_feature_store
from tp2detr.data.synthetic import (
    SyntheticParams,
    class_prototype,
    ensure_synthetic_store,
    generate_video_features,
    instance_envelope,
    shared_action_direction,
    write_synthetic_store,
)
from tp2detr.errors import DataFormatError

REPO_ROOT = Path(__file__).resolve().parents[2]
TOY = REPO_ROOT / "data" / "toy"
CLASSES = ("Jump", "Throw")
FPS, FRAMES = 30.0, 8
SNIPPET_SECONDS = FRAMES / FPS


def _info(video_id: str, length: int, fps: float = FPS, frames: int = FRAMES) -> FeatureInfo:
    return FeatureInfo(video_id, length * frames + 3, fps, length, length * frames / fps)


def _video(video_id: str, instances: list[tuple[float, float, str]]) -> AnnotatedVideo:
    return AnnotatedVideo(video_id, "val", 100.0, tuple(Instance(s, e, label) for s, e, label in instances))


def _snippets(first: int, last: int) -> tuple[float, float]:
    """Seconds covering snippets ``first..last`` inclusive."""
    return first * SNIPPET_SECONDS, (last + 1) * SNIPPET_SECONDS


VIDEO = _video("vid", [(*_snippets(40, 69), "Jump"), (*_snippets(120, 149), "Throw"), (*_snippets(200, 229), "Ambiguous")])
INFO = _info("vid", 300)


def _gen(params: SyntheticParams | None = None, seed: int = 0, video=VIDEO, info=INFO) -> np.ndarray:
    return generate_video_features(video, info, CLASSES, params or SyntheticParams(dim=64), seed)


def _orthogonal(vectors: np.ndarray, direction: np.ndarray) -> np.ndarray:
    return vectors - np.outer(vectors @ direction, direction)


def _inside(first: int, last: int, length: int = 300) -> np.ndarray:
    mask = np.zeros(length, bool)
    mask[first : last + 1] = True
    return mask


@pytest.fixture(scope="module")
def toy_inputs():
    return load_annotations(TOY / "annotations.json"), load_feature_info(TOY / "feature_info.json")


# -- shape, determinism -----------------------------------------------------------------------


def test_shape_dtype_and_unit_norm() -> None:
    feats = _gen()
    assert feats.shape == (300, 64) and feats.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    empty = generate_video_features(_video("e", []), _info("e", 0), CLASSES, SyntheticParams(dim=8), 0)
    assert empty.shape == (0, 8)
    one = generate_video_features(_video("o", []), _info("o", 1), CLASSES, SyntheticParams(dim=8), 0)
    assert one.shape == (1, 8) and np.isfinite(one).all()


def test_deterministic_per_seed_and_video() -> None:
    np.testing.assert_array_equal(_gen(seed=3), _gen(seed=3))
    assert not np.allclose(_gen(seed=3), _gen(seed=4))
    other = _video("vid2", list((i.start, i.end, i.label) for i in VIDEO.instances))
    assert not np.allclose(_gen(video=other, info=_info("vid2", 300)), _gen())


def test_same_features_in_a_fresh_process_with_another_hash_seed() -> None:
    code = (
        "import hashlib, numpy as np\n"
        "from tp2detr.data.synthetic import SyntheticParams, generate_video_features\n"
        "from tp2detr.data.annotations import AnnotatedVideo, FeatureInfo, Instance\n"
        "v = AnnotatedVideo('vid', 'val', 9.0, (Instance(1.0, 3.0, 'Jump'),))\n"
        "i = FeatureInfo('vid', 300, 30.0, 37, 37 * 8 / 30.0)\n"
        "x = generate_video_features(v, i, ('Jump',), SyntheticParams(dim=16), 7)\n"
        "print(hashlib.sha256(x.tobytes()).hexdigest())\n"
    )
    here = generate_video_features(
        AnnotatedVideo("vid", "val", 9.0, (Instance(1.0, 3.0, "Jump"),)),
        FeatureInfo("vid", 300, 30.0, 37, 37 * 8 / 30.0), ("Jump",), SyntheticParams(dim=16), 7,
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == hashlib.sha256(here.tobytes()).hexdigest()


def test_prototypes_are_stable_unit_and_orthogonal_to_the_shared_direction() -> None:
    action = shared_action_direction(0, 64)
    jump, throw = class_prototype("Jump", 0, 64), class_prototype("Throw", 0, 64)
    np.testing.assert_array_equal(jump, class_prototype("Jump", 0, 64))
    for vector in (action, jump, throw):
        assert np.linalg.norm(vector) == pytest.approx(1.0)
    assert abs(jump @ action) < 1e-12 and abs(throw @ action) < 1e-12
    assert not np.allclose(jump, throw)
    assert not np.allclose(class_prototype("Jump", 1, 64), jump)


# -- the signal follows the annotations ------------------------------------------------------


def test_shared_direction_is_higher_inside_every_instance() -> None:
    feats = _gen(SyntheticParams(dim=64, strength_min=1.0, strength_max=1.0))
    projection = feats @ shared_action_direction(0, 64)
    background = ~(_inside(38, 71) | _inside(118, 151) | _inside(198, 231))
    for first, last in [(40, 69), (120, 149), (200, 229)]:  # Ambiguous too: it is a real action
        inside = projection[_inside(first + 2, last - 2)]
        assert inside.mean() > projection[background].mean() + 0.15


def test_shared_direction_separates_instances_on_the_toy_dataset(toy_inputs) -> None:
    annotations, feature_info = toy_inputs
    action = shared_action_direction(0, 32)
    inside, outside = [], []
    for video_id, info in feature_info.items():
        video = annotations.videos[video_id]
        projection = generate_video_features(video, info, annotations.classes, SyntheticParams(dim=32), 0) @ action
        centres = (np.arange(info.snippet_length) + 0.5) / info.feature_fps
        near = np.zeros(info.snippet_length, bool)
        core = np.zeros(info.snippet_length, bool)
        for instance in video.instances:
            near |= (centres > instance.start - 1.0) & (centres < instance.end + 1.0)
            core |= (centres > instance.start + 0.3) & (centres < instance.end - 0.3)
        inside.append(projection[core])
        outside.append(projection[~near])
    inside_mean, outside_mean = np.concatenate(inside).mean(), np.concatenate(outside).mean()
    assert inside_mean > outside_mean + 0.1


def test_class_prototype_marks_its_own_class_only() -> None:
    feats = _gen()
    jump = feats @ class_prototype("Jump", 0, 64)
    throw = feats @ class_prototype("Throw", 0, 64)
    in_jump, in_throw = _inside(42, 67), _inside(122, 147)
    assert jump[in_jump].mean() > jump[in_throw].mean() + 0.1
    assert throw[in_throw].mean() > throw[in_jump].mean() + 0.1


def test_removing_an_instance_removes_only_its_bump() -> None:
    without = _video("vid", [(*_snippets(40, 69), "Jump"), (*_snippets(200, 229), "Ambiguous")])
    a, b = _gen(), _gen(video=without)
    differs = np.abs(a - b).max(axis=1) > 1e-6
    assert differs[_inside(120, 149)].all()
    assert not differs[:110].any() and not differs[160:].any()


def test_unknown_label_is_refused_and_unlisted_labels_are_configurable() -> None:
    odd = _video("vid", [(1.0, 2.0, "Juggle")])
    with pytest.raises(DataFormatError, match=r"'vid'.*'Juggle'"):
        _gen(video=odd)
    feats = _gen(SyntheticParams(dim=64, unlisted_action_labels=("Juggle",)), video=odd)
    assert feats.shape == (300, 64)


# -- envelopes: time <-> snippets -------------------------------------------------------------


def test_hard_envelope_covers_exactly_the_annotated_snippets() -> None:
    start, end = _snippets(10, 19)  # snippet i covers [i, i+1) * 8 / 30 s
    envelope = instance_envelope(start, end, 40, FRAMES, FPS, ramp_snippets=0.0)
    np.testing.assert_array_equal(envelope, _inside(10, 19, 40).astype(float))
    half = instance_envelope(start + SNIPPET_SECONDS / 2, end, 40, FRAMES, FPS, ramp_snippets=0.0)
    assert half[10] == pytest.approx(0.5) and half[11] == 1.0 and half[9] == 0.0


def test_soft_envelope_is_half_at_the_boundary_and_keeps_the_area() -> None:
    start, end = _snippets(10, 29)
    envelope = instance_envelope(start, end, 60, FRAMES, FPS, ramp_snippets=4.0)
    assert envelope.sum() == pytest.approx(20.0)  # ramps centred on the boundaries keep the area
    assert envelope[12:28].min() == 1.0
    assert 0.0 < envelope[8] < envelope[9] < 0.5 < envelope[10] < envelope[11] < 1.0
    assert envelope[:8].max() == 0.0 and envelope[32:].max() == 0.0
    assert envelope[:20] == pytest.approx(envelope[20:40][::-1])


def test_short_and_degenerate_instances() -> None:
    start = 5 * SNIPPET_SECONDS
    tiny = instance_envelope(start, start + 0.1, 20, FRAMES, FPS, ramp_snippets=2.0)
    assert 0.0 < tiny.max() < 0.75  # a weak, but present, signal
    assert instance_envelope(start, start, 20, FRAMES, FPS, 2.0).max() == 0.0  # zero length: none
    beyond = instance_envelope(30.0, 40.0, 20, FRAMES, FPS, 2.0)  # after the video's end
    assert beyond.max() == 0.0 and beyond.shape == (20,)


# -- knobs ------------------------------------------------------------------------------------


def _knob(**changes) -> np.ndarray:
    return _gen(dataclasses.replace(SyntheticParams(dim=64), **changes))


def test_every_knob_changes_the_features() -> None:
    base = _gen()
    changes = {
        "scene_cut_rate_per_minute": 30.0,
        "scene_change_scale": 1.5,
        "drift_scale": 1.5,
        "drift_timescale_seconds": 1.0,
        "background_actionness_scale": 0.5,
        "background_actionness_timescale_seconds": 20.0,
        "noise_scale": 1.0,
        "shared_action_scale": 0.0,
        "class_action_scale": 0.0,
        "instance_prototype_jitter": 0.0,
        "strength_min": 1.2,
        "strength_max": 3.0,
        "ramp_snippets": 0.0,
        "l2_normalize": False,
    }
    knobs = {f.name for f in dataclasses.fields(SyntheticParams)} - {"dim", "unlisted_action_labels"}
    assert set(changes) == knobs
    for name, value in changes.items():
        assert not np.allclose(_knob(**{name: value}), base, atol=1e-4), name


def test_knobs_act_on_their_own_component() -> None:
    action = shared_action_direction(0, 64)
    raw = dict(l2_normalize=False)
    # No noise, no drift, no cuts: outside the instances every snippet is the same vector.
    still = _knob(noise_scale=0.0, drift_scale=0.0, background_actionness_scale=0.0, scene_cut_rate_per_minute=0.0, **raw)
    assert np.ptp(still[:30], axis=0).max() < 1e-6
    # Without the shared signal the action direction no longer tells instances from background.
    flat = _knob(shared_action_scale=0.0, noise_scale=0.0, background_actionness_scale=0.0, **raw) @ action
    assert np.abs(flat).max() < 1e-6
    # Unnormalised, the features are a sum of components: switching one off removes exactly it.
    full = _knob(**raw)
    near_instances = _inside(38, 71) | _inside(118, 151) | _inside(198, 231)
    shared = full - _knob(shared_action_scale=0.0, **raw)
    assert np.abs(shared[~near_instances]).max() < 1e-6
    assert np.abs(_orthogonal(shared, action)).max() < 1e-6  # only along the shared direction
    assert (shared[_inside(42, 67)] @ action).min() > 0.1
    specific = full - _knob(class_action_scale=0.0, **raw)
    assert np.abs(specific[~near_instances]).max() < 1e-6
    assert np.abs(specific @ action).max() < 1e-6  # prototypes are orthogonal to it
    jump = specific @ class_prototype("Jump", 0, 64)
    assert jump[_inside(42, 67)].min() > 0.1 and np.abs(jump[_inside(122, 147)]).max() < 0.2
    # Scene cuts make abrupt jumps that the slow drift does not.
    cuts = _knob(scene_cut_rate_per_minute=60.0, noise_scale=0.0, **raw)
    steps = np.linalg.norm(np.diff(cuts[:38], axis=0), axis=1)
    smooth = np.linalg.norm(np.diff(_knob(noise_scale=0.0, **raw)[:38], axis=0), axis=1)
    assert steps.max() > 0.3 > smooth.max()
    # Unnormalised features are not unit length.
    assert np.abs(np.linalg.norm(_knob(**raw), axis=1) - 1).max() > 0.05


def test_params_validation_and_config_blocks() -> None:
    with pytest.raises(ValueError, match="noise_scale"):
        SyntheticParams(noise_scale=-1.0)
    with pytest.raises(ValueError, match="strength_max"):
        SyntheticParams(strength_min=2.0, strength_max=1.0)
    with pytest.raises(ValueError, match=r"unknown knob\(s\) \['nosie_scale'\]"):
        SyntheticParams.from_mapping({"nosie_scale": 0.1})
    defaults = dataclasses.asdict(SyntheticParams())
    for dataset, overrides in [
        ("thumos14_synth", {}),
        ("anet13_synth", {"unlisted_action_labels": ()}),
        ("toy", {"dim": 32, "shared_action_scale": 0.35}),
    ]:
        cfg = compose([f"dataset={dataset}"])
        block = OmegaConf.to_container(cfg.dataset.synthetic, resolve=True)
        assert set(block) == set(defaults) | {"seed", "dtype"}, dataset
        params = dataclasses.asdict(SyntheticParams.from_mapping(block))
        assert params == {**defaults, **overrides}, dataset
        assert cfg.dataset.features.format == "hdf5"
        assert cfg.dataset.features.dim == block["dim"]
        name = Path(cfg.dataset.features.path).name
        assert name == f"{dataset}_d{block['dim']}_s{block['seed']}.h5"


# -- stores -----------------------------------------------------------------------------------


def test_store_holds_every_video_as_generated(tmp_path: Path, toy_inputs) -> None:
    annotations, feature_info = toy_inputs
    params = SyntheticParams(dim=16)
    path = write_synthetic_store(tmp_path / "s.h5", annotations, feature_info, params, 5, progress=False)
    with open_feature_store("hdf5", path, expected_dim=16,
                            expected_lengths={v: i.snippet_length for v, i in feature_info.items()}) as store:
        assert store.video_ids() == sorted(feature_info)
        for video_id in list(feature_info)[:5]:
            expected = generate_video_features(
                annotations.videos[video_id], feature_info[video_id], annotations.classes, params, 5
            )
            assert store.length(video_id) == feature_info[video_id].snippet_length
            np.testing.assert_array_equal(store.read(video_id), expected.astype(np.float16).astype(np.float32))
        attrs = store.attributes()
    assert attrs["synthetic_seed"] == 5 and attrs["synthetic_dtype"] == "float16"


def test_ensure_skips_when_unchanged_and_regenerates_otherwise(tmp_path: Path, toy_inputs) -> None:
    annotations, feature_info = toy_inputs
    path = tmp_path / "toy.h5"
    knobs = {"seed": 0, "dim": 8, "dtype": "float32"}
    assert ensure_synthetic_store(path, annotations, feature_info, knobs, progress=False)
    stamp = path.stat().st_mtime_ns
    assert not ensure_synthetic_store(path, annotations, feature_info, knobs, progress=False)
    assert path.stat().st_mtime_ns == stamp
    assert ensure_synthetic_store(path, annotations, feature_info, knobs, force=True, progress=False)
    for changed in ({**knobs, "noise_scale": 0.5}, {**knobs, "seed": 1}, {**knobs, "dtype": "float16"}):
        assert ensure_synthetic_store(path, annotations, feature_info, changed, progress=False)
    fewer = {k: v for k, v in list(feature_info.items())[:3]}
    assert ensure_synthetic_store(path, annotations, fewer, {**knobs, "dtype": "float16"}, progress=False)
    with HDF5FeatureStore(path) as store:
        assert len(store.video_ids()) == 3


def test_failed_generation_leaves_no_file(tmp_path: Path, toy_inputs) -> None:
    annotations, feature_info = toy_inputs
    params = SyntheticParams(dim=8, unlisted_action_labels=())  # toy has Ambiguous instances
    with pytest.raises(DataFormatError, match="Ambiguous"):
        write_synthetic_store(tmp_path / "x.h5", annotations, feature_info, params, 0, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_make_synthetic_script(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import importlib.util

    from tp2detr.cli.hydra_app import run_script

    spec = importlib.util.spec_from_file_location("make_synthetic", REPO_ROOT / "scripts" / "make_synthetic.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    args = ["dataset=toy", f"paths.feature_dir={tmp_path}", "dataset.synthetic.dim=8"]
    assert run_script(script.main, args) == 0
    assert (tmp_path / "toy_d8_s0.h5").is_file() and "wrote" in capsys.readouterr().out
    assert run_script(script.main, args) == 0
    assert "up to date" in capsys.readouterr().out
    assert run_script(script.main, ["dataset=thumos14"]) == 2
    assert "no 'synthetic' block" in capsys.readouterr().err
    assert run_script(script.main, ["dataset=toy", "dataset.synthetic.nope=1"]) == 2  # a Hydra error
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nope" in err and "Traceback" not in err
