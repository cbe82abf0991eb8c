"""Training speed on one GPU: one split at the full schedule, N splits at once, and the merged record.

    python scripts/bench_gpu_train.py split --work-dir W --budget-s 70 --out split.json -- <train.py overrides>
    python scripts/bench_gpu_train.py concurrency --work-dir W --n 1 5 10 --budgets-s 35 50 70 \\
        --epochs 2 --out concurrency.json -- <train.py overrides>
    python scripts/bench_gpu_train.py merge --step step.json --split split.json \\
        --concurrency concurrency.json --environment environment.txt --out train_gpu.json

The sections ``split``, ``concurrency`` and ``merge`` of ``scripts/gpu_check.sh`` (docs/performance.md,
"GPU measurement script"). Every training run is a real ``train.py`` process in its own run folder;
what it measures is read back from that folder afterwards:

* ``metrics.json``: per epoch ``seconds`` and ``timing`` (training seconds and steps, evaluation
  seconds, peak GPU memory), the metrics and the run's status;
* ``tb/`` (TensorBoard events, ``trainer.log_every`` steps apart): the wall-clock time of the
  logged steps (the steady training rate, from intervals inside one epoch, so without the
  evaluation and the first steps' warm-up), of the writer's creation (training starts: the
  process's start-up is the time from its launch to this) and of each epoch's record (written
  after the epoch's checkpoint and metrics, so the wall time of an epoch including its writes);
* ``train.log``: the steps per epoch, when no epoch finished.

``split`` runs one ``train.py`` (the paper's schedule) in a fixed run folder for at most
``--budget-s`` seconds, then stops it with SIGTERM (the trainer finishes its step and saves a
checkpoint; rerunning the same command resumes it) and reports what finished. ``concurrency``
starts N runs (splits 0..N-1) at once as separate background processes, for each N in turn, each
level stopped after its budget the same way, samples ``nvidia-smi`` meanwhile, and projects the
ten-split sweep (the formula is written into the JSON as ``projection_formula``). ``merge``
combines the three records with the machine and the commands into one JSON and prints a markdown
table beside the authors' figures and the earlier H200 step times.

Why separate processes rather than ``train.py -m ... +launcher=joblib``: this launcher knows each
run's launch time and exit status, stops exactly its own processes at a deadline (a timeout that
hits a joblib sweep stops the Hydra parent and leaves its pooled workers behind), gives every run
a fixed folder and log, and needs no launcher plugin on the GPU machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
SPLITS = 10  # THUMOS14 50/50: ten published splits
TARGET_EPOCHS = 35  # the paper's schedule (configs/optim/adamw.yaml)
GOAL_SWEEP_S = 600.0  # the ten-split sweep in at most ten minutes
AUTHORS = {
    "gpu": "RTX 4080",
    "train_s_per_epoch": 81.0,
    "eval_s_per_epoch": 44.0,
    "steps_per_epoch_split0": 113,
    "source": "the authors' training log (docs/fidelity.md §5.6)",
}
AUTHORS["run_35_epochs_s"] = TARGET_EPOCHS * (AUTHORS["train_s_per_epoch"] + AUTHORS["eval_s_per_epoch"])
AUTHORS["sweep_10_splits_s"] = SPLITS * AUTHORS["run_35_epochs_s"]  # one after the other: about 12 h
BEFORE_H200 = {
    "train_step_ms_compiled_op": 121.48,
    "train_step_ms_fallback": 132.14,
    "precision": "bf16 (trainer.precision=auto on GPU)",
    "compile": False,
    "source": "docs/bench/ops_h200.json train_step (scripts/bench_ops.py --train-steps 5)",
}
PROJECTION_FORMULA = (
    "sweep_s = ceil(10 / N) * max over the N concurrent runs of run_s; "
    "run_s = startup_s + warmup_s + 35 * epoch_s; "
    "epoch_s = steps_per_epoch / steps_per_s + eval_s + commit_s. "
    "steps_per_s: the run's steady training steps/s while the N runs ran together (TensorBoard step log, "
    "intervals inside one epoch; metrics.json train_steps / train_s when the log has none); "
    "eval_s: evaluation seconds per epoch (metrics.json timing.eval_s, eval every epoch); "
    "commit_s: checkpoint + metrics writes per epoch (TensorBoard epoch record minus metrics.json seconds); "
    "startup_s: process launch to training start (TensorBoard writer creation); "
    "warmup_s: time to the first logged step beyond the steady rate. "
    "A component a run did not measure is taken from the other runs of the same N, then from the other "
    "levels (nearest N), and named in eval_s_from / commit_s_from. For N < 10 the runs are splits 0..N-1 and "
    "every later wave is assumed to take as long as the measured one."
)


# -- reading a run folder ------------------------------------------------------------------------
def read_tensorboard(tb_dir: Path) -> list[dict[str, Any]]:
    """Per TensorBoard events file of a run (oldest first): ``created`` (wall time of its first
    event, the writer's creation), ``steps`` ([(global step, wall time)] of ``train_step/loss``)
    and ``epoch_end`` ({epoch: wall time of its ``train/loss`` record})."""
    files = sorted(Path(tb_dir).glob("events.out.tfevents.*")) if Path(tb_dir).is_dir() else []
    if not files:
        return []
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    parsed = []
    for path in files:
        created, steps, epoch_end = None, [], {}
        try:
            for event in EventFileLoader(str(path)).Load():
                if created is None:
                    created = float(event.wall_time)
                for value in event.summary.value:
                    if value.tag == "train_step/loss":
                        steps.append((int(event.step), float(event.wall_time)))
                    elif value.tag == "train/loss":
                        epoch_end[int(event.step)] = float(event.wall_time)
        except Exception as err:  # noqa: BLE001 - a file cut short by a kill: keep what was read
            print(f"warning: {path}: {type(err).__name__}: {err}", file=sys.stderr)
        if created is not None:
            parsed.append({"created": created, "steps": steps, "epoch_end": epoch_end})
    return sorted(parsed, key=lambda f: f["created"])


def steps_per_epoch_from_log(log_path: Path) -> int | None:
    """``N steps/epoch`` from the trainer's ``data:`` line in ``train.log`` (None if absent)."""
    try:
        found = re.findall(r"\((\d+) steps/epoch", Path(log_path).read_text(errors="replace"))
    except OSError:
        return None
    return int(found[-1]) if found else None


def steady_step_rate(tb_files: list[dict[str, Any]], steps_per_epoch: int | None) -> float | None:
    """Training steps per second from consecutive logged steps of the same events file and the
    same epoch (an interval across an epoch's end holds its evaluation); None without two such."""
    if not steps_per_epoch:
        return None
    steps = seconds = 0.0
    for tb in tb_files:
        points = sorted(tb["steps"])
        for (s0, t0), (s1, t1) in zip(points, points[1:]):
            if s1 > s0 and (s0 - 1) // steps_per_epoch == (s1 - 1) // steps_per_epoch:
                steps, seconds = steps + s1 - s0, seconds + t1 - t0
    return steps / seconds if seconds > 0 else None


def epoch_walls(tb_files: list[dict[str, Any]]) -> dict[int, float]:
    """{epoch: wall seconds from the previous epoch's record (or the writer's creation) to its own}:
    training, evaluation and the epoch's checkpoint and metrics writes."""
    walls: dict[int, float] = {}
    for tb in tb_files:
        previous = tb["created"]
        for epoch in sorted(tb["epoch_end"]):
            walls[epoch] = tb["epoch_end"][epoch] - previous
            previous = tb["epoch_end"][epoch]
    return walls


def _mean(values: Sequence[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def summarize_run(doc: dict[str, Any] | None, tb_files: list[dict[str, Any]], launched_at: float | None = None,
                  steps_per_epoch_hint: int | None = None) -> dict[str, Any]:
    """What one run measured: its ``metrics.json`` document (None if it never wrote one), its
    TensorBoard timeline (:func:`read_tensorboard`) and the wall time of its (last) launch."""
    doc = doc or {"status": "no metrics.json", "epochs": [], "wall_time_s": None, "error": None, "selected": None}
    epochs = doc.get("epochs") or []
    timed = [e for e in epochs if e.get("timing")]
    train_s = [e["timing"]["train_s"] for e in timed]
    train_steps = [e["timing"]["train_steps"] for e in timed]
    eval_s = [e["timing"]["eval_s"] for e in timed if e.get("eval") is not None]
    steps_per_epoch = max(train_steps) if train_steps else steps_per_epoch_hint
    metrics_rate = sum(train_steps) / sum(train_s) if train_s and sum(train_s) > 0 else None
    tb_rate = steady_step_rate(tb_files, steps_per_epoch)
    walls = epoch_walls(tb_files)
    commit = [walls[e["epoch"]] - e["seconds"] for e in timed if e["epoch"] in walls and "seconds" in e]
    peaks = [e["timing"].get("peak_gpu_memory_mb") for e in timed]
    peaks = [p for p in peaks if p is not None]
    startup = warmup = None
    if tb_files:
        last = tb_files[-1]
        if launched_at is not None and last["created"] >= launched_at:
            startup = last["created"] - launched_at
        first = tb_files[0]
        rate = tb_rate or metrics_rate
        if first["steps"] and rate:
            step, wall = min(first["steps"])
            warmup = max(wall - first["created"] - step / rate, 0.0)
    evaluated = [e for e in epochs if e.get("eval") is not None]
    last_eval = None
    if evaluated:
        metrics = evaluated[-1]["eval"]
        last_eval = {"epoch": evaluated[-1]["epoch"], "mAP": metrics.get("mAP"), "ap": metrics.get("ap"),
                     "ar": metrics.get("ar")}
    selected = doc.get("selected")
    return {
        "status": doc.get("status"),
        "error": doc.get("error"),
        "epochs_done": len(epochs),
        "steps_per_epoch": steps_per_epoch,
        "train_s_per_epoch": train_s,
        "eval_s_per_epoch": eval_s,
        "epoch_s": [e.get("seconds") for e in timed],
        "epoch_wall_s": [walls[k] for k in sorted(walls)],
        "train_s_first_epoch": train_s[0] if train_s else None,
        "train_s_per_epoch_steady": _mean(train_s[1:] or train_s),
        "eval_s_mean": _mean(eval_s),
        "commit_s_mean": _mean(commit),
        "metrics_steps_per_s": metrics_rate,
        "tb_steady_steps_per_s": tb_rate,
        "steps_per_s": tb_rate or metrics_rate,
        "startup_s": startup,
        "warmup_s": warmup,
        "peak_gpu_memory_mb": max(peaks) if peaks else None,
        "wall_time_s": doc.get("wall_time_s"),
        "last_eval": last_eval,
        "selected_mAP": None if not selected or not selected.get("eval") else selected["eval"].get("mAP"),
    }


def read_run(run_dir: Path, launched_at: float | None = None) -> dict[str, Any]:
    """:func:`summarize_run` of a run folder (``metrics.json``, ``tb/``, ``train.log``)."""
    run_dir = Path(run_dir)
    doc = None
    if (run_dir / "metrics.json").exists():
        try:
            doc = json.loads((run_dir / "metrics.json").read_text())
        except (OSError, ValueError) as err:
            doc = {"status": f"unreadable metrics.json: {err}", "epochs": []}
    summary = summarize_run(doc, read_tensorboard(run_dir / "tb"), launched_at,
                            steps_per_epoch_from_log(run_dir / "train.log"))
    summary["run_dir"] = str(run_dir)
    return summary


# -- projections -------------------------------------------------------------------------------
def project_run(summary: dict[str, Any], epochs: int = TARGET_EPOCHS, eval_s: float | None = None,
                commit_s: float | None = None, eval_s_from: str = "this run",
                commit_s_from: str = "this run") -> dict[str, Any]:
    """``run_s`` of :data:`PROJECTION_FORMULA` for one run; ``eval_s`` / ``commit_s`` replace what
    the run did not measure (with where they came from). ``run_s`` is None when the steps per
    epoch, the rate or the evaluation time are unknown; a missing commit time counts as 0."""
    spe, rate = summary.get("steps_per_epoch"), summary.get("steps_per_s")
    if summary.get("eval_s_mean") is not None:
        eval_s, eval_s_from = summary["eval_s_mean"], "this run"
    if summary.get("commit_s_mean") is not None:
        commit_s, commit_s_from = summary["commit_s_mean"], "this run"
    if commit_s is None:
        commit_s_from = "unknown (0)"
    startup, warmup = summary.get("startup_s") or 0.0, summary.get("warmup_s") or 0.0
    result = {"steps_per_epoch": spe, "steps_per_s": rate, "eval_s": eval_s, "eval_s_from": eval_s_from,
              "commit_s": commit_s, "commit_s_from": commit_s_from, "startup_s": startup, "warmup_s": warmup,
              "epoch_s": None, "run_s": None}
    if not spe or not rate or eval_s is None:
        return result
    result["epoch_s"] = spe / rate + eval_s + (commit_s or 0.0)
    result["run_s"] = startup + warmup + epochs * result["epoch_s"]
    return result


def project_sweep(run_projections: list[dict[str, Any]], n: int, splits: int = SPLITS) -> float | None:
    """ceil(splits / n) waves, each as long as its slowest run; None if a run's time is unknown."""
    times = [p.get("run_s") for p in run_projections]
    if not times or any(t is None for t in times):
        return None
    return math.ceil(splits / n) * max(times)


def _level_value(runs: list[dict[str, Any]], key: str) -> float | None:
    return _mean([r.get(key) for r in runs])


def project_levels(levels: dict[int, dict[str, Any]], epochs: int = TARGET_EPOCHS) -> None:
    """Add ``projection`` (per run), ``projected_sweep_s`` and the aggregates to every level of a
    concurrency record (in place); components a level lacks come from the nearest other level."""
    order = sorted(levels)
    for n in order:
        level = levels[n]
        runs = level["runs"]
        fills: dict[str, tuple[float | None, str]] = {}
        for key in ("eval_s_mean", "commit_s_mean"):
            value, source = _level_value(runs, key), f"other runs of N={n}"
            if value is None:
                for other in sorted((m for m in order if m != n), key=lambda m: abs(m - n)):
                    value = _level_value(levels[other]["runs"], key)
                    if value is not None:
                        source = f"N={other}"
                        break
            fills[key] = (value, source)
        projections = [project_run(r, epochs, fills["eval_s_mean"][0], fills["commit_s_mean"][0],
                                   fills["eval_s_mean"][1], fills["commit_s_mean"][1]) for r in runs]
        for run, projection in zip(runs, projections):
            run["projection"] = projection
        rates = [r.get("steps_per_s") for r in runs]
        level["aggregate_train_steps_per_s"] = sum(rates) if rates and all(x is not None for x in rates) else None
        level["per_run_steps_per_s_mean"] = _mean(rates)
        level["per_run_epoch_s"] = _mean([p["epoch_s"] for p in projections])
        level["per_run_epoch_wall_s_measured"] = _mean([w for r in runs for w in r.get("epoch_wall_s") or []])
        level["per_run_train_s_per_epoch_measured"] = _mean([w for r in runs for w in r.get("train_s_per_epoch") or []])
        level["per_run_eval_s_measured"] = _level_value(runs, "eval_s_mean")
        peaks = [r.get("peak_gpu_memory_mb") for r in runs if r.get("peak_gpu_memory_mb") is not None]
        level["peak_gpu_memory_mb_per_run_max"] = max(peaks) if peaks else None
        level["projected_sweep_s"] = project_sweep(projections, n)
        level["projection_measured_only"] = all(
            p["eval_s_from"] == "this run" and p["commit_s_from"] == "this run" for p in projections)


def best_level(levels: dict[int, dict[str, Any]]) -> dict[str, Any] | None:
    """The level with the shortest projected sweep (None when no level has one)."""
    known = [(level["projected_sweep_s"], n) for n, level in levels.items() if level.get("projected_sweep_s")]
    if not known:
        return None
    seconds, n = min(known)
    return {"n": n, "projected_sweep_s": seconds, "projected_sweep_min": seconds / 60,
            "goal_s": GOAL_SWEEP_S, "meets_goal": seconds <= GOAL_SWEEP_S}


# -- launching runs ----------------------------------------------------------------------------
def _gpu_sample() -> tuple[float, float] | None:
    """(memory used MiB, utilisation %) summed / averaged over the GPUs, or None without nvidia-smi."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used,utilization.gpu", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=5).stdout
        rows = [[float(x) for x in line.split(",")] for line in out.strip().splitlines() if line.strip()]
        return (sum(r[0] for r in rows), statistics.fmean(r[1] for r in rows)) if rows else None
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


_STOP = {"signalled": False}


def _on_term(signum, frame) -> None:  # noqa: ARG001 - e.g. gpu_check.sh's section timeout: stop the runs, report
    _STOP["signalled"] = True


def run_processes(commands: list[list[str]], logs: list[Path], budget_s: float, grace_s: float,
                  env: dict[str, str] | None = None) -> dict[str, Any]:
    """Start every command at once (stdout+stderr to its log), wait until all ended or
    ``budget_s`` passed, then SIGTERM the rest (the trainer saves a checkpoint and exits), and
    SIGKILL what is left after ``grace_s``. Returns launch times, exit statuses and GPU samples.

    A SIGTERM to this process (gpu_check.sh's section timeout signals the section's whole process
    group, the runs included) ends the wait too: the runs are not signalled a second time (a second
    SIGTERM would hit a trainer that is already saving its checkpoint) and get at most 6 s before SIGKILL."""
    procs, launched = [], []
    handles = []
    stop = _STOP
    previous = signal.signal(signal.SIGTERM, _on_term)
    for command, log in zip(commands, logs):
        log.parent.mkdir(parents=True, exist_ok=True)
        handle = open(log, "w")
        handles.append(handle)
        launched.append(time.time())
        procs.append(subprocess.Popen(command, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, env=env))
    started = time.monotonic()
    samples, last_sample, terminated = [], 0.0, False
    try:
        while any(p.poll() is None for p in procs):
            now = time.monotonic()
            if stop["signalled"] and not terminated:  # stop now; the group's SIGTERM reached the runs too
                terminated, budget_s, grace_s = True, now - started, min(grace_s, 6.0)
            if not terminated and now - started >= budget_s:
                terminated = True
                for p in procs:
                    if p.poll() is None:
                        p.send_signal(signal.SIGTERM)
            if terminated and now - started >= budget_s + grace_s:
                for p in procs:
                    if p.poll() is None:
                        p.kill()
                break
            if now - last_sample >= 2.0:
                last_sample = now
                sample = _gpu_sample()
                if sample is not None:
                    samples.append(sample)
            time.sleep(0.25)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        for handle in handles:
            handle.close()
        signal.signal(signal.SIGTERM, previous)
    return {
        "launched_at": launched,
        "returncodes": [p.returncode for p in procs],
        "stopped_at_budget": terminated and not stop["signalled"],
        "stopped_by_signal": stop["signalled"],
        "wall_s": time.monotonic() - started,
        "gpu_memory_used_mb_max": max((s[0] for s in samples), default=None),
        "gpu_utilization_pct_mean": statistics.fmean(s[1] for s in samples) if samples else None,
        "gpu_samples": len(samples),
    }


def _ended_well(returncode: int | None, stopped: bool) -> bool:
    """Exit status 0, or a run this launcher (or the section's timeout) stopped: SIGTERM / SIGKILL."""
    return returncode == 0 or (stopped and returncode in (-signal.SIGTERM, -signal.SIGKILL))


def _train_command(python: str, overrides: list[str], run_dir: Path, threads: int | None) -> list[str]:
    return [python, str(ROOT / "train.py"), *overrides, *([f"trainer.num_threads={threads}"] if threads else []),
            f"hydra.run.dir={run_dir}"]


def _child_env(threads: int | None) -> dict[str, str]:
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def _write_json(path: Path | None, obj: Any) -> None:
    if path is None:
        return
    from tp2detr.io import atomic_write_json

    atomic_write_json(path, obj)


def cmd_split(args: argparse.Namespace, overrides: list[str]) -> int:
    run_dir = args.work_dir / "split"
    run_dir.mkdir(parents=True, exist_ok=True)
    launches_path = run_dir / "gpu_check_launches.json"
    launches = json.loads(launches_path.read_text()) if launches_path.exists() else []
    command = _train_command(args.python, overrides, run_dir, args.threads)
    result = run_processes([command], [run_dir / "stdout.log"], args.budget_s, args.grace_s, _child_env(args.threads))
    launches.append({"launched_at": result["launched_at"][0], "returncode": result["returncodes"][0],
                     "stopped_at_budget": result["stopped_at_budget"],
                     "stopped_by_signal": result["stopped_by_signal"], "wall_s": result["wall_s"]})
    _write_json(launches_path, launches)
    summary = read_run(run_dir, launches[-1]["launched_at"])
    projection = project_run(summary, args.target_epochs)
    report = {
        "command": " ".join(command),
        "budget_s": args.budget_s,
        "launches": launches,
        "target_epochs": args.target_epochs,
        "complete": summary["epochs_done"] >= args.target_epochs,
        "run": summary,
        "projection": projection,
        "projected_run_s": projection["run_s"],
        "projected_sequential_sweep_s": None if projection["run_s"] is None else SPLITS * projection["run_s"],
        "gpu_memory_used_mb_max": result["gpu_memory_used_mb_max"],
        "gpu_utilization_pct_mean": result["gpu_utilization_pct_mean"],
        "projection_formula": "run_s = startup_s + warmup_s + 35 * (steps_per_epoch / steps_per_s + eval_s + commit_s); "
                              "sequential sweep = 10 * run_s (see the concurrency record's projection_formula)",
    }
    _write_json(args.out, report)
    s = summary
    print(f"split run: {s['status']}, {s['epochs_done']}/{args.target_epochs} epochs, "
          f"{_fmt(s['train_s_per_epoch_steady'])} s training + {_fmt(s['eval_s_mean'])} s evaluation per epoch, "
          f"{_fmt(s['steps_per_s'])} steps/s, peak GPU {_fmt(s['peak_gpu_memory_mb'], 0)} MB, "
          f"start-up {_fmt(s['startup_s'])} s; projected 35-epoch run {_fmt(_div(projection['run_s'], 60))} min")
    if s["last_eval"]:
        print(f"last evaluation: epoch {s['last_eval']['epoch']}, mAP {100 * s['last_eval']['mAP']:.2f}")
    stopped = result["stopped_at_budget"] or result["stopped_by_signal"]
    ok = _ended_well(result["returncodes"][0], stopped) and s["status"] in ("finished", "interrupted", "running")
    return 0 if ok and s["epochs_done"] > 0 else 1


def cmd_concurrency(args: argparse.Namespace, overrides: list[str]) -> int:
    if len(args.budgets_s) not in (1, len(args.n)):
        raise SystemExit("--budgets-s: one value, or one per --n")
    budgets = args.budgets_s * len(args.n) if len(args.budgets_s) == 1 else args.budgets_s
    levels: dict[int, dict[str, Any]] = {}
    cpus = os.cpu_count() or 1
    report: dict[str, Any] = {"overrides": overrides, "epochs": args.epochs, "target_epochs": args.target_epochs,
                              "projection_formula": PROJECTION_FORMULA, "levels": levels}
    failed = False
    single = _read_optional(args.single_run) if args.single_run else None
    if single and 1 not in args.n and single.get("run"):
        # N=1 is the split section's run (the same configuration with the whole schedule)
        levels[1] = {"n": 1, "from": f"the single run of {args.single_run}", "threads_per_run": None,
                     "budget_s": single.get("budget_s"), "stopped_at_budget": (single.get("launches") or [{}])[-1].get(
                         "stopped_at_budget"), "gpu_memory_used_mb_max": single.get("gpu_memory_used_mb_max"),
                     "gpu_utilization_pct_mean": single.get("gpu_utilization_pct_mean"), "runs": [dict(single["run"])],
                     "command": single.get("command")}
        project_levels(levels, args.target_epochs)
    signal.signal(signal.SIGTERM, _on_term)  # also between levels: report what finished, start no other
    for n, budget in zip(args.n, budgets):
        if _STOP["signalled"]:
            print(f"stopped by a signal before N={n}; the later levels were not run", flush=True)
            failed = True
            break
        if not 1 <= n <= SPLITS:
            raise SystemExit(f"--n {n}: expected 1..{SPLITS} (one split per run)")
        threads = args.threads or max(1, cpus // n)
        level_dir = args.work_dir / "concurrency" / f"n{n}"
        shutil.rmtree(level_dir, ignore_errors=True)  # fresh runs (no resume from an earlier check)
        extra = [f"optim.epochs={args.epochs}", "trainer.eval_every=1"]
        commands = [_train_command(args.python, [*overrides, *extra, f"split.id={i}"], level_dir / f"split{i}", threads)
                    for i in range(n)]
        print(f"N={n}: {n} runs, {threads} CPU threads each, budget {budget:.0f} s", flush=True)
        result = run_processes(commands, [level_dir / f"split{i}.log" for i in range(n)], budget, args.grace_s,
                               _child_env(threads))
        runs = [read_run(level_dir / f"split{i}", result["launched_at"][i]) for i in range(n)]
        for run, code in zip(runs, result["returncodes"]):
            run["returncode"] = code
        stopped = result["stopped_at_budget"] or result["stopped_by_signal"]
        failed |= any(not _ended_well(code, stopped) for code in result["returncodes"]) or any(
            r["steps_per_s"] is None for r in runs)
        levels[n] = {"n": n, "threads_per_run": threads, "budget_s": budget,
                     **{k: v for k, v in result.items() if k != "launched_at"}, "runs": runs,
                     "command": " ".join(commands[0]).replace("split.id=0", "split.id=<i>")}
        if not args.keep_checkpoints:
            for i in range(n):
                shutil.rmtree(level_dir / f"split{i}" / "checkpoints", ignore_errors=True)
        project_levels(levels, args.target_epochs)
        report["best"] = best_level(levels)
        _write_json(args.out, {**report, "levels": {str(k): v for k, v in levels.items()}})
        if result["stopped_by_signal"]:  # the section's time is up: no further level
            print(f"stopped by a signal during N={n}; the later levels were not run", flush=True)
            failed = True
            break
    print(concurrency_table(levels))
    best = report.get("best")
    if best:
        print(f"best: N={best['n']}, projected ten-split {args.target_epochs}-epoch sweep "
              f"{best['projected_sweep_min']:.1f} min (goal <= {GOAL_SWEEP_S / 60:.0f} min: "
              f"{'met' if best['meets_goal'] else 'not met'})")
    return 1 if failed else 0


def concurrency_table(levels: dict[int, dict[str, Any]]) -> str:
    lines = ["| N | aggregate steps/s | per-run steps/s | per-run epoch s (projected) | measured epoch wall s "
             "| eval s | peak GPU MB / run | GPU MB used | GPU util % | projected sweep min |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n in sorted(levels):
        lv = levels[n]
        lines.append(f"| {n} | {_fmt(lv.get('aggregate_train_steps_per_s'))} | {_fmt(lv.get('per_run_steps_per_s_mean'))} "
                     f"| {_fmt(lv.get('per_run_epoch_s'))} | {_fmt(lv.get('per_run_epoch_wall_s_measured'))} "
                     f"| {_fmt(lv.get('per_run_eval_s_measured'))} | {_fmt(lv.get('peak_gpu_memory_mb_per_run_max'), 0)} "
                     f"| {_fmt(lv.get('gpu_memory_used_mb_max'), 0)} | {_fmt(lv.get('gpu_utilization_pct_mean'), 0)} "
                     f"| {_fmt(_div(lv.get('projected_sweep_s'), 60))} |")
    return "\n".join(lines)


# -- merging -----------------------------------------------------------------------------------
def _fmt(value: Any, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _div(value: float | None, by: float) -> float | None:
    return None if value is None else value / by


def _read_optional(path: Path | None) -> Any:
    if path is None or not Path(path).exists():
        return None
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        print(f"warning: {path}: {err}", file=sys.stderr)
        return None


def _step_rows(step: dict[str, Any] | None) -> list[dict[str, Any]]:
    rows = []
    for name, r in ((step or {}).get("results") or {}).items():
        prof = r.get("profile") or {}
        rows.append({"name": name, "device": r.get("device"), "precision": r.get("precision"),
                     "attn_backend": r.get("attn_backend"), "compile": r.get("compile"),
                     "compile_mode": r.get("compile_mode"), "first_losses": r.get("first_losses"),
                     "train_step_ms": r.get("train_step_ms"), "first_step_ms": r.get("first_step_ms"),
                     "train_step_peak_mb": r.get("train_step_peak_mb"),
                     "device_busy_ms_per_step": prof.get("device_busy_ms_per_step"),
                     "device_busy_fraction": prof.get("device_busy_fraction"),
                     "host_syncs_per_step": (r.get("host_syncs") or {}).get("per_step"),
                     "error": r.get("error")})
    return rows


def merge_reports(step: dict | None, split: dict | None, concurrency: dict | None,
                  environment: str | None = None, machine: dict | None = None) -> dict[str, Any]:
    """The merged ``train_h200.json``-shaped record (see the module docstring)."""
    if machine is None:
        from tp2detr.engine.hardware import machine_info

        machine = machine_info()
    machine = dict(machine)
    if environment:
        machine["environment"] = environment.strip().splitlines()
    if step and step.get("host", {}).get("gpu"):
        machine.setdefault("gpu", step["host"]["gpu"])
        machine.setdefault("cuda", step["host"].get("cuda"))
    levels = {int(k): v for k, v in ((concurrency or {}).get("levels") or {}).items()}
    split_run = (split or {}).get("run") or {}
    merged = {
        "what": "training speed of the paper's THUMOS14 configuration (transformer TFPN, batch 16) on the "
                "semi-synthetic THUMOS14 store: scripts/gpu_check.sh sections step, split and concurrency",
        "machine": machine,
        "commands": {"step": (step or {}).get("command"), "split": (split or {}).get("command"),
                     "concurrency": {str(n): lv.get("command") for n, lv in sorted(levels.items())}},
        "authors": AUTHORS,
        "before_h200": BEFORE_H200,
        "step": _step_rows(step),
        "split": None if split is None else {
            "epochs_done": split_run.get("epochs_done"), "target_epochs": split.get("target_epochs"),
            "status": split_run.get("status"),
            "train_s_per_epoch": split_run.get("train_s_per_epoch_steady"),
            "eval_s_per_epoch": split_run.get("eval_s_mean"),
            "commit_s_per_epoch": split_run.get("commit_s_mean"),
            "train_steps_per_s": split_run.get("steps_per_s"),
            "peak_gpu_memory_mb": split_run.get("peak_gpu_memory_mb"),
            "startup_s": split_run.get("startup_s"),
            "last_eval": split_run.get("last_eval"),
            "projected_run_s": split.get("projected_run_s"),
            "projected_sequential_sweep_s": split.get("projected_sequential_sweep_s")},
        "concurrency": None if concurrency is None else {
            str(n): {k: lv.get(k) for k in ("threads_per_run", "aggregate_train_steps_per_s", "per_run_steps_per_s_mean",
                                            "per_run_epoch_s", "per_run_epoch_wall_s_measured",
                                            "per_run_train_s_per_epoch_measured", "per_run_eval_s_measured",
                                            "peak_gpu_memory_mb_per_run_max", "gpu_memory_used_mb_max",
                                            "gpu_utilization_pct_mean", "projected_sweep_s", "projection_measured_only",
                                            "stopped_at_budget", "from")}
            for n, lv in sorted(levels.items())},
        "projection_formula": PROJECTION_FORMULA,
        "best": best_level(levels) if levels else None,
        "missing": [name for name, part in (("step", step), ("split", split), ("concurrency", concurrency))
                    if part is None],
        "reports": {"step": step, "split": split, "concurrency": concurrency},
    }
    for row in merged["step"]:
        row["loss_deviation"] = loss_deviation(row, merged["step"])
    merged["table_md"] = markdown_table(merged)
    return merged


def loss_deviation(row: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """How far ``row``'s first losses lie from the eager run of the same precision with the compiled
    op (the reference; falls back to the first eager row): the largest relative difference over the
    steps both recorded. None for the reference itself or without losses."""
    same = [r for r in rows if r["precision"] == row["precision"] and not r["compile"] and r.get("first_losses")
            and not r.get("error")]
    reference = next((r for r in same if r["attn_backend"] == "cuda"), same[0] if same else None)
    if reference is None or reference is row or not row.get("first_losses") or row.get("error"):
        return None
    pairs = list(zip(row["first_losses"], reference["first_losses"]))
    worst = max(abs(a - b) / max(abs(b), 1e-12) for a, b in pairs)
    # Eager runs draw the same dropout masks (same seed, same random calls); a compiled run's
    # Inductor draws its own random numbers, so its difference also holds other dropout masks.
    return {"reference": f"{reference['attn_backend']} eager", "steps": len(pairs), "max_relative": worst,
            "same_dropout_masks": not row["compile"]}


def _compile_label(row: dict[str, Any]) -> str:
    """eager, torch.compile, or torch.compile with its mode (reduce-overhead: CUDA graphs)."""
    if not row["compile"]:
        return "eager"
    mode = row.get("compile_mode")
    return "torch.compile" if mode in (None, "compiled") else f"torch.compile {mode}"


def markdown_table(merged: dict[str, Any]) -> str:
    a, b = merged["authors"], merged["before_h200"]
    gpu = merged["machine"].get("gpu") or merged["machine"].get("cpu") or "this machine"
    lines = [f"| measure | authors, {a['gpu']} | H200 before | this run ({gpu}) |", "|---|---:|---:|---:|"]
    for row in merged["step"]:
        before = None
        if row["compile"] is False and row["device"] == "cuda":
            before = {"cuda": b["train_step_ms_compiled_op"], "pytorch": b["train_step_ms_fallback"]}.get(row["attn_backend"])
        label = (f"training step ms, {row['precision']}, {row['attn_backend']} attention, "
                 f"{_compile_label(row)}")
        value = f"failed: {row['error'][:60]}" if row["error"] else _fmt(row["train_step_ms"])
        lines.append(f"| {label} | – | {_fmt(before)} | {value} |")
        if row["compile"] and row.get("first_step_ms") is not None:
            lines.append(f"| … first step ms (includes the compilation) | – | – | {_fmt(row['first_step_ms'], 0)} |")
        if row.get("device_busy_fraction") is not None:
            lines.append(f"| … GPU busy ms per step (share of wall) | – | – | {_fmt(row['device_busy_ms_per_step'])} "
                         f"({100 * row['device_busy_fraction']:.0f}%) |")
        if row.get("host_syncs_per_step") is not None:
            lines.append(f"| … host synchronisations per step | – | – | {_fmt(row['host_syncs_per_step'])} |")
        deviation = row.get("loss_deviation")
        if deviation is not None:
            masks = "" if deviation["same_dropout_masks"] else " (other dropout masks)"
            lines.append(f"| … first {deviation['steps']} losses: max relative difference from {deviation['reference']}"
                         f"{masks} | – | – | {deviation['max_relative']:.1e} |")
    split = merged["split"]
    if split:
        lines += [
            f"| one run, training s per epoch (split 0) | {a['train_s_per_epoch']:.0f} | – | {_fmt(split['train_s_per_epoch'])} |",
            f"| one run, evaluation s per epoch | {a['eval_s_per_epoch']:.0f} | – | {_fmt(split['eval_s_per_epoch'])} |",
            f"| one run, checkpoint writes s per epoch | – | – | {_fmt(split['commit_s_per_epoch'])} |",
            f"| one run, training steps/s | {a['steps_per_epoch_split0'] / a['train_s_per_epoch']:.2f} | – "
            f"| {_fmt(split['train_steps_per_s'], 2)} |",
            f"| one run, peak GPU memory MB | – | – | {_fmt(split['peak_gpu_memory_mb'], 0)} |",
            f"| one run, epochs done (of {split['target_epochs']}) | – | – | {split['epochs_done']} |",
            f"| one 35-epoch run, min (projected here) | {a['run_35_epochs_s'] / 60:.0f} | – "
            f"| {_fmt(_div(split['projected_run_s'], 60))} |",
            f"| ten splits one after the other, h | {a['sweep_10_splits_s'] / 3600:.1f} | – "
            f"| {_fmt(_div(split['projected_sequential_sweep_s'], 3600), 2)} |",
        ]
    for n, lv in (merged["concurrency"] or {}).items():
        if lv.get("from"):
            n = f"{n} (the split run)"
        lines += [
            f"| N={n} at once: aggregate training steps/s | – | – | {_fmt(lv['aggregate_train_steps_per_s'], 2)} |",
            f"| N={n} at once: epoch s per run (projected) | – | – | {_fmt(lv['per_run_epoch_s'])} |",
            f"| N={n} at once: ten-split sweep, min (projected) | {a['sweep_10_splits_s'] / 60:.0f} (in turn) | – "
            f"| {_fmt(_div(lv['projected_sweep_s'], 60))}{'' if lv['projection_measured_only'] else ' (partly borrowed)'} |",
        ]
    best = merged.get("best")
    if best:
        lines.append(f"\nBest: N={best['n']} runs at once, ten-split 35-epoch sweep projected at "
                     f"{best['projected_sweep_min']:.1f} min (goal ≤ {best['goal_s'] / 60:.0f} min: "
                     f"{'met' if best['meets_goal'] else 'not met'}).")
    return "\n".join(lines)


def cmd_merge(args: argparse.Namespace, overrides: list[str]) -> int:
    if overrides:
        raise SystemExit(f"merge takes no overrides, got {overrides}")
    environment = None
    if args.environment and args.environment.exists():
        environment = args.environment.read_text(errors="replace")
    merged = merge_reports(_read_optional(args.step), _read_optional(args.split), _read_optional(args.concurrency),
                           environment)
    _write_json(args.out, merged)
    print(merged["table_md"])
    if args.out:
        print(f"-> {args.out}")
    return 0 if not merged["missing"] else 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("split", "concurrency"):
        p = sub.add_parser(name)
        p.add_argument("--work-dir", type=Path, required=True, help="run folders go under here")
        p.add_argument("--out", type=Path, default=None)
        p.add_argument("--python", default=sys.executable)
        p.add_argument("--threads", type=int, default=None,
                       help="trainer.num_threads per run (default: split: the config's; concurrency: CPUs // N)")
        p.add_argument("--grace-s", type=float, default=15.0, help="after SIGTERM, seconds before SIGKILL")
        p.add_argument("--target-epochs", type=int, default=TARGET_EPOCHS)
    sub.choices["split"].add_argument("--budget-s", type=float, required=True)
    conc = sub.choices["concurrency"]
    conc.add_argument("--n", type=int, nargs="+", default=[1, 5, 10])
    conc.add_argument("--budgets-s", type=float, nargs="+", required=True, help="seconds per level (one, or one per N)")
    conc.add_argument("--epochs", type=int, default=2, help="optim.epochs of each run")
    conc.add_argument("--single-run", type=Path, default=None,
                      help="the split command's JSON: its run counts as the N=1 level unless --n has 1")
    conc.add_argument("--keep-checkpoints", action="store_true", help="keep the runs' checkpoints (about 1 GB each)")
    merge = sub.add_parser("merge")
    for name in ("step", "split", "concurrency", "environment", "out"):
        merge.add_argument(f"--{name}", type=Path, default=None)
    if "--" in argv:
        cut = argv.index("--")
        argv, overrides = argv[:cut], argv[cut + 1:]
    else:
        overrides = []
    args = parser.parse_args(argv)
    return {"split": cmd_split, "concurrency": cmd_concurrency, "merge": cmd_merge}[args.command](args, overrides)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    from tp2detr.cli.hydra_app import run_script

    sys.exit(run_script(main))
