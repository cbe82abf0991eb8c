"""Shared pytest configuration: GPU tests are skipped without CUDA; one torch thread per worker
under pytest-xdist; the ``one_thread``, ``toy_feature_dir`` and ``toy_checkpoints`` fixtures."""

import os
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one worker per core (pytest -n auto): a worker's torch threads would spin
    # against the other workers' (2-thread tests ran ~2.5x slower so), and the train/eval scripts
    # the tests start as subprocesses inherit the setting. An explicit OMP_NUM_THREADS wins.
    torch.set_num_threads(int(os.environ.setdefault("OMP_NUM_THREADS", "1")))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def restore_logging():
    """Give every test the logging set-up it started with: an in-process Hydra run installs
    handlers on the root logger that write to the stream pytest captured for that test, which is
    closed once the test ends (a later test's log line would then fail with a logging error)."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of tiny-model tests (two threads spin-wait badly on a
    shared 2-core machine); the previous count is restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def toy_feature_dir(tmp_path_factory) -> Path:
    """A folder holding the toy dataset's synthetic feature store (``toy_d32_s0.h5``), made once per
    test session; tests that change a store copy it first."""
    from tp2detr.config import compose
    from tp2detr.data.feature_setup import make_synthetic_features

    path = tmp_path_factory.mktemp("toy_features")
    make_synthetic_features(compose(["dataset=toy", f"paths.feature_dir={path}"]), progress=False)
    return path


class ToyCheckpoints:
    """Tiny toy-dataset checkpoints with freshly initialised weights, for the command-line tests.

    ``make(root, overrides, epoch)`` composes the toy config (plus ``overrides``) with its feature
    store under ``root/features`` (generated), builds the model with seed 0 and writes
    ``root/toy.pt``; it returns ``{"root", "cfg", "model", "ckpt"}``. ``write(path, model, cfg,
    epoch)`` writes the documented checkpoint dict with plain ``torch.save``.
    """

    @staticmethod
    def write(path: Path, model: torch.nn.Module, cfg, epoch: int = 3) -> None:
        torch.save(
            {"format": "tp2detr-checkpoint-v1", "model": model.state_dict(), "optimizer": None, "scheduler": None,
             "scaler": None, "epoch": epoch, "rng": None, "config": OmegaConf.to_container(cfg, resolve=True),
             "metrics": []},
            path,
        )

    def make(self, root: Path, overrides: list[str], epoch: int = 3) -> dict:
        from tp2detr.config import compose
        from tp2detr.data.feature_setup import make_synthetic_features
        from tp2detr.models.builder import build_model

        cfg = compose([*overrides, f"paths.feature_dir={root / 'features'}"])
        make_synthetic_features(cfg, progress=False)
        torch.manual_seed(0)
        model = build_model(cfg)
        ckpt = root / "toy.pt"
        self.write(ckpt, model, cfg, epoch)
        return {"root": root, "cfg": cfg, "model": model, "ckpt": ckpt}


@pytest.fixture(scope="session")
def toy_checkpoints() -> ToyCheckpoints:
    return ToyCheckpoints()
