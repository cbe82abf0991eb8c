"""``scripts/extract_features.py``: the Hydra config, exit statuses and printed summary."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

pytest.importorskip("av")
pytest.importorskip("transformers")

from tp2detr.config import REPO_ROOT, compose
from tp2detr.data.annotations import load_feature_info
from tp2detr.data.features import open_feature_store


def load_script():
    spec = importlib.util.spec_from_file_location("extract_features", REPO_ROOT / "scripts" / "extract_features.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_config_defaults_follow_the_output_folder():
    cfg = compose(["input=v.mp4", "out=/data/out", "clip_model=m"], config_name="extract")
    assert cfg.feature_info == "/data/out/feature_info.json"
    assert cfg.hdf5_file == "/data/out/features.h5"
    assert (cfg.format, cfg.batch_size, cfg.device, cfg.frames_per_snippet) == ("npy", 64, "auto", 8)


def test_script_extracts_a_folder_then_skips_it(tiny_clip, copy_video, tmp_path, capsys):
    script = load_script()
    copy_video(tmp_path / "videos" / "a.mp4")
    out = tmp_path / "out"
    args = [f"input={tmp_path / 'videos'}", f"out={out}", f"clip_model={tiny_clip}", "device=cpu", "batch_size=8",
            "format=hdf5", "progress=false"]
    assert script.main(args) == 0
    assert "1 extracted, 0 already done, 0 failed" in capsys.readouterr().out
    with open_feature_store("hdf5", out / "features.h5", expected_dim=512) as store:
        assert store.read("a").shape == (6, 512)
    assert load_feature_info(out / "feature_info.json")["a"].snippet_length == 6
    assert script.main(args) == 0
    assert "0 extracted, 1 already done" in capsys.readouterr().out


def test_script_exit_status_1_lists_the_failed_videos(tiny_clip, copy_video, tmp_path, capsys):
    script = load_script()
    folder = tmp_path / "videos"
    copy_video(folder / "good.mp4")
    (folder / "bad.mp4").write_bytes(b"\x00\x01" * 500)
    feature_info = tmp_path / "info.json"
    status = script.main([f"input={folder}", f"out={tmp_path / 'out'}", f"clip_model={tiny_clip}", "device=cpu",
                          f"feature_info={feature_info}", "frames_per_snippet=16", "progress=false"])
    assert status == 1
    captured = capsys.readouterr()
    assert "1 extracted, 0 already done, 1 failed" in captured.out
    assert f"failed: {folder / 'bad.mp4'}" in captured.err
    assert np.load(tmp_path / "out" / "good.npy").shape == (3, 512)
    assert load_feature_info(feature_info)["good"].frames_per_snippet == 16


@pytest.mark.parametrize(
    "args, message",
    [
        (["input=x.mp4", "out=OUT"], "Missing mandatory value: clip_model"),
        (["input=x.mp4", "out=OUT", "clip_model=m", "unknown_key=1"], "Could not override 'unknown_key'"),
        (["input={tmp}/missing", "out={tmp}/out", "clip_model={clip}", "device=cpu"], "missing: not found"),
        (["input={tmp}", "out={tmp}/out", "clip_model={tmp}/no_model", "device=cpu"], "no_model: no such folder"),
        (["input={tmp}", "out={tmp}/out", "clip_model={clip}", "device=cpu", "format=csv"], "format is 'csv'"),
    ],
)
def test_script_bad_input_is_one_error_line_and_status_2(tiny_clip, tmp_path, capsys, args, message):
    script = load_script()
    (tmp_path / "v.mp4").write_bytes(b"")
    args = [a.format(tmp=tmp_path, clip=tiny_clip) for a in args]
    assert script.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1]
