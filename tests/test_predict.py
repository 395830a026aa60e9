"""`ephys predict`: a trained sts run on the real patch-clamp recordings, a cnn1d run on a raw trace."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from conftest import SHARED_DATA, ephys, needs_shared, one_line_error
from test_spikes import FS, _trace, _write_sets


@needs_shared
def test_predict_sts_run_on_real_patchclamp(tiny_synthetic, tmp_path):
    data = tmp_path / "scalograms"
    ephys("--quiet", "prepare", "scalograms", tiny_synthetic, data, "--scheduler", "synchronous",
          "--n-scales", "24", check=0)
    run = tmp_path / "run"
    ephys("--quiet", "train", "--data", data, "--model", "resnet18", "--epochs", "1", "--input-size", "32",
          "--out", run, check=0)
    nwb = SHARED_DATA / "patchclamp" / "nwb"
    out = tmp_path / "pred"
    proc = ephys("predict", run, nwb, out, check=0)
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    man = json.loads((out / "data" / "manifest.json").read_text())
    trained = json.loads((data / "manifest.json").read_text())
    assert man["parameters"] == trained["parameters"]  # prepared with the run's own parameters
    assert man["sample_shape"] == [24, 1200, 3]
    assert len(rows) == len(man["samples"]) >= 1
    labels = trained["label_names"]
    assert {r["predicted"] for r in rows} <= set(labels)
    assert all(abs(sum(float(r[f"p_{k}"]) for k in labels) - 1) < 1e-4 for r in rows)
    assert all(r["source"] for r in rows)
    page = (out / "report.html").read_text()
    assert "Counts per predicted class" in page and "Least confident" in page
    assert str(out / "predictions.csv") in proc.stdout
    # a dataset prepared with other CWT parameters is refused with what differs; nothing written
    other = tmp_path / "other"
    ephys("--quiet", "prepare", "scalograms", tiny_synthetic, other, "--scheduler", "synchronous",
          "--n-scales", "16", check=0)
    one_line_error(ephys("predict", run, other, tmp_path / "p2"), "n_scales")
    assert not (tmp_path / "p2").exists()
    # an existing, non-empty OUT is refused
    one_line_error(ephys("predict", run, nwb, out), "not empty")


def test_predict_waveform_run_on_raw_trace(tmp_path):
    src = _write_sets(tmp_path / "sets", n_spk=16, n_bg=40)
    ephys("--quiet", "prepare", "spikes", src, tmp_path / "ds", "--normalise", "channel", check=0)
    run = tmp_path / "cnn"
    ephys("--quiet", "train", "--model", "cnn1d", "--data", tmp_path / "ds", "--split", "seed", "--epochs", 1,
          "--batch-size", 64, "--out", run, check=0)
    x, times = _trace(seed=3, n_spikes=30)
    np.save(tmp_path / "trace.npy", x)
    ephys("predict", run, tmp_path / "trace.npy", tmp_path / "pred", check=0)
    rows = list(csv.DictReader(open(tmp_path / "pred" / "predictions.csv")))
    man = json.loads((tmp_path / "pred" / "data" / "manifest.json").read_text())
    assert man["sample_shape"] == [42, 1] and man["fs_hz"] == FS and man["normalise"] == "channel"
    assert len(rows) == len(man["samples"]) >= 25  # about one snippet per inserted spike
    assert {r["predicted"] for r in rows} <= {"background", "spike"}
    # a trace at another rate is refused: the run was trained on 30 kHz snippets
    import pynwb  # noqa: F401  (NWB traces carry their own rate; .npy is taken at the run's rate)
    np.save(tmp_path / "empty.npy", np.zeros(10))
    proc = ephys("predict", run, tmp_path / "empty.npy", tmp_path / "pred3")
    assert proc.returncode == 2 and not (tmp_path / "pred3").exists()


def test_decision_threshold_chosen_on_validation_only(tmp_path):
    from ephys.pipelines.core.evaluation import classification_metrics, predict_labels

    proba = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    assert list(predict_labels(proba)) == [0, 0, 1]
    assert list(predict_labels(proba, 0.35)) == [0, 1, 1]
    m = classification_metrics(np.array([0, 1, 1]), proba, ["a", "b"], threshold=0.35)
    assert m["accuracy"] == 1.0
    src = _write_sets(tmp_path / "sets", n_spk=16, n_bg=40)
    ephys("--quiet", "prepare", "spikes", src, tmp_path / "ds", "--normalise", "channel", check=0)
    run = tmp_path / "gru"
    ephys("--quiet", "train", "--model", "cnn1d", "--data", tmp_path / "ds", "--split", "seed", "--epochs", 1,
          "--batch-size", 64, "--decision", "val_macro_f1", "--out", run, check=0)
    d = json.loads((run / "decision.json").read_text())
    assert 0 < d["threshold"] < 1 and d["n_val"] == 56 and d["val_macro_f1"] >= d["val_macro_f1_at_0_5"]
    ephys("--quiet", "evaluate", run, check=0)
    m = json.loads((run / "metrics.json").read_text())
    assert m["decision_threshold"] == d["threshold"]
    one_line_error(ephys("train", "--model", "cnn1d", "--data", tmp_path / "ds", "--decision", "best",
                         "--out", tmp_path / "x"), "--decision")


def test_predict_on_raw_mer_through_the_recorded_prepare_step(tmp_path):
    """A feature-table run has no modality hook for raw input: predict prepares the recordings with the
    step and parameters its dataset's manifest records (prepared_by), classifies every segment, and the
    step's predictions hook writes one row per recording (mean segment probability, ML-STIM's rule) and
    segments.csv; the same recordings as ML-STIM npz + CSV, NWB, or a CSV of columns in mV (--units)."""
    from ephys.pipelines.core.errors import EphysError
    from ephys.pipelines.core.predict import predict_run
    from ephys.pipelines.core.training import TrainConfig, train
    from ephys.pipelines.mer.synthetic import fetch_synthetic

    raw = fetch_synthetic(tmp_path / "raw", n_patients=2, seed=3, duration_s=1.6, max_electrodes=1, nwb=True)
    ephys("prepare", "mer", raw, tmp_path / "ds", check=0)
    man = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert man["prepared_by"]["step"] == "mer" and "key" in man["parameters"]
    ephys("train", "--model", "lightgbm", "--data", tmp_path / "ds", "--out", tmp_path / "run", check=0)
    proc = ephys("predict", tmp_path / "run", raw, tmp_path / "pred", check=0)
    rows = list(csv.DictReader(open(tmp_path / "pred" / "predictions.csv")))
    segs = list(csv.DictReader(open(tmp_path / "pred" / "segments.csv")))
    assert [r["id"] for r in rows] == [r["id"] for r in man["recordings"]]
    assert {"probability", "predicted", "n_segments", "depth_mm", "outside_training_range"} <= set(rows[0])
    assert [s["id"] for s in segs] == [s["id"] for s in man["samples"]]
    for r in rows:
        p = [float(s["p_inside"]) for s in segs if s["recording"] == r["id"]]
        assert int(r["n_segments"]) == len(p)
        if p:
            assert float(r["probability"]) == pytest.approx(np.mean(p), abs=1e-6)
            assert r["predicted"] == ("STN" if np.mean(p) >= 0.51 else "outside")
    assert proc.stdout.strip().endswith("predictions.csv")
    assert "Trajectories" in (tmp_path / "pred" / "report.html").read_text()
    # the run's report: its test recordings along their trajectories (the step's sections hook)
    from ephys.pipelines.core.evaluation import evaluate_run
    from ephys.pipelines.core.report import build_report

    evaluate_run(tmp_path / "run")
    page = build_report(tmp_path / "run")[0].read_text()
    assert "Trajectories" in page and 'alt="test trajectories"' in page
    # the same recordings as NWB (volts x 1e-6): the same probabilities
    nwb = predict_run(tmp_path / "run", raw / "nwb", tmp_path / "pred_nwb", log=lambda s: None)
    by_id = {r["id"]: r["probability"] for r in rows}
    for r in csv.DictReader(open(nwb / "predictions.csv")):
        assert r["probability"] == pytest.approx(by_id[r["id"]], abs=2e-6) if r["probability"] else True
    # a CSV of columns in mV: refused without --units, the same features with it
    with np.load(raw / "data.npz") as fh:
        cols = fh["data"][:3, :24000].T / 1000.0
    np.savetxt(tmp_path / "cols.csv", cols, delimiter=",")
    with pytest.raises(EphysError, match="implausible.*--units"):
        predict_run(tmp_path / "run", tmp_path / "cols.csv", tmp_path / "p2", log=lambda s: None)
    assert not (tmp_path / "p2").exists()
    ephys("predict", tmp_path / "run", tmp_path / "cols.csv", tmp_path / "p3", "--units", "mV", check=0)
    got = list(csv.DictReader(open(tmp_path / "p3" / "predictions.csv")))
    assert [r["id"] for r in got] == ["cols_E1", "cols_E2", "cols_E3"] and all(r["depth_mm"] == "" for r in got)
    # an MLP run through the same hook (prediction on the npz)
    mlp = train(TrainConfig(model="mlp", data=str(tmp_path / "ds"), out=str(tmp_path / "mlp"), epochs=2,
                            batch_size=64, dropout=0.0), log=lambda s: None)
    out = predict_run(mlp, raw, tmp_path / "pred_mlp", log=lambda s: None)
    assert len(list(csv.DictReader(open(out / "predictions.csv")))) == len(man["recordings"])


def test_prepare_and_predict_miniml_windows(tmp_path):
    """miniML's HDF5 training windows are a prepare input (score 2 = unlabelled); a window-classifier run
    then predicts them from the raw file."""
    import h5py

    rng = np.random.default_rng(0)
    n = 40
    t = np.arange(600)
    x = rng.normal(0, 1, (n, 600))
    scores = np.array([1, 0] * (n // 2))
    scores[:2] = 2
    x[scores == 1] -= 8 * np.exp(-np.clip(t - 200, 0, None) / 40.0) * (t >= 200)
    h5 = tmp_path / "windows.h5"
    with h5py.File(h5, "w") as fh:
        fh["events"], fh["scores"], fh["raw_indices"] = x, scores, np.arange(n) * 700
    ephys("prepare", "events", h5, tmp_path / "ds", check=0)
    man = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    labels = [s["label"] for s in man["samples"]]
    assert len(labels) == n and labels.count(None) == 2 and man["sample_shape"] == [600, 1]
    # one cell's windows: blocked folds in time, as the minis recipe does (a grouped split needs 2+ groups)
    run = ephys("train", "--model", "cnn_bilstm", "--data", tmp_path / "ds", "--epochs", "1", "--eager",
                "--hparam", "width=4", "--hparam", "lstm=4", "--fold", "0", "--cv", "blocked", "--cv-folds", "2",
                "--out", tmp_path / "cv", check=0).stdout.strip().splitlines()[-1]
    ephys("predict", run, h5, tmp_path / "pred", check=0)
    rows = list(csv.DictReader(open(tmp_path / "pred" / "predictions.csv")))
    assert len(rows) == n and all(abs(float(r["p_event"]) + float(r["p_no_event"]) - 1) < 1e-4 for r in rows)
