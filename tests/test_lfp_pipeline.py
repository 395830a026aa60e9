"""lfp pipeline: bands, readers, sequence windows, simulated cohort, leak-free folds, GLM + LOBO, BiLSTM."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from ephys.pipelines.lfp.readers import LfpRecording, read_lfp_recordings
from ephys.pipelines.blocks.signal.bands import band_signals, usable_bands
from ephys.pipelines.core.datasets import load_dataset
from ephys.pipelines.core.errors import EphysError
from ephys.pipelines.lfp.cv import cross_validate, make_folds
from ephys.pipelines.lfp.metrics import rate_correlation, spike_metrics, youden_threshold
from ephys.pipelines.lfp.sequence import SequenceParams, prepare_lfp
from ephys.pipelines.lfp.synthetic import fetch_synthetic


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    return fetch_synthetic(tmp_path_factory.mktemp("lfpsim"), n_participants=3, seed=3, duration_s=30.0)


@pytest.fixture(scope="module")
def prepared(cohort, tmp_path_factory) -> Path:
    return prepare_lfp(cohort, tmp_path_factory.mktemp("lfpprep") / "p", log=lambda s: None)


def test_bands_limited_by_nyquist():
    assert usable_bands(250.0)["high_gamma"] == (60.0, 100.0)
    b = usable_bands(100.0)  # Nyquist 50 Hz, limit 45 Hz
    assert "high_gamma" not in b and b["low_gamma"] == (30.0, 45.0)
    with pytest.raises(EphysError):
        usable_bands(1.0)


def test_band_amplitude_and_phase_of_a_sinusoid():
    fs = 250.0
    t = np.arange(int(10 * fs)) / fs
    x = 3.0 * np.sin(2 * np.pi * 6.0 * t)
    filt, amp, ph = band_signals(x[:, None], fs, {"theta": (4.0, 8.0)})["theta"]
    mid = slice(500, -500)
    assert np.allclose(amp[mid, 0], 3.0, atol=0.1)
    # zero phase: the band-passed sinusoid is not shifted
    assert np.corrcoef(filt[mid, 0], x[mid])[0, 1] > 0.999


def test_synthetic_is_seeded_with_ground_truth(cohort, tmp_path):
    again = fetch_synthetic(tmp_path / "again", n_participants=3, seed=3, duration_s=30.0)
    assert (cohort / "P01" / "spikes.csv").read_bytes() == (again / "P01" / "spikes.csv").read_bytes()
    other = fetch_synthetic(tmp_path / "other", n_participants=1, seed=4, duration_s=30.0)
    assert (cohort / "P01" / "spikes.csv").read_bytes() != (other / "P01" / "spikes.csv").read_bytes()
    truth = json.loads((cohort / "ground_truth.json").read_text())["participants"]
    assert set(truth) == {"P01", "P02", "P03"}
    assert truth["P02"]["inh1"]["band"] == "high_gamma" and truth["P02"]["unc1"]["band"] is None
    recs = read_lfp_recordings(cohort)
    assert [r.name for r in recs] == ["P01", "P02", "P03"] and recs[0].lfp.shape == (7500, 2)


def test_sequence_windows_and_targets(cohort, prepared):
    index = json.loads((prepared / "index.json").read_text())
    assert index["modality"] == "sequence" and index["sample_shape"] == [25, 2 * (1 + 6 * 3)]
    ds = load_dataset(prepared / "units" / "exc1")
    assert ds.modality == "sequence" and ds.label_names == ["no_spike", "spike"]
    assert set(ds.groups) == {"P01", "P02", "P03"} and {s["unit"] for s in ds.manifest["samples"]} == {"exc1"}
    # targets recomputed from the CSV: a spike in the last 20 ms of the window
    spikes = [float(r["t_s"]) for r in csv.DictReader(open(cohort / "P02" / "spikes.csv")) if r["unit"] == "exc1"]
    spikes = np.array(spikes)
    smp = [s for s in ds.manifest["samples"] if s["group"] == "P02"]
    for s in smp[::97]:
        n = int(((spikes >= s["t_s"] - 1e-9) & (spikes < s["t_s"] + 0.02 - 1e-9)).sum())
        assert s["count"] == n and (s["label"] == "spike") == (n > 0)
    # a window holds the whole-recording raw LFP of channel 1 ending at its bin's end
    lfp = np.load(cohort / "P02" / "lfp.npy")
    s = smp[40]
    end = int(round((s["t_s"] + 0.02) * 250))
    x = ds.load([ds.ids.index(s["id"])])[0]
    assert np.allclose(x[:, 0], lfp[end - 25:end, 0], atol=1e-4)


def test_folds_do_not_leak(prepared):
    ds = load_dataset(prepared / "units" / "inh1")
    smp = ds.manifest["samples"]
    y = np.array([s["label"] == "spike" for s in smp], dtype=int)
    g = [s["group"] for s in smp]
    t = np.array([s["t_s"] for s in smp])
    _, folds = make_folds(y, g, t, "grouped", 3, 0.1, 0)
    for f in folds:
        assert not {g[i] for i in f.train} & {g[i] for i in f.test}
    one = np.array([x == "P01" for x in g])
    _, folds = make_folds(y[one], ["P01"] * int(one.sum()), t[one], "blocked", 5, 0.1, 0)
    tt = t[one]
    for f in folds:
        lo, hi = tt[f.test].min(), tt[f.test].max()
        near = (tt[f.train] > lo - 0.1) & (tt[f.train] < hi + 0.1)
        assert not near.any()  # no training window overlaps a test window
    with pytest.raises(EphysError, match="fewer than 5"):
        make_folds(y, g, t, "auto", 5, 0.1, 0)


def test_core_folds_are_the_documented_schemes(cohort, prepared, tmp_path):
    """The core plans the lfp folds (grouped: stratified group k-fold, no participant on both sides;
    blocked: one recording, no training window within one window length of a test block) and
    gives the same folds as the lfp arrays do."""
    from ephys.pipelines.core.crossval import plan_folds

    ds = load_dataset(prepared / "units" / "exc1")
    smp = ds.manifest["samples"]
    y = np.array([s["label"] == "spike" for s in smp], dtype=int)
    g = np.array([s["group"] for s in smp])
    t = np.array([s["t_s"] for s in smp])
    plan = plan_folds(ds, "grouped", n_folds=3, seed=0)
    used, folds = make_folds(y, list(g), t, "grouped", 3, 0.1, 0)
    assert plan.scheme == used == "grouped"
    assert [(f.name, f.train.tolist(), f.test.tolist()) for f in plan.folds] == \
        [(f.name, f.train.tolist(), f.test.tolist()) for f in folds]
    for f in plan.folds:
        assert not set(g[f.train]) & set(g[f.test]) and len(set(g[f.test])) == 1
    assert sorted(np.concatenate([f.test for f in plan.folds]).tolist()) == list(range(len(smp)))
    # one recording: auto is blocked, with a gap of one window around each test block
    one = prepare_lfp(read_lfp_recordings(cohort)[:1], tmp_path / "one", log=lambda s: None)
    ds1 = load_dataset(one / "units" / "exc1")
    t1 = np.array([s["t_s"] for s in ds1.manifest["samples"]])
    y1 = np.array([s["label"] == "spike" for s in ds1.manifest["samples"]], dtype=int)
    plan1 = plan_folds(ds1, "auto", n_folds=4, seed=0)
    used1, folds1 = make_folds(y1, ["P01"] * t1.size, t1, "auto", 4, 0.1, 0)
    assert plan1.scheme == used1 == "blocked" and len(plan1.folds) == 4
    for f, f_lfp in zip(plan1.folds, folds1):
        assert f.test.tolist() == f_lfp.test.tolist() and f.train.tolist() == f_lfp.train.tolist()
        lo, hi = t1[f.test].min(), t1[f.test].max()
        assert not ((t1[f.train] > lo - 0.1) & (t1[f.train] < hi + 0.1)).any()
        assert f.train.size + f.test.size < t1.size  # the gap dropped training windows
    with pytest.raises(EphysError, match="one recording"):
        plan_folds(ds, "blocked", n_folds=3)


def test_cap_training_keeps_every_positive():
    from ephys.pipelines.core.crossval import cap_training

    y = np.zeros(1000, dtype=int)
    y[::50] = 1
    idx = np.arange(0, 1000, 2)  # 20 positives among 500
    a = cap_training(idx, y, 100, np.random.default_rng(0))
    assert a.size == 100 and np.all(np.diff(a) > 0) and set(idx[y[idx] == 1]) <= set(a) and set(a) <= set(idx)
    assert np.array_equal(a, cap_training(idx, y, 100, np.random.default_rng(0)))  # seeded
    assert cap_training(idx, y, 5, np.random.default_rng(0)).size == 40  # as many negatives as positives
    assert cap_training(idx, y, None, None) is idx


def test_metrics_and_threshold():
    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.1).astype(int)
    p = np.clip(0.1 + 0.3 * y + 0.1 * rng.standard_normal(2000), 0, 1)
    thr = youden_threshold(y, p)
    m = spike_metrics(y, p, thr, np.arange(2000) * 0.02, np.array(["a"] * 2000))
    assert m["roc_auc"] > 0.95 and m["positive_rate"] == pytest.approx(y.mean())
    assert m["majority_baseline_accuracy"] == pytest.approx(1 - y.mean())
    assert m["sensitivity"] > 0.8 and m["specificity"] > 0.8 and m["rate_correlation"] > 0.6
    assert rate_correlation(y, rng.random(2000), np.arange(2000) * 0.02, np.array(["a"] * 2000)) < 0.3


def test_glm_cv_and_lobo_name_the_generating_band(prepared, tmp_path):
    m = cross_validate(prepared, tmp_path, scheme="grouped", n_folds=3, models=["glm"], lobo=True, log=lambda s: None)
    per = m["per_unit"]
    inh = [per[f"P0{k}/inh1"]["roc_auc"] for k in (1, 2, 3)]
    assert min(inh) > 0.65 and np.mean(inh) > 0.75
    assert max(abs(per[f"P0{k}/unc1"]["roc_auc"] - 0.5) for k in (1, 2, 3)) < 0.1
    # reb1 fires after gamma bursts end: a GLM on the prediction bin's own amplitude/phase cannot see it
    assert np.mean([per[f"P0{k}/reb1"]["roc_auc"] for k in (1, 2, 3)]) < 0.62
    lobo = m["lobo"]
    assert lobo["n_coupled"] == 9
    same_bin = [k for k in lobo["ground_truth_band"] if k.rsplit("/", 1)[1] in ("inh1", "exc1")]
    assert sum(lobo["named_band"][k] == lobo["ground_truth_band"][k] for k in same_bin) >= 5
    assert lobo["named_band"]["P01/inh1"] == "high_gamma"
    assert set(m["pooled_coupled"]) >= {"roc_auc", "pr_auc"} and m["pooled_coupled"]["roc_auc"] > m["roc_auc"]
    assert (tmp_path / "metrics.json").is_file() and (tmp_path / "predictions_glm.csv").is_file()


def test_lightgbm_baseline_on_the_same_bin_features(prepared, tmp_path):
    """LightGBM beside the GLM on the same features and folds: it learns the coupled units and not
    the uncoupled one, and its held-out predictions cover every window."""
    m = cross_validate(prepared, tmp_path, scheme="grouped", n_folds=3, models=["glm", "lightgbm"], lobo=False,
                       log=lambda s: None)
    assert m["model"] == "glm" and m["reference"]["model"] == "lightgbm" and "also" not in m
    per = m["reference"]["per_unit"]
    assert np.mean([per[f"P0{k}/inh1"]["roc_auc"] for k in (1, 2, 3)]) > 0.75
    assert max(abs(per[f"P0{k}/unc1"]["roc_auc"] - 0.5) for k in (1, 2, 3)) < 0.1
    rows = list(csv.DictReader(open(tmp_path / "predictions_lightgbm.csv")))
    assert len(rows) == sum(len(load_dataset(prepared / "units" / u).ids) for u in ("inh1", "exc1", "unc1", "reb1"))
    # every fit is a core run folder: the validation part comes from the training side only, and
    # the registered predictor reproduces the held-out predictions (before the prior shift)
    from ephys.pipelines.core.calibration import prior_shift
    from ephys.pipelines.core.models import load_predictor

    ds = load_dataset(prepared / "units" / "inh1")
    pos = {i: k for k, i in enumerate(ds.ids)}
    glm_rows = [r for r in csv.DictReader(open(tmp_path / "predictions_glm.csv")) if r["unit"].endswith("/inh1")]
    for name, model in (("glm", "glm"), ("lightgbm", "lightgbm_bins")):
        runs = sorted((tmp_path / "runs" / "inh1" / name).glob("fold-*"))
        assert len(runs) == 3 and all((r / "split.json").is_file() for r in runs)
        for run in runs:
            split = json.loads((run / "split.json").read_text())
            part = {k: {i.split("/")[0] for i in v} for k, v in split.items()}
            assert not part["test"] & (part["train"] | part["val"]) and not part["train"] & part["val"]
        run = runs[0]
        split = json.loads((run / "split.json").read_text())
        p = load_predictor(run, {"model": model}, ds, 2048)([pos[i] for i in split["test"]])[:, 1]
        y_train = np.array([ds.labels[k] == "spike" for k in range(len(ds.ids)) if ds.groups[k] not in
                            {i.split("/")[0] for i in split["test"]}])
        shifted, _ = prior_shift(p, 0.5, y_train.mean())
        if name == "glm":
            got = {r["id"]: float(r["p_spike"]) for r in glm_rows if r["fold"] == run.name}
            assert np.allclose([got[i] for i in split["test"]], shifted, atol=2e-6)
        assert json.loads((run / "decision.json").read_text())["threshold"] > 0


def test_bilstm_builder_selects_channels_and_round_trips(tmp_path):
    import keras

    from ephys.pipelines.core.models import build_model, load_keras_model

    model = build_model("bilstm", (25, 6), 2, units1=4, units2=2, keep_channels="0,2,5")
    x = np.random.default_rng(0).standard_normal((3, 25, 6)).astype("float32")
    p = np.asarray(model.predict(x, verbose=0))
    assert p.shape == (3, 2) and np.allclose(p.sum(1), 1, atol=1e-5)
    x2 = x.copy()
    x2[..., 1] += 100.0  # a dropped channel changes nothing
    assert np.allclose(np.asarray(model.predict(x2, verbose=0)), p, atol=1e-6)
    model.save(tmp_path / "m.keras")
    assert np.allclose(np.asarray(load_keras_model(tmp_path / "m.keras").predict(x, verbose=0)), p, atol=1e-6)
    with pytest.raises(EphysError, match="no hyper-parameter"):
        build_model("bilstm", (25, 6), 2, width=3)
    with pytest.raises(EphysError, match="keep_channels"):
        build_model("bilstm", (25, 6), 2, keep_channels=[7])
    del keras


def test_next_sample_target_of_the_seed(tmp_path):
    fs = 1000.0
    rng = np.random.default_rng(1)
    spikes = np.sort(rng.uniform(0.2, 9.8, 300))
    rec = LfpRecording("r", rng.standard_normal((10000, 1)), fs, 0.0, ["c"], {"u": spikes}, ["mem"])
    out = prepare_lfp([rec], tmp_path / "p", SequenceParams(window_s=0.1, bin_s=0.001, target="next", stride_s=0.01,
                                                            inputs=("raw",), bands={"beta": (13, 30)}),
                      log=lambda s: None)
    ds = load_dataset(out / "units" / "u")
    for s in ds.manifest["samples"][::50]:
        n = int(((spikes >= s["t_s"] - 1e-9) & (spikes < s["t_s"] + 0.001 - 1e-9)).sum())
        assert s["count"] == n
    assert ds.sample_shape == (100, 1)


def test_prediction_bin_sits_after_s_before_the_window_end(tmp_path):
    """The label's bin and the samples the GLM averages (bin_samples) are the same LFP samples,
    with after_s of LFP after them in the window."""
    from ephys.pipelines.lfp.glm import glm_features
    from ephys.pipelines.lfp.sequence import bin_samples

    fs = 250.0
    rng = np.random.default_rng(2)
    spikes = np.sort(rng.uniform(0.5, 19.5, 400))
    clock = (np.arange(5000) / fs)[:, None]  # the LFP is the sample's own time, s
    rec = LfpRecording("r", clock, fs, 0.0, ["c"], {"u": spikes}, ["mem"])
    out = prepare_lfp([rec], tmp_path / "p", SequenceParams(window_s=0.16, after_s=0.04, inputs=("raw",),
                                                            bands={"beta": (13, 30)}), log=lambda s: None)
    index = json.loads((out / "index.json").read_text())
    assert index["sample_shape"] == [40, 1] and index["after_samples"] == 10 and index["feature_samples"] == 5
    ds = load_dataset(out / "units" / "u")
    windows = np.load(out / "windows.npy", mmap_mode="r")
    rows = np.array([s["row"] for s in ds.manifest["samples"]])
    t_s = np.array([s["t_s"] for s in ds.manifest["samples"]])
    # the bin's samples start at t_s and span bin_s; 40 ms of LFP follow them in the window
    bin_mean = glm_features(windows, bin_samples(index), rows=rows)[:, 0]
    assert np.allclose(bin_mean, t_s + 2.0 / fs, atol=1e-4)
    assert np.allclose(windows[rows, -1, 0], t_s + 0.02 + 0.04 - 1.0 / fs, atol=1e-4)
    for s in ds.manifest["samples"][::40]:
        assert s["count"] == int(((spikes >= s["t_s"] - 1e-9) & (spikes < s["t_s"] + 0.02 - 1e-9)).sum())
    with pytest.raises(EphysError, match="longer than the window"):
        SequenceParams(window_s=0.05, bin_s=0.02, after_s=0.04).check()


def test_prepare_keeps_the_named_units(cohort, tmp_path):
    recs = read_lfp_recordings(cohort)
    out = prepare_lfp(recs, tmp_path / "p", units=["reb1"], log=lambda s: None)
    assert sorted(p.name for p in (out / "units").iterdir()) == ["reb1"] and set(recs[0].units) == {
        "inh1", "exc1", "unc1", "reb1"}  # the caller's recordings are left as they were
    with pytest.raises(EphysError, match="no recording has unit"):
        prepare_lfp(recs, tmp_path / "q", units=["nosuch"], log=lambda s: None)
    assert not (tmp_path / "q").exists()


def test_ppc_unbiased_and_spike_triggered_average(cohort):
    from ephys.pipelines.lfp.descriptive import ppc, spike_lfp_summary

    rng = np.random.default_rng(0)
    assert abs(ppc(rng.uniform(-np.pi, np.pi, 3000))) < 0.01  # no locking -> ~0 (a PLV would be ~1/sqrt(N))
    locked = ppc(rng.vonmises(0.0, 2.0, 3000))
    assert 0.4 < locked < 0.55  # (I1(2)/I0(2))^2 = 0.49
    summary = spike_lfp_summary(read_lfp_recordings(cohort)[:1])
    theta = summary["P01/exc1"]["ppc"]
    assert max(theta, key=theta.get).endswith(":theta")
    assert len(summary["P01/exc1"]["sta"]) == 2 and len(summary["P01/exc1"]["sta"][0]) == 2 * 62 + 1


def test_simulated_intensity_is_the_ceiling(cohort, prepared):
    """The saved true intensity: mean rate as drawn, coupled units well above chance, uncoupled at chance."""
    from sklearn.metrics import roc_auc_score

    from ephys.pipelines.lfp.recipes import oracle_metrics
    from ephys.pipelines.lfp.synthetic import INTENSITY, oracle_bin_probability

    meta = json.loads((cohort / "P01" / "recording.json").read_text())
    p = np.load(cohort / "P01" / INTENSITY)
    assert p.shape == (7500, 4) and meta["intensity"]["units"] == ["inh1", "exc1", "unc1", "reb1"]
    for j, u in enumerate(meta["intensity"]["units"]):
        assert abs(p[:, j].mean() * 250.0 / meta["units"][u]["rate_hz"] - 1) < 0.02
    assert meta["units"]["inh1"]["gate_band"] == "theta" and meta["units"]["exc1"]["band"] == "theta"
    recs = read_lfp_recordings(cohort)
    orc = oracle_metrics(prepared, recs)
    per = orc["per_unit"]
    for k in (1, 2, 3):
        assert per[f"P0{k}/inh1"]["roc_auc"] > 0.85 and per[f"P0{k}/exc1"]["roc_auc"] > 0.8
        assert per[f"P0{k}/unc1"]["roc_auc"] == pytest.approx(0.5)
        assert per[f"P0{k}/reb1"]["roc_auc"] > 0.85
    assert orc["pooled_coupled"]["roc_auc"] > orc["roc_auc"]
    # the plug-in (the formulas on the LFP's band estimates, population parameters): above chance on
    # the coupled units, below the true intensity, which it only estimates
    plug = oracle_metrics(prepared, recs, source="plug_in")
    for key in ("P01/inh1", "P02/inh1", "P01/exc1", "P02/exc1"):
        assert 0.65 < plug["per_unit"][key]["roc_auc"] < per[key]["roc_auc"], key
    assert plug["per_unit"]["P01/unc1"]["roc_auc"] == pytest.approx(0.5) and plug["roc_auc"] < orc["roc_auc"]
    # the bin probability lines up with the labels of the prepared windows (a shifted bin would not)
    ds = load_dataset(prepared / "units" / "inh1")
    smp = [s for s in ds.manifest["samples"] if s["group"] == "P01"]
    t = np.array([s["t_s"] for s in smp])
    y = np.array([s["label"] == "spike" for s in smp])
    aligned = roc_auc_score(y, oracle_bin_probability(cohort / "P01", "inh1", t, 0.02))
    shifted = roc_auc_score(y, oracle_bin_probability(cohort / "P01", "inh1", t - 0.1, 0.02))
    assert aligned > shifted + 0.05
    assert oracle_bin_probability(cohort / "P01", "nope", t, 0.02) is None


def test_simulated_units_fire_at_their_drawn_rate():
    from ephys.pipelines.lfp.synthetic import simulate_participant

    fs = 250.0
    sim = simulate_participant(np.random.default_rng(5), 240.0, fs, 1)  # minutes: rare, strong drive peaks
    for unit, truth in sim["units"].items():
        assert sim["p_spike"][unit].mean() * fs == pytest.approx(truth["rate_hz"], rel=0.02), unit
        assert sim["spikes"][unit].size / 240.0 == pytest.approx(truth["rate_hz"], rel=0.2), unit


def test_rebound_drive_is_negative_in_a_burst_and_peaks_after_it():
    from ephys.pipelines.lfp.synthetic import rebound_drive

    fs, tau = 250.0, 0.025
    t = np.arange(int(2 * fs)) / fs
    env = np.exp(-0.5 * ((t - 1.0) / 0.04) ** 2)
    d = rebound_drive(env, fs, tau)
    i_peak = int(np.argmax(env))
    assert d[i_peak] < -0.3  # silenced while the burst is under way
    lag_s = (np.argmax(d) - i_peak) / fs
    assert 0.04 < lag_s < 0.15 and d.max() > 0.2  # fires in the tens of ms after it
    assert abs(d[:100]).max() < 1e-6  # causal: nothing before the burst


def test_prior_shift_maps_balanced_outputs_to_the_training_prior():
    from ephys.pipelines.lfp.cv import prior_shift

    p = np.array([0.1, 0.5, 0.9])
    q, thr = prior_shift(p, 0.5, 0.05)
    assert q[1] == pytest.approx(0.05) and thr == pytest.approx(0.05)
    assert np.all(np.diff(q) > 0) and np.all(q < p)  # monotone: per-unit ROC-AUC unchanged
