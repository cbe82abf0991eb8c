"""Speed and memory of the compiled 1-D deformable-attention op against the PyTorch fallback.

    python scripts/bench_ops.py --device cpu --out docs/bench/ops_cpu.json [--threads 2] [--repeats 20]
    python scripts/bench_ops.py --device cuda --out ops_h100.json

For each shape (THUMOS encoder N=16, ΣT=240 over 128/64/32/16, Lq=240; THUMOS decoder Lq=40;
ActivityNet encoder ΣT=480 over 256/128/64/32, Lq=480; all M=8, D=64, L=4, P=4) and pass
(``fwd`` under inference mode, ``fwd_bwd`` with gradients for value, locations and weights; on
CUDA also ``fwd_bf16`` / ``fwd_bwd_bf16`` with a bf16 value as under autocast) — with sampling
locations as the model makes them (``--locations model``, the default: local samples around each
query's reference point) or uniform over the levels (``--locations uniform``: the worst case for the
caches) — it measures the
fallback (``ms_deform_attn_1d_pytorch``) and the compiled backend in the same run, timed in turn
(fallback, compiled, fallback, ...: ``tp2detr.engine.benchmark.measure_interleaved``): median
milliseconds of each, ``speedup`` = the median of the per-round ratios (robust to the drifting speed
of a shared machine), and peak memory growth (``tp2detr.engine.benchmark.measure``); on CUDA also the GPU
busy time alone (``fallback_gpu_ms``, ``compiled_gpu_ms``, ``gpu_speedup``: kernel durations from
``torch.profiler``, without the host's launch overhead, which dominates at these sizes). JSON shape:
``{DEVICE: {SHAPE: {PASS: {fallback_ms, compiled_ms, speedup, fallback_peak_mb, compiled_peak_mb}}},
"meta": {...}, "train_step": {...}}``; the same is printed as a table. ``train_step`` compares one
training step of the paper's THUMOS14 configuration with ``model.attn_backend`` = pytorch vs the
compiled backend (``--train-steps 0`` skips it). On CUDA ``meta`` also holds the forward's achieved
bandwidth against the card's copy bandwidth.
"""

from __future__ import annotations

import argparse
import itertools
import platform
import sys
from pathlib import Path

import torch

from tp2detr.engine.benchmark import (
    device_time_ms,
    measure,
    measure_interleaved,
    synchronize,
    write_report,
)
from tp2detr.models.deform_attn import ms_deform_attn_1d, ms_deform_attn_1d_pytorch
from tp2detr.ops import register_compiled_backends
from tp2detr.cli.hydra_app import run_script

SHAPES = {
    "thumos_encoder": {"lengths": (128, 64, 32, 16), "queries": None},
    "thumos_decoder": {"lengths": (128, 64, 32, 16), "queries": 40},
    "anet_encoder": {"lengths": (256, 128, 64, 32), "queries": None},
}
BATCH, HEADS, HEAD_DIM, POINTS = 16, 8, 64, 4


def model_locations(shape: str, generator: torch.Generator) -> torch.Tensor:
    """Sampling locations ``[N, Lq, M, L, P]`` as the model produces them: an ``MSDeformAttn1D`` of the
    paper's size (its own offset initialisation, plus a small random offset weight so that offsets vary
    by about ±0.5 cells from query to query, as after training) applied to random queries at the
    encoder's reference points (every token's own position) or, for the decoder, at random
    (centre, width) reference boxes."""
    from tp2detr.models.deform_attn import MSDeformAttn1D
    from tp2detr.models.encoder import encoder_reference_points

    spec = SHAPES[shape]
    levels, channels = len(spec["lengths"]), HEADS * HEAD_DIM
    lengths = torch.tensor(spec["lengths"], dtype=torch.int64)
    attention = MSDeformAttn1D(channels, levels, HEADS, POINTS, backend="pytorch")
    with torch.no_grad():
        attention.sampling_offsets.weight.normal_(0.0, 0.02, generator=generator)
        if spec["queries"] is None:  # encoder: every token queries from its own position
            references = encoder_reference_points(spec["lengths"], torch.ones(BATCH, levels, 1))
        else:  # decoder: (centre, width) boxes
            centre = torch.rand(BATCH, spec["queries"], 1, 1, generator=generator)
            width = 0.05 + 0.45 * torch.rand(BATCH, spec["queries"], 1, 1, generator=generator)
            references = torch.cat((centre, width), dim=-1).expand(-1, -1, levels, -1)
        query = torch.randn(BATCH, references.shape[1], channels, generator=generator)
        return attention.sampling_locations(query, references, lengths)


