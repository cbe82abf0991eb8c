"""trainer.compile's values reach torch.compile as its modes (the GPU runs measure them)."""

from __future__ import annotations

import pytest
import torch

from tp2detr.config import compose
from tp2detr.config_checks import check_config
from tp2detr.engine import compilation
from tp2detr.errors import ConfigError


@pytest.mark.parametrize("value, mode", [(True, "default"), ("reduce-overhead", "reduce-overhead"),
                                         ("max-autotune", "max-autotune")])
def test_each_value_compiles_in_its_mode_on_a_gpu(monkeypatch, value, mode):
    calls = []
    monkeypatch.setattr(compilation.torch, "compile", lambda model, **kw: calls.append((model, kw)) or "compiled")
    model = torch.nn.Linear(2, 2)
    assert compilation.compile_for_training(model, value, torch.device("cuda")) == "compiled"
    assert calls == [(model, {"mode": mode})]


def test_the_cuda_graph_modes_are_the_ones_whose_steps_are_marked():
    assert [compilation.uses_cuda_graphs(v) for v in (False, True, "reduce-overhead", "max-autotune")] == [
        False, False, True, True]


def test_false_is_the_model_itself():
    model = torch.nn.Linear(2, 2)
    assert compilation.compile_for_training(model, False, torch.device("cpu")) is model


@pytest.mark.parametrize("value", [True, "reduce-overhead"])
def test_every_compiled_value_is_refused_on_the_cpu_naming_it(value):
    with pytest.raises(ConfigError, match=f"trainer.compile={str(value).lower()} on CPU"):
        compilation.compile_for_training(torch.nn.Linear(2, 2), value, torch.device("cpu"))


def test_the_config_check_names_the_accepted_values():
    check_config(compose(["trainer.compile=reduce-overhead"]))
    with pytest.raises(ConfigError, match="trainer.compile is 'fast', expected one of .*reduce-overhead"):
        check_config(compose(["trainer.compile=fast"]))
    with pytest.raises(ConfigError, match="expected false, true, reduce-overhead or max-autotune"):
        compilation.compile_mode("fast")


def _bench_train():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / "bench_train.py"
    spec = importlib.util.spec_from_file_location("bench_train", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_step_benchmark_times_the_pairs_it_is_given_in_order():
    import argparse

    bench = _bench_train()
    given = argparse.Namespace(variants=["cuda:off", "pytorch:off", "cuda:reduce-overhead", "cuda:on"],
                               backends=None, compile=["off"])
    assert bench.parse_variants(given) == [("cuda", "off"), ("pytorch", "off"), ("cuda", "reduce-overhead"),
                                           ("cuda", "on")]
    product = argparse.Namespace(variants=None, backends=["cuda", "pytorch"], compile=["off", "on"])
    assert bench.parse_variants(product) == [("cuda", "off"), ("pytorch", "off"), ("cuda", "on"), ("pytorch", "on")]
    assert {value for value, _ in bench.COMPILE_CHOICES.values()} - {"false"} == {
        str(v).lower() for v in compilation.COMPILE_MODES}  # every compiled value the trainer accepts
    with pytest.raises(SystemExit, match="--variants 'cuda:fast'"):
        bench.parse_variants(argparse.Namespace(variants=["cuda:fast"], backends=None, compile=["off"]))
