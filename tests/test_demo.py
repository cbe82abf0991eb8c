"""`make demo`'s script end to end, shortened to one epoch (slow: about two minutes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_trains_and_prints_the_summary(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "optim.epochs=1", "trainer.progress=false",
         f"paths.output_dir={tmp_path}", f"paths.feature_dir={tmp_path / 'features'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "untrained (initialisation)" in proc.stdout
    assert "| demo | 1 | 0 |" in proc.stdout
    assert (tmp_path / "demo" / "thumos14_synth_50_50_split0" / "metrics.json").exists()
