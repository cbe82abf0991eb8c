"""The assembled TP²-DETR: shapes, padding invariance, no dead parameters, parameter counts,
and a tiny model that overfits one toy window."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from tp2detr.config import compose
from tp2detr.evaluation import average_precision_detection
from tp2detr.losses.criterion import build_criterion
from tp2detr.models.builder import build_model, parameter_breakdown

TFPNS = ["none", "direct", "cnn", "sgp", "transformer"]
SALIENTS = ["mlp", "mlp_encoder", "cnn_max", "cnn_mean", "cnn_mix", "cnn_adaptive", "off"]
SMALL = [
    "dataset=toy", "model.dim_feedforward=64", "model.encoder_layers=2", "model.decoder_layers=3",
    "model.num_queries=7", "tfpn.sgp_mlp_dim=48",
]


def small_cfg(*overrides: str):
    cfg = compose([*SMALL, *overrides])
    return cfg


def small_model(*overrides: str, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(small_cfg(*overrides))


def _batch(lengths, dim=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    feats = torch.randn(len(lengths), T, dim, generator=g)
    mask = torch.ones(len(lengths), T, dtype=torch.bool)
    for b, n in enumerate(lengths):
        mask[b, :n] = False
        feats[b, n:] = 0
    return feats, mask


@pytest.mark.parametrize("tfpn,salient", list(itertools.product(TFPNS, SALIENTS)))
def test_output_shapes_for_every_variant(tfpn, salient):
    model = small_model(f"tfpn={tfpn}", f"salient={salient}")
    feats, mask = _batch([40, 33])
    model.train()
    out = model(feats, mask)
    assert out["boxes"].shape == (3, 2, 7, 2)
    assert out["actionness"].shape == (3, 2, 7)
    assert ((out["boxes"] > 0) & (out["boxes"] < 1)).all()
    fpn, enc = out["salient"]["fpn"], out["salient"]["enc"]
    if salient == "off":
        assert fpn is None and enc is None
    else:
        assert enc.shape == (2, 40)
        assert (fpn is None) == (salient == "mlp_encoder")
    model.eval()
    with torch.no_grad():
        out = model(feats, mask)
    assert out["salient"] == {"fpn": None, "enc": None}  # salient heads never run at inference


@pytest.mark.parametrize("tfpn", ["none", "direct", "cnn", "transformer"])
def test_padded_batch_gives_the_unpadded_outputs(tfpn):
    model = small_model(f"tfpn={tfpn}").eval()
    feats, mask = _batch([29, 64], seed=1)
    with torch.no_grad():
        batched = model(feats, mask)
        alone = model(feats[:1, :29], mask[:1, :29])
    torch.testing.assert_close(batched["boxes"][:, :1], alone["boxes"], atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(batched["actionness"][:, :1], alone["actionness"], atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("tfpn,salient", [("transformer", "mlp"), ("sgp", "cnn_adaptive"),
                                          ("cnn", "mlp_encoder"), ("direct", "off"), ("none", "cnn_mix")])
def test_every_parameter_receives_a_gradient(tfpn, salient):
    cfg = small_cfg(f"tfpn={tfpn}", f"salient={salient}")
    torch.manual_seed(0)
    model = build_model(cfg).train()
    criterion = build_criterion(cfg.loss)
    feats, mask = _batch([48, 40], seed=2)
    targets = [{"segments": torch.tensor([[0.3, 0.2], [0.7, 0.1]])}, {"segments": torch.tensor([[0.5, 0.4]])}]
    salient_target = torch.zeros(2, 48)
    salient_target[:, 10:20] = 1
    # The released init zeroes the box heads' last layer and the deformable attention's offset and
    # weight projections, so some gradients are exactly 0 at step 0; after one update none may be.
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    for _ in range(2):
        optimizer.zero_grad()
        out = model(feats, mask)
        loss = criterion(out, targets, salient_target=salient_target, salient_valid=~mask)
        loss.total.backward()
        optimizer.step()
    dead = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert dead == []


# docs/fidelity.md §9: the released counts minus the 1,313,281 never-trained class-embedding parameters.
PARAMETER_COUNTS = {
    "transformer": 43_674_641,
    "direct": 31_052_817,
    "sgp": 34_236_433,
    "cnn": 41_285_137,
}


@pytest.mark.parametrize("tfpn,expected", sorted(PARAMETER_COUNTS.items()))
def test_thumos_parameter_counts(tfpn, expected):
    model = build_model(compose([f"tfpn={tfpn}"]))
    assert parameter_breakdown(model)["total"] == expected


def test_anet_and_baseline_parameter_counts():
    anet = build_model(compose(["model.encoder_layers=2", "model.decoder_layers=3", "model.decoder_points=6",
                                "model.num_queries=30", "tfpn.window_size=17"]))
    # 33,217,164 released minus its dead class_embed x3 + logit_scale (787,969)
    assert parameter_breakdown(anet)["total"] == 32_429_195
    baseline = build_model(compose(["tfpn=none"]))
    assert parameter_breakdown(baseline)["total"] == 30_790_162 - 1_313_281


def test_count_params_script(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / "count_params.py"
    spec = importlib.util.spec_from_file_location("count_params", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["tfpn=direct"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["total"] == 31_052_817 and out["modules"]["tfpn"] == 0
    assert sum(out["modules"].values()) == out["total"]


def test_tiny_model_overfits_one_toy_window(tmp_path):
    from tp2detr.data.bundle import load_data
    from tp2detr.data.feature_setup import build_dataset, make_synthetic_features
    from tp2detr.data.dataset import collate_samples

    cfg = small_cfg(f"paths.feature_dir={tmp_path}", "model.dropout=0.0", "tfpn.proj_dropout=0.0",
                    "model.num_queries=10")
    make_synthetic_features(cfg, progress=False)
    bundle = load_data(cfg)
    dataset = build_dataset(cfg, bundle, training=True)
    index = max(range(len(dataset)), key=lambda i: len(dataset.samples[i].segments))
    batch = collate_samples([dataset[index]], pad_multiple=8)
    torch.manual_seed(0)
    model = build_model(cfg).train()
    criterion = build_criterion(cfg.loss)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.0)
    for _ in range(300):
        out = model(batch["feats"], batch["mask"])
        loss = criterion(out, batch["targets"], salient_target=batch["salient_target"],
                         salient_valid=batch["salient_valid"]).total
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        out = model(batch["feats"], batch["mask"])
    sample = batch["samples"][0]
    boxes = out["boxes"][-1, 0].numpy().astype(np.float64)
    scores = out["actionness"][-1, 0].sigmoid().numpy().astype(np.float64)
    se = np.clip(np.stack([boxes[:, 0] - boxes[:, 1] / 2, boxes[:, 0] + boxes[:, 1] / 2], 1), 0, 1)
    result = average_precision_detection(
        {"w": sample.segments}, {"w": (se * sample.duration, scores)}, tiou_thresholds=(0.5,)
    )
    assert len(sample.segments) >= 3
    assert result.ap[0] >= 0.9


@pytest.mark.parametrize("training", [False, True])
def test_bf16_autocast_runs_and_stays_close_to_fp32(training):
    model = small_model("tfpn=transformer")
    model.train(training)
    feats, mask = _batch([40, 33], seed=3)
    torch.manual_seed(0)
    with torch.no_grad():
        reference = model(feats, mask, with_salient=False)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            torch.manual_seed(0)
            low = model(feats, mask, with_salient=False)
    if not training:  # dropout draws differ in order under autocast; compare only in eval mode
        torch.testing.assert_close(low["boxes"].float(), reference["boxes"], atol=0.05, rtol=0.05)
    assert torch.isfinite(low["actionness"].float()).all()


@pytest.mark.parametrize("tfpn", [t if t == "transformer" else pytest.param(t, marks=pytest.mark.slow) for t in TFPNS])
def test_the_forward_is_one_graph_for_torch_compile(tfpn):
    """trainer.compile: Dynamo traces the whole forward of every TFPN variant (the fallback
    attention; the compiled op's custom ops are traced in tests/ops/test_ops.py). Its only graph
    breaks on CPU are the transformer's mask check, which reads the masks and runs on CPU tensors
    only, so a GPU forward is one graph."""
    model = small_model(f"tfpn={tfpn}", "model.attn_backend=pytorch", "model.encoder_layers=1",
                        "model.decoder_layers=2").train()
    feats, mask = _batch([16, 11])
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(model)(feats, mask)
    elsewhere = [reason for reason in explanation.break_reasons
                 if not any(frame.name == "_check_inputs" for frame in reason.user_stack)]
    assert elsewhere == [], [reason.reason.splitlines()[0] for reason in elsewhere]
    torch._dynamo.reset()