def make_inputs(shape: str, device: torch.device, value_dtype: torch.dtype, seed: int = 0,
                locations: str = "model") -> dict:
    """Random op inputs of a named shape: value ``[N, S, M, D]`` and locations/weights ``[N, Lq, M, L, P]``
    (weights: a softmax over each head's L·P samples of standard normal logits). ``locations``:
    ``"model"`` (:func:`model_locations`: local samples around each query's reference point, as in
    the model) or ``"uniform"`` (uniform over [-0.1, 1.1]: random keys anywhere, some taps in the zero
    padding; the worst case for cache locality)."""
    spec = SHAPES[shape]
    lengths = torch.tensor(spec["lengths"], dtype=torch.int64, device=device)
    starts = torch.cat((lengths.new_zeros(1), lengths.cumsum(0)[:-1]))
    total = int(lengths.sum())
    queries = spec["queries"] or total
    levels = len(spec["lengths"])
    generator = torch.Generator(device="cpu").manual_seed(seed)
    value = torch.randn(BATCH, total, HEADS, HEAD_DIM, generator=generator).to(device, value_dtype)
    if locations == "model":
        sampled = model_locations(shape, generator)
    elif locations == "uniform":
        sampled = torch.rand(BATCH, queries, HEADS, levels, POINTS, generator=generator) * 1.2 - 0.1
    else:
        raise ValueError(f"locations: expected 'model' or 'uniform', found {locations!r}")
    logits = torch.randn(BATCH, queries, HEADS, levels * POINTS, generator=generator)
    weights = logits.softmax(-1).view(BATCH, queries, HEADS, levels, POINTS)
    return {"value": value, "lengths": lengths, "starts": starts, "locations": sampled.contiguous().to(device),
            "weights": weights.to(device)}


def _runner(op, inputs: dict, backward: bool):
    value, locations, weights = inputs["value"], inputs["locations"], inputs["weights"]
    if not backward:
        def run():
            with torch.inference_mode():
                op(value, inputs["lengths"], inputs["starts"], locations, weights)
        return run
    leaves = [t.detach().clone().requires_grad_() for t in (value, locations, weights)]
    n, queries, heads = locations.shape[:3]
    # One fixed upstream gradient, made once: the timed pass is the op's forward and backward only.
    upstream = torch.randn(n, queries, heads * value.shape[-1], generator=torch.Generator().manual_seed(1))
    upstream = upstream.to(device=value.device, dtype=value.dtype)

    def run_with_grad():
        out = op(leaves[0], inputs["lengths"], inputs["starts"], leaves[1], leaves[2])
        out.backward(upstream)
        for leaf in leaves:
            leaf.grad = None
    return run_with_grad


