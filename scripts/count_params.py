"""Print the model's trainable parameter count as JSON: ``total`` and a per-module breakdown.

    python scripts/count_params.py                       # THUMOS14 paper config (transformer TFPN)
    python scripts/count_params.py tfpn=sgp
    python scripts/count_params.py model.encoder_layers=2 model.decoder_layers=3 \
        model.decoder_points=6 model.num_queries=30 tfpn.window_size=17   # ActivityNet (Table 2)

The released code's never-trained class-embedding layers are not part of this model (docs/fidelity.md §9).
"""

from __future__ import annotations

import json
import sys

import torch

from tp2detr.config import compose
from tp2detr.models.builder import build_model, parameter_breakdown
from tp2detr.cli.hydra_app import run_script


def main(argv: list[str]) -> int:
    cfg = compose(argv)
    torch.manual_seed(int(cfg.seed))
    model = build_model(cfg)
    counts = parameter_breakdown(model)
    print(json.dumps({"total": counts.pop("total"), "modules": counts}))
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
