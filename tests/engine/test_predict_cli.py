"""``predict.py``: videos (tiny CLIP), ``.npy`` features and mixed folders end to end on a toy
checkpoint; agreement with evaluation's windowing and stitching; bad input."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from tp2detr.cli.predict import APP_KEYS, find_inputs, main
from tp2detr.stored_config import apply_overrides
from tp2detr.config import REPO_ROOT, compose
from tp2detr.data.annotations import load_feature_info
from tp2detr.data.bundle import load_data
from tp2detr.data.feature_setup import build_dataset
from tp2detr.data.dataset import collate_samples
from tp2detr.data.features import open_feature_store
from tp2detr.engine.proposal_inference import predict_batches, video_proposals
from tp2detr.engine.external_videos import top_k_per_video
from tp2detr.errors import DataFormatError
from tp2detr.evaluation import load_predictions
from tiny_config import tiny_model

TINY = tiny_model(num_queries=5)
QUIET = ["hydra/job_logging=none", "hydra/hydra_logging=none"]  # in-process runs leave logging alone
#: A toy evaluation video of 356 snippets: four sliding windows (stride 96), so stitching matters.
LONG_VIDEO = "video_test_0000001"
#: The generated test video: 80 frames at 25 fps → 10 snippets of 8 frames (the toy's), 3.2 s.
VIDEO_FRAMES, VIDEO_FPS = 80, 25

needs_video = pytest.mark.skipif(
    importlib.util.find_spec("av") is None or importlib.util.find_spec("transformers") is None,
    reason="video inputs need PyAV and transformers (pip install -e '.[video]')",
)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory, toy_checkpoints) -> dict:
    """A tiny toy checkpoint (32-d features, freshly initialised) and its synthetic feature store."""
    toy = toy_checkpoints.make(tmp_path_factory.mktemp("predict_cli"), TINY, epoch=2)
    cfg = toy["cfg"]
    with open_feature_store("hdf5", cfg.dataset.features.path) as store:
        long_features = store.read(LONG_VIDEO)
    return {**toy, "long_features": long_features}


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny CLIP whose 32-d embeddings fit the toy checkpoint, a 512-d one that does not, a video."""
    pytest.importorskip("av")
    pytest.importorskip("transformers")
    from video_test_fixtures import make_tiny_clip, write_test_video

    root = tmp_path_factory.mktemp("predict_media")
    return {
        "clip": make_tiny_clip(root / "clip32", projection_dim=32),
        "clip512": make_tiny_clip(root / "clip512", projection_dim=512),
        "video": write_test_video(root / "videos" / "clip.mp4", frames=VIDEO_FRAMES, fps=VIDEO_FPS),
    }


def predict(toy: dict, out: Path, *args: str) -> int:
    return main([f"ckpt={toy['ckpt']}", f"out_dir={out}", "trainer.device=cpu", "progress=false", *args, *QUIET])


def check_proposals(path: Path, durations: dict[str, float], top_k: int) -> dict:
    """proposals.json parses; segments in [0, duration]; scores descending; at most top_k each."""
    proposals = load_predictions(path)
    assert sorted(proposals) == sorted(durations)
    for video, (segments, scores) in proposals.items():
        assert 0 < len(scores) <= top_k
        assert np.all(np.diff(scores) <= 0), f"{video}: scores not sorted"
        assert segments.min() >= 0.0 and segments.max() <= durations[video] + 1e-9
        assert np.all(segments[:, 1] > segments[:, 0])
    return proposals


def check_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 5_000
    pixels = imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 500


def eval_style_proposals(cfg, model, video: str) -> tuple[np.ndarray, np.ndarray]:
    """``video``'s proposals as eval.py computes them (its evaluation samples from the feature
    store), sorted by descending score."""
    bundle = load_data(cfg)
    samples = [s for s in bundle.eval_samples if s.video_id == video]
    loader = DataLoader(
        build_dataset(cfg, bundle, training=False, samples=samples),
        batch_size=64,
        collate_fn=partial(collate_samples, pad_multiple=model.length_multiple),
    )
    stitched = video_proposals(predict_batches(model, loader, "cpu"), cfg.dataset.evaluation.nms_threshold)
    segments, scores = stitched[video]
    order = np.argsort(-scores, kind="stable")
    return segments[order], scores[order]