def bench_op(device: torch.device, backend: str, repeats: int, locations: str = "model") -> dict:
    """``{SHAPE: {PASS: {...}}}`` for the fallback vs ``backend`` on ``device``."""
    def compiled(*args):
        return ms_deform_attn_1d(*args, backend=backend)

    passes = [("fwd", torch.float32, False), ("fwd_bwd", torch.float32, True)]
    if device.type == "cuda":
        passes += [("fwd_bf16", torch.bfloat16, False), ("fwd_bwd_bf16", torch.bfloat16, True)]
    results: dict = {}
    for shape in SHAPES:
        results[shape] = {}
        for name, dtype, backward in passes:
            inputs = make_inputs(shape, device, dtype, locations=locations)
            fallback_run = _runner(ms_deform_attn_1d_pytorch, inputs, backward)
            compiled_run = _runner(compiled, inputs, backward)
            timing = measure_interleaved({"fallback": fallback_run, "compiled": compiled_run}, repeats, device)
            fallback_peak = measure(fallback_run, 1, device)["peak_mb"]
            compiled_peak = measure(compiled_run, 1, device)["peak_mb"]
            results[shape][name] = {
                "fallback_ms": timing["fallback_ms"],
                "compiled_ms": timing["compiled_ms"],
                "speedup": timing["ratio_compiled"],
                "fallback_peak_mb": fallback_peak,
                "compiled_peak_mb": compiled_peak,
            }
            if device.type == "cuda":  # GPU busy time alone, without the host's launch overhead
                fallback_gpu = device_time_ms(fallback_run, repeats, device)
                compiled_gpu = device_time_ms(compiled_run, repeats, device)
                results[shape][name].update(
                    fallback_gpu_ms=fallback_gpu, compiled_gpu_ms=compiled_gpu,
                    gpu_speedup=fallback_gpu / compiled_gpu if fallback_gpu and compiled_gpu else None,
                )
    return results


def cuda_bandwidth(device: torch.device, forward_ms: float) -> dict:
    """The THUMOS-encoder fp32 forward's minimum traffic (read value, locations, weights; write the
    output) over its time, against a device-to-device copy of 1 GiB (read + write)."""
    inputs = make_inputs("thumos_encoder", device, torch.float32, locations="uniform")
    out_bytes = inputs["value"].numel() * 4  # Lq = S at the encoder shape: output size = value size
    moved = sum(inputs[k].numel() * inputs[k].element_size() for k in ("value", "locations", "weights")) + out_bytes
    source = torch.empty(1 << 28, dtype=torch.float32, device=device)
    target = torch.empty_like(source)
    copy_ms = measure(lambda s=source, t=target: t.copy_(s), 10, device)["ms"]
    del source, target
    synchronize(device)
    copy_gbps = 2 * (1 << 30) / (copy_ms / 1000) / 1e9
    achieved = moved / (forward_ms / 1000) / 1e9
    return {"forward_min_bytes": moved, "forward_achieved_gbps": achieved, "copy_gbps": copy_gbps,
            "fraction_of_copy": achieved / copy_gbps}


def bench_train_step(device: torch.device, backend: str, steps: int, overrides: list[str]) -> dict:
    """Median ms of one training step of the paper config, fallback vs ``backend`` (same batches)."""
    from tp2detr.config import compose
    from tp2detr.data.feature_setup import make_synthetic_features
    from tp2detr.engine.trainer import Trainer

    base = ["dataset=thumos14_synth", "trainer.progress=false", *overrides]
    make_synthetic_features(compose(base), progress=False)
    entry: dict = {"steps": steps}
    for label, name in (("fallback", "pytorch"), ("compiled", backend)):
        trainer = Trainer(compose([*base, f"model.attn_backend={name}"]), "/nonexistent-bench-ops-run")
        trainer.setup()
        batches = list(itertools.islice(iter(trainer.train_loader(epoch=0, skip_steps=0)), 2))
        cycle = itertools.cycle(batches)
        timing = measure(lambda t=trainer, c=cycle: t.train_step(next(c)), steps, trainer.device)
        entry[f"{label}_ms"] = timing["ms"]
        entry[f"{label}_peak_mb"] = timing["peak_mb"]
        del trainer
    entry["speedup"] = entry["fallback_ms"] / entry["compiled_ms"]
    return entry


