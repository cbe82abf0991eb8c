"""The tables of docs/RESULTS.md from committed sweep summaries (and the by-length figure).

    python scripts/study_tables.py docs/results/table1_thumos14_50_50/summary.json --split 50_50 \
        --rows table4_baseline table1_thumos14_direct table1_thumos14_cnn table1_thumos14_sgp table1_thumos14_transformer \
        --reference table4_baseline table1_thumos14_transformer --paper docs/results/paper_numbers.json \
        --by-length table4_baseline table1_thumos14_transformer --figure docs/figures/study_by_length_50_50.png

Prints markdown: one row per variant (mean ± std over its finished splits of mAP at each headline
tIoU and AVG, the number of splits, the paper's AVG for reference, the test-set-selected AVG as a
labelled oracle column, the mean wall time of a run); for each ``--reference``, the paired
differences of AVG against it over the splits both finished (mean ± std, and how many splits agree
in sign); with ``--by-length REFERENCE VARIANT``, mAP by action length averaged over splits and the
per-bin paired difference, and with ``--figure`` the same as a PNG. ``--splits`` restricts every
row to the named split ids (e.g. a row taken from a ten-split sweep compared over five).
``--seeds VARIANT SPLIT_ID`` prints only the runs of one variant on one split across the
summaries, one per seed, with their mean ± std (the seed noise). ``--dataset anet13`` switches the headline thresholds to ActivityNet's 0.5 / 0.75 / 0.95 (AVG is
always the summary's mAP over the dataset's thresholds).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from tp2detr.engine.comparison import (
    find_group,
    load_groups,
    mean_by_length,
    mean_std,
    paired_difference,
    paired_difference_by_length,
    per_split,
    restrict_to_splits,
)

HEADLINE_TIOU = {"thumos14": ["0.3", "0.4", "0.5", "0.6", "0.7"], "anet13": ["0.5", "0.75", "0.95"]}


def _pm(values: list[float]) -> str:
    mean, std = mean_std(values)
    if mean is None:
        return "–"
    return f"{mean:.2f}" + (f" ± {std:.2f}" if std is not None else "")


def _signed(diff: dict) -> str:
    if diff["mean"] is None:
        return "–"
    return f"{diff['mean']:+.2f}" + (f" ± {diff['std']:.2f}" if diff["std"] is not None else "")


def main_table(groups, rows, split, tiou, paper) -> str:
    head = ["variant", "splits", *(f"mAP@{t}" for t in tiou), "AVG", "paper AVG", "AVG, test-selected epoch (oracle)", "s / run"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for variant in rows:
        group = groups[variant]
        avg = per_split(group)
        cells = [variant, str(len(avg))]
        cells += [_pm(list(per_split(group, t).values())) for t in tiou]
        cells.append(f"**{_pm(list(avg.values()))}**")
        reference = (paper.get(split) or {}).get(variant)
        cells.append(f"{reference[-1]:.2f}" if reference else "–")
        cells.append(_pm(list(per_split(group, "test_best").values())))
        walls = [r["wall_time_s"] for r in group["runs"] if r.get("status") == "finished" and r.get("wall_time_s")]
        cells.append(f"{statistics.fmean(walls):.0f}" if walls else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_table(groups, rows, reference) -> str:
    base = groups[reference]
    lines = [f"| variant − {reference} | splits | mean ± std of the per-split AVG difference | splits better / worse |",
             "|---|---:|---:|---:|"]
    for variant in rows:
        if variant == reference:
            continue
        diff = paired_difference(groups[variant], base)
        lines.append(f"| {variant} | {diff['n']} | {_signed(diff)} | {diff['better']} / {diff['worse']} |")
    return "\n".join(lines)


def length_table(groups, reference, variant) -> str:
    means = {v: {r["bin"]: r for r in mean_by_length(groups[v])} for v in (reference, variant)}
    paired = {d["bin"]: d for d in paired_difference_by_length(groups[variant], groups[reference])}
    head = ["action length (s)", "instances (all splits)", reference, variant, "paired difference", "splits better / worse"]
    lines = ["| " + " | ".join(head) + " |", "|---|---:|---:|---:|---:|---:|"]
    for name, first in means[reference].items():
        cells = [name, str(first["num_gt"])]
        for v in (reference, variant):
            r = means[v].get(name)
            cells.append("–" if not r or r["mean"] is None else f"{r['mean']:.2f}" + (f" ± {r['std']:.2f}" if r["std"] is not None else ""))
        diff = paired[name]
        cells += [_signed(diff), f"{diff['better']} / {diff['worse']}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def seed_table(found, variant, split, split_id) -> str:
    """Every finished run of ``variant`` on split ``split_id`` across the summaries (one per seed):
    AVG and the shortest bin's mAP, then mean ± std over the seeds."""
    runs = [r for g in found if g["variant"] == variant and g["split"] == split for r in g["runs"]
            if r.get("status") == "finished" and r.get("split_id") == split_id]
    lines = ["| seed | AVG | mAP of the shortest actions | s / run |", "|---:|---:|---:|---:|"]
    for r in sorted(runs, key=lambda r: r["seed"]):
        short = (r.get("by_length") or [{}])[0]
        lines.append(f"| {r['seed']} | {r['mAP']:.2f} | {short.get('mAP') or 0:.2f} ({short.get('bin')}) | {r['wall_time_s']:.0f} |")
    avg = [r["mAP"] for r in runs]
    short = [(r.get("by_length") or [{}])[0].get("mAP") for r in runs]
    lines.append(f"| mean ± std ({len(runs)} seeds) | {_pm(avg)} | {_pm([v for v in short if v is not None])} | |")
    return "\n".join(lines)


