"""Training and evaluation throughput of the paper's THUMOS14 configuration on this machine.

    python scripts/bench_train.py --out docs/bench/train_cpu.json [--steps 5] [overrides...]

Runs the real training step of the engine (``Trainer.train_step``: forward, matching, every loss
term, backward, clipping, AdamW) on real batches from the semi-synthetic THUMOS14 store (built if
missing), batch 16 windows of 128 snippets, in fp32 and bf16 autocast; then the evaluation forward
at batch 16 and 64. Reports seconds per iteration, samples/s, the data-loading share, and the
peak memory of a step (see ``tp2detr.engine.benchmark``), as JSON and a table. Compares with the
authors' released model on the same machine kind (docs/fidelity.md §10.4: 4.4 s per training step, 2.06 s per
evaluation forward of 16 windows, 4.2 GB peak resident memory in training).
"""

from __future__ import annotations

import argparse
import itertools
import platform
import sys
import time
from pathlib import Path

import torch

from tp2detr.config import compose
from tp2detr.data.feature_setup import make_synthetic_features
from tp2detr.engine.benchmark import measure, peak_resident_mb, write_report
from tp2detr.engine.trainer import Trainer
from tp2detr.cli.hydra_app import run_script

RELEASED = {"train_step_s": 4.4, "eval_forward_16_s": 2.06, "train_peak_rss_gb": 4.2}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per measurement (median)")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    args, overrides = parser.parse_known_args(argv)

    cfg = compose(["dataset=thumos14_synth", "trainer.progress=false", *overrides])
    make_synthetic_features(cfg, progress=False)
    results: dict[str, dict] = {}
    for precision in args.precisions:
        run_cfg = compose(["dataset=thumos14_synth", "trainer.progress=false", f"trainer.precision={precision}",
                           *overrides])
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
        step = measure(lambda: trainer.train_step(next(cycle)), args.steps, device)
        process_peak = peak_resident_mb()
        batch_size = int(run_cfg.optim.batch_size)
        entry = {
            "train_step_ms": step["ms"],
            "train_samples_per_s": batch_size / (step["ms"] / 1000),
            "data_loading_ms_per_batch": data_ms,
            "train_step_peak_mb": step["peak_mb"],
            "process_peak_rss_mb_during_step": process_peak if device.type == "cpu" else None,
        }
        model = trainer.model.eval()
        eval_batches = {n: trainer.collate([trainer.eval_set[i] for i in range(n)]) for n in (16, 64)}
        for n, batch in eval_batches.items():
            feats, mask = batch["feats"].to(device), batch["mask"].to(device)

            def forward(feats=feats, mask=mask):
                with torch.inference_mode(), (torch.autocast(device.type, dtype=trainer.amp_dtype)
                                              if trainer.amp_dtype else torch.autocast(device.type, enabled=False)):
                    model(feats, mask)

            timing = measure(forward, args.steps, device)
            entry[f"eval_forward_{n}_ms"] = timing["ms"]
            entry[f"eval_windows_per_s_at_{n}"] = n / (timing["ms"] / 1000)
            entry[f"eval_forward_{n}_peak_mb"] = timing["peak_mb"]
        entry["speedup_train_vs_released"] = RELEASED["train_step_s"] / (step["ms"] / 1000)
        entry["speedup_eval_vs_released"] = RELEASED["eval_forward_16_s"] / (entry["eval_forward_16_ms"] / 1000)
        results[f"{device.type}_{precision}"] = entry

    report = {
        "config": {"overrides": overrides, "batch": int(cfg.optim.batch_size), "window": 128,
                   "parameters": sum(p.numel() for p in trainer.model.parameters())},
        "machine": {"processor": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                    "torch": torch.__version__,
                    "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None},
        "released_model_same_machine_kind": RELEASED,
        "results": results,
    }
    print(f"paper THUMOS14 config, batch 16 x 128 snippets, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"{'run':<12}{'s/iter':>8}{'samples/s':>11}{'data ms':>9}{'RSS MB':>9}"
          f"{'eval16 ms':>11}{'eval64 win/s':>14}{'x train':>9}{'x eval':>8}")
    for name, r in results.items():
        print(f"{name:<12}{r['train_step_ms'] / 1000:>8.2f}{r['train_samples_per_s']:>11.1f}"
              f"{r['data_loading_ms_per_batch']:>9.1f}{(r['process_peak_rss_mb_during_step'] or 0):>9.0f}"
              f"{r['eval_forward_16_ms']:>11.0f}{r['eval_windows_per_s_at_64']:>14.1f}"
              f"{r['speedup_train_vs_released']:>9.2f}{r['speedup_eval_vs_released']:>8.2f}")
    print(f"released model (docs/fidelity.md §10.4): {RELEASED['train_step_s']} s/iter, "
          f"{RELEASED['eval_forward_16_s']} s per eval forward of 16, {RELEASED['train_peak_rss_gb']} GB peak")
    written = write_report(args.out, report)
    if written is not None:
        print(f"-> {written}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
