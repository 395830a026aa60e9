"""events pipeline: readers, simulator ground truth, matching metric, detection kinetics, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import SHARED_DATA, ephys, needs_shared, one_line_error
from ephys.pipelines.core.errors import EphysError
from ephys.pipelines.events import detect as D
from ephys.pipelines.events.metrics import event_prf, mask_iou, match_events
from ephys.pipelines.events.readers import read_event_csv, read_miniml_h5, read_trace
from ephys.pipelines.events.simulate import (event_waveform, rise_tau_for, simulate_recording, synthetic,
                                             read_truth)
from ephys.pipelines.events.windows import minmax_windows, prediction_to_samples

ABF = SHARED_DATA / "events" / "171116sh_0020.abf"
H5 = SHARED_DATA / "minis" / "B_2020-06-09_002_example_training_data.h5"


# ---------------------------------------------------------------- matching metric (hand-made)

def test_match_one_to_one_within_tolerance():
    true = [0.100, 0.200, 0.300]
    det = [0.1008, 0.1009, 0.2015, 0.299]  # two near the first, one 1.5 ms off, one good
    pairs = match_events(true, det, 1e-3)
    assert pairs == [(0, 0), (2, 3)]
    r = event_prf(true, det, 1e-3)
    assert (r["tp"], r["fp"], r["fn"]) == (2, 2, 1)
    assert r["precision"] == pytest.approx(0.5) and r["recall"] == pytest.approx(2 / 3)
    assert r["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))


def test_match_maximises_matches_not_greedy():
    # greedy nearest would pair d=0.1006 with t=0.1010 and leave t=0.1000 unmatched
    true, det = [0.1000, 0.1010], [0.1006, 0.1019]
    assert len(match_events(true, det, 1e-3)) == 2


def test_prf_edge_cases_and_iou():
    assert event_prf([], [])["f1"] == 1.0 and event_prf([], [])["precision"] == 1.0
    assert event_prf([0.1], [])["recall"] == 0.0
    assert event_prf([], [0.1])["precision"] == 0.0
    a = np.zeros(10, bool)
    a[2:6] = True
    b = np.zeros(10, bool)
    b[4:8] = True
    assert mask_iou(a, b) == pytest.approx(2 / 6)
    assert mask_iou(np.zeros(3), np.zeros(3)) == 1.0


# ---------------------------------------------------------------- detection kinetics

@pytest.mark.parametrize("fs,rise_ms,decay_ms,sign", [(10_000, 0.5, 3.0, 1), (10_000, 1.0, 6.0, -1),
                                                       (20_000, 0.3, 2.0, -1)])
def test_detection_kinetics_within_10_percent(fs, rise_ms, decay_ms, sign):
    t = np.arange(int(0.6 * fs)) / fs
    tau_r = rise_tau_for(rise_ms * 1e-3, decay_ms * 1e-3)
    onsets = [0.1003, 0.3507]
    x = sum(sign * 12.0 * event_waveform(t - o, tau_r, decay_ms * 1e-3) for o in onsets)
    x = x + np.random.default_rng(1).standard_normal(t.size) * 0.1
    prob = np.zeros_like(x)
    for o in onsets:
        prob[int(o * fs): int((o + 0.005) * fs)] = 1.0
    ev = D.detect_events(x, fs, prob, "positive" if sign > 0 else "negative")
    assert len(ev) == 2
    for e, o in zip(ev, onsets):
        assert abs(e["onset_s"] - o) < 2e-4
        assert e["rise_10_90_ms"] == pytest.approx(rise_ms, rel=0.10)
        assert e["decay_tau_ms"] == pytest.approx(decay_ms, rel=0.10)
        assert e["amplitude"] == pytest.approx(sign * 12.0, rel=0.05)
        assert np.sign(e["charge"]) == sign


def test_detection_respects_exclude_and_segments():
    fs = 10_000
    t = np.arange(fs) / fs
    tau_r = rise_tau_for(5e-4, 3e-3)
    x = -10 * event_waveform(t - 0.2, tau_r, 3e-3) - 10 * event_waveform(t - 0.7, tau_r, 3e-3)
    prob = np.ones_like(x)
    ex = np.zeros(x.size, bool)
    ex[1500:2500] = True
    ev = D.detect_events(x, fs, prob, "negative", exclude=ex)
    assert [round(e["onset_s"], 2) for e in ev] == [0.7]


# ---------------------------------------------------------------- simulator

def test_simulator_ground_truth_is_consistent_and_seeded(tmp_path):
    a = simulate_recording("mepp", 10.0, 4.0, seed=3)
    b = simulate_recording("mepp", 10.0, 4.0, seed=3)
    assert np.array_equal(a.trace, b.trace)
    tr = a.truth
    assert a.fs_hz == 10_000 and a.units == "mV" and a.polarity == "positive"
    assert np.all((tr["rise_10_90_ms"] >= 0.3) & (tr["rise_10_90_ms"] <= 1.0))
    assert np.all((tr["decay_tau_ms"] >= 2) & (tr["decay_tau_ms"] <= 6))
    assert np.all((tr["amplitude"] >= 0.2) & (tr["amplitude"] <= 1.5))
    assert np.all(tr["peak_s"] > tr["onset_s"])
    # every onset lies in the mask; the mask starts at an onset
    on = np.round(tr["onset_s"] * a.fs_hz).astype(int)
    assert a.mask[np.minimum(on + 1, a.mask.size - 1)].all()
    starts = np.flatnonzero(np.diff(np.concatenate([[0], a.mask])) == 1)
    assert all(np.min(np.abs(on - s)) <= 1 for s in starts)
    # the true waveform at SNR 10 is clearly visible: its 10-90 rise matches what the truth says
    k = int(np.argmax(tr["amplitude"]))
    y = event_waveform(np.arange(200) / 1e5, rise_tau_for(tr["rise_10_90_ms"][k] * 1e-3, tr["decay_tau_ms"][k] * 1e-3),
                       tr["decay_tau_ms"][k] * 1e-3)
    i10, i90 = np.argmax(y >= 0.1), np.argmax(y >= 0.9)
    assert (i90 - i10) / 100 == pytest.approx(tr["rise_10_90_ms"][k], abs=0.02)
    c = simulate_recording("mepsc", 2.5, 2.0, seed=1)
    assert c.fs_hz == 20_000 and c.units == "pA" and np.all(c.truth["amplitude"] < 0)
    # SNR: noise SD scales inversely with the SNR level
    assert simulate_recording("mepsc", 2.5, 1.0, seed=1).noise_sd == pytest.approx(4 * simulate_recording("mepsc", 10.0, 1.0, seed=1).noise_sd)


def test_fetch_synthetic_writes_cohort(tmp_path):
    out = synthetic(tmp_path / "sim", seed=0, size=2, duration_s=2.0)
    rows = (out / "recordings.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("id,file,kind")
    rid = rows[1].split(",")[0]
    truth = read_truth(out / f"{rid}_events.csv")
    x = np.load(out / f"{rid}.npy")
    assert x.dtype == np.float32 and x.size == 20_000
    assert np.all(truth["onset_s"] < 2.0)
    assert np.load(out / f"{rid}_mask.npy").shape == x.shape


def test_fetch_synthetic_cli(tmp_path):
    proc = ephys("fetch", "synthetic", tmp_path / "s", "--pipeline", "events", "--size", "1", check=0)
    assert (tmp_path / "s" / "recordings.csv").is_file(), proc.stdout


# ---------------------------------------------------------------- windows

def test_minmax_windows_and_prediction_mapping():
    x = np.arange(2000, dtype=float)
    w = minmax_windows(x, np.array([0, 20]), 600)
    assert w.shape == (2, 600, 1) and w.min() == 0 and w.max() == 1
    starts = np.arange(0, 1401, 20)
    p = np.zeros(starts.size)
    p[starts == 400] = 1.0
    q = prediction_to_samples(p, starts, 2000)
    assert q[400 + 60] == pytest.approx(1.0) and q[400 + 180] == pytest.approx(1.0)
    assert q[400 + 30] < 1 and q[400 + 220] < 1


# ---------------------------------------------------------------- readers

def test_npy_reader_and_labels(tmp_path):
    x = np.zeros(1000)
    np.save(tmp_path / "t.npy", x)
    tr = read_trace(tmp_path / "t.npy", fs_hz=10_000, units="mV")
    assert tr.mode == "current_clamp" and tr.polarity == "positive" and tr.duration_s == pytest.approx(0.1)
    with pytest.raises(EphysError, match="--fs-hz"):
        read_trace(tmp_path / "t.npy")
    (tmp_path / "l.csv").write_text("onset_s,peak_s,amplitude\n0.05,0.051,-3\n0.01,,\n")
    lab = read_event_csv(tmp_path / "l.csv", 0.1)
    assert lab["onset_s"].tolist() == [0.01, 0.05] and np.isnan(lab["peak_s"][0])
    (tmp_path / "bad.csv").write_text("onset_s\n0.05\n0.2\n")
    with pytest.raises(EphysError, match="row 3, field onset_s"):
        read_event_csv(tmp_path / "bad.csv", 0.1)


def test_nwb_reader(tmp_path):
    from datetime import datetime, timezone

    import pynwb
    from pynwb.icephys import VoltageClampSeries

    nwb = pynwb.NWBFile("t", "id", datetime(2024, 1, 1, tzinfo=timezone.utc))
    dev = nwb.create_device("amp")
    el = nwb.create_icephys_electrode(name="e", description="", device=dev)
    for k in range(2):
        nwb.add_acquisition(VoltageClampSeries(name=f"vc{k}", data=np.full(500, -20e-12 * (k + 1)), electrode=el,
                                               gain=1.0, rate=20_000.0, starting_time=k * 1.0, sweep_number=k))
    with pynwb.NWBHDF5IO(str(tmp_path / "t.nwb"), "w") as io:
        io.write(nwb)
    tr = read_trace(tmp_path / "t.nwb")
    assert tr.units == "pA" and tr.mode == "voltage_clamp" and tr.fs_hz == 20_000
    assert tr.segments == [(0, 500), (500, 1000)]
    assert tr.data[0] == pytest.approx(-20.0) and tr.data[-1] == pytest.approx(-40.0)


@needs_shared
def test_real_abf_reader_marks_membrane_test():
    tr = read_trace(ABF)
    assert tr.fs_hz == 20_000 and tr.units == "pA" and tr.mode == "voltage_clamp"
    assert len(tr.segments) == 7 and tr.n_samples == 7 * 200_000
    for s0, s1 in tr.segments:
        ex = np.flatnonzero(tr.exclude[s0:s1])
        # the -10 mV membrane test at 156-356 ms of each sweep, at least the 20 ms transient after
        # it, and the relaxation until the current is back at its pre-step level; one stretch
        assert ex[0] == pytest.approx(3125, abs=2) and ex[-1] >= 7524
        assert ex[-1] < 7124 + 6000 and np.all(np.diff(ex) == 1)
    # the first sweep relaxes slowly after the step (by eye: ~200 ms): more than the fixed pad
    assert np.flatnonzero(tr.exclude[:200_000])[-1] > 7524 + 2000
    assert tr.polarity == "negative"


def test_settle_samples_covers_a_relaxation():
    from ephys.pipelines.events.readers import settle_samples

    fs = 20_000.0
    rng = np.random.default_rng(3)
    y = rng.normal(0, 1.0, 40_000)
    y[10_000:14_000] -= 50.0  # the step
    t = np.arange(40_000 - 14_000) / fs
    y[14_000:] += -30.0 * np.exp(-t / 0.05)  # relaxation, tau 50 ms: below 3 SD after ~114 ms
    k = settle_samples(y, fs, 10_000, 13_999)
    assert 0.09 * fs < k < 0.16 * fs
    flat = rng.normal(0, 1.0, 40_000)
    flat[10_000:14_000] -= 50.0
    assert settle_samples(flat, fs, 10_000, 13_999) < 0.011 * fs


@needs_shared
def test_real_miniml_windows():
    w = read_miniml_h5(H5)
    assert w.x.shape == (530, 600)
    assert np.bincount(w.scores).tolist() == [86, 86, 358]


# ---------------------------------------------------------------- bad inputs (one line, exit 2)

def test_bad_inputs_one_line(tmp_path):
    x = np.zeros(2000)
    x[10] = np.nan
    np.save(tmp_path / "nan.npy", x)
    one_line_error(ephys("events", "detect", tmp_path / "nan.npy", tmp_path / "o1", "--fs-hz", "10000"),
                   "nan.npy", "NaN")
    assert not (tmp_path / "o1").exists()
    np.save(tmp_path / "ok.npy", np.zeros(2000))
    (tmp_path / "lab.csv").write_text("onset_s\n0.1\n5.0\n")
    one_line_error(ephys("events", "detect", tmp_path / "ok.npy", tmp_path / "o2", "--fs-hz", "10000",
                         "--labels", tmp_path / "lab.csv"), "lab.csv", "row 3", "onset_s")
    assert not (tmp_path / "o2").exists()
    one_line_error(ephys("events", "detect", tmp_path / "ok.npy", "--fs-hz", "10000", "--polarity", "up"),
                   "--polarity")
    import h5py

    with h5py.File(tmp_path / "w.h5", "w") as fh:
        fh["events"] = np.zeros((20, 600))
        fh["scores"] = np.zeros(20, int)
    one_line_error(ephys("reproduce", "minis", "--data", tmp_path / "w.h5", "--out", tmp_path / "o3"),
                   "w.h5", "raw_indices")


def test_bad_abf_mode(tmp_path, monkeypatch):
    pytest.importorskip("pyabf")
    import pyabf

    if not ABF.is_file():
        pytest.skip("no real ABF to alter")

    class Fake:
        def __init__(self, *_a, **_k):
            self.nOperationMode = 1

    monkeypatch.setattr(pyabf, "ABF", Fake)
    with pytest.raises(EphysError, match="no gap-free or episodic data"):
        read_trace(ABF)


def test_sampling_rate_not_trained_refused(tmp_path):
    from ephys.pipelines.events.apply import _resample
    from ephys.pipelines.events.readers import Trace

    tr = Trace(np.zeros(1000), 25_000.0, "pA", "voltage_clamp", source="x.npy")
    with pytest.raises(EphysError, match="25000 Hz"):
        _resample(tr, [10_000.0, 20_000.0], allow=False)
    r = _resample(tr, [10_000.0, 20_000.0], allow=True)
    assert r.fs_hz == 20_000.0 and r.n_samples == 800


# ---------------------------------------------------------------- detection settings

def _noisy_events(fs=10_000, amp=1.0, sd=0.5, seed=2):
    """Small events (amplitude 2 noise SDs) in white noise, and a mask-like probability that
    covers each event from onset to 8 ms (like a U-Net mask)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(4.0 * fs)) / fs
    onsets = np.arange(0.1, 3.9, 0.1) + rng.uniform(0, 0.02, 38)
    tau_r = rise_tau_for(5e-4, 4e-3)
    x = sum(amp * event_waveform(t - o, tau_r, 4e-3) for o in onsets) + rng.normal(0, sd, t.size)
    prob = np.zeros_like(x)
    for o in onsets:
        prob[int(o * fs): int((o + 0.008) * fs)] = 1.0
    return x, fs, prob, onsets


