"""Tensor operations per training step and the host's matching time: the CPU-side proxy of a GPU
step's launch overhead (docs/performance.md, "Host synchronisations of a training step").

    python scripts/bench_step_ops.py --out docs/bench/step_ops_cpu.json [--label after] [overrides...]

On a GPU the paper-config step is bound by the host (docs/performance.md): every tensor
operation is a dispatch and most are a kernel launch. This counts the operations the dispatcher
sees in one training step of the paper's THUMOS14 model (``Trainer.train_step``, batch 16, with the
GPU defaults ``optim.fused=true trainer.loss_check=deferred``), split into the model's forward, the
criterion (matching included) and backward + optimizer, with the most frequent per phase; and it
times the matching path alone on the host (``HungarianMatcher.match_layers`` of six decoder layers
plus the index assembly for the device, ``min`` and 10th percentile of 300 calls, one thread).
It also counts the step's host synchronisations the way a GPU run would make them
(``tp2detr/engine/host_syncs.py``, loaded from this script's checkout, so an older package can be
measured with it: ``PYTHONPATH=<older checkout> python scripts/bench_step_ops.py --label before
--no-gpu-defaults`` for a checkout without ``optim.fused`` / ``trainer.loss_check``).
Counts are exact and machine-independent; the time is this CPU's. A report is merged into
``--out`` under ``--label``, so two checkouts (before / after a change) can write one record.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import inspect
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from tp2detr.config import compose
from tp2detr.data.feature_setup import make_synthetic_features
from tp2detr.engine.benchmark import write_report
from tp2detr.engine.trainer import Trainer
from tp2detr.losses.hungarian_matcher import HungarianMatcher

ROOT = Path(__file__).resolve().parents[1]
GPU_DEFAULTS = ["optim.fused=true", "trainer.loss_check=deferred"]
TOP = 8


class PhaseCounter(TorchDispatchMode):
    """Counts the operations the dispatcher sees, per phase (set ``phase`` between calls)."""

    def __init__(self) -> None:
        super().__init__()
        self.phase = "forward"
        self.counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[self.phase][str(func)] += 1
        return func(*args, **(kwargs or {}))


def _sync_counter_module():
    """``host_syncs`` of this script's checkout (whatever ``tp2detr`` package is imported)."""
    spec = importlib.util.spec_from_file_location("bench_host_syncs", ROOT / "tp2detr" / "engine" / "host_syncs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _step(trainer: Trainer, batch: dict[str, Any], step: int) -> None:
    if "step" in inspect.signature(trainer.train_step).parameters:
        trainer.train_step(batch, step)
    else:  # an older checkout's train_step(batch)
        trainer.train_step(batch)


def count_step(overrides: list[str]) -> dict[str, Any]:
    cfg = compose(["experiment=paper_thumos14", "dataset=thumos14_synth", "trainer.num_threads=1",
                   "trainer.progress=false", *overrides])
    make_synthetic_features(cfg, progress=False)
    trainer = Trainer(cfg, Path(tempfile.mkdtemp(prefix="bench_step_ops_")))
    trainer.setup()
    batches = iter(trainer.train_loader(0, 0))
    _step(trainer, next(batches), 0)  # warm-up (lazy state, the loss reference)
    host_syncs = _sync_counter_module()
    host_syncs.mark_on_device(trainer.model.parameters())
    host_syncs.mark_on_device(trainer.model.buffers())
    with host_syncs.HostSyncCounter() as syncs:
        _step(trainer, next(batches), 1)
    sites: dict[str, int] = collections.Counter()
    for (operation, where), n in syncs.sites.items():
        sites[f"{operation} at {where.split(':')[0]} in {where.split(' in ')[-1]}"] += n
    counter = PhaseCounter()
    criterion, forward = trainer.criterion, trainer.train_model.forward

    def counted_criterion(*args, **kwargs):
        counter.phase = "criterion"
        out = criterion(*args, **kwargs)
        counter.phase = "backward_optimizer"
        return out

    def counted_forward(*args, **kwargs):
        counter.phase = "forward"
        return forward(*args, **kwargs)

    trainer.criterion, trainer.train_model.forward = counted_criterion, counted_forward
    batch = next(batches)
    with counter:
        _step(trainer, batch, 2)
    phases = {phase: sum(ops.values()) for phase, ops in counter.counts.items()}
    cpu_only = sum(n for site, n in sites.items() if site.endswith("in _check_inputs"))
    return {
        "host_synchronisations": {
            "count": syncs.count, "sites": dict(sites),
            "on_gpu": syncs.count - cpu_only if _mask_check_skipped_on_gpu() else syncs.count,
        },
        "operations": {**phases, "total": sum(phases.values())},
        "top_operations": {phase: ops.most_common(TOP) for phase, ops in counter.counts.items()},
        "decoder_layers": int(cfg.model.decoder_layers),
        "batch_size": int(cfg.optim.batch_size),
    }


def _mask_check_skipped_on_gpu() -> bool:
    """Whether the imported package's transformer runs its mask check on CPU tensors only (then
    its reads here are not a GPU run's)."""
    from tp2detr.models.transformer import DeformableTransformer

    return 'device.type == "cpu"' in inspect.getsource(DeformableTransformer._check_inputs)


def time_matching(repeats: int = 300) -> dict[str, Any]:
    """The host's matching path for 6 layers × 16 windows × 40 queries, 1–7 segments each (with
    the index assembly for the device where the package has it: ``match_indices_on``)."""
    from tp2detr.losses import criterion

    assemble = getattr(criterion, "match_indices_on", None)
    generator = torch.Generator().manual_seed(0)
    layers, batch, queries = 6, 16, 40
    boxes = torch.rand(layers, batch, queries, 2, generator=generator)
    logits = torch.randn(layers, batch, queries, generator=generator)
    targets = [torch.rand(int(torch.randint(1, 8, (1,), generator=generator)), 2, generator=generator)
               for _ in range(batch)]
    matcher = HungarianMatcher(cost_l1=5.0, cost_iou=2.0, cost_focal=6.0, alpha=0.25, gamma=2.0)
    sizes = [len(t) for t in targets]

    def run() -> None:
        matches = matcher.match_layers(boxes, logits, targets)
        if assemble is not None:
            assemble(torch.device("cpu"), matches, sizes)

    for _ in range(20):
        run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    times.sort()
    return {"min_ms": 1000 * times[0], "p10_ms": 1000 * times[repeats // 10], "repeats": repeats,
            "with_index_assembly": assemble is not None}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--label", default="current", help="the key this run's record is stored under")
    parser.add_argument("--no-gpu-defaults", action="store_true",
                        help=f"leave out {' '.join(GPU_DEFAULTS)} (a checkout without these keys)")
    args, overrides = parser.parse_known_args(argv)
    if not args.no_gpu_defaults:
        overrides = [*GPU_DEFAULTS, *overrides]
    torch.set_num_threads(1)
    import tp2detr

    package = Path(tp2detr.__file__).parent
    commit = subprocess.run(["git", "-C", str(package), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or None
    record = {"commit": commit, "package": str(package), "overrides": overrides, **count_step(overrides),
              "matching_host": time_matching()}
    report: dict[str, Any] = {}
    if args.out is not None and args.out.exists():
        report = json.loads(args.out.read_text())
        report.pop("host", None)
    report.setdefault("runs", {})[args.label] = record
    report["command"] = ("PYTHONPATH=<checkout> python scripts/bench_step_ops.py --out OUT --label LABEL "
                         "[--no-gpu-defaults] (one run per checkout)")
    write_report(args.out, report)
    print("| label | commit | host syncs on a GPU | forward | criterion | backward + optimizer | total | "
          "matching (host) min / p10 ms |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for label, run in report["runs"].items():
        ops, match = run["operations"], run["matching_host"]
        syncs = run.get("host_synchronisations", {}).get("on_gpu", "–")
        print(f"| {label} | {run['commit']} | {syncs} | {ops.get('forward', 0)} | {ops.get('criterion', 0)} | "
              f"{ops.get('backward_optimizer', 0)} | {ops['total']} | {match['min_ms']:.2f} / {match['p10_ms']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
