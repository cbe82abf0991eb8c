"""Time and peak memory of the paper's THUMOS14 model, per module, on this machine.

    python scripts/bench_model.py --out docs/bench/model_cpu.json [--batch 16 --repeats 5] [--baseline] [overrides...]

Stages: TFPN, deformable encoder, deformable decoder (with box refinement), prediction heads,
salient heads, loss (matching + criterion); each timed forward and forward+backward on the inputs
it receives in a real forward pass (captured with forward hooks) of a batch of real training
windows of the semi-synthetic THUMOS14 store (built if missing), plus the engine's own training
step (``Trainer.train_step``: forward, loss, backward, clipping, AdamW step — the same step
``scripts/bench_train.py`` times) and the evaluation forward. Peak memory is the
growth of the process's peak resident set (Linux ``VmHWM``, reset before each measurement)
over the resident set before it. Times are medians of ``--repeats`` runs after one warm-up.
Writes JSON and prints a table. Hydra overrides select other configurations.

``--baseline`` also measures, in the same run, the training step and evaluation forward of the
same model as the released code computes them: deformable attention through ``grid_sample`` on a
height-1 image (the authors' CPU stand-in, docs/fidelity.md §10.4) and the salient heads run at inference.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from tp2detr.config import compose
from tp2detr.data.feature_setup import make_synthetic_features
from tp2detr.engine.benchmark import measure, write_report
from tp2detr.engine.trainer import Trainer
from tp2detr.models.deform_attn import register_backend
from tp2detr.cli.hydra_app import run_script


def grid_sample_deform_attn(value, level_lengths, level_start_index, sampling_locations, attention_weights):
    """The released code's CPU stand-in: per level, ``grid_sample`` on a ``[1, T_l]`` image with the
    y coordinate at the row centre (align_corners=False, zero padding). Same semantics as ours."""
    n, _, m, d = value.shape
    _, lq, _, n_levels, n_points = sampling_locations.shape
    samples = []
    for level, (start, length) in enumerate(zip(level_start_index.tolist(), level_lengths.tolist())):
        v = value[:, start:start + length].permute(0, 2, 3, 1).reshape(n * m, d, 1, length)
        x = 2 * sampling_locations[:, :, :, level].permute(0, 2, 1, 3).reshape(n * m, lq, n_points, 1) - 1
        grid = torch.cat([x, torch.zeros_like(x)], dim=-1)
        samples.append(F.grid_sample(v, grid, mode="bilinear", padding_mode="zeros", align_corners=False))
    stacked = torch.stack(samples, dim=-2)  # [N·M, D, Lq, L, P]
    weights = attention_weights.permute(0, 2, 1, 3, 4).reshape(n * m, 1, lq, n_levels, n_points)
    out = (stacked * weights).sum(dim=(-1, -2))  # [N·M, D, Lq]
    return out.view(n, m * d, lq).transpose(1, 2).contiguous()


def _detach(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().requires_grad_(obj.is_floating_point())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_detach(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _detach(v) for k, v in obj.items()}
    return obj


def _float_tensors(obj: Any) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj] if obj.is_floating_point() and obj.requires_grad else []
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _float_tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _float_tensors(o)]
    if hasattr(obj, "__dataclass_fields__"):
        return [t for name in obj.__dataclass_fields__ for t in _float_tensors(getattr(obj, name))]
    return []


def _backward(output: Any) -> None:
    tensors = _float_tensors(output)
    torch.autograd.backward([t.sum() for t in tensors])


def _trainer(overrides: list[str]) -> Trainer:
    """A set-up :class:`Trainer` (model, criterion, optimizer, data) that writes nothing."""
    trainer = Trainer(compose(overrides), "/nonexistent-bench-run")
    trainer.setup()
    return trainer


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--baseline", action="store_true",
                        help="also time the released-style computation (grid_sample, salient at inference)")
    args, overrides = parser.parse_known_args(argv)

    base = ["dataset=thumos14_synth", "trainer.progress=false", f"optim.batch_size={args.batch}"]
    cfg = compose([*base, *overrides])
    make_synthetic_features(cfg, progress=False)
    trainer = _trainer([*base, *overrides])
    model, criterion = trainer.model, trainer.criterion
    batch = trainer.collate([trainer.train_set[i] for i in range(args.batch)])  # real training windows
    feats, mask = batch["feats"], batch["mask"]
    targets = [{"segments": t["segments"]} for t in batch["targets"]]
    salient_target, salient_valid = batch["salient_target"], batch["salient_valid"]
    B, T, C = feats.shape

    # Capture every stage's inputs in one training-mode forward.
    captured: dict[str, tuple] = {}
    stages = {
        "tfpn": model.tfpn,
        "encoder": model.transformer.encoder,
        "decoder": model.transformer.decoder,
        "heads": model.heads,
        "salient": model.salient,
    }
    hooks = [
        module.register_forward_hook(
            lambda mod, a, kw, out, name=name: captured.__setitem__(name, (a, kw)), with_kwargs=True
        )
        for name, module in stages.items()
    ]
    model.train()
    with torch.no_grad():
        outputs = model(feats, mask)
    for hook in hooks:
        hook.remove()

    results: dict[str, dict[str, Any]] = {}
    for name, module in stages.items():
        inputs_args, inputs_kwargs = captured[name]
        fwd_args, fwd_kwargs = _detach(inputs_args), _detach(inputs_kwargs)

        def forward(module=module, a=fwd_args, kw=fwd_kwargs):
            with torch.no_grad():
                return module(*a, **kw)

        def forward_backward(module=module, a=fwd_args, kw=fwd_kwargs):
            for p in module.parameters():
                p.grad = None
            _backward(module(*a, **kw))

        results[name] = {"fwd": measure(forward, args.repeats),
                         "fwd_bwd": measure(forward_backward, args.repeats)}

    loss_inputs = _detach({"boxes": outputs["boxes"], "actionness": outputs["actionness"],
                           "salient": outputs["salient"]})

    def loss_forward():
        with torch.no_grad():
            criterion(loss_inputs, targets, salient_target=salient_target, salient_valid=salient_valid)

    def loss_backward():
        criterion(loss_inputs, targets, salient_target=salient_target, salient_valid=salient_valid).total.backward()

    results["loss"] = {"fwd": measure(loss_forward, args.repeats), "fwd_bwd": measure(loss_backward, args.repeats)}

    def eval_forward(model, with_salient):
        model.eval()
        with torch.no_grad():
            model(feats, mask, with_salient=with_salient)

    # The engine's own training step (tp2detr.engine.trainer.Trainer.train_step): forward, matching,
    # every loss term, backward, clipping, AdamW.
    results["train_step"] = {"fwd_bwd": measure(lambda: trainer.train_step(batch), args.repeats)}
    results["eval_forward"] = {"fwd": measure(lambda: eval_forward(model, False), args.repeats)}
    if args.baseline:
        register_backend("grid_sample", grid_sample_deform_attn, device_types=("cpu", "cuda"))
        released = _trainer([*base, *overrides, "model.attn_backend=grid_sample"])
        results["released_train_step"] = {"fwd_bwd": measure(lambda: released.train_step(batch), args.repeats)}
        results["released_eval_forward"] = {"fwd": measure(lambda: eval_forward(released.model, True), args.repeats)}

    report = {
        "config": {"overrides": overrides, "batch": B, "length": T, "d_model": C,
                   "parameters": sum(p.numel() for p in model.parameters())},
        "machine": {"processor": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                    "torch": torch.__version__},
        "stages": results,
    }
    print(f"batch {B} x {T} snippets, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"{'stage':<14}{'fwd ms':>10}{'fwd MB':>10}{'fwd+bwd ms':>13}{'fwd+bwd MB':>13}")
    for name, r in results.items():
        f, fb = r.get("fwd", {}), r.get("fwd_bwd", {})
        cells = [f.get("ms"), f.get("peak_mb"), fb.get("ms"), fb.get("peak_mb")]
        text = [f"{c:.0f}" if c is not None else "-" for c in cells]
        print(f"{name:<14}{text[0]:>10}{text[1]:>10}{text[2]:>13}{text[3]:>13}")
    written = write_report(args.out, report)
    if written is not None:
        print(f"-> {written}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
