"""The CLIP frame encoder: local loading only, projected image embeddings, batching."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from tp2detr.errors import ExtractionError
from tp2detr.extraction.clip_encoder import ClipFrameEncoder
from video_test_fixtures import synthetic_frame

FRAMES = [synthetic_frame(k) for k in range(5)]


def direct_embeddings(model, processor, frames) -> np.ndarray:
    pixels = processor(images=frames, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        return model(pixel_values=pixels).image_embeds.numpy()


def test_embeds_are_the_models_projected_image_embeds(encoder, tiny_clip):
    model = transformers.CLIPVisionModelWithProjection.from_pretrained(tiny_clip, local_files_only=True).eval()
    processor = transformers.AutoImageProcessor.from_pretrained(tiny_clip, local_files_only=True)
    out = encoder.embed(FRAMES)
    assert encoder.dim == 512
    assert out.shape == (5, 512) and out.dtype == np.float32
    np.testing.assert_allclose(out, direct_embeddings(model, processor, FRAMES), rtol=1e-5, atol=1e-5)
    assert encoder.embed([]).shape == (0, 512)


def test_batch_size_does_not_change_the_embeddings(encoder):
    small = ClipFrameEncoder(encoder.model, encoder.processor, "cpu", batch_size=2, source=encoder.source)
    np.testing.assert_allclose(small.embed(FRAMES), encoder.embed(FRAMES), rtol=1e-5, atol=1e-5)


def test_l2_normalize_gives_unit_vectors_in_the_same_direction(encoder):
    unit = ClipFrameEncoder(encoder.model, encoder.processor, "cpu", 16, l2_normalize=True, source=encoder.source)
    raw, normed = encoder.embed(FRAMES), unit.embed(FRAMES)
    np.testing.assert_allclose(np.linalg.norm(normed, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(normed, raw / np.linalg.norm(raw, axis=1, keepdims=True), rtol=1e-5, atol=1e-6)


def test_a_full_clip_checkpoint_loads_its_image_tower(tmp_path, tiny_clip):
    """Real checkpoints (openai/clip-vit-base-patch16) hold both towers: the image tower and its
    projection are used, equal to CLIPModel.get_image_features."""
    torch.manual_seed(0)
    config = transformers.CLIPConfig(
        text_config={"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
                     "vocab_size": 99, "max_position_embeddings": 16, "bos_token_id": 0, "eos_token_id": 1,
                     "pad_token_id": 1},
        vision_config={"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
                       "image_size": 32, "patch_size": 16},
        projection_dim=512,
    )
    full = transformers.CLIPModel(config).eval()
    full.save_pretrained(tmp_path)
    shutil.copyfile(tiny_clip / "preprocessor_config.json", tmp_path / "preprocessor_config.json")
    enc = ClipFrameEncoder.load(tmp_path, device="cpu")
    with torch.no_grad():
        expected = full.get_image_features(pixel_values=enc.pixel_values(FRAMES))
    expected = expected if torch.is_tensor(expected) else expected.pooler_output  # transformers 4 / 5
    np.testing.assert_allclose(enc.embed(FRAMES), expected.numpy(), rtol=1e-5, atol=1e-5)


def test_a_missing_folder_is_an_error_naming_it(tmp_path):
    with pytest.raises(ExtractionError, match="no such folder") as info:
        ClipFrameEncoder.load(tmp_path / "no_model", device="cpu")
    assert str(tmp_path / "no_model") in str(info.value)


def test_a_model_id_not_in_the_cache_is_never_downloaded():
    with pytest.raises(ExtractionError, match="nothing is downloaded") as info:
        ClipFrameEncoder.load("tp2detr-tests/no-such-clip-model", device="cpu")
    assert "tp2detr-tests/no-such-clip-model" in str(info.value)


def test_a_folder_without_a_model_is_an_error(tmp_path):
    with pytest.raises(ExtractionError, match="cannot load a CLIP image model"):
        ClipFrameEncoder.load(tmp_path, device="cpu")