def test_locating_the_rise_on_a_low_passed_trace_helps_small_events():
    x, fs, prob, onsets = _noisy_events()
    f1 = {}
    for loc in (None, 500.0):
        ev = D.detect_events(x, fs, prob, "positive", D.DetectionParams(locate_hz=loc))
        f1[loc] = event_prf(onsets, [e["onset_s"] for e in ev])["f1"]
    assert f1[500.0] > f1[None] + 0.1, f1


def test_minimum_amplitude_drops_noise_sized_events():
    fs = 10_000
    rng = np.random.default_rng(5)
    t = np.arange(2 * fs) / fs
    tau_r = rise_tau_for(5e-4, 3e-3)
    x = 8.0 * event_waveform(t - 0.5, tau_r, 3e-3) + 0.6 * event_waveform(t - 1.5, tau_r, 3e-3)
    x = x + rng.normal(0, 0.3, t.size)
    prob = np.zeros_like(x)
    prob[int(0.5 * fs):int(0.508 * fs)] = 1
    prob[int(1.5 * fs):int(1.508 * fs)] = 1
    keep_all = D.detect_events(x, fs, prob, "positive", D.DetectionParams(locate_hz=500.0))
    big = D.detect_events(x, fs, prob, "positive", D.DetectionParams(locate_hz=500.0, min_amplitude_sd=5.0))
    assert len(keep_all) == 2
    assert [round(e["onset_s"], 2) for e in big] == [0.5]
    assert D.trace_noise_sd(D.smooth(x, fs, 2000.0), fs) == pytest.approx(0.3 * 0.75, rel=0.35)


def test_calibration_uses_only_its_recordings_and_can_fail(monkeypatch):
    import ephys.pipelines.events.apply as A
    from ephys.pipelines.events.events_sim import calibrate_detection

    x, fs, prob, onsets = _noisy_events()
    rec = {"id": "c", "x": x, "fs_hz": fs, "polarity": "positive", "truth": {"onset_s": onsets}, "snr": 2.0}
    det = {"probs": prob}
    monkeypatch.setattr(A, "method_probability", lambda m, det, x, fs, pol: det["probs"])
    prm = calibrate_detection(det, [rec], methods=("unet1d",), log=lambda *_: None)["unet1d"]
    # a calibration set whose 'truth' lies elsewhere: nothing to gain, F1 0
    wrong = {**rec, "truth": {"onset_s": onsets + 0.05}}
    bad = calibrate_detection(det, [wrong], methods=("unet1d",), log=lambda *_: None)["unet1d"]
    assert prm.locate_hz is not None and prm._calibration_f1 > 0.6
    assert bad._calibration_f1 < 0.1