def length_figure(groups, rows, title: str, path: Path) -> Path:
    import numpy as np

    from tp2detr.viz.canvas import new_figure, save_png

    tables = {v: mean_by_length(groups[v]) for v in rows}
    bins = [r["bin"] for r in tables[rows[0]]]
    figure = new_figure(7.0, 3.6)
    axes = figure.add_subplot(1, 1, 1)
    width = 0.8 / len(rows)
    x = np.arange(len(bins))
    for i, variant in enumerate(rows):
        by_bin = {r["bin"]: r for r in tables[variant]}
        means = [by_bin[b]["mean"] or 0.0 for b in bins]
        stds = [by_bin[b]["std"] or 0.0 for b in bins]
        axes.bar(x + (i - (len(rows) - 1) / 2) * width, means, width, yerr=stds, capsize=3, label=variant)
    axes.set_xticks(x, bins)
    axes.set_xlabel("action length (s)")
    axes.set_ylabel("mAP (%), mean ± std over splits")
    axes.legend(fontsize=8)
    axes.set_title(title, fontsize=9)
    return save_png(figure, path)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("summaries", nargs="+", help="sweep summary.json files")
    parser.add_argument("--split", required=True, help="split setting: 50_50 or 75_25")
    parser.add_argument("--rows", nargs="+", required=True, help="variants (preset names), in table order")
    parser.add_argument("--dataset", choices=sorted(HEADLINE_TIOU), default="thumos14", help="headline thresholds")
    parser.add_argument("--splits", nargs="+", type=int, help="only these split ids (default: every finished one)")
    parser.add_argument("--reference", nargs="+", default=[], help="variants the others are paired against")
    parser.add_argument("--paper", help="docs/results/paper_numbers.json")
    parser.add_argument("--by-length", nargs=2, metavar=("REFERENCE", "VARIANT"), help="the by-length comparison")
    parser.add_argument("--figure", help="PNG of the by-length comparison")
    parser.add_argument("--seeds", nargs=2, metavar=("VARIANT", "SPLIT_ID"), help="only the seed table of one split")
    args = parser.parse_args(argv)
    found = load_groups(args.summaries)
    if args.seeds:
        print(seed_table(found, args.seeds[0], args.split, int(args.seeds[1])))
        return 0
    names = list(dict.fromkeys([*args.rows, *args.reference, *(args.by_length or [])]))
    groups = {name: restrict_to_splits(find_group(found, name, args.split), args.splits) for name in names}
    paper = json.loads(Path(args.paper).read_text())[args.dataset]["rows"] if args.paper else {}
    print(main_table(groups, args.rows, args.split, HEADLINE_TIOU[args.dataset], paper))
    for reference in args.reference:
        print()
        print(paired_table(groups, args.rows, reference))
    if args.by_length:
        print()
        print(length_table(groups, *args.by_length))
        if args.figure:
            title = f"mAP by action length, {args.dataset} {args.split} (study scale)"
            print(f"\n(figure: {length_figure(groups, list(args.by_length), title, Path(args.figure))})")
    return 0


if __name__ == "__main__":
    from tp2detr.cli.hydra_app import run_script

    sys.exit(run_script(main))
