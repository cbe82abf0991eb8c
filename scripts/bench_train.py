"""Training and evaluation throughput of the paper's THUMOS14 configuration on this machine.

    python scripts/bench_train.py --out docs/bench/train_cpu.json [--steps 5] [overrides...]
    python scripts/bench_train.py --device cuda --precisions bf16 --backends cuda pytorch \\
        --compile off on --steps 20 --profile --out train_step_gpu.json     # the GPU check's `step` section

Runs the real training step of the engine (``Trainer.train_step``: forward, matching, every loss
term, backward, clipping, AdamW) on real batches from the semi-synthetic THUMOS14 store (built if
missing), batch 16 windows of 128 snippets, in fp32 and bf16 autocast; then the evaluation forward
at batch 16 and 64. Reports seconds per iteration, samples/s, the data-loading share, and the
peak memory of a step (see ``tp2detr.engine.benchmark``), as JSON and a table. Compares with the
authors' released model on the same machine kind (docs/fidelity.md §10.4: 4.4 s per training step, 2.06 s per
evaluation forward of 16 windows, 4.2 GB peak resident memory in training).

Variants: ``--device`` (auto | cpu | cuda: ``trainer.device``), ``--backends`` (``model.attn_backend``
values, e.g. ``cuda pytorch``) and ``--compile`` (``trainer.compile`` values to time: ``off``, ``on``,
``reduce-overhead`` (CUDA graphs), ``max-autotune``; GPU only, tp2detr/engine/compilation.py) time
every combination in turn, each with a fresh trainer; ``--variants BACKEND:COMPILE ...`` (e.g.
``cuda:off pytorch:off cuda:reduce-overhead cuda:on``) times exactly those pairs, in that order,
instead. Without ``--backends``/``--variants`` and with ``--compile off`` (the defaults) the records
are keyed ``<device>_<precision>`` as before; otherwise ``<device>_<precision>_<backend>_<mode>``,
mode ``eager``, ``compiled`` (on), ``reduce-overhead`` or ``max-autotune``. A variant that fails
(e.g. ``torch.compile`` refusing the model) is recorded with its ``error`` and the others still
run; the exit status is then 1. The JSON is rewritten after every variant, so a run stopped by a
timeout keeps what finished.

``--profile`` adds, per variant, a ``profile`` record from ``torch.profiler`` over
``--profile-steps`` steps: the top ten operators by self CPU time and by self device time (per step),
the profiled wall time per step against the summed device (kernel, memset, copy) time per step
(``device_busy_fraction``: how much of the step the GPU is busy; None on CPU) and, on CUDA, the
host synchronisations per step counted with ``torch.cuda.set_sync_debug_mode("warn")`` (each
synchronising CUDA call issues one warning; approximate: it sees the calls that PyTorch flags).
"""

from __future__ import annotations

import argparse
import collections
import gc
import itertools
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

from tp2detr.config import compose
from tp2detr.data.feature_setup import make_synthetic_features
from tp2detr.engine.benchmark import measure, peak_resident_mb, synchronize, write_report
from tp2detr.engine.trainer import Trainer
from tp2detr.cli.hydra_app import run_script

RELEASED = {"train_step_s": 4.4, "eval_forward_16_s": 2.06, "train_peak_rss_gb": 4.2}
TOP = 10


def _device_attr(event: Any, name: str) -> float:
    """``self_device_time_total`` / ``device_time_total`` of a profiler row (older torch: ``cuda``)."""
    for attr in (name, name.replace("device", "cuda")):
        value = getattr(event, attr, None)
        if value is not None:
            return float(value)
    return 0.0


def _top_rows(averages: Any, key: Callable[[Any], float], steps: int) -> list[dict[str, Any]]:
    rows = sorted((e for e in averages if key(e) > 0), key=key, reverse=True)[:TOP]
    return [{
        "name": e.key[:160],
        "calls_per_step": e.count / steps,
        "self_cpu_ms_per_step": e.self_cpu_time_total / 1000 / steps,
        "cpu_total_ms_per_step": e.cpu_time_total / 1000 / steps,
        "self_device_ms_per_step": _device_attr(e, "self_device_time_total") / 1000 / steps,
        "device_total_ms_per_step": _device_attr(e, "device_time_total") / 1000 / steps,
    } for e in rows]


