"""``InMemoryFeatureStore``: arrays behind the feature-store interface, with the same checks."""

from __future__ import annotations

import numpy as np
import pytest

from tp2detr.data.memory import InMemoryFeatureStore
from tp2detr.errors import DataFormatError, MissingDataError


def test_reads_rows_as_float32_and_lists_ids() -> None:
    array = np.arange(12, dtype=np.float64).reshape(6, 2)
    store = InMemoryFeatureStore({"b": array, "a": array[:3]}, expected_dim=2)
    assert store.video_ids() == ["a", "b"] and store.has("b") and not store.has("c")
    assert store.length("b") == 6 and store.read("b").shape == (6, 2)
    rows = store.read("b", 2, 4)
    assert rows.dtype == np.float32 and rows.tolist() == [[4.0, 5.0], [6.0, 7.0]]
    rows[0, 0] = -1.0
    assert array[2, 0] == 4.0  # reads are copies


def test_checks_dim_length_finiteness_and_dtype_naming_the_source() -> None:
    array = np.zeros((10, 3), dtype=np.float32)
    sources = {"v": "/videos/v.npy"}
    with pytest.raises(DataFormatError, match=r"/videos/v.npy: .* 3 channels .* expected 4"):
        InMemoryFeatureStore({"v": array}, sources, expected_dim=4).length("v")
    with pytest.raises(DataFormatError, match=r"10 snippets, expected 13 .* within ±2"):
        InMemoryFeatureStore({"v": array}, sources, expected_lengths={"v": 13}).length("v")
    assert InMemoryFeatureStore({"v": array}, expected_lengths={"v": 12}).length("v") == 10
    broken = array.copy()
    broken[7, 1] = np.inf
    with pytest.raises(DataFormatError, match="1 Inf value.*row 7, column 1"):
        InMemoryFeatureStore({"v": broken}, sources).read("v", 5, 9)
    with pytest.raises(DataFormatError, match="dtype int64"):
        InMemoryFeatureStore({"v": np.zeros((4, 2), dtype=np.int64)})
    with pytest.raises(MissingDataError, match="'w' not found"):
        InMemoryFeatureStore({"v": array}).read("w")
