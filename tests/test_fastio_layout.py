"""The consolidated dataset layout (one memory-mappable samples.npy) of issue 15."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ephys.pipelines.core.datasets import load_dataset
from ephys.pipelines.core.errors import EphysError
from ephys.pipelines.sts.scalograms import ScalogramParams, prepare_scalograms

SMALL = ScalogramParams(n_scales=16, window_s=(-0.1, 0.5))


@pytest.fixture(scope="module")
def prepared(tiny_synthetic, tmp_path_factory):
    out = tmp_path_factory.mktemp("layout") / "ds"
    prepare_scalograms(tiny_synthetic, out, tiny_synthetic / "labels.csv", SMALL, scheduler="synchronous",
                       consolidated="float32")
    return out


def _per_file(ds, idx):
    return np.stack([np.load(ds.path_of(i)) for i in idx])


def test_float32_consolidated_equals_the_per_cell_files(prepared):
    man = json.loads((prepared / "manifest.json").read_text())
    assert man["array"] == "samples.npy" and man["array_dtype"] == "float32"
    assert [s["row"] for s in man["samples"]] == list(range(len(man["samples"])))
    ds = load_dataset(prepared)
    arr = np.load(prepared / "samples.npy", mmap_mode="r")
    assert arr.shape == (12, *ds.sample_shape) and ds.storage_dtype == np.float32
    idx = [5, 0, 11, 3]
    np.testing.assert_array_equal(ds.load(idx), _per_file(ds, idx))


def test_float16_consolidation_rounds_within_the_stated_bound(prepared, tmp_path):
    import shutil

    copy = tmp_path / "ds16"
    shutil.copytree(prepared, copy)
    (copy / "samples.npy").unlink()
    from ephys.pipelines.core.datasets import write_consolidated  # what the manifest step calls

    man = json.loads((copy / "manifest.json").read_text())
    man.update(write_consolidated(copy, man["samples"], man["sample_shape"], "float16"))
    (copy / "manifest.json").write_text(json.dumps(man))
    ds = load_dataset(copy)
    assert ds.storage_dtype == np.float16
    idx = list(range(12))
    x16, ref = ds.load(idx, dtype=None), _per_file(ds, idx)
    assert x16.dtype == np.float16
    err = np.abs(x16.astype(np.float32) - ref)
    assert 0 < err.max() <= 2.0 ** -12  # rounding happened, and within half a float16 step near 1
    np.testing.assert_array_equal(ds.load(idx), x16.astype(np.float32))  # default: float32


def test_prepare_without_consolidation_and_bad_dtype(tiny_synthetic, tmp_path):
    prepare_scalograms(tiny_synthetic, tmp_path / "a", None, SMALL, scheduler="synchronous", consolidated=None)
    assert not (tmp_path / "a" / "samples.npy").exists()
    assert "array" not in json.loads((tmp_path / "a" / "manifest.json").read_text())
    with pytest.raises(EphysError, match="float32, float16 or none"):
        prepare_scalograms(tiny_synthetic, tmp_path / "b", None, SMALL, consolidated="int8")