def count_host_syncs(fn: Callable[[], Any], steps: int, device: torch.device) -> dict[str, Any] | None:
    """Synchronising CUDA calls per call of ``fn`` (``torch.cuda.set_sync_debug_mode("warn")``);
    None on CPU. The most frequent warning texts are kept to say where they come from."""
    if device.type != "cuda":
        return None
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                for _ in range(steps):
                    fn()
            finally:
                torch.cuda.set_sync_debug_mode("default")
            synchronize(device)
    except Exception as err:  # noqa: BLE001 - optional figure: never lose the timings for it
        return {"error": f"{type(err).__name__}: {err}"}
    syncs = [w for w in caught if "synchroniz" in str(w.message).lower()]
    where = collections.Counter(f"{Path(w.filename).name}:{w.lineno}: {str(w.message).splitlines()[0][:120]}"
                                for w in syncs)
    return {"steps": steps, "per_step": len(syncs) / steps,
            "most_common": [{"where": k, "count": v} for k, v in where.most_common(5)],
            "method": "torch.cuda.set_sync_debug_mode('warn'), warnings counted"}


def profile_step(fn: Callable[[], Any], steps: int, device: torch.device, wall_ms: float) -> dict[str, Any]:
    """torch.profiler over ``steps`` calls of ``fn`` (after the caller's warm-up): the top
    operators by self CPU and self device time, and wall vs summed device time per step."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    synchronize(device)
    with profile(activities=activities) as prof:
        started = time.perf_counter()
        for _ in range(steps):
            fn()
        synchronize(device)
        profiled_ms = 1000 * (time.perf_counter() - started) / steps
    averages = prof.key_averages()
    busy_ms = None
    if cuda:
        busy_us = sum(e.time_range.elapsed_us() for e in prof.events() if e.device_type == DeviceType.CUDA)
        busy_ms = busy_us / 1000 / steps
    return {
        "steps": steps,
        "wall_ms_per_step": wall_ms,
        "profiled_wall_ms_per_step": profiled_ms,
        "device_busy_ms_per_step": busy_ms,
        "device_busy_fraction": None if busy_ms is None else busy_ms / wall_ms,
        "top_self_cpu": _top_rows(averages, lambda e: e.self_cpu_time_total, steps),
        "top_self_device": _top_rows(averages, lambda e: _device_attr(e, "self_device_time_total"), steps)
        if cuda else [],
    }


def bench_variant(overrides: list[str], args: argparse.Namespace) -> tuple[dict[str, Any], Trainer]:
    """Time one configuration (a fresh trainer); returns its record and the trainer."""
    run_cfg = compose(["dataset=thumos14_synth", "trainer.progress=false", *overrides])
    trainer = Trainer(run_cfg, "/nonexistent-bench-run")
    trainer.setup()
    device = trainer.device
    loader = trainer.train_loader(epoch=0, skip_steps=0)
    batches = list(itertools.islice(iter(loader), args.steps + 2))
    started = time.perf_counter()
    for _ in itertools.islice(iter(trainer.train_loader(epoch=1, skip_steps=0)), args.steps):
        pass
    data_ms = 1000 * (time.perf_counter() - started) / args.steps
    cycle = itertools.cycle(batches)
    check = getattr(trainer, "loss_check", None)  # trainer.loss_check=deferred: settled after each step, as in fit
    losses: list[torch.Tensor] = []  # the first steps' total losses, read after the timing (no extra sync)

    def step() -> None:
        terms = trainer.train_step(next(cycle))
        if len(losses) < LOSS_STEPS:
            losses.append(terms["loss"])
        if check is not None:
            check.settle(wait=False)

    first = time.perf_counter()
    step()  # the first step alone: with trainer.compile=true it includes the compilation
    synchronize(device)
    first_ms = 1000 * (time.perf_counter() - first)
    timing = measure(step, args.steps, device)
    process_peak = peak_resident_mb()
    batch_size = int(run_cfg.optim.batch_size)
    entry: dict[str, Any] = {
        "train_step_ms": timing["ms"],
        "train_samples_per_s": batch_size / (timing["ms"] / 1000),
        "data_loading_ms_per_batch": data_ms,
        "train_step_peak_mb": timing["peak_mb"],
        "process_peak_rss_mb_during_step": process_peak if device.type == "cpu" else None,
        "first_step_ms": first_ms,
        "first_losses": [float(x) for x in losses],  # same seed and batches in every variant: comparable
    }
    if args.profile:  # before the evaluation forward: a compiled model would recompile for the mode switch
        try:
            entry["profile"] = profile_step(step, args.profile_steps, device, timing["ms"])
        except Exception as err:  # noqa: BLE001 - a profiler problem must not lose the timings
            entry["profile"] = {"error": f"{type(err).__name__}: {err}"}
        entry["host_syncs"] = count_host_syncs(step, args.profile_steps, device)
    model = trainer.model.eval()
    for n in args.eval_batches:
        batch = trainer.collate([trainer.eval_set[i % len(trainer.eval_set)] for i in range(n)])
        feats, mask = batch["feats"].to(device), batch["mask"].to(device)

        def forward(feats=feats, mask=mask):
            with torch.inference_mode(), (torch.autocast(device.type, dtype=trainer.amp_dtype)
                                          if trainer.amp_dtype else torch.autocast(device.type, enabled=False)):
                model(feats, mask)

        eval_timing = measure(forward, args.steps, device)
        entry[f"eval_forward_{n}_ms"] = eval_timing["ms"]
        entry[f"eval_windows_per_s_at_{n}"] = n / (eval_timing["ms"] / 1000)
        entry[f"eval_forward_{n}_peak_mb"] = eval_timing["peak_mb"]
    entry["speedup_train_vs_released"] = RELEASED["train_step_s"] / (timing["ms"] / 1000)
    if "eval_forward_16_ms" in entry:
        entry["speedup_eval_vs_released"] = RELEASED["eval_forward_16_s"] / (entry["eval_forward_16_ms"] / 1000)
    return entry, trainer


#: Total losses recorded per variant (its first steps: the same initial weights and batches in every
#: variant, so compiled and eager, or the two backends, can be compared).
LOSS_STEPS = 3

#: --compile / --variants value -> (trainer.compile value, record-name suffix)
COMPILE_CHOICES = {"off": ("false", "eager"), "on": ("true", "compiled"),
                   "reduce-overhead": ("reduce-overhead", "reduce-overhead"), "max-autotune": ("max-autotune", "max-autotune")}


def parse_variants(args: argparse.Namespace) -> list[tuple[str | None, str]]:
    """The (backend or None, compile choice) pairs to time, in order: ``--variants`` when given,
    else every backend with every ``--compile`` value, the eager ones first."""
    if args.variants:
        pairs = []
        for item in args.variants:
            backend, _, mode = item.partition(":")
            if not backend or mode not in COMPILE_CHOICES:
                raise SystemExit(f"--variants {item!r}: expected BACKEND:COMPILE with COMPILE one of "
                                 f"{', '.join(COMPILE_CHOICES)} (e.g. cuda:reduce-overhead)")
            pairs.append((backend, mode))
        return pairs
    return [(backend, mode) for mode in args.compile for backend in (args.backends or [None])]


def _release(compiled: bool) -> None:
    """Free the previous variant's model and optimizer (the caller dropped its trainer)."""
    gc.collect()
    if compiled:
        torch._dynamo.reset()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per measurement (median)")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None,
                        help="trainer.device (default: the config's, auto)")
    parser.add_argument("--backends", nargs="+", default=None,
                        help="model.attn_backend values to time in turn (default: the config's)")
    parser.add_argument("--compile", nargs="+", choices=list(COMPILE_CHOICES), default=["off"],
                        help="trainer.compile values to time in turn (all but off: GPU only)")
    parser.add_argument("--variants", nargs="+", default=None, metavar="BACKEND:COMPILE",
                        help="exactly these (model.attn_backend, --compile value) pairs, in this order "
                             "(replaces --backends and --compile)")
    parser.add_argument("--eval-batches", nargs="+", type=int, default=[16, 64],
                        help="evaluation forward batch sizes to time")
    parser.add_argument("--profile", action="store_true",
                        help="torch.profiler over --profile-steps steps per variant (+ host syncs on CUDA)")
    parser.add_argument("--profile-steps", type=int, default=3)
    args, overrides = parser.parse_known_args(argv)

    base = [*([f"trainer.device={args.device}"] if args.device else []), *overrides]
    cfg = compose(["dataset=thumos14_synth", "trainer.progress=false", *base])
    make_synthetic_features(cfg, progress=False)
    pairs = parse_variants(args)
    variants_named = args.backends is not None or args.variants is not None or args.compile != ["off"]
    results: dict[str, dict] = {}
    report = {
        "config": {"overrides": overrides, "batch": int(cfg.optim.batch_size), "window": 128, "parameters": None},
        "machine": {"processor": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                    "torch": torch.__version__,
                    "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None},
        "released_model_same_machine_kind": RELEASED,
        "results": results,
    }
    if variants_named:
        report["command"] = "python scripts/bench_train.py " + " ".join(argv)
    failed = 0
    # the eager variants first: torch.compile's are the slow, risky ones
    for precision, (backend, choice) in itertools.product(args.precisions, pairs):
        compile_value, suffix = COMPILE_CHOICES[choice]
        compiled = choice != "off"
        variant = [f"trainer.precision={precision}", *([f"model.attn_backend={backend}"] if backend else []),
                   f"trainer.compile={compile_value}"]
        device_name = str(cfg.trainer.device) if str(cfg.trainer.device) != "auto" else (
            "cuda" if torch.cuda.is_available() else "cpu")
        name = f"{device_name}_{precision}"
        if variants_named:
            name += f"_{backend or cfg.model.attn_backend}_{suffix}"
        trainer = None
        try:
            entry, trainer = bench_variant([*base, *variant], args)
            report["config"]["parameters"] = sum(p.numel() for p in trainer.model.parameters())
        except Exception as err:  # noqa: BLE001 - record it, time the other variants
            failed += 1
            entry = {"error": f"{type(err).__name__}: {' '.join(str(err).split())[:2000]}"}
            print(f"{name}: FAILED {entry['error'][:300]}", file=sys.stderr)
        entry.update({"device": device_name, "precision": precision, "attn_backend": backend or str(cfg.model.attn_backend),
                      "compile": compiled, "compile_mode": suffix})
        results[name] = entry
        trainer = None
        _release(compiled)
        write_report(args.out, report)  # after every variant: a timeout keeps what finished

    ok = {k: r for k, r in results.items() if "error" not in r}
    print(f"paper THUMOS14 config, batch {report['config']['batch']} x 128 snippets, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}")
    width = max([12, *(len(k) + 2 for k in ok)])
    print(f"{'run':<{width}}{'s/iter':>8}{'samples/s':>11}{'data ms':>9}{'RSS MB':>9}"
          f"{'eval16 ms':>11}{'eval64 win/s':>14}{'x train':>9}{'x eval':>8}")
    for name, r in ok.items():
        print(f"{name:<{width}}{r['train_step_ms'] / 1000:>8.3f}{r['train_samples_per_s']:>11.1f}"
              f"{r['data_loading_ms_per_batch']:>9.1f}{(r['process_peak_rss_mb_during_step'] or 0):>9.0f}"
              f"{r.get('eval_forward_16_ms', float('nan')):>11.1f}{r.get('eval_windows_per_s_at_64', float('nan')):>14.1f}"
              f"{r['speedup_train_vs_released']:>9.2f}{r.get('speedup_eval_vs_released', float('nan')):>8.2f}")
        prof = r.get("profile") or {}
        if prof.get("device_busy_ms_per_step") is not None:
            print(f"{'':<{width}}device busy {prof['device_busy_ms_per_step']:.1f} of {r['train_step_ms']:.1f} ms "
                  f"per step ({100 * prof['device_busy_fraction']:.0f}%)")
        if (r.get("host_syncs") or {}).get("per_step") is not None:
            print(f"{'':<{width}}host synchronisations per step: {r['host_syncs']['per_step']:.1f}")
    print(f"released model (docs/fidelity.md §10.4): {RELEASED['train_step_s']} s/iter, "
          f"{RELEASED['eval_forward_16_s']} s per eval forward of 16, {RELEASED['train_peak_rss_gb']} GB peak")
    written = write_report(args.out, report)
    if written is not None:
        print(f"-> {written}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run_script(main))
