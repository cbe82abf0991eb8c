"""What one study-scale run costs here: the engine's training step and a whole evaluation.

    python scripts/bench_study.py --out docs/bench/study_cpu.json experiment=paper_thumos14 scale=study

Builds the run as ``train.py`` would (``dataset=thumos14_synth``, split 50_50/0, the given
overrides), then times ``Trainer.train_step`` on real batches (median of ``--steps`` after two
warm-up steps) and ``Trainer.evaluate`` over every evaluation window (stitching and the protocol's
evaluation included; the median of ``--evals``), and projects one complete run: epochs × steps
per epoch × step + evaluations × evaluation. The projection leaves out setup (reading the data,
building the model: a few seconds). Only APIs that predate ``scale=study`` are used, so the same
script measures an older checkout (the "before" of docs/bench/study_cpu.json).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time

from tp2detr.config import compose
from tp2detr.engine.benchmark import measure, write_report
from tp2detr.engine.trainer import Trainer


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="JSON report path")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps (median)")
    parser.add_argument("--evals", type=int, default=2, help="timed whole evaluations (median)")
    parser.add_argument("--label", default="", help="what this measurement is (kept in the report)")
    args, overrides = parser.parse_known_args(argv)
    cfg = compose(["dataset=thumos14_synth", "trainer.progress=false", *overrides])
    trainer = Trainer(cfg, "/nonexistent-bench-study-run")
    trainer.setup()
    batches = list(itertools.islice(iter(trainer.train_loader(epoch=0, skip_steps=0)), args.steps + 2))
    cycle = itertools.cycle(batches)
    step = measure(lambda: trainer.train_step(next(cycle)), args.steps, trainer.device)
    protocol = trainer.bundle.protocol
    seconds = []
    for _ in range(args.evals):
        started = time.perf_counter()
        trainer.evaluate(trainer.eval_set, protocol.eval_ground_truth, protocol.eval_durations)
        seconds.append(time.perf_counter() - started)
    epochs = int(cfg.optim.epochs)
    every = max(int(cfg.trainer.eval_every), 1)
    evaluations = len({e for e in range(epochs) if (e + 1) % every == 0} | {epochs - 1})
    step_s = step["ms"] / 1000
    evaluation_s = statistics.median(seconds)
    projected = epochs * trainer.steps_per_epoch * step_s + evaluations * evaluation_s
    report = {
        "label": args.label,
        "overrides": overrides,
        "parameters": sum(p.numel() for p in trainer.model.parameters()),
        "attention_backend": str(cfg.model.attn_backend),
        "train_step_s": round(step_s, 4),
        "steps_per_epoch": trainer.steps_per_epoch,
        "evaluation_s": round(evaluation_s, 3),
        "evaluation_windows": len(trainer.eval_set),
        "epochs": epochs,
        "evaluations": evaluations,
        "projected_run_s": round(projected, 1),
    }
    for key, value in report.items():
        print(f"{key:20} {value}")
    written = write_report(args.out, report)
    if written is not None:
        print(f"-> {written}")
    return 0


if __name__ == "__main__":
    from tp2detr.cli.hydra_app import run_script

    sys.exit(run_script(main))
