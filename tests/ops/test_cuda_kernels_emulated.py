"""The CUDA kernels' source, run on the CPU: ``ops/csrc/ms_deform_attn_1d_kernels.cuh`` compiled
with the host compiler against an emulation of one warp (``tests/ops/warp_emulation``: 32 host
threads, shuffles through shared slots between barriers, locked atomics), checked against the
PyTorch fallback's output and gradients. This tests the kernels' indexing, tap broadcast,
reduce-scatter and atomic combining where no GPU is at hand; the GPU tests
(``test_ops_gpu.py``) still run them on the device, in half precision and at full size."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from tp2detr.models.deform_attn import ms_deform_attn_1d_pytorch
from op_test_inputs import random_op_inputs

HERE = Path(__file__).parent
CSRC = HERE.parents[1] / "ops" / "csrc"


@pytest.fixture(scope="module")
def harness(tmp_path_factory) -> Path:
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("needs a C++20 host compiler (g++) to build the warp emulation")
    binary = tmp_path_factory.mktemp("warp_emulation") / "kernel_harness"
    subprocess.run(
        [compiler, "-std=c++20", "-O1", f"-I{HERE / 'warp_emulation'}", f"-I{CSRC}",
         str(HERE / "warp_emulation" / "kernel_harness.cpp"), "-o", str(binary)],
        check=True, capture_output=True, timeout=120,
    )
    return binary


def run_kernels(harness: Path, tmp_path: Path, inputs, grad_output: torch.Tensor, index_bits: int):
    """(output, [(grad_value, grad_locations, grad_weights) of the atomic and the deterministic
    backward]) of the emulated kernels, as float64 tensors."""
    value, lengths, starts, locations, weights = inputs
    n, s, m, d = value.shape
    _, lq, _, levels, points = locations.shape
    dtype = value.dtype
    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    source, result = tmp_path / "in.bin", tmp_path / "out.bin"
    with source.open("wb") as handle:
        handle.write(struct.pack("<9q", value.element_size(), index_bits, n, s, m, d, lq, levels, points))
        handle.write(lengths.numpy().astype("<i8").tobytes() + starts.numpy().astype("<i8").tobytes())
        for tensor in (value, locations, weights, grad_output):
            handle.write(tensor.contiguous().numpy().astype(np_dtype).tobytes())
    subprocess.run([str(harness), str(source), str(result)], check=True, timeout=120)
    flat = torch.from_numpy(np.fromfile(result, dtype=np_dtype).astype(np.float64))
    sizes = [n * lq * m * d] + [value.numel(), locations.numel(), locations.numel()] * 2
    parts = list(flat.split(sizes))
    output = parts[0].view(n, lq, m * d)
    grads = [(parts[i].view(value.shape), parts[i + 1].view(locations.shape), parts[i + 2].view(locations.shape))
             for i in (1, 4)]
    return output, grads


CASES = {
    # the model's rows: 4 levels x 4 points = 16 samples, one chunk; head dims below, at and above
    # one pass of 128 channels
    "model_rows_d32": dict(lengths=(16, 8, 4, 2), points=4, head_dim=32),
    "model_rows_d130": dict(lengths=(16, 8, 4, 2), points=4, head_dim=130, queries=2),
    "odd_d5": dict(lengths=(7, 4, 1), points=3, head_dim=5),
    "two_chunks": dict(lengths=(9, 5, 3, 2, 1), points=4, head_dim=33, queries=3),  # 20 samples
    "one_sample": dict(lengths=(6,), points=1, head_dim=8),
    "coarse_levels_share_keys": dict(lengths=(2, 1), points=8, head_dim=16),  # taps collide often
}


@pytest.mark.parametrize("index_bits", [32, 64])
@pytest.mark.parametrize("case", sorted(CASES))
def test_emulated_cuda_kernels_match_the_fallback(harness, tmp_path, case, index_bits):
    inputs = random_op_inputs(dtype=torch.float64, seed=len(case), **{"n": 2, "heads": 2, **CASES[case]})
    value, lengths, starts, locations, weights = inputs
    leaves = [t.clone().requires_grad_() for t in (value, locations, weights)]
    expected = ms_deform_attn_1d_pytorch(leaves[0], lengths, starts, leaves[1], leaves[2])
    grad_output = torch.randn(expected.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    expected_grads = torch.autograd.grad(expected, leaves, grad_output)

    output, grads = run_kernels(harness, tmp_path, inputs, grad_output, index_bits)
    torch.testing.assert_close(output, expected.detach(), rtol=1e-12, atol=1e-12)
    for mode, got in zip(("atomic", "deterministic"), grads):
        for name, g, e in zip(("value", "locations", "weights"), got, expected_grads):
            torch.testing.assert_close(g, e, rtol=1e-11, atol=1e-11, msg=lambda m: f"{mode} grad {name}: {m}")


def test_emulation_catches_a_wrong_kernel(harness, tmp_path):
    """The comparison can fail: a kernel fed a wrong upstream gradient disagrees with the fallback."""
    inputs = random_op_inputs(dtype=torch.float64, n=1, heads=1, lengths=(8, 4), points=2, head_dim=4)
    value, lengths, starts, locations, weights = inputs
    leaves = [t.clone().requires_grad_() for t in (value, locations, weights)]
    out = ms_deform_attn_1d_pytorch(leaves[0], lengths, starts, leaves[1], leaves[2])
    grad_output = torch.ones_like(out)
    expected = torch.autograd.grad(out, leaves, grad_output)
    _, grads = run_kernels(harness, tmp_path, inputs, grad_output * 2, 32)
    assert not torch.allclose(grads[0][1], expected[1])
