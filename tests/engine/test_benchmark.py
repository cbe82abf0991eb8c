"""The benchmark helpers' bookkeeping (never their timings: those are the bench scripts' job)."""

from __future__ import annotations

from tp2detr.engine.benchmark import device_time_ms, measure, measure_interleaved


def test_measure_interleaved_alternates_and_reports_every_callable() -> None:
    calls: list[str] = []
    fns = {name: (lambda name=name: calls.append(name)) for name in ("a", "b", "c")}
    result = measure_interleaved(fns, repeats=3)
    assert calls == ["a", "b", "c"] + ["a", "b", "c"] * 3  # one warm-up each, then in turn
    assert set(result) == {"a_ms", "b_ms", "c_ms", "ratio_b", "ratio_c"}
    assert all(value > 0 for value in result.values())


def test_measure_reports_a_median_and_the_peak_of_a_known_allocation_on_cpu() -> None:
    import time

    import numpy as np
    import pytest

    def allocate_64_mib() -> None:
        block = np.ones(64 << 20, dtype=np.uint8)  # touched: resident, not only reserved
        time.sleep(0.002)
        del block

    result = measure(allocate_64_mib, repeats=3)
    assert result["ms"] >= 2.0
    if result["peak_mb"] is None:
        pytest.skip("peak memory is not measurable here (no /proc/self/clear_refs)")
    assert 60 <= result["peak_mb"] <= 80


def test_device_time_is_none_on_cpu() -> None:
    assert device_time_ms(lambda: None, repeats=2, device="cpu") is None
