"""What the up-front feature check costs (``data.validate``, :func:`tp2detr.data.feature_setup.check_features_up_front`).

Checks every video of a THUMOS14-sized store (412 videos, 320,513 snippets of 512 channels) as a
run does before its first step: ``headers`` (shapes from the ``.npy`` headers / HDF5 metadata)
and ``full`` (also every value once for NaN/Inf), on the semi-synthetic THUMOS14 store in both
formats: the HDF5 file (float16, as generated) and a folder of float32 ``.npy`` files (the format
the authors publish, written here from the HDF5 file once). Each is timed with a cold page cache
(when this process may drop it: root on Linux) and warm.

    python scripts/bench_validate.py --out docs/bench/validate_cpu.json
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tp2detr.cli.hydra_app import run_script
from tp2detr.config import compose
from tp2detr.data.annotations import load_feature_info
from tp2detr.data.feature_setup import make_synthetic_features
from tp2detr.data.features import HDF5FeatureStore, open_feature_store, scan_feature_store
from tp2detr.engine.benchmark import write_report


def drop_page_cache() -> bool:
    """Ask Linux to drop the page cache (root only); whether it did."""
    try:
        subprocess.run(["sync"], check=True)
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def write_npy_copy(source: Path, folder: Path) -> None:
    """Every video of the HDF5 store ``source`` as ``folder/<video_id>.npy`` (float32), once."""
    store = HDF5FeatureStore(source)
    ids = store.video_ids()
    folder.mkdir(parents=True, exist_ok=True)
    if len(list(folder.glob("*.npy"))) == len(ids):
        return
    for video_id in ids:
        np.save(folder / f"{video_id}.npy", store.read(video_id))
    store.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="JSON report path")
    parser.add_argument("--feature-dir", default=None, help="where the stores live (default: paths.feature_dir)")
    args = parser.parse_args(argv)
    overrides = ["dataset=thumos14_synth"] + ([f"paths.feature_dir={args.feature_dir}"] if args.feature_dir else [])
    cfg = compose(overrides)
    make_synthetic_features(cfg, progress=False)
    h5_path = Path(str(cfg.dataset.features.path))
    npy_dir = h5_path.with_suffix("").with_name(h5_path.stem + "_npy")
    write_npy_copy(h5_path, npy_dir)
    info = load_feature_info(cfg.dataset.feature_info)
    lengths = {vid: i.snippet_length for vid, i in info.items()}
    rows = []
    for fmt, path in (("hdf5", h5_path), ("npy", npy_dir)):
        size = h5_path.stat().st_size if fmt == "hdf5" else sum(p.stat().st_size for p in npy_dir.glob("*.npy"))
        for mode in ("headers", "full"):
            for cache in ("cold", "warm"):
                if cache == "cold" and not drop_page_cache():
                    continue
                store = open_feature_store(fmt, path, expected_dim=int(cfg.dataset.features.dim),
                                           expected_lengths=lengths)
                started = time.perf_counter()
                problems = scan_feature_store(store, lengths, values=mode == "full")
                seconds = time.perf_counter() - started
                store.close()
                rows.append({"format": fmt, "mode": mode, "page_cache": cache, "seconds": round(seconds, 3),
                             "videos": len(lengths), "bytes_on_disk": size, "problems": len(problems)})
                print(f"{fmt:5} {mode:8} {cache:5} {seconds:7.2f} s  ({len(lengths)} videos, "
                      f"{size / 2**20:.0f} MiB, {len(problems)} problems)")
    written = write_report(args.out, {
        "what": "scan_feature_store over every THUMOS14 video (data.validate=headers|full)",
        "command": "python scripts/bench_validate.py " + " ".join(argv),
        "snippets": sum(lengths.values()),
        "channels": int(cfg.dataset.features.dim),
        "results": rows,
        "cpu_threads": os.cpu_count(),
    })
    if written is not None:
        print(f"-> {written}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
