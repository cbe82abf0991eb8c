"""Extract CLIP snippet features from video files (Hydra overrides of configs/extract.yaml).

    python scripts/extract_features.py input=videos/ out=data/features/my_clip clip_model=/models/clip-vit-b16
    python scripts/extract_features.py input=video.mp4 out=OUT clip_model=openai/clip-vit-base-patch16 format=hdf5
    python scripts/extract_features.py input=videos/ out=OUT clip_model=M frames_per_snippet=16 device=cpu

Writes ``OUT/<video_id>.npy`` (or ``OUT/features.h5`` with ``format=hdf5``), the feature-info
JSON (``feature_info``, default ``OUT/feature_info.json``) and ``OUT/extraction.json``. Rerunning
the same command skips the videos already done. Use the result with
``dataset.features.path=OUT`` (npy) or ``dataset.features.format=hdf5
dataset.features.path=OUT/features.h5``.

Exit status: 0 when every video was extracted or already done; 1 when some videos failed (each is
listed; the others were extracted); 2 on bad input or settings (one ``error:`` line).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from tp2detr.config import compose
from tp2detr.errors import TP2DETRError

#: Errors that mean bad input or settings (exit status 2).
BAD_INPUT_ERRORS = (TP2DETRError, ValueError, OSError, ImportError, OmegaConfBaseException)


def run(cfg: DictConfig) -> int:
    """Extract as ``cfg`` (configs/extract.yaml) says; print the summary. Returns the exit status."""
    from tp2detr.extraction import ClipFrameEncoder, extract_videos

    try:
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
        encoder = ClipFrameEncoder.load(
            str(cfg.clip_model), device=str(cfg.device), batch_size=int(cfg.batch_size), l2_normalize=bool(cfg.l2_normalize)
        )
        summary = extract_videos(
            str(cfg.input),
            str(cfg.out),
            encoder,
            fmt=str(cfg.format),
            frames_per_snippet=int(cfg.frames_per_snippet),
            feature_info=str(cfg.feature_info),
            hdf5_file=str(cfg.hdf5_file),
            hdf5_dtype=str(cfg.hdf5_dtype),
            overwrite=bool(cfg.overwrite),
            progress=bool(cfg.progress),
        )
    except BAD_INPUT_ERRORS as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    print(
        f"{len(summary.extracted)} extracted, {len(summary.skipped)} already done, {len(summary.failed)} failed; "
        f"features: {summary.features} ({summary.format}), feature info: {summary.feature_info}"
    )
    for failed in summary.failed:
        print(f"failed: {failed.path}: {' '.join(failed.error.split())}", file=sys.stderr)
    return 0 if summary.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``argv`` are Hydra overrides (default ``sys.argv[1:]``)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        cfg = compose(args, config_name="extract")
    except (HydraException, OmegaConfBaseException) as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    return run(cfg)


if __name__ == "__main__":
    sys.exit(main())
