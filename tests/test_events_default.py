"""events: the shipped default model (its recipe, card and checksum), the family benchmark, the
transfer-learning curve, miniML HDF5 windows through prepare / train / predict."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import SHARED_DATA, ephys, needs_shared
from ephys.pipelines.core.errors import EphysError

H5 = SHARED_DATA / "minis" / "B_2020-06-09_002_example_training_data.h5"


def test_bootstrap_f1_by_hand():
    from ephys.pipelines.events.default_model import bootstrap_f1

    rows = [{"tp": 8, "n_detected": 10, "n_true": 10}] * 4
    f, lo, hi = bootstrap_f1(rows)
    assert f == pytest.approx(0.8) and lo == pytest.approx(0.8) and hi == pytest.approx(0.8)
    rows = [{"tp": 10, "n_detected": 10, "n_true": 10}, {"tp": 0, "n_detected": 10, "n_true": 10}] * 3
    f, lo, hi = bootstrap_f1(rows)
    assert f == pytest.approx(0.5) and lo < 0.5 < hi


def test_held_out_seeds_are_not_training_seeds():
    from ephys.pipelines.events.default_model import TEST_SEED_BASE, held_out_set

    a = held_out_set("mipsc", 3.0, 2, 0.5)
    b = held_out_set("mipsc", 5.0, 2, 0.5)
    assert not np.array_equal(a[0]["x"] / a[0]["x"].std(), b[0]["x"] / b[0]["x"].std())
    assert TEST_SEED_BASE > 100_003 * 1000  # the recipes' seeds (seed * 100_003 + i) for any seed < 1000


@pytest.fixture(scope="module")
def tiny_default(tmp_path_factory):
    from ephys.pipelines.events import default_model as DM

    out = tmp_path_factory.mktemp("default")
    card = DM.run_default_model(None, out, epochs=1, duration_s=1.0, log=lambda *_: None)
    return out, card


def test_default_recipe_card_and_install(tiny_default, tmp_path):
    from ephys.pipelines.events import default_model as DM

    out, card = tiny_default
    assert card["model_sha256"] == DM.sha256(out / "runs" / "cnn_bilstm" / "model.keras")
    assert len(card["data_fingerprint"]) >= 16 and card["seed"] == 0
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["detection_params"]) == {"cnn_bilstm", "threshold"} and m["train_fs_hz"] == [10_000.0, 20_000.0,
                                                                                                50_000.0]
    dest = DM.install(out, tmp_path / "shipped")
    assert (dest / "runs" / "cnn_bilstm" / "model.keras").is_file()
    (out / "runs" / "cnn_bilstm" / "model.keras").write_bytes(b"not the model")
    with pytest.raises(EphysError, match="not the one shipped.json describes"):
        DM.install(out, tmp_path / "again")
    # the benchmark on the installed copy: a cell per family x SNR, intervals around the F1
    res = DM.run_family_benchmark(None, tmp_path / "bench", run=dest, n_recordings=2, duration_s=1.0,
                                  snrs=(3.0,), families=("fast-mepsc", "nmj-mejc"), log=lambda *_: None)
    assert set(res["cells"]) == {"fast-mepsc|3|coloured", "nmj-mejc|3|coloured"}
    for cell in res["cells"].values():
        for meth in ("cnn_bilstm", "threshold"):
            lo, hi = cell[meth]["f1_ci95"]
            assert lo <= cell[meth]["f1"] <= hi
    assert res["default_method"] in ("cnn_bilstm", "threshold")
    assert any("real-noise test set skipped" in n for n in res["notes"]) and "shape check" in res["notes"][0]
    assert (tmp_path / "bench" / "table.md").read_text().startswith("| family | SNR |")


def test_shipped_model_is_intact():
    """The committed model file is the one its card describes, and events detect can load it."""
    from ephys.pipelines.events.shipped import FOLDER, shipped_card, shipped_run

    if not (FOLDER / "shipped.json").is_file():
        pytest.skip("no shipped model in this checkout")
    card = shipped_card()
    assert shipped_run() == FOLDER
    from ephys.pipelines.events.default_model import weights_sha256

    assert weights_sha256(FOLDER / "runs" / "cnn_bilstm" / "model.keras") == card["weights_sha256"]
    assert card["recipe"].startswith("ephys reproduce events-default")
    from ephys.pipelines.events.apply import load_detectors

    det = load_detectors(shipped_run(), ("cnn_bilstm", "threshold"))
    assert det["train_fs_hz"] and "cnn_bilstm" in det["params"]
    from ephys.pipelines.core.models import init_model_file

    assert init_model_file("shipped", "cnn_bilstm").name == "model.keras"


@needs_shared
def test_miniml_h5_prepare_train_predict(tmp_path):
    """miniML's HDF5 windows: prepare events -> train (default blocked split) -> predict on the .h5."""
    ephys("prepare", "events", H5, tmp_path / "w", check=0)
    man = json.loads((tmp_path / "w" / "manifest.json").read_text())
    assert man["default_split"] == "blocked"
    ephys("train", "--model", "cnn_bilstm", "--data", tmp_path / "w", "--epochs", "1", "--eager", "--hparam",
          "width=4", "--hparam", "lstm=4", "--out", tmp_path / "run", check=0)
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    t = {s["id"]: s["t_s"] for s in man["samples"]}
    # blocked in time, with a gap of one window (12 ms at 50 kHz) before each later part
    assert max(t[i] for i in split["train"]) + man["window_s"] < min(t[i] for i in split["val"])
    assert max(t[i] for i in split["val"]) + man["window_s"] < min(t[i] for i in split["test"])
    ephys("predict", tmp_path / "run", H5, tmp_path / "pred", check=0)
    assert (tmp_path / "pred" / "predictions.csv").is_file()
