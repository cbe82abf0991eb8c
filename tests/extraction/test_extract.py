"""Video → snippet features: values, streaming, feature info, the round trip through the project's
own readers, resumability, both formats, and bad videos in a batch."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

av = pytest.importorskip("av")
transformers = pytest.importorskip("transformers")

import tp2detr.extraction.extract as extract_module
from tp2detr.data.annotations import load_feature_info
from tp2detr.data.features import open_feature_store
from tp2detr.errors import ExtractionError
from tp2detr.extraction import ClipFrameEncoder, extract_video, extract_videos
from video_test_fixtures import write_test_video

INFO_50 = {"frame_length": 50, "frame_duration": 49 / 25, "video_fps": 25.0, "snippet_length": 6, "snippet_duration": 48 / 25}


def with_batch(encoder, batch_size, **kwargs):
    """The same model with another batch size (and options)."""
    return ClipFrameEncoder(encoder.model, encoder.processor, "cpu", batch_size, source=encoder.source, **kwargs)


class CountingEncoder(ClipFrameEncoder):
    """Records the size of every embed() call."""

    def __init__(self, base):
        super().__init__(base.model, base.processor, "cpu", base.batch_size, source=base.source)
        self.calls: list[int] = []

    def embed(self, frames):
        self.calls.append(len(frames))
        return super().embed(frames)


def frame_embeddings_directly(path, model_dir) -> np.ndarray:
    """Every frame of ``path`` decoded with PyAV and embedded by the model, one call, [F, 512]."""
    model = transformers.CLIPVisionModelWithProjection.from_pretrained(model_dir, local_files_only=True).eval()
    processor = transformers.AutoImageProcessor.from_pretrained(model_dir, local_files_only=True)
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    with torch.no_grad():
        return model(pixel_values=processor(images=frames, return_tensors="pt")["pixel_values"]).image_embeds.numpy()


def bad_bytes(path):
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    return path


# ----------------------------------------------------------------------------------------------
# One video
# ----------------------------------------------------------------------------------------------


def test_snippet_i_is_the_mean_of_the_embeddings_of_frames_8i_to_8i_plus_7(encoder, tiny_clip, video_50):
    result = extract_video(video_50, encoder)
    assert result.video_id == "clip50"
    assert result.features.shape == (50 // 8, 512) and result.features.dtype == np.float32
    assert result.info == INFO_50
    frames = frame_embeddings_directly(video_50, tiny_clip)
    assert frames.shape == (50, 512)
    for i in range(6):
        np.testing.assert_allclose(result.features[i], frames[8 * i : 8 * i + 8].mean(axis=0), rtol=1e-4, atol=1e-5)
    assert not np.allclose(result.features[0], result.features[1])  # the frames differ


def test_frames_are_streamed_in_batches_and_the_chunking_does_not_change_the_features(encoder, video_50):
    reference = extract_video(video_50, encoder).features
    counting = CountingEncoder(with_batch(encoder, 5))
    streamed = extract_video(video_50, counting).features
    assert counting.calls == [5] * 10  # never more than one batch of decoded frames at a time
    np.testing.assert_allclose(streamed, reference, rtol=1e-5, atol=1e-6)


def test_sixteen_frame_snippets(encoder, video_50):
    result = extract_video(video_50, encoder, frames_per_snippet=16)
    assert result.features.shape == (3, 512)
    assert result.info["snippet_length"] == 3 and result.info["snippet_duration"] == 48 / 25


def test_extract_video_writes_nothing(encoder, copy_video, tmp_path):
    path = copy_video(tmp_path / "only.mp4")
    extract_video(path, encoder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["only.mp4"]


@pytest.mark.parametrize("frames, match", [(5, "has 5 frame"), (0, "no video stream")])
def test_too_short_and_empty_videos_are_errors_naming_the_file(encoder, tmp_path, frames, match):
    path = write_test_video(tmp_path / f"short{frames}.mp4", frames=frames)
    with pytest.raises(ExtractionError, match=match) as info:
        extract_video(path, encoder)
    assert str(path) in str(info.value)


def test_an_unreadable_file_is_an_error_naming_it(encoder, tmp_path):
    path = bad_bytes(tmp_path / "random.mp4")
    with pytest.raises(ExtractionError, match="cannot open as a video") as info:
        extract_video(path, encoder)
    assert str(path) in str(info.value)


# ----------------------------------------------------------------------------------------------
# Many videos: formats and the round trip through the project's readers
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def two_videos(tmp_path, copy_video):
    folder = tmp_path / "videos"
    copy_video(folder / "v1.mp4")
    write_test_video(folder / "v2.avi", frames=20, fps=10)
    return folder


@pytest.mark.parametrize("fmt", ["npy", "hdf5"])
def test_written_features_load_with_the_projects_own_readers(encoder, two_videos, tmp_path, fmt):
    out = tmp_path / "out"
    summary = extract_videos(two_videos, out, encoder, fmt=fmt, progress=False)
    assert summary.ok and summary.extracted == ["v1", "v2"] and summary.skipped == []
    infos = load_feature_info(out / "feature_info.json")
    assert summary.feature_info == out / "feature_info.json"
    assert infos["v1"].snippet_length == 6 and infos["v1"].frames_per_snippet == 8
    assert (infos["v2"].frame_length, infos["v2"].video_fps, infos["v2"].snippet_length) == (20, 10.0, 2)
    assert infos["v2"].snippet_duration == 1.6
    expected_store = out if fmt == "npy" else out / "features.h5"
    assert summary.features == expected_store
    lengths = {v: i.snippet_length for v, i in infos.items()}
    with open_feature_store(fmt, expected_store, expected_dim=512, expected_lengths=lengths, length_tolerance=0) as store:
        assert store.video_ids() == ["v1", "v2"]
        np.testing.assert_array_equal(store.read("v1"), extract_video(two_videos / "v1.mp4", encoder).features)
        assert store.read("v2").shape == (2, 512)
    assert not (out / "features.h5.parts").exists()
    assert json.loads((out / "extraction.json").read_text())["frames_per_snippet"] == 8


def test_hdf5_float16(encoder, two_videos, tmp_path):
    extract_videos(two_videos, tmp_path / "out", encoder, fmt="hdf5", hdf5_dtype="float16", progress=False)
    with open_feature_store("hdf5", tmp_path / "out" / "features.h5") as store:
        assert store._dataset("v1").dtype == np.float16


# ----------------------------------------------------------------------------------------------
# Resumability
# ----------------------------------------------------------------------------------------------


def test_npy_rerun_skips_done_videos_and_redoes_corrupted_or_unrecorded_ones(encoder, two_videos, tmp_path):
    out = tmp_path / "out"
    extract_videos(two_videos, out, encoder, progress=False)
    first = np.load(out / "v1.npy")

    counting = CountingEncoder(encoder)
    again = extract_videos(two_videos, out, counting, progress=False)
    assert again.skipped == ["v1", "v2"] and again.extracted == [] and counting.calls == []

    (out / "v1.npy").write_bytes((out / "v1.npy").read_bytes()[:200])  # a partial file
    info = json.loads((out / "feature_info.json").read_text())
    del info["v2"]  # features without their feature-info entry
    (out / "feature_info.json").write_text(json.dumps(info))
    redo = extract_videos(two_videos, out, counting, progress=False)
    assert redo.extracted == ["v1", "v2"] and redo.skipped == []
    np.testing.assert_allclose(np.load(out / "v1.npy"), first, rtol=1e-6)
    assert set(load_feature_info(out / "feature_info.json")) == {"v1", "v2"}

    np.save(out / "v2.npy", np.full((2, 512), np.nan, dtype=np.float32))  # NaN: not valid
    assert extract_videos(two_videos, out, encoder, progress=False).extracted == ["v2"]


def test_hdf5_resumes_after_an_interruption_and_extends_the_file(encoder, two_videos, tmp_path, monkeypatch, copy_video):
    out = tmp_path / "out"
    real = extract_module.extract_video
    calls = []

    def interrupted(path, *args, **kwargs):
        calls.append(path.name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(path, *args, **kwargs)

    monkeypatch.setattr(extract_module, "extract_video", interrupted)
    with pytest.raises(KeyboardInterrupt):
        extract_videos(two_videos, out, encoder, fmt="hdf5", progress=False)
    monkeypatch.setattr(extract_module, "extract_video", real)
    assert not (out / "features.h5").exists()
    assert [p.name for p in (out / "features.h5.parts").iterdir()] == ["v1.npy"]
    assert set(load_feature_info(out / "feature_info.json")) == {"v1"}  # saved on the way out

    resumed = extract_videos(two_videos, out, encoder, fmt="hdf5", progress=False)
    assert resumed.skipped == ["v1"] and resumed.extracted == ["v2"]
    copy_video(two_videos / "v3.mp4")
    extended = extract_videos(two_videos, out, encoder, fmt="hdf5", progress=False)
    assert extended.skipped == ["v1", "v2"] and extended.extracted == ["v3"]
    with open_feature_store("hdf5", out / "features.h5", expected_dim=512) as store:
        assert store.video_ids() == ["v1", "v2", "v3"]
        np.testing.assert_allclose(store.read("v3"), store.read("v1"), rtol=1e-6)
        assert store.attributes()["extraction_frames_per_snippet"] == 8


def test_other_settings_in_the_same_folder_are_refused_unless_overwrite(encoder, two_videos, tmp_path):
    out = tmp_path / "out"
    extract_videos(two_videos, out, encoder, progress=False)
    normalised = with_batch(encoder, 16, l2_normalize=True)
    with pytest.raises(ExtractionError, match="l2_normalize: False there, True now"):
        extract_videos(two_videos, out, normalised, progress=False)
    with pytest.raises(ExtractionError, match="frames_per_snippet"):
        extract_videos(two_videos, out, encoder, frames_per_snippet=16, progress=False)
    redone = extract_videos(two_videos, out, normalised, overwrite=True, progress=False)
    assert redone.extracted == ["v1", "v2"]
    assert (np.linalg.norm(np.load(out / "v1.npy"), axis=1) <= 1.0 + 1e-6).all()  # means of unit vectors


def test_an_existing_feature_info_file_is_updated_not_replaced(encoder, copy_video, tmp_path):
    video = copy_video(tmp_path / "videos" / "new.mp4")
    info_path = tmp_path / "info" / "thumos_info.json"
    info_path.parent.mkdir()
    other = {"frame_length": 1228, "snippet_length": 153, "frame_duration": 40.9, "video_fps": 30.0, "snippet_duration": 40.8}
    info_path.write_text(json.dumps({"video_test_0000672": other}))
    extract_videos(video, tmp_path / "out", encoder, feature_info=info_path, progress=False)
    written = json.loads(info_path.read_text())
    assert written == {"video_test_0000672": other, "new": INFO_50}
    assert not (tmp_path / "out" / "feature_info.json").exists()


def test_an_unreadable_feature_info_file_is_refused_and_left_alone(encoder, copy_video, tmp_path):
    video = copy_video(tmp_path / "a.mp4")
    info_path = tmp_path / "broken.json"
    info_path.write_text("{not json")
    with pytest.raises(ExtractionError, match="broken.json: not valid JSON"):
        extract_videos(video, tmp_path / "out", encoder, feature_info=info_path, progress=False)
    assert info_path.read_text() == "{not json"


# ----------------------------------------------------------------------------------------------
# Bad videos in a batch
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["npy", "hdf5"])
def test_a_batch_with_bad_videos_finishes_the_others_and_reports_the_bad_ones(
    encoder, copy_video, tmp_path, caplog, fmt
):
    folder = tmp_path / "videos"
    copy_video(folder / "good_a.mp4")
    bad_bytes(folder / "broken.mp4")
    write_test_video(folder / "short.mp4", frames=5)
    copy_video(folder / "zz_good.mp4")
    out = tmp_path / "out"
    with caplog.at_level(logging.ERROR, logger="tp2detr.extraction"):
        summary = extract_videos(folder, out, encoder, fmt=fmt, progress=False)
    assert not summary.ok
    assert summary.extracted == ["good_a", "zz_good"]
    assert [(f.video_id, f.path) for f in summary.failed] == [("broken", folder / "broken.mp4"), ("short", folder / "short.mp4")]
    assert "cannot open as a video" in summary.failed[0].error and "has 5 frame" in summary.failed[1].error
    assert str(folder / "broken.mp4") in caplog.text and str(folder / "short.mp4") in caplog.text
    assert set(load_feature_info(out / "feature_info.json")) == {"good_a", "zz_good"}
    with open_feature_store(fmt, summary.features, expected_dim=512) as store:
        assert store.video_ids() == ["good_a", "zz_good"]
    assert [f.video_id for f in summary.failed][0] == "broken"
    # A rerun retries only the bad ones.
    rerun = extract_videos(folder, out, encoder, fmt=fmt, progress=False)
    assert rerun.skipped == ["good_a", "zz_good"] and [f.video_id for f in rerun.failed] == ["broken", "short"]


def test_bad_arguments(encoder, tmp_path, copy_video):
    video = copy_video(tmp_path / "a.mp4")
    with pytest.raises(ValueError, match="format is 'csv'"):
        extract_videos(video, tmp_path / "out", encoder, fmt="csv", progress=False)
    with pytest.raises(ExtractionError, match="not found"):
        extract_videos(tmp_path / "missing", tmp_path / "out", encoder, progress=False)
    with pytest.raises(ExtractionError, match="given more than once"):
        extract_videos([video, video], tmp_path / "out", encoder, progress=False)
