"""Feature stores: npy folder and HDF5 behave the same, read slices, and reject bad input clearly."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from tp2detr.data.features import (
    HDF5FeatureStore,
    NpyFeatureStore,
    check_features,
    convert_npy_to_hdf5,
    open_feature_store,
    write_hdf5_features,
)
from tp2detr.errors import DataFormatError, MissingDataError

REPO_ROOT = Path(__file__).resolve().parents[2]


def _videos(seed: int = 0, dim: int = 6) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "video_a": rng.standard_normal((17, dim)).astype(np.float32),
        "video_b": rng.standard_normal((5, dim)).astype(np.float32),
        "video_c": rng.standard_normal((0, dim)).astype(np.float32),
    }


@pytest.fixture
def npy_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "npy"
    folder.mkdir()
    for video_id, array in _videos().items():
        np.save(folder / f"{video_id}.npy", array)
    return folder


@pytest.fixture
def h5_file(tmp_path: Path) -> Path:
    return write_hdf5_features(tmp_path / "feats.h5", _videos().items(), progress=False)


@pytest.fixture(params=["npy", "hdf5"])
def store(request, npy_dir: Path, h5_file: Path):
    path = npy_dir if request.param == "npy" else h5_file
    with open_feature_store(request.param, path) as opened:
        yield opened


def test_store_interface(store) -> None:
    videos = _videos()
    assert store.video_ids() == sorted(videos)
    assert all(store.read(v).shape[1] == 6 for v in videos)
    for video_id, array in videos.items():
        assert store.has(video_id)
        assert store.length(video_id) == len(array)
        out = store.read(video_id)
        assert out.dtype == np.float32 and out.shape == array.shape
        np.testing.assert_array_equal(out, array)
    assert not store.has("video_z")


def test_slice_reads_equal_full_read(store) -> None:
    full = store.read("video_a")
    for start, stop in [(0, 17), (3, 9), (16, 17), (5, 5), (0, None), (12, None)]:
        part = store.read("video_a", start, stop)
        np.testing.assert_array_equal(part, full[start:stop])
    with pytest.raises(ValueError, match=r"outside the video's 17 snippets"):
        store.read("video_a", 10, 18)
    with pytest.raises(ValueError, match="outside"):
        store.read("video_a", 5, 4)


def test_missing_video_is_named(store) -> None:
    with pytest.raises(MissingDataError) as err:
        store.read("video_missing")
    message = str(err.value)
    assert "video_missing" in message and str(store.source) in message and "[T, C]" in message


def test_npy_to_hdf5_round_trip_float32(npy_dir: Path, tmp_path: Path) -> None:
    dst = convert_npy_to_hdf5(npy_dir, tmp_path / "out" / "copy.h5", progress=False)
    with NpyFeatureStore(npy_dir) as src, HDF5FeatureStore(dst) as copy:
        assert copy.video_ids() == src.video_ids()
        for video_id in src.video_ids():
            np.testing.assert_array_equal(copy.read(video_id), src.read(video_id))
        assert copy.attributes()["converted_from"] == str(npy_dir.resolve())
    assert [p.name for p in dst.parent.iterdir()] == ["copy.h5"]  # no temp file left behind


def test_float16_store_reads_float32_close_to_source(npy_dir: Path, tmp_path: Path) -> None:
    dst = convert_npy_to_hdf5(npy_dir, tmp_path / "half.h5", dtype="float16", progress=False)
    with h5py.File(dst, "r") as handle:
        assert handle["video_a"].dtype == np.float16
    with HDF5FeatureStore(dst) as copy:
        out = copy.read("video_a")
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, _videos()["video_a"], rtol=1e-3, atol=1e-3)
        np.testing.assert_array_equal(out, _videos()["video_a"].astype(np.float16).astype(np.float32))


def test_convert_script(npy_dir: Path, tmp_path: Path) -> None:
    dst = tmp_path / "script.h5"
    cmd = [sys.executable, str(REPO_ROOT / "scripts" / "convert_features.py"), "--src", str(npy_dir), "--dst", str(dst)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "verified" in done.stdout
    with HDF5FeatureStore(dst) as copy:
        np.testing.assert_array_equal(copy.read("video_b"), _videos()["video_b"])
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "--overwrite" in again.stderr


# -- bad input --------------------------------------------------------------------------------


def test_missing_store_path_says_where_and_how(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match=r"looked for .*nowhere"):
        open_feature_store("npy", tmp_path / "nowhere")
    synthetic = tmp_path / "thumos14_synth_d64_s3.h5"
    with pytest.raises(MissingDataError) as err:
        open_feature_store("hdf5", synthetic)
    message = str(err.value)
    assert str(synthetic) in message
    assert "python scripts/make_synthetic.py dataset=thumos14_synth" in message
    assert "dataset.synthetic.dim=64" in message and "dataset.synthetic.seed=3" in message
    with pytest.raises(MissingDataError, match="convert_features"):
        open_feature_store("hdf5", tmp_path / "real.h5")


def test_unknown_format_and_wrong_kind_of_path(npy_dir: Path, h5_file: Path) -> None:
    with pytest.raises(ValueError, match=r"'pth'.*npy, hdf5"):
        open_feature_store("pth", npy_dir)
    with pytest.raises(DataFormatError, match="expected a folder"):
        open_feature_store("npy", h5_file)
    with pytest.raises(DataFormatError, match="expected one HDF5 file"):
        open_feature_store("hdf5", npy_dir)


def test_not_an_hdf5_file(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.h5"
    bogus.write_bytes(b"not hdf5 at all")
    with pytest.raises(DataFormatError, match="cannot open as HDF5"):
        open_feature_store("hdf5", bogus).video_ids()


def test_wrong_ndim(tmp_path: Path) -> None:
    folder = tmp_path / "npy"
    folder.mkdir()
    np.save(folder / "flat.npy", np.zeros(12, np.float32))
    with pytest.raises(DataFormatError) as err:
        NpyFeatureStore(folder).read("flat")
    assert "flat" in str(err.value) and "(12,)" in str(err.value) and "2-D" in str(err.value)
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as handle:
        handle["cube"] = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(DataFormatError, match=r"'cube'.*\(2, 3, 4\).*expected a 2-D array"):
        HDF5FeatureStore(path).length("cube")


def test_wrong_feature_dim(store) -> None:
    store.expected_dim = 512
    with pytest.raises(DataFormatError) as err:
        store.read("video_a")
    message = str(err.value)
    assert "video_a" in message and "6 channels" in message and "expected 512" in message


def test_length_mismatch_beyond_tolerance(store) -> None:
    store.expected_lengths = {"video_a": 15, "video_b": 9}
    assert store.read("video_a").shape[0] == 17  # 2 off: within the default tolerance
    with pytest.raises(DataFormatError) as err:
        store.length("video_b")
    message = str(err.value)
    assert "video_b" in message and "5 snippets" in message and "expected 9" in message and "±2" in message


def test_length_verdict_is_cached(npy_dir: Path) -> None:
    store = NpyFeatureStore(npy_dir, expected_lengths={"video_a": 17})
    assert store.length("video_a") == 17
    store.expected_lengths = {"video_a": 100}  # a fresh check would now fail
    assert store.length("video_a") == 17


@pytest.mark.parametrize("bad, kind", [(np.nan, "NaN"), (np.inf, "Inf"), (-np.inf, "Inf")])
def test_nan_and_inf_are_counted_and_located(tmp_path: Path, bad: float, kind: str) -> None:
    array = np.zeros((10, 4), np.float32)
    array[6, 2] = bad
    array[8, 0] = bad
    folder = tmp_path / "npy"
    folder.mkdir()
    np.save(folder / "v.npy", array)
    h5 = tmp_path / "v.h5"
    with h5py.File(h5, "w") as handle:
        handle["v"] = array
    for store in (NpyFeatureStore(folder), HDF5FeatureStore(h5)):
        with pytest.raises(DataFormatError) as err:
            store.read("v")
        message = str(err.value)
        assert f"2 {kind}" in message and "row 6, column 2" in message and "'v'" in message
        # Only what is read is checked; rows are counted from the start of the video.
        np.testing.assert_array_equal(store.read("v", 0, 6), array[:6])
        with pytest.raises(DataFormatError, match="row 8, column 0"):
            store.read("v", 7, 10)


def test_check_features_function() -> None:
    good = np.zeros((20, 8), np.float32)
    check_features(good, "v", "src", expected_length=21, expected_dim=8)
    with pytest.raises(DataFormatError, match="expected 25"):
        check_features(good, "v", "src", expected_length=25)
    check_features(good, "v", "src", expected_length=25, length_tolerance=5)
    with pytest.raises(DataFormatError, match="expected a real floating-point"):
        check_features(np.zeros((3, 2), np.complex64), "v", "src")
    with pytest.raises(DataFormatError, match="expected a real floating-point"):
        check_features(np.zeros((3, 2), np.int32), "v", "src")


def test_pickled_arrays_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "npy"
    folder.mkdir()
    np.save(folder / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataFormatError, match="obj"):
        NpyFeatureStore(folder).read("obj")


def test_hdf5_group_instead_of_dataset(tmp_path: Path) -> None:
    path = tmp_path / "g.h5"
    with h5py.File(path, "w") as handle:
        handle.create_group("v")
    with pytest.raises(DataFormatError, match="expected a \\[T, C\\] dataset"):
        HDF5FeatureStore(path).read("v")


# -- writing ----------------------------------------------------------------------------------


def test_write_is_atomic_on_failure(tmp_path: Path) -> None:
    dst = tmp_path / "out" / "store.h5"

    def items():
        yield "ok", np.ones((3, 2), np.float32)
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_hdf5_features(dst, items(), progress=False)
    assert list(dst.parent.iterdir()) == []

    # A previous file survives a failed rewrite untouched.
    write_hdf5_features(dst, [("old", np.zeros((2, 2), np.float32))], progress=False)
    bad = np.zeros((2, 2), np.float32)
    bad[1, 1] = np.nan
    with pytest.raises(DataFormatError, match="NaN"):
        write_hdf5_features(dst, [("new", bad)], progress=False)
    with HDF5FeatureStore(dst) as kept:
        assert kept.video_ids() == ["old"]
    assert [p.name for p in dst.parent.iterdir()] == ["store.h5"]


def test_write_rejects_float16_overflow_and_duplicates(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="after the cast to float16"):
        write_hdf5_features(tmp_path / "a.h5", [("v", np.full((2, 2), 1e6, np.float32))], dtype="float16", progress=False)
    twice = [("v", np.zeros((1, 2))), ("v", np.zeros((1, 2)))]
    with pytest.raises(ValueError, match="given twice"):
        write_hdf5_features(tmp_path / "b.h5", twice, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_failed_verification_leaves_no_file(tmp_path: Path) -> None:
    def verify(path: Path) -> None:
        raise DataFormatError(f"{path}: mismatch")

    with pytest.raises(DataFormatError, match="mismatch"):
        write_hdf5_features(tmp_path / "v.h5", [("v", np.zeros((2, 2)))], verify=verify, progress=False)
    assert list(tmp_path.iterdir()) == []


# -- processes --------------------------------------------------------------------------------


def test_hdf5_store_pickles_and_reopens(h5_file: Path) -> None:
    store = HDF5FeatureStore(h5_file)
    expected = store.read("video_a", 2, 5)
    clone = pickle.loads(pickle.dumps(store))
    np.testing.assert_array_equal(clone.read("video_a", 2, 5), expected)
    store.close()
    np.testing.assert_array_equal(store.read("video_a", 2, 5), expected)  # reopens lazily


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_hdf5_store_reopens_in_forked_child(h5_file: Path) -> None:
    store = HDF5FeatureStore(h5_file)
    expected = store.read("video_b")  # opens the file in the parent
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: must open its own handle, not reuse the parent's
        try:
            ok = np.array_equal(store.read("video_b"), expected) and store._pid == os.getpid()
            os.write(write_fd, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write_fd)
    answer = os.read(read_fd, 1)
    os.waitpid(pid, 0)
    assert answer == b"1"
    np.testing.assert_array_equal(store.read("video_b"), expected)  # parent handle still fine
    store.close()
