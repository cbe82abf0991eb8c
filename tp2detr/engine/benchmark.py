"""Measuring wall time and peak memory of a callable, for the ``scripts/bench_*.py`` scripts.

Peak memory on CPU is the growth of the process's peak resident set (Linux ``VmHWM``, reset
through ``/proc/self/clear_refs`` before the measured call) over the resident set before it; glibc
is told to map every large block separately during that call, so the figure is what the call
needs rather than what the allocator kept from earlier. On CUDA it is
``torch.cuda.max_memory_allocated`` growth. Times are medians after one warm-up call.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from tp2detr.io import atomic_write_json

FAST_ALLOCATION, EXACT_MEMORY = 32 << 20, 128 << 10


def _set_mmap_threshold(num_bytes: int) -> None:
    """Blocks of at least ``num_bytes`` are mmapped; the heap's top is given back to the system only
    beyond twice that (glibc's own steady state: setting the mmap threshold by hand switches off
    its dynamic rule, which keeps the trim threshold at twice the mmap threshold; without this,
    every large free would return pages that the next allocation faults in again)."""
    name = ctypes.util.find_library("c")
    if name:
        libc = ctypes.CDLL(name)
        libc.mallopt(-3, int(num_bytes))  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 2 * int(num_bytes))  # M_TRIM_THRESHOLD
        libc.malloc_trim(0)


def _resident_kib() -> dict[str, int]:
    values = {}
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(("VmHWM:", "VmRSS:")):
                key, value = line.split(":")
                values[key] = int(value.split()[0])
    return values


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def synchronize(device: torch.device | str | None) -> None:
    """Wait for queued GPU work (no-op on CPU)."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def measure(fn: Callable[[], Any], repeats: int, device: torch.device | str | None = None) -> dict[str, float | None]:
    """``{"ms": median milliseconds, "peak_mb": peak memory growth in MiB (None if unknown)}``."""
    cuda = device is not None and torch.device(device).type == "cuda"
    _set_mmap_threshold(FAST_ALLOCATION)
    fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - started)
    peak = None
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        synchronize(device)
        peak = (torch.cuda.max_memory_allocated(device) - before) / 2**20
    else:
        _set_mmap_threshold(EXACT_MEMORY)
        if _reset_peak():
            before = _resident_kib()["VmRSS"]
            fn()
            peak = (_resident_kib()["VmHWM"] - before) / 1024
        _set_mmap_threshold(FAST_ALLOCATION)
    return {"ms": 1000 * statistics.median(times), "peak_mb": peak}


def peak_resident_mb() -> float:
    """Peak resident set of this process in MiB since start or since the last measurement's reset
    (after :func:`measure` on CPU: the whole process's peak during its memory call)."""
    return _resident_kib()["VmHWM"] / 1024


def device_time_ms(fn: Callable[[], Any], repeats: int, device: torch.device | str | None) -> float | None:
    """Mean GPU time per call of ``fn`` in milliseconds: the summed durations of every CUDA kernel,
    memset and copy that ``torch.profiler`` records over ``repeats`` calls (after one warm-up call),
    divided by ``repeats``. It leaves out the host's launch and Python overhead that the wall time
    of :func:`measure` includes. None on CPU."""
    if device is None or torch.device(device).type != "cuda":
        return None
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    fn()
    synchronize(device)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(repeats):
            fn()
        synchronize(device)
    busy_us = sum(e.time_range.elapsed_us() for e in prof.events() if e.device_type == DeviceType.CUDA)
    return busy_us / 1000 / repeats


def measure_interleaved(
    fns: dict[str, Callable[[], Any]], repeats: int, device: torch.device | str | None = None
) -> dict[str, Any]:
    """Median milliseconds of several callables timed in turn (a, b, a, b, ...) after one warm-up
    call each, so that a slow drift of the machine's speed (other tenants of a shared host) hits
    them alike; plus, for the first callable against each other one, the median of the per-round
    time ratios (``ratio_<name>``: first / name), which is robust to such drifts.

    Returns:
        ``{"<name>_ms": float, ..., "ratio_<name>": float, ...}``.
    """
    _set_mmap_threshold(FAST_ALLOCATION)
    for fn in fns.values():
        fn()
    synchronize(device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            started = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(time.perf_counter() - started)
    result: dict[str, Any] = {f"{name}_ms": 1000 * statistics.median(t) for name, t in times.items()}
    first, *others = list(fns)
    for name in others:
        result[f"ratio_{name}"] = statistics.median(a / b for a, b in zip(times[first], times[name]))
    return result


def write_report(path: str | Path | None, report: dict[str, Any]) -> Path | None:
    """Write a benchmark's JSON report atomically to ``path`` (nothing when None) and return it;
    ``"host"`` records the machine (CPU model and flags, torch build, GPU:
    :func:`tp2detr.engine.hardware.machine_info`)."""
    if path is None:
        return None
    from tp2detr.engine.hardware import machine_info

    atomic_write_json(path, {**report, "host": machine_info()})
    return Path(path)
