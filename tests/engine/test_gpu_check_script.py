"""scripts/gpu_check.sh's contract with the device tool, checked on the CPU with its cheapest section.

The device tool returns at most 8 files from ``$OUT``, none deeper than two folders, named in
letters, digits, '.', '_' and '-'; and the GPU machine's image lacks Hydra, which the script
installs from carried wheels. Both decide whether a scarce GPU session returns anything.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"
DEVICE_TOOL_MAX_FILES = 8
DEVICE_TOOL_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


def run_check(tmp_path: Path, sections: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "GPU_CHECK_DEVICE": "cpu", "GPU_CHECK_WORK": str(tmp_path / "work"),
                   "SECTIONS": sections, "GPU_CHECK_WHEELS": str(tmp_path / "no-wheels"), **env}
    return subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, env=environment, capture_output=True, text=True,
                          timeout=120)


def test_what_reaches_out_fits_the_device_tools_limits_and_holds_every_log(tmp_path):
    """Every record present (as after a complete run) plus a failing section: within the file
    limit, names the tool accepts, the summary and a tarball of every log."""
    script = SCRIPT.read_text()
    published = re.search(r'PUBLISHED="([^"]*)"', script).group(1).replace("\\\n", " ").split()
    assert len(published) + 1 <= DEVICE_TOOL_MAX_FILES  # + the tarball
    assert {"ops_gpu.json", "train_step_gpu.json", "train_split.json", "train_concurrency.json",
            "train_gpu.json", "inference_gpu.json", "summary.txt"} <= set(published)
    report = tmp_path / "work" / "report"
    report.mkdir(parents=True)
    for name in published:
        if name != "summary.txt":
            (report / name).write_text("{}")
    out = tmp_path / "out"
    out.mkdir()
    result = run_check(tmp_path, "env not_a_section", OUT=str(out), PYTHON=sys.executable)
    assert result.returncode == 1, result.stdout + result.stderr  # the unknown section fails the run
    returned = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert returned == sorted(Path(n) for n in [*published, "gpu_check_report.tar.gz"])
    assert len(returned) <= DEVICE_TOOL_MAX_FILES
    assert all(DEVICE_TOOL_NAME.match(part) for p in returned for part in p.parts)
    summary = (out / "summary.txt").read_text()
    assert "-- env: ok" in summary and "not_a_section: unknown section" in summary
    assert "== done: failed: not_a_section" in summary
    with tarfile.open(out / "gpu_check_report.tar.gz") as tar:
        names = {Path(n).name for n in tar.getnames()}
    assert {"environment.txt", "summary.txt", "train_gpu.json"} <= names


def _fake_wheel(folder: Path, distribution: str, module: str) -> None:
    """A minimal pure-Python wheel providing ``module`` (stands in for hydra-core / omegaconf)."""
    dist_info = f"{distribution}-0.0.1.dist-info"
    with zipfile.ZipFile(folder / f"{distribution}-0.0.1-py3-none-any.whl", "w") as wheel:
        wheel.writestr(f"{module}/__init__.py", "STAND_IN = True\n")
        wheel.writestr(f"{dist_info}/METADATA", f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 0.0.1\n")
        wheel.writestr(f"{dist_info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                             "Tag: py3-none-any\n")
        wheel.writestr(f"{dist_info}/RECORD", f"{module}/__init__.py,,\n{dist_info}/METADATA,,\n"
                                              f"{dist_info}/WHEEL,,\n{dist_info}/RECORD,,\n")


@pytest.fixture(scope="module")
def python_without_hydra(tmp_path_factory) -> str:
    """A fresh virtual environment with pip and nothing else, like the GPU image without Hydra."""
    folder = tmp_path_factory.mktemp("bare-venv")
    venv.create(folder, with_pip=True)
    python = folder / "bin" / "python"
    assert subprocess.run([python, "-c", "import hydra"], capture_output=True).returncode != 0
    return str(python)


def test_hydra_missing_is_installed_from_the_carried_wheels(tmp_path, python_without_hydra):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _fake_wheel(wheels, "hydra_core", "hydra")
    _fake_wheel(wheels, "omegaconf", "omegaconf")
    result = run_check(tmp_path, "env", PYTHON=python_without_hydra, GPU_CHECK_WHEELS=str(wheels),
                       OUT=str(tmp_path / "out"))
    assert result.returncode == 0, result.stdout + result.stderr
    site = tmp_path / "work" / "site"
    assert (site / "hydra" / "__init__.py").is_file() and (site / "omegaconf" / "__init__.py").is_file()


def test_hydra_missing_without_wheels_says_how_to_carry_them(tmp_path, python_without_hydra):
    result = run_check(tmp_path, "env", PYTHON=python_without_hydra, OUT=str(tmp_path / "out"))
    assert result.returncode == 1
    summary = (tmp_path / "out" / "summary.txt").read_text()
    assert "cannot import hydra/omegaconf" in summary and "make gpu-wheels" in summary
    assert "== done: failed: packages" in summary
