"""The metrics document's selection rule and what trainer.resume=false does with a run folder."""

from __future__ import annotations

from tp2detr.engine.resume import RUN_OUTPUTS, supersede_previous
from tp2detr.engine.run_document import selects


def _doc_with(*maps: float) -> dict:
    epochs = [{"epoch": e, "eval": {"mAP": m}, "val": {"mAP": 1 - m}} for e, m in enumerate(maps)]
    return {"epochs": epochs, "selected": {"epoch": 0, "eval": epochs[0]["eval"]} if epochs else None}


def test_last_takes_every_evaluated_epoch_and_skips_unevaluated_ones():
    doc = _doc_with(0.5)
    assert selects("last", doc, {"eval": {"mAP": 0.1}, "val": None})
    assert not selects("last", doc, {"eval": None, "val": None})


def test_best_rules_need_a_strict_improvement_on_their_own_split():
    doc = _doc_with(0.5)  # selected epoch 0: test 0.5, val 0.5
    assert selects("test_best", doc, {"eval": {"mAP": 0.6}, "val": {"mAP": 0.0}})
    assert not selects("test_best", doc, {"eval": {"mAP": 0.5}, "val": {"mAP": 0.9}})  # a tie keeps the earlier
    assert selects("val", doc, {"eval": {"mAP": 0.0}, "val": {"mAP": 0.6}})
    assert not selects("val", doc, {"eval": {"mAP": 0.9}, "val": {"mAP": 0.4}})
    assert not selects("val", doc, {"eval": {"mAP": 0.9}, "val": None})
    assert selects("val", _doc_with(), {"eval": None, "val": {"mAP": 0.0}})  # nothing selected yet


def test_superseding_moves_every_output_into_the_next_free_folder(tmp_path):
    assert supersede_previous(tmp_path) is None  # nothing to move
    for name in RUN_OUTPUTS:
        (tmp_path / name).write_text(name)
    (tmp_path / "superseded" / "1").mkdir(parents=True)
    (tmp_path / "other.txt").write_text("kept")
    target = supersede_previous(tmp_path)
    assert target == tmp_path / "superseded" / "2"
    assert sorted(p.name for p in target.iterdir()) == sorted(RUN_OUTPUTS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.txt", "superseded"]
