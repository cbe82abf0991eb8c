"""Run folder names and the resume rule (tp2detr/engine/run_identity.py)."""

from __future__ import annotations

import pytest

from tp2detr.engine.run_identity import MUTABLE_KEYS, is_mutable, resume_changes, variant_suffix
from tp2detr.errors import ConfigError


def test_the_suffix_names_what_is_trained_in_a_stable_order():
    assert variant_suffix([]) == ""
    assert variant_suffix(["split=50_50", "split.id=3", "name=x", "experiment=demo", "dataset=toy"]) == ""
    assert variant_suffix(["optim.epochs=3", "trainer.progress=false", "paths.feature_dir=/d", "+launcher=joblib"]) == ""
    a = variant_suffix(["model.dropout=0.2", "tfpn=direct", "seed=1"])
    assert a == "__seed=1,tfpn=direct,model.dropout=0.2"  # top-level keys (group choices) first
    assert variant_suffix(["seed=1", "tfpn=direct", "model.dropout=0.2"]) == a  # order does not matter
    assert variant_suffix(["tfpn=sgp"]) != variant_suffix(["tfpn=direct"])
    assert variant_suffix(["dataset.synthetic.noise_scale=0.3"]) == "__dataset.synthetic.noise_scale=0.3"
    assert "/" not in variant_suffix(["hydra/launcher=joblib", "x.path=/a/b"])


def test_a_long_suffix_is_cut_and_hashed_without_collisions():
    many = [f"model.key{i}={i}" for i in range(20)]
    suffix = variant_suffix(many)
    assert len(suffix) <= 2 + 80
    other = variant_suffix([*many[:-1], "model.key19=20"])
    assert suffix != other and suffix[:40] == other[:40]


def test_resume_accepts_mutable_changes_and_refuses_the_rest():
    stored = {"optim": {"lr": 1e-4, "epochs": 1, "lr_drop_gamma": 0.1}, "trainer": {"progress": True},
              "paths": {"feature_dir": "/a"}}
    same = resume_changes(stored, stored, "ckpt")
    assert same == []
    mutable = {**stored, "optim": {**stored["optim"], "epochs": 3}, "paths": {"feature_dir": "/b"}}
    assert resume_changes(stored, mutable, "ckpt") == [("optim.epochs", 1, 3), ("paths.feature_dir", "/a", "/b")]
    fixed = {**stored, "optim": {**stored["optim"], "lr": 1.0, "lr_drop_gamma": 0.5}, "model": {"new": 1}}
    with pytest.raises(ConfigError) as info:
        resume_changes(stored, fixed, "last.pt")
    text = str(info.value)
    assert text.startswith("last.pt: cannot resume") and "3 key(s)" in text
    assert "optim.lr: checkpoint 0.0001, now 1.0" in text and "model.new: checkpoint '(absent)', now 1" in text
    assert "trainer.resume=false" in text and "name=<new name>" in text


def test_mutable_keys_are_prefixes():
    assert is_mutable("paths.output_dir") and is_mutable("trainer.divergence.factor")
    assert not is_mutable("optim.lr") and not is_mutable("trainer.precision") and not is_mutable("pathsx")
    assert "optim.epochs" in MUTABLE_KEYS


def test_a_checkpoint_written_before_a_key_existed_resumes_when_the_key_keeps_the_old_behaviour():
    stored = {"dataset": {"evaluation": {"nms_threshold": None}}}
    same = {"dataset": {"evaluation": {"nms_threshold": None, "stitch_deduplicate": False}}}
    assert resume_changes(stored, same, "last.pt") == []
    other = {"dataset": {"evaluation": {"nms_threshold": None, "stitch_deduplicate": True}}}
    with pytest.raises(ConfigError, match="dataset.evaluation.stitch_deduplicate: checkpoint False, now True"):
        resume_changes(stored, other, "last.pt")
