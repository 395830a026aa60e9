"""lfp pipeline through the CLI: fetch synthetic, reproduce lfp-sim (tiny), reproduce lfp-ratgps, bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_DATA, ephys, needs_shared, one_line_error
from ephys.pipelines.lfp.synthetic import fetch_synthetic

RATGPS = SHARED_DATA / "lfp_spikes" / "ratgps"


def _npy_recording(folder: Path, lfp: np.ndarray, spikes: dict, fs: float = 250.0) -> Path:
    folder.mkdir(parents=True)
    np.save(folder / "lfp.npy", lfp)
    rows = ["unit,t_s"] + [f"{u},{t:.6f}" for u, ts in spikes.items() for t in ts]
    (folder / "spikes.csv").write_text("\n".join(rows) + "\n")
    (folder / "recording.json").write_text(json.dumps({"fs_hz": fs}))
    return folder


def test_fetch_synthetic_lfp(tmp_path):
    proc = ephys("fetch", "synthetic", "--pipeline", "lfp", "--size", "2", tmp_path / "c", check=0)
    assert str(tmp_path / "c") in proc.stdout
    truth = json.loads((tmp_path / "c" / "ground_truth.json").read_text())
    assert sorted(truth["participants"]) == ["P01", "P02"]
    assert (tmp_path / "c" / "P02" / "lfp.npy").is_file()


def test_reproduce_lfp_sim_tiny(tmp_path):
    # two participants, two folds: the smallest grouped CV (LOBO retrains 6 bands x 2 folds)
    fetch_synthetic(tmp_path / "cohort", n_participants=2, seed=1, duration_s=10.0)
    out = tmp_path / "run"
    ephys("reproduce", "lfp-sim", "--data", tmp_path / "cohort", "--out", out, "--cv-folds", "2", "--epochs", "1",
          "--hparam", "units=inh1", "--hparam", "units1=4", "--hparam", "units2=2", "--hparam", "max_train=600",
          "--hparam", "batch_size=200", check=0)
    m = json.loads((out / "metrics.json").read_text())
    assert m["model"] == "bilstm" and m["reference"]["model"] == "glm" and list(m["also"]) == ["lightgbm"]
    for part in (m, m["reference"], m["also"]["lightgbm"]):
        for k in ("roc_auc", "pr_auc", "rate_correlation", "positive_rate"):
            assert k in part and k in part["per_unit"]["P01/inh1"]
    assert set(m["per_unit"]) == {"P01/inh1", "P02/inh1"}
    assert m["scheme"] == {"inh1": "grouped"}
    # lfp-sim's LOBO retrains the BiLSTM without each band, on the same folds
    assert m["lobo"]["model"] == "bilstm" and "high_gamma" in m["lobo"]["pooled"]
    assert len(list(out.glob("runs/inh1/bilstm-no-high_gamma/fold-*/model.keras"))) == 2
    # the BiLSTM runs are core run folders, one per fold, tested on one held-out participant each
    splits = [json.loads(p.read_text()) for p in sorted(out.glob("runs/inh1/bilstm/fold-*/split.json"))]
    assert len(splits) == 2
    for s in splits:
        test_groups = {i.split("/")[0] for i in s["test"]}
        assert not test_groups & {i.split("/")[0] for i in s["train"] + s["val"]}
    assert (out / "report.md").read_text().count("| P0") >= 2
    # the ceiling: the simulator's true intensity scored on the same windows
    assert set(m["oracle"]["per_unit"]) == set(m["per_unit"]) and 0.5 <= m["oracle"]["roc_auc"] <= 1
    assert "oracle ROC-AUC" in (out / "report.md").read_text()
    assert set(m["plug_in"]["per_unit"]) == set(m["per_unit"]) and "plug-in ROC-AUC" in (out / "report.html").read_text()


@pytest.mark.parametrize("case", ["nan", "outside", "clocks", "short", "fold"])
def test_bad_recordings_one_line(tmp_path, case):
    rng = np.random.default_rng(0)
    n = 250 * 40
    lfp = rng.standard_normal((n, 2)).astype(np.float32)
    spikes = {"u1": np.sort(rng.uniform(0, 39.9, 200))}
    needle = {"nan": "NaN", "outside": "outside the recording", "clocks": "do not overlap",
              "short": "shorter than one window", "fold": "has no spikes in the training part of block-"}[case]
    if case == "nan":
        lfp[1234, 1] = np.nan
    elif case == "outside":
        spikes["u1"] = np.append(spikes["u1"], 41.5)
    elif case == "clocks":
        spikes["u1"] = spikes["u1"] + 1000.0
    elif case == "short":
        lfp = lfp[:10]
        spikes["u1"] = np.array([0.01])
    elif case == "fold":
        spikes["u1"] = np.sort(rng.uniform(0, 5.0, 100))
    rec = _npy_recording(tmp_path / "rec", lfp, spikes)
    out = tmp_path / "out"
    proc = ephys("--quiet", "reproduce", "lfp-ratgps", "--data", rec, "--out", out, "--epochs", "1", "--hparam", "units1=2",
                 "--hparam", "units2=2")
    one_line_error(proc, needle)
    assert not (out / "metrics.json").exists()


@needs_shared
def test_ratgps_cut_length_mismatch(tmp_path):
    d = tmp_path / "trial"
    d.mkdir()
    for p in RATGPS.iterdir():
        if p.suffix != ".cut":
            os.symlink(p, d / p.name)
    text = (RATGPS / "83812141_5.cut").read_text(encoding="latin-1")
    (d / "83812141_5.cut").write_text(text.rstrip().rsplit(None, 1)[0] + "\n", encoding="latin-1")
    proc = ephys("--quiet", "reproduce", "lfp-ratgps", "--data", d, "--out", tmp_path / "out")
    one_line_error(proc, "83812141_5.cut", "expected")
    assert not (tmp_path / "out" / "metrics.json").exists() and not (tmp_path / "out" / "prepared" / "index.json").exists()


@needs_shared
def test_ratgps_reader_units():
    from ephys.pipelines.lfp.readers import read_lfp_recordings

    (rec,) = read_lfp_recordings(RATGPS)
    assert rec.fs_hz == 250.0 and rec.lfp.shape == (300250, 3)
    # units = the Tint clusters other than 0 of tetrodes 5 and 7
    assert sorted(rec.units) == ["t5c1", "t5c2", "t5c3", "t5c4", "t5c5", "t7c2", "t7c4", "t7c5"]
    assert rec.units["t5c1"].size == 338 and rec.units["t7c4"].size == 717
    assert all(0 <= t.min() and t.max() < rec.duration_s for t in rec.units.values())


def test_prepare_lfp_cli(tmp_path):
    fetch_synthetic(tmp_path / "c", n_participants=2, seed=2, duration_s=5.0)
    proc = ephys("prepare", "lfp", tmp_path / "c", tmp_path / "p", "--inputs", "amplitude", "--window-s", "0.2", check=0)
    assert str(tmp_path / "p") in proc.stdout
    index = json.loads((tmp_path / "p" / "index.json").read_text())
    assert index["sample_shape"] == [50, 2 * 6] and set(index["units"]) == {"inh1", "exc1", "unc1", "reb1"}
    bad = ephys("prepare", "lfp", tmp_path / "c", tmp_path / "q", "--inputs", "wavelet")
    one_line_error(bad, "inputs must be among")
    assert not (tmp_path / "q" / "index.json").exists()


def test_glm_and_lightgbm_bins_are_registered_models():
    """The GLM baseline and LightGBM on its bin features are registry models of the sequence modality."""
    from ephys.pipelines.core.models import REGISTRY, models_for_modality

    proc = ephys("models", check=0)
    assert "glm" in proc.stdout and "lightgbm_bins" in proc.stdout
    assert {"bilstm", "glm", "lightgbm_bins"} <= set(models_for_modality("sequence"))
    assert REGISTRY["glm"].trainer and REGISTRY["glm"].predictor and REGISTRY["glm"].model_file == "model.glm.json"
