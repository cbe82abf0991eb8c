"""Datasets and batches built from the config: toy features end to end, padding, missing videos."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from tp2detr.config import compose
from tp2detr.data.bundle import load_data
from tp2detr.data.feature_setup import build_dataset, make_synthetic_features
from tp2detr.data.dataset import collate_samples, round_up
from tp2detr.data.features import write_hdf5_features
from tp2detr.errors import DataFormatError, MissingDataError


@pytest.fixture(scope="module")
def toy_cfg(tmp_path_factory):
    feature_dir = tmp_path_factory.mktemp("features")
    cfg = compose(["dataset=toy", f"paths.feature_dir={feature_dir}"])
    make_synthetic_features(cfg, progress=False)
    return cfg


def test_toy_training_items_and_batches(toy_cfg):
    bundle = load_data(toy_cfg)
    ds = build_dataset(toy_cfg, bundle, training=True)
    assert len(ds) == len(bundle.train_samples) > 0
    item = ds[0]
    sample = item["sample"]
    assert item["feats"].shape == (sample.length, 32) and item["feats"].dtype == torch.float32
    assert item["segments"].shape[1] == 2 and len(item["segments"]) > 0
    assert ((item["segments"] >= 0) & (item["segments"] <= 1)).all()
    assert item["salient"].shape == (sample.length,) and item["salient"].sum() > 0
    raw = ds.store.read(sample.video_id, sample.start, sample.end + 1)
    np.testing.assert_array_equal(item["feats"].numpy(), raw)

    items = [ds[i] for i in range(min(5, len(ds)))]
    batch = collate_samples(items, pad_multiple=64)
    B, T, C = batch["feats"].shape
    assert B == len(items) and T % 64 == 0 and T >= max(len(i["feats"]) for i in items)
    for b, it in enumerate(items):
        n = len(it["feats"])
        assert not batch["mask"][b, :n].any() and batch["mask"][b, n:].all()
        assert (batch["feats"][b, n:] == 0).all()
        assert torch.equal(batch["salient_valid"][b], ~batch["mask"][b])
        assert torch.equal(batch["targets"][b]["segments"], it["segments"])
    assert batch["samples"][0] is items[0]["sample"]


def test_eval_dataset_covers_every_test_window(toy_cfg):
    bundle = load_data(toy_cfg)
    ds = build_dataset(toy_cfg, bundle, training=False)
    assert len(ds) == len(bundle.eval_samples)
    videos = {s.video_id for s in ds.samples}
    assert videos == {v.video_id for v in bundle.protocol.eval_videos}


def test_missing_features_error_or_skip(toy_cfg, tmp_path, caplog):
    bundle = load_data(toy_cfg)
    ds = build_dataset(toy_cfg, bundle, training=True)
    dropped = ds.samples[0].video_id
    keep = [v for v in ds.store.video_ids() if v != dropped]
    partial = tmp_path / "partial.h5"
    write_hdf5_features(partial, ((v, ds.store.read(v)) for v in keep), dtype="float32",
                        progress=False)
    cfg = compose(["dataset=toy", f"dataset.features.path={partial}"])
    with pytest.raises(MissingDataError, match="features missing for 1 of .* data.on_missing=skip"):
        build_dataset(cfg, bundle, training=True)
    cfg = compose(["dataset=toy", f"dataset.features.path={partial}", "data.on_missing=skip"])
    with caplog.at_level(logging.WARNING, logger="tp2detr.data.dataset"):
        skipped = build_dataset(cfg, bundle, training=True)
    assert dropped not in {s.video_id for s in skipped.samples}
    assert len(skipped) < len(ds)
    assert any(dropped in r.message for r in caplog.records)
    assert any("skipped 1 of" in r.message for r in caplog.records)


def test_feature_length_disagreeing_with_feature_info(toy_cfg, tmp_path):
    bundle = load_data(toy_cfg)
    ds = build_dataset(toy_cfg, bundle, training=True)
    vid = ds.samples[0].video_id
    short = tmp_path / "short.h5"
    write_hdf5_features(short, [(vid, ds.store.read(vid)[:-10])], dtype="float32", progress=False)
    cfg = compose(["dataset=toy", f"dataset.features.path={short}", "data.on_missing=skip"])
    bad = build_dataset(cfg, bundle, training=True)
    with pytest.raises(DataFormatError, match=vid):
        bad[0]


def test_missing_store_says_what_to_set_and_the_synthetic_alternative(tmp_path):
    cfg = compose(["dataset=anet13", f"paths.feature_dir={tmp_path}"])
    bundle = load_data(cfg)
    with pytest.raises(MissingDataError, match="dataset.features.path=.*python train.py dataset=anet13_synth"):
        build_dataset(cfg, bundle, training=True)


def test_resize_mode_samples_nearest(tmp_path):
    # ActivityNet-style: a 10-snippet video resized to 4 with nearest = rows 0, 2, 5, 7
    from tp2detr.data.annotations import FeatureInfo, Instance
    from tp2detr.data.dataset import ProposalDataset
    from tp2detr.data.features import open_feature_store
    from tp2detr.data.protocol import ProtocolVideo
    from tp2detr.data.samples import build_samples

    feats = np.arange(20, dtype=np.float32).reshape(10, 2)
    path = tmp_path / "f.h5"
    write_hdf5_features(path, [("v", feats)], dtype="float32", progress=False)
    info = FeatureInfo("v", 160, 30.0, 10, 160 / 30)
    samples = build_samples([ProtocolVideo("v", 5.0, info, (Instance(1.0, 2.0, "A"),))],
                            {"mode": "resize", "size": 4}, training=True)
    ds = ProposalDataset(samples, open_feature_store("hdf5", path), resize=True)
    np.testing.assert_array_equal(ds[0]["feats"].numpy(), feats[[0, 2, 5, 7]])


def test_round_up():
    assert [round_up(n, 64) for n in (1, 64, 65, 128)] == [64, 64, 128, 128]
    assert round_up(37, 1) == 37


def test_a_generated_store_made_with_other_settings_is_rebuilt_and_a_users_file_is_not(tmp_path):
    from tp2detr.data.features import HDF5FeatureStore

    cfg = compose(["dataset=toy", f"paths.feature_dir={tmp_path}"])
    bundle = load_data(cfg)
    build_dataset(cfg, bundle, training=True)  # built on first use
    store = tmp_path / "toy_d32_s0.h5"
    first = HDF5FeatureStore(store).read(bundle.train_samples[0].video_id)
    noisier = compose(["dataset=toy", f"paths.feature_dir={tmp_path}", "dataset.synthetic.noise_scale=0.9"])
    ds = build_dataset(noisier, bundle, training=True)  # same file name, other knobs: rebuilt
    assert not np.array_equal(ds.store.read(bundle.train_samples[0].video_id), first)
    assert HDF5FeatureStore(store).attributes()["synthetic_params"] != ""
    own = tmp_path / "own.h5"
    write_hdf5_features(own, [(v, first) for v in {s.video_id for s in bundle.train_samples}], progress=False)
    before = own.read_bytes()
    cfg = compose(["dataset=toy", f"dataset.features.path={own}", "data.on_missing=skip"])
    build_dataset(cfg, bundle, training=True)
    assert own.read_bytes() == before  # not a generated store: used as it is