def profile_kernels(device: torch.device, backend: str, locations: str, repeats: int = 20) -> str:
    """The GPU kernels of the compiled op's THUMOS-encoder forward+backward (fp32), as torch's
    profiler table sorted by GPU time: where the op's GPU time goes."""
    from torch.profiler import ProfilerActivity, profile

    inputs = make_inputs("thumos_encoder", device, torch.float32, locations=locations)
    run = _runner(lambda *args: ms_deform_attn_1d(*args, backend=backend), inputs, True)
    run()
    synchronize(device)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(repeats):
            run()
        synchronize(device)
    return prof.key_averages().table(sort_by="self_device_time_total", row_limit=12)


def print_table(device: str, results: dict) -> None:
    gpu = device == "cuda"
    print(f"{'shape':<16}{'pass':<14}{'fallback ms':>12}{'compiled ms':>12}{'speedup':>9}"
          f"{'fb peak MB':>11}{'op peak MB':>11}"
          + (f"{'fb GPU ms':>11}{'op GPU ms':>11}{'GPU x':>8}" if gpu else ""))
    for shape, passes in results.items():
        for name, r in passes.items():
            fb_peak = "-" if r["fallback_peak_mb"] is None else f"{r['fallback_peak_mb']:.1f}"
            op_peak = "-" if r["compiled_peak_mb"] is None else f"{r['compiled_peak_mb']:.1f}"
            row = (f"{shape:<16}{name:<14}{r['fallback_ms']:>12.3f}{r['compiled_ms']:>12.3f}{r['speedup']:>8.1f}x"
                   f"{fb_peak:>11}{op_peak:>11}")
            if gpu and r.get("gpu_speedup"):
                row += f"{r['fallback_gpu_ms']:>11.3f}{r['compiled_gpu_ms']:>11.3f}{r['gpu_speedup']:>7.1f}x"
            print(row)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per measurement (median)")
    parser.add_argument("--train-steps", type=int, default=3, help="timed training steps per backend; 0 = skip")
    parser.add_argument("--profile", action="store_true",
                        help="CUDA: also print the kernels of the compiled THUMOS-encoder forward+backward")
    parser.add_argument("--locations", choices=["model", "uniform"], default="model",
                        help="sampling locations: as the model makes them (local) or uniform over the levels")
    args, overrides = parser.parse_known_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    backend = "cpp" if device.type == "cpu" else "cuda"
    register_compiled_backends(backend)
    results = bench_op(device, backend, args.repeats, args.locations)
    meta = {"processor": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "backend": backend, "repeats": args.repeats, "locations": args.locations,
            "shape": {"N": BATCH, "M": HEADS, "D": HEAD_DIM, "L": 4, "P": POINTS,
                      "levels": {k: v["lengths"] for k, v in SHAPES.items()}},
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}
    if device.type == "cuda":
        meta["bandwidth"] = cuda_bandwidth(device, results["thumos_encoder"]["fwd"]["compiled_ms"])
    report: dict = {args.device: results, "meta": meta}
    print(f"1-D deformable attention, {args.device}, {meta['gpu'] or str(meta['threads']) + ' threads'}, "
          f"torch {torch.__version__}, median of {args.repeats}, {args.locations} sampling locations")
    print_table(args.device, results)
    if device.type == "cuda":
        bw = meta["bandwidth"]
        print(f"forward (thumos_encoder, fp32): {bw['forward_achieved_gbps']:.0f} GB/s of minimum traffic, "
              f"copy bandwidth {bw['copy_gbps']:.0f} GB/s ({100 * bw['fraction_of_copy']:.0f}%)")
    if args.profile and device.type == "cuda":
        try:
            print(profile_kernels(device, backend, args.locations))
        except Exception as error:  # noqa: BLE001 - a profiler problem must not lose the measurements
            print(f"profile failed: {error!r}")
    if args.train_steps > 0:
        report["train_step"] = bench_train_step(device, backend, args.train_steps, overrides)
        t = report["train_step"]
        print(f"training step (paper THUMOS14 config, batch 16): fallback {t['fallback_ms']:.0f} ms, "
              f"compiled {t['compiled_ms']:.0f} ms ({t['speedup']:.2f}x)")
    written = write_report(args.out, report)
    if written is not None:
        print(f"-> {written}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
