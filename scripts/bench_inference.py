"""Inference speed and size of the paper's THUMOS14 and ActivityNet1.3 models (the paper left it blank).

    python scripts/bench_inference.py --out docs/bench/inference_cpu.json            # 2-core CPU
    python scripts/bench_inference.py --device cuda --precisions fp32 bf16 \\
        --backends pytorch cuda --out inference_h100.json                             # one GPU

For each model (``thumos14``: the default config, windows of 128 snippets; ``anet13``:
``experiment=paper_anet13``, whole videos resized to 256 snippets), precision (fp32 | bf16 autocast)
and deformable-attention backend (pytorch | cpp | cuda | auto):

* ``parameters``;
* ``flops_per_window``: torch's FLOP counter (``torch.utils.flop_counter``) over one window's forward
  (batch 1). It counts matrix products and convolutions only; the 1-D deformable sampling is counted
  analytically beside it (``deform_sampling_flops_per_window``: 2 taps × 2 FLOPs × channel per sample
  point, i.e. ``4 · Lq · L · P · C`` per attention call) and added in ``total_flops_per_window``;
* ``windows_per_s`` and ``ms_per_window`` of the model's forward at batch 1, 16 and 64 (random
  features of the window's shape, no padding; eval mode, ``torch.inference_mode``, median of
  ``--repeats`` after one warm-up);
* ``thumos_test_set_s`` (THUMOS only): seconds for the whole THUMOS14 test set of split 50_50/0 of
  the semi-synthetic store (every test window — reading, collation, forward at batch 64, proposal
  decoding, cross-window stitching — and the class-agnostic evaluation), one timed run after a warm-up
  forward. The store is generated on first use (``scripts/make_synthetic.py``).

Weights are the initialised model's: speed does not depend on them (the proposal count per window is
fixed at the number of queries).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

from tp2detr.config import compose
from tp2detr.data.bundle import load_data
from tp2detr.data.feature_setup import build_dataset, make_synthetic_features
from tp2detr.data.dataset import collate_samples
from tp2detr.engine.benchmark import measure, write_report
from tp2detr.evaluation.evaluate import evaluate_proposals
from tp2detr.evaluation.map_by_length import length_bins_for
from tp2detr.engine.device import PRECISIONS
from tp2detr.engine.proposal_inference import predict_batches, video_proposals
from tp2detr.io import atomic_write_json
from tp2detr.models.builder import build_model
from tp2detr.models.deform_attn import MSDeformAttn1D, resolve_backend
from tp2detr.cli.hydra_app import run_script

MODELS = {
    "thumos14": ["dataset=thumos14_synth"],
    "anet13": ["experiment=paper_anet13", "dataset=anet13_synth"],
}
BATCH_SIZES = (1, 16, 64)


def autocast(device: torch.device, precision: str):
    dtype = PRECISIONS[precision]
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def window_inputs(cfg, batch: int, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random features ``[batch, T, C]`` (T = the dataset's window size) and an all-valid mask."""
    generator = torch.Generator().manual_seed(seed)
    size, dim = int(cfg.dataset.windowing.size), int(cfg.dataset.features.dim)
    feats = torch.randn(batch, size, dim, generator=generator).to(device)
    return feats, torch.zeros(batch, size, dtype=torch.bool, device=device)


def count_flops(model: torch.nn.Module, feats: torch.Tensor, mask: torch.Tensor) -> dict[str, int]:
    """torch's counted FLOPs of one forward, plus the deformable sampling counted analytically."""
    sampling = 0

    def hook(module: MSDeformAttn1D, _inputs, output):
        nonlocal sampling
        batch, queries, channels = output.shape
        sampling += 4 * batch * queries * module.n_levels * module.n_points * channels

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, MSDeformAttn1D)]
    # No parameter requires a gradient while counting: the fallback then samples with its sparse
    # gather (not the training path's scatter + bmm, which the counter would count as matmul
    # FLOPs), so the counted figure is the same for every attention backend.
    requires = [p.requires_grad for p in model.parameters()]
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        with FlopCounterMode(display=False) as counter:
            model(feats, mask)
    finally:
        for p, flag in zip(model.parameters(), requires):
            p.requires_grad_(flag)
        for handle in handles:
            handle.remove()
    counted = int(counter.get_total_flops())
    return {"counted": counted, "deform_sampling": sampling, "total": counted + sampling}


def time_test_set(cfg, model: torch.nn.Module, device: torch.device, precision: str) -> dict[str, float]:
    """Seconds for the whole THUMOS test set: data, forward, stitching and evaluation."""
    bundle = load_data(cfg)
    dataset = build_dataset(cfg, bundle, training=False)
    collate = lambda samples: collate_samples(samples, pad_multiple=model.length_multiple)
    loader = DataLoader(dataset, batch_size=64, shuffle=False, collate_fn=collate,
                        num_workers=int(cfg.data.num_workers))
    protocol = bundle.protocol
    absolute_bins, relative_bins = length_bins_for(str(cfg.dataset.name))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    windows = predict_batches(model, loader, device, PRECISIONS[precision])
    predicted = time.perf_counter()
    proposals = video_proposals(windows, cfg.dataset.evaluation.get("nms_threshold"))
    metrics = evaluate_proposals(
        proposals, protocol.eval_ground_truth, protocol.eval_durations,
        tiou_thresholds=list(cfg.dataset.evaluation.tiou_thresholds), ar_tiou_thresholds=None,
        breakdown=False, absolute_bins=absolute_bins, relative_bins=relative_bins,
    )
    finished = time.perf_counter()
    return {
        "thumos_test_windows": len(dataset),
        "thumos_test_videos": len(proposals),
        "thumos_test_set_s": finished - started,
        "thumos_test_predict_s": predicted - started,
        "thumos_test_stitch_and_eval_s": finished - predicted,
        "thumos_test_mAP_untrained": float(metrics["mAP"]),
    }