@needs_video
def test_video_input_is_extracted_predicted_saved_and_plotted(
    toy: dict, media: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    assert predict(toy, out, f"input={media['video']}", f"clip_model={media['clip']}") == 0
    printed = capsys.readouterr().out
    duration = VIDEO_FRAMES / VIDEO_FPS
    proposals = check_proposals(out / "proposals.json", {"clip": duration}, top_k=100)
    assert len(proposals["clip"][1]) == 5  # 1 window × 5 queries
    features = np.load(out / "features" / "clip.npy")
    assert features.shape == (VIDEO_FRAMES // 8, 32) and features.dtype == np.float32
    info = load_feature_info(out / "features" / "feature_info.json")["clip"]
    assert (info.snippet_length, info.frame_length, info.video_fps) == (10, VIDEO_FRAMES, VIDEO_FPS)
    check_png(out / "plots" / "clip.png")
    segments, scores = proposals["clip"]
    assert "1 videos, 5 proposals" in printed
    best = f"[{segments[0, 0]:.2f}, {segments[0, 1]:.2f}] {scores[0]:.3f}"
    assert f"clip: 3.20 s, 10 snippets, 5 proposals; top-5: {best}" in printed
    # a rerun on the saved features gives the same proposals, without CLIP
    again = tmp_path / "again"
    info_file = out / "features" / "feature_info.json"
    assert predict(toy, again, f"input={out / 'features'}", f"feature_info={info_file}", "plots=false") == 0
    rerun = load_predictions(again / "proposals.json")
    np.testing.assert_array_equal(rerun["clip"][0], segments)
    np.testing.assert_array_equal(rerun["clip"][1], scores)
    assert not (again / "plots").exists() and not (again / "features").exists()


def test_npy_input_matches_evaluation_windowing_and_stitching(toy: dict, tmp_path: Path) -> None:
    source = tmp_path / f"{LONG_VIDEO}.npy"
    np.save(source, toy["long_features"])
    expected = eval_style_proposals(toy["cfg"], toy["model"], LONG_VIDEO)
    assert len(expected[1]) > 5  # several windows were stitched
    info_file = REPO_ROOT / "data" / "toy" / "feature_info.json"
    info = load_feature_info(info_file)[LONG_VIDEO]
    # the dataset's feature-info entry: exactly evaluation's proposals, all of them (top_k=null)
    out = tmp_path / "by_info"
    assert predict(toy, out, f"input={source}", f"feature_info={info_file}", "top_k=null", "plots=false") == 0
    written = load_predictions(out / "proposals.json")[LONG_VIDEO]
    np.testing.assert_array_equal(written[0], expected[0])
    np.testing.assert_array_equal(written[1], expected[1])
    # feature_fps alone: the same up to rounding of the time axis; top_k cuts the list
    out = tmp_path / "by_fps"
    assert predict(toy, out, f"input={source}", f"feature_fps={info.feature_fps!r}", "top_k=4") == 0
    proposals = check_proposals(out / "proposals.json", {LONG_VIDEO: info.snippet_length / info.feature_fps}, 4)
    np.testing.assert_allclose(proposals[LONG_VIDEO][0], expected[0][:4], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(proposals[LONG_VIDEO][1], expected[1][:4], rtol=1e-12)
    check_png(out / "plots" / f"{LONG_VIDEO}.png")
    assert not (out / "features").exists()  # .npy inputs are not copied


def test_resize_windowing_from_the_command_matches_evaluation(toy: dict, tmp_path: Path) -> None:
    resize = ["dataset.windowing.mode=resize", "dataset.windowing.size=128", "dataset.evaluation.nms_threshold=null"]
    source = tmp_path / f"{LONG_VIDEO}.npy"
    np.save(source, toy["long_features"])
    info_file = REPO_ROOT / "data" / "toy" / "feature_info.json"
    out = tmp_path / "out"
    assert predict(toy, out, f"input={source}", f"feature_info={info_file}", "plots=false", *resize) == 0
    assert OmegaConf.load(out / "predict_config.yaml").dataset.windowing.mode == "resize"
    expected = eval_style_proposals(compose([*TINY, f"paths.feature_dir={toy['root'] / 'features'}", *resize]),
                                    toy["model"], LONG_VIDEO)
    written = load_predictions(out / "proposals.json")[LONG_VIDEO]
    assert len(written[1]) == 5  # one resized input, no NMS
    np.testing.assert_array_equal(written[0], expected[0])
    np.testing.assert_array_equal(written[1], expected[1])


@needs_video
def test_folder_mixes_videos_and_features(toy: dict, media: dict, tmp_path: Path, capsys, caplog) -> None:
    folder = tmp_path / "inputs"
    folder.mkdir()
    shutil.copyfile(media["video"], folder / "clip.mp4")
    np.save(folder / "long.npy", toy["long_features"])
    (folder / "notes.txt").write_text("not an input")
    (folder / "feature_info.json").write_text("{}")  # skipped without a warning
    out = tmp_path / "out"
    status = predict(toy, out, f"input={folder}", f"clip_model={media['clip']}", "feature_fps=3.75", "top_k=3")
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "skipped 1 file(s) that are neither videos nor .npy: notes.txt" in caplog.text
    durations = {"clip": VIDEO_FRAMES / VIDEO_FPS, "long": len(toy["long_features"]) / 3.75}
    proposals = check_proposals(out / "proposals.json", durations, top_k=3)
    assert all(len(scores) == 3 for _, scores in proposals.values())
    assert "2 videos, 6 proposals (at most 3 per video" in captured.out
    assert sorted(p.name for p in (out / "plots").iterdir()) == ["clip.png", "long.png"]
    assert sorted(p.name for p in (out / "features").iterdir()) == ["clip.npy", "feature_info.json"]


def _empty_folder(root: Path) -> list[str]:
    (root / "empty").mkdir()
    return [f"input={root / 'empty'}"]


def _unknown_extension(root: Path) -> list[str]:
    (root / "notes.txt").write_text("x")
    return [f"input={root / 'notes.txt'}"]


def _wrong_dim(root: Path) -> list[str]:
    np.save(root / "narrow.npy", np.ones((20, 7), dtype=np.float32))
    return [f"input={root / 'narrow.npy'}", "feature_fps=2"]


def _no_time_mapping(root: Path) -> list[str]:
    np.save(root / "v.npy", np.ones((20, 32), dtype=np.float32))
    return [f"input={root / 'v.npy'}"]


def _no_feature_info_entry(root: Path) -> list[str]:
    np.save(root / "v.npy", np.ones((20, 32), dtype=np.float32))
    return [f"input={root / 'v.npy'}", f"feature_info={REPO_ROOT / 'data' / 'toy' / 'feature_info.json'}"]


def _nan_features(root: Path) -> list[str]:
    array = np.ones((20, 32), dtype=np.float32)
    array[3, 4] = np.nan
    np.save(root / "v.npy", array)
    return [f"input={root / 'v.npy'}", "feature_fps=2"]


def _same_stem(root: Path) -> list[str]:
    (root / "both").mkdir()
    np.save(root / "both" / "a.npy", np.ones((20, 32), dtype=np.float32))
    (root / "both" / "a.mp4").write_bytes(b"")
    return [f"input={root / 'both'}", "feature_fps=2"]


def _video_without_clip_model(root: Path) -> list[str]:
    (root / "v.mp4").write_bytes(b"")
    return [f"input={root / 'v.mp4'}"]


BAD_INPUTS = {
    "empty folder": (_empty_folder, ["empty: the folder holds no video or .npy file", "expected a video file"]),
    "unknown extension": (_unknown_extension, ["notes.txt: unknown extension '.txt'"]),
    "feature dim": (_wrong_dim, ["narrow.npy: features have 7 channels", "dataset.features.dim=32"]),
    "no time mapping": (_no_time_mapping, ["feature_fps is null", "feature_fps=SNIPPETS_PER_SECOND"]),
    "no feature-info entry": (_no_feature_info_entry, ["no entry for video 'v'"]),
    "NaN": (_nan_features, ["contain 1 NaN value(s), first at row 3, column 4"]),
    "same stem": (_same_stem, ["a.mp4 and a.npy would both get the video id 'a'"]),
    "video without clip_model": (
        _video_without_clip_model, ["v.mp4) need CLIP feature extraction but clip_model is null"]
    ),
    "missing input": (lambda root: [f"input={root / 'absent.mp4'}"], ["absent.mp4: not found"]),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_gives_one_clear_error_line(toy: dict, tmp_path: Path, capsys, case: str) -> None:
    make, expected = BAD_INPUTS[case]
    out = tmp_path / "out"
    assert predict(toy, out, *make(tmp_path)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    for text in expected:
        assert text in err[0]
    assert not (out / "proposals.json").exists()


@needs_video
def test_clip_model_of_another_width_is_refused(toy: dict, media: dict, tmp_path: Path, capsys) -> None:
    args = [f"input={media['video']}", f"clip_model={media['clip512']}"]
    assert predict(toy, tmp_path / "out", *args) == 2
    err = capsys.readouterr().err
    assert "embeds frames into 512 channels, expected 32" in err and "dataset.features.dim=32" in err


def test_script_exits_with_status_2_and_names_the_missing_key(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "predict.py"), f"input={tmp_path}", f"out_dir={tmp_path / 'out'}"],
        check=False, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
    )
    assert done.returncode == 2 and "error: Missing mandatory value: ckpt" in done.stderr


def test_only_model_keys_reach_the_checkpoint_config() -> None:
    args = ["input=a.mp4", "top_k=5", "plots=false", "dataset.evaluation.nms_threshold=0.5", "+model.extra=1",
            "~model.attn_backend", "feature_fps=2", "trainer.precision=fp32", "trainer.eval_batch_size=8",
            "dataset.evaluation.stitch_deduplicate=true"]
    stored = compose(TINY)
    config = apply_overrides(stored, compose(args, config_name="predict"), args, APP_KEYS)
    assert not {"input", "top_k", "plots", "feature_fps"} & set(config)
    assert config.dataset.evaluation.nms_threshold == 0.5 and config.model.extra == 1
    assert "attn_backend" not in config.model
    assert config.trainer.precision == "fp32" and config.trainer.eval_batch_size == 8
    assert config.dataset.evaluation.stitch_deduplicate is True
    assert config.trainer.device == stored.trainer.device == "auto"  # not given: the checkpoint's


def test_predict_yaml_defines_no_run_settings_of_its_own() -> None:
    own = OmegaConf.load(REPO_ROOT / "configs" / "predict.yaml")
    assert not {"device", "precision", "batch_size", "stitch_deduplicate", "eval"} & set(own)
    assert not {"device", "precision", "batch_size", "stitch_deduplicate"} & APP_KEYS


@pytest.mark.parametrize("arg,expected", [
    ("device=cpu", "predict.py has no key 'device' any more, expected trainer.device=cpu"),
    ("precision=bf16", "expected trainer.precision=bf16"),
    ("batch_size=16", "expected trainer.eval_batch_size=16"),
    ("stitch_deduplicate=true", "expected dataset.evaluation.stitch_deduplicate=true"),
])
def test_a_moved_key_is_refused_naming_its_replacement(toy: dict, tmp_path: Path, capsys, arg: str,
                                                        expected: str) -> None:
    assert predict(toy, tmp_path / "out", f"input={tmp_path}", arg) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {arg}: ") and expected in err[0], err
    assert not (tmp_path / "out").exists()


def test_run_settings_come_from_the_checkpoint_unless_given(toy: dict, tmp_path: Path, capsys) -> None:
    np.save(tmp_path / "v.npy", toy["long_features"][:40])
    args = [f"input={tmp_path / 'v.npy'}", "feature_fps=4", "plots=false"]
    out = tmp_path / "out"
    assert predict(toy, out, *args, "trainer.precision=fp32", "trainer.eval_batch_size=2") == 0
    config = OmegaConf.load(out / "predict_config.yaml")
    assert config.trainer.precision == "fp32" and config.trainer.eval_batch_size == 2
    assert config.trainer.device == "cpu" and config.trainer.ar == toy["cfg"].trainer.ar
    assert main([f"ckpt={toy['ckpt']}", f"out_dir={tmp_path / 'bad'}", "trainer.precision=fp16", *args, *QUIET]) == 2
    assert "trainer.precision is 'fp16', expected one of auto, fp32, bf16" in capsys.readouterr().err


def test_find_inputs_sorts_a_folder_and_skips_hidden_files(tmp_path: Path) -> None:
    for name in ("b.npy", "a.MP4", ".hidden.npy", "c.mkv", "info.json"):
        (tmp_path / name).write_bytes(b"")
    found = find_inputs(tmp_path)
    assert [(i.video_id, i.path.name, i.kind) for i in found] == [
        ("a", "a.MP4", "video"), ("b", "b.npy", "npy"), ("c", "c.mkv", "video")
    ]
    with pytest.raises(DataFormatError, match="only: info.json"):
        (tmp_path / "only").mkdir()
        (tmp_path / "only" / "info.json").write_text("{}")
        find_inputs(tmp_path / "only")


def test_top_k_per_video_sorts_by_score_and_keeps_ties_in_order() -> None:
    segments = np.array([[0.0, 1.0], [1.0, 2.0], [2.0, 3.0], [3.0, 4.0]])
    scores = np.array([0.2, 0.9, 0.2, 0.5])
    kept = top_k_per_video({"v": (segments, scores), "empty": (np.zeros((0, 2)), np.zeros(0))}, 3)
    np.testing.assert_array_equal(kept["v"][1], [0.9, 0.5, 0.2])
    np.testing.assert_array_equal(kept["v"][0], [[1.0, 2.0], [3.0, 4.0], [0.0, 1.0]])
    assert kept["empty"][0].shape == (0, 2)
    assert [len(s) for _, s in top_k_per_video({"v": (segments, scores)}, None).values()] == [4]
    with pytest.raises(ValueError, match="top_k is 0"):
        top_k_per_video({"v": (segments, scores)}, 0)


def test_npy_run_lists_what_it_wrote(toy: dict, tmp_path: Path, capsys) -> None:
    np.save(tmp_path / "v.npy", toy["long_features"][:40])
    out = tmp_path / "out"
    assert predict(toy, out, f"input={tmp_path / 'v.npy'}", "feature_fps=4", "plots=false") == 0
    printed = capsys.readouterr().out
    assert f"wrote {out / 'proposals.json'}" in printed and "figure" not in printed
    assert json.loads((out / "proposals.json").read_text())["results"]["v"][0]["score"] > 0
    assert (out / "predict_config.yaml").is_file() and (out / ".hydra").is_dir()