def bench_model(name: str, device: torch.device, precision: str, backend: str, repeats: int,
                test_set: bool, overrides: list[str]) -> dict:
    cfg = compose([*MODELS[name], f"model.attn_backend={backend}", "trainer.progress=false", *overrides])
    torch.manual_seed(int(cfg.seed))
    model = build_model(cfg).to(device).eval()
    entry: dict = {
        "backend": resolve_backend(backend, device.type),
        "window_snippets": int(cfg.dataset.windowing.size),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    feats, mask = window_inputs(cfg, 1, device)
    flops = count_flops(model, feats, mask)
    entry.update(flops_per_window=flops["counted"], deform_sampling_flops_per_window=flops["deform_sampling"],
                 total_flops_per_window=flops["total"])
    for batch in BATCH_SIZES:
        feats, mask = window_inputs(cfg, batch, device)

        def forward(feats=feats, mask=mask):
            with torch.inference_mode(), autocast(device, precision):
                model(feats, mask)

        timing = measure(forward, repeats, device)
        entry[f"batch_{batch}"] = {
            "ms_per_batch": timing["ms"],
            "ms_per_window": timing["ms"] / batch,
            "windows_per_s": batch / (timing["ms"] / 1000),
            "peak_mb": timing["peak_mb"],
        }
    if test_set and name == "thumos14":
        make_synthetic_features(cfg, progress=False)
        entry.update(time_test_set(cfg, model, device, precision))
    return entry


def recount_flops(path: Path, overrides: list[str]) -> int:
    """Recount the FLOPs of every entry of the result file ``path`` on the CPU and rewrite it."""
    import json

    report = json.loads(path.read_text())
    for key, entry in report["results"].items():
        name = key.split("/")[0]
        cfg = compose([*MODELS[name], "model.attn_backend=pytorch", *overrides])
        torch.manual_seed(int(cfg.seed))
        model = build_model(cfg).eval()
        flops = count_flops(model, *window_inputs(cfg, 1, torch.device("cpu")))
        entry.update(flops_per_window=flops["counted"], deform_sampling_flops_per_window=flops["deform_sampling"],
                     total_flops_per_window=flops["total"])
    report["flops_recounted_on_cpu"] = True
    atomic_write_json(path, report)
    print_table(report)
    return 0


def print_table(report: dict) -> None:
    machine = report["machine"]
    print(f"inference, {machine['device']}, {machine['threads']} CPU threads, torch {machine['torch']}")
    head = (f"{'model':<9}{'prec':<6}{'backend':<9}{'params':>12}{'GFLOP/win':>10}"
            + "".join(f"{f'ms/win@{b}':>11}{f'win/s@{b}':>10}" for b in BATCH_SIZES) + f"{'test set s':>11}")
    print(head)
    for key, r in report["results"].items():
        model, precision, _ = key.split("/")
        row = (f"{model:<9}{precision:<6}{r['backend']:<9}{r['parameters']:>12,}"
               f"{r['total_flops_per_window'] / 1e9:>10.2f}")
        for b in BATCH_SIZES:
            row += f"{r[f'batch_{b}']['ms_per_window']:>11.2f}{r[f'batch_{b}']['windows_per_s']:>10.1f}"
        test = r.get("thumos_test_set_s")
        row += f"{test:>11.1f}" if test is not None else f"{'-':>11}"
        print(row)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=list(PRECISIONS))
    parser.add_argument("--backends", nargs="+", default=["auto"], help="deformable-attention backends")
    parser.add_argument("--repeats", type=int, default=5, help="timed forwards per batch size (median)")
    parser.add_argument("--no-test-set", action="store_true", help="skip the whole-THUMOS-test-set timing")
    parser.add_argument("--recount-flops", type=Path, default=None, metavar="FILE",
                        help="only recount the FLOPs of every entry of an earlier result FILE (FLOPs do not "
                             "depend on the device; counted here on the CPU) and rewrite it")
    args, overrides = parser.parse_known_args(argv)
    if args.recount_flops is not None:
        return recount_flops(args.recount_flops, overrides)
    device = torch.device(args.device)
    results: dict[str, dict] = {}
    for name in args.models:
        for precision in args.precisions:
            for backend in args.backends:
                key = f"{name}/{precision}/{backend}"
                results[key] = bench_model(name, device, precision, backend, args.repeats,
                                           not args.no_test_set, overrides)
                print(f"{key}: done", flush=True)
    report = {
        "machine": {
            "device": torch.cuda.get_device_name(device) if device.type == "cuda"
            else f"CPU ({platform.processor() or platform.machine()})",
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
        "overrides": overrides,
        "results": results,
    }
    print_table(report)
    written = write_report(args.out, report)
    if written is not None:
        print(f"-> {written}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
