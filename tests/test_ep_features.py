"""EP features (pipelines/ep_features.py): known answers, real recordings, CLI end to end."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

from conftest import SHARED_DATA, ephys, needs_shared
from ephys.pipelines.sts.ep_features import (FEATURE_NAMES, FEATURE_UNITS, adaptation_index, cell_features,
                                         detect_pauses, find_hero)
from ephys.pipelines.blocks.readers.sweeps import Sweep

PATCHCLAMP = SHARED_DATA / "patchclamp"
T_ON, T_OFF, T_END = 0.1, 1.1, 1.4  # step window and sweep length, s


def _sweep(k, v, amp, fs):
    i = np.zeros_like(v)
    i[int(T_ON * fs):int(T_OFF * fs)] = amp
    return Sweep(f"s{k:02d}", v, i, fs, float(amp), T_ON, T_OFF)


def passive_cell(r_mohm=200.0, tau_ms=20.0, vrest=-70.0, amps=(-90, -70, -50, -30, -10), fs=20_000.0,
                 noise_mV=0.05, seed=0):
    """An RC membrane: V = Vrest + R I (1 - exp(-t / tau)) during the step, relaxing after it."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(T_END * fs)) / fs
    tau = tau_ms / 1e3
    sweeps = []
    for k, amp in enumerate(amps):
        dv = r_mohm * 1e6 * amp * 1e-12 * 1e3  # mV
        v = np.full(t.size, vrest)
        on = (t >= T_ON) & (t < T_OFF)
        v[on] += dv * (1 - np.exp(-(t[on] - T_ON) / tau))
        after = t >= T_OFF
        v_off = dv * (1 - math.exp(-(T_OFF - T_ON) / tau))
        v[after] += v_off * np.exp(-(t[after] - T_OFF) / tau)
        sweeps.append(_sweep(k, v + noise_mV * rng.standard_normal(t.size), amp, fs))
    return sweeps


def ap_train_sweep(k, amp, onsets_s, fs=50_000.0, vrest=-65.0):
    """Flat trace (V during the step = Vrest + 10 mV) with identical triangular APs at ``onsets_s``:
    -55 mV -> +25 mV in 0.5 ms, down to -65 mV in 1.0 ms, back to -55 mV over 3 ms."""
    t = np.arange(int(T_END * fs)) / fs
    v = np.full(t.size, vrest)
    v[(t >= T_ON) & (t < T_OFF)] = vrest + 10.0
    for t0 in onsets_s:
        seg = [(0.0, -55.0), (0.0005, 25.0), (0.0015, -65.0), (0.0045, -55.0)]
        for (ta, va), (tb, vb) in zip(seg[:-1], seg[1:]):
            m = (t >= t0 + ta) & (t < t0 + tb)
            v[m] = va + (vb - va) * (t[m] - t0 - ta) / (tb - ta)
    return _sweep(k, v, amp, fs)


# ------------------------------------------------------------------------------------------------
# known answers
# ------------------------------------------------------------------------------------------------


def test_passive_rc_membrane_gives_r_tau_and_no_sag():
    cf = cell_features(passive_cell(r_mohm=200.0, tau_ms=20.0, vrest=-70.0))
    v = cf.values
    assert v["ri"] == pytest.approx(200.0, rel=0.02)  # MOhm
    assert v["tau"] == pytest.approx(20.0, rel=0.03)  # ms = R C with C = 100 pF
    assert abs(v["sag"]) < 0.01  # passive: no relaxation back to baseline
    assert v["vrest"] == pytest.approx(-70.0, abs=0.05)
    assert v["vm_for_sag"] == pytest.approx(-70.0 - 18.0, abs=0.3)  # -90 pA x 200 MOhm
    # no spikes anywhere -> every spiking feature is NaN, not a made-up number
    for name in ("threshold_i_long_square", "f_i_curve_slope", "threshold_v_long_square", "width_long_square",
                 "latency", "avg_isi", "adaptation", "has_burst"):
        assert math.isnan(v[name]), name


def test_passive_membrane_other_r_and_tau_and_single_sweep():
    v = cell_features(passive_cell(r_mohm=80.0, tau_ms=8.0, amps=(-200, -150, -50), fs=10_000.0)).values
    # one sweep in (-100, 0): IPFX adds the baseline point. IPFX takes the *minimum* V, so noise
    # (0.05 mV SD) biases a 4 mV deflection by ~3 SD: ~4 % here, hence the tolerance
    assert v["ri"] == pytest.approx(80.0, rel=0.05)
    assert v["tau"] == pytest.approx(8.0, rel=0.05)


def test_hand_built_spike_trains_known_latency_isi_fi_slope():
    """Steps 50 (no spike), 100, 150, 200 pA with 5, 10, 15 identical APs: rheobase 100 pA,
    f-I slope 0.1 spikes/s/pA, hero = 150 pA (rheobase + 39..61), its ISIs known."""
    hero_isis = np.array([0.040, 0.050, 0.060, 0.070, 0.080, 0.090, 0.100, 0.110, 0.120])
    sweeps = [passive_cell(amps=(-50,), fs=50_000.0)[0],
              ap_train_sweep(1, 50, []),
              ap_train_sweep(2, 100, T_ON + 0.150 + 0.15 * np.arange(5)),
              ap_train_sweep(3, 150, T_ON + 0.020 + np.concatenate([[0], np.cumsum(hero_isis)])),
              ap_train_sweep(4, 200, T_ON + 0.010 + 0.06 * np.arange(15))]
    cf = cell_features(sweeps)
    v = cf.values
    assert v["threshold_i_long_square"] == 100.0
    assert v["f_i_curve_slope"] == pytest.approx(0.1, abs=1e-9)  # (5, 10, 15 spikes/s) over (100, 150, 200 pA)
    assert cf.info["hero_amp_pA"] == 150.0
    # latency: threshold of the first AP (at its onset, within a sample or two) minus step onset
    assert v["latency"] == pytest.approx(0.020, abs=0.0002)
    assert v["latency_rheobase"] == pytest.approx(0.150, abs=0.0002)
    assert v["avg_isi"] == pytest.approx(hero_isis.mean() * 1e3, abs=0.05)  # ms
    assert v["adaptation"] == pytest.approx(adaptation_index(hero_isis), abs=1e-6)
    # AP shape of the rheobase sweep's first spike (50 kHz sampling: 0.02 ms per sample)
    assert v["peak_v_long_square"] == pytest.approx(25.0, abs=0.2)
    assert v["threshold_v_long_square"] == pytest.approx(-55.0, abs=1.0)
    assert v["fast_trough_v_long_square"] == pytest.approx(-65.0, abs=1.0)
    # half height between +25 and -65 mV is -20 mV: reached 0.219 ms after onset on the way up
    # and 0.5 + 0.5 ms after onset on the way down -> 0.781 ms (+- one 0.02 ms sample)
    assert v["width_long_square"] == pytest.approx(0.781, abs=0.03)
    # upstroke 160 mV/ms, downstroke -90 mV/ms (the 10 kHz pre-filter rounds the corners a little)
    assert v["upstroke_downstroke_ratio_long_square"] == pytest.approx(160 / 90, rel=0.1)
    assert v["has_burst"] == 0.0 and v["has_pause"] == 0.0
    assert v["sag"] == pytest.approx(0.0, abs=0.01)
    assert v["ri"] == pytest.approx(200.0, rel=0.05)  # one sweep: min-of-noise bias ~2 %


def test_single_spike_hero_gives_nan_isi_features():
    sweeps = [ap_train_sweep(0, 100, [T_ON + 0.2]), ap_train_sweep(1, 150, [T_ON + 0.1])]
    v = cell_features(sweeps).values
    assert v["threshold_i_long_square"] == 100.0 and math.isfinite(v["latency"])
    assert math.isnan(v["avg_isi"]) and math.isnan(v["adaptation"])
    assert math.isnan(v["ri"]) and math.isnan(v["tau"]) and math.isnan(v["sag"])  # no hyperpolarising step


def test_ipfx_rules_hero_and_pause():
    # IPFX find_hero_sweep: smallest amplitude strictly inside (rheo + 39, rheo + 61), else nearest rheo + 39
    assert find_hero(100.0, np.array([100.0, 120.0, 140.0, 160.0])) == 2
    assert find_hero(100.0, np.array([100.0, 170.0, 300.0])) == 1  # |170 - 139| < |100 - 139|
    # a long detour ISI among regular direct ones is a pause
    isis = np.array([0.02] * 6 + [0.3] + [0.02] * 6)
    types = np.array(["direct"] * 6 + ["detour"] + ["direct"] * 6)
    assert detect_pauses(isis, types).tolist() == [6]
    assert detect_pauses(np.full(8, 0.02), np.array(["direct"] * 8)).size == 0


def test_no_long_square_sweep_raises():
    sw = Sweep("x", np.zeros(1000), np.zeros(1000), 10_000.0)  # no step
    with pytest.raises(ValueError, match="no long-square sweep"):
        cell_features([sw])


def test_adex_cells_match_simulated_truth():
    """AdEx cells (pipelines/synthetic.py): f-I slope from the true spike counts; Pvalb APs narrower."""
    from ephys.pipelines.sts.synthetic import simulate_cells

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cells = simulate_cells(["Excitatory", "Pvalb"], seed=3, fs_hz=20_000.0)
    widths = {}
    for cell in cells:
        cf = cell_features(cell.sweeps)
        v = cf.values
        amps, counts = [], []
        for sw, st in zip(cell.sweeps, cell.spike_times_s):
            n = int(np.sum((st >= sw.stim_start_s) & (st < sw.stim_end_s)))
            if n > 0 and sw.stim_amp_pA > 0:
                amps.append(sw.stim_amp_pA)
                counts.append(n / (sw.stim_end_s - sw.stim_start_s))
        true_slope = np.polyfit(amps, counts, 1)[0]
        assert v["f_i_curve_slope"] == pytest.approx(true_slope, rel=0.05), cell.label
        assert v["threshold_i_long_square"] == min(amps)
        hero = next(k for k, sw in enumerate(cell.sweeps) if sw.sweep_id == cf.info["hero_sweep"])
        true_isi = np.diff(cell.spike_times_s[hero])
        if true_isi.size:
            assert v["avg_isi"] == pytest.approx(true_isi.mean() * 1e3, abs=0.5), cell.label
        assert 10 <= v["ri"] <= 1000
        # IPFX refuses tau below a deflection/noise ratio of 20: the one -50 pA sweep of a noisy
        # simulated cell may not reach it (NaN then, as IPFX)
        assert math.isnan(v["tau"]) or 2 <= v["tau"] <= 100
        widths[cell.label] = v["width_long_square"]
    assert widths["Pvalb"] < widths["Excitatory"]


# ------------------------------------------------------------------------------------------------
# real recordings
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_features():
    from ephys.pipelines.blocks.readers.patchclamp import discover_cells, read_cell

    if not PATCHCLAMP.is_dir():
        pytest.skip(f"{PATCHCLAMP} is absent: real recordings not available")
    cells, _ = discover_cells(PATCHCLAMP, PATCHCLAMP / "cells.csv")
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for c in cells:
            out[c.cell_id] = (c.label, cell_features(read_cell(c)).values)
    return out


@needs_shared
def test_real_cells_plausible_ranges(real_features):
    ranges = {"ri": (10, 1000), "tau": (2, 100), "threshold_v_long_square": (-60, -20),
              "width_long_square": (0.2, 3.0), "peak_v_long_square": (-10, 80), "vrest": (-85, -40),
              "sag": (-0.05, 0.6), "upstroke_downstroke_ratio_long_square": (1.0, 8.0)}
    checked = 0
    for cid, (label, v) in real_features.items():
        if label is None:  # unlabelled files include offset recordings (baseline near 0 mV)
            continue
        for name, (lo, hi) in ranges.items():
            if math.isfinite(v[name]):
                assert lo <= v[name] <= hi, f"{cid}: {name} = {v[name]:.3g} outside [{lo}, {hi}]"
                checked += 1
    assert checked >= 30


@needs_shared
def test_real_interneurons_have_narrower_aps_than_pyramidal(real_features):
    """cells.csv: 97509008 is a CA1 interneuron (cAC), 2019_07_24_0055_fsi a fast-spiking
    interneuron (file name); PYR* are CA1 pyramidal cells (Ferguson et al. 2015)."""
    w = {"pyramidal": [], "interneuron": []}
    for label, v in real_features.values():
        if label in w and math.isfinite(v["width_long_square"]):
            w[label].append(v["width_long_square"])
    assert len(w["pyramidal"]) >= 3 and len(w["interneuron"]) >= 2
    assert max(w["interneuron"]) < min(w["pyramidal"])
    assert real_features["abf_2019_07_24_0055_fsi"][1]["width_long_square"] < 1.0  # ms


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------


def test_cli_prepare_features_end_to_end(tiny_synthetic, tmp_path):
    from ephys.pipelines.core.datasets import load_dataset

    out = tmp_path / "features"
    proc = ephys("prepare", "features", tiny_synthetic, out, check=0)
    assert proc.stdout.strip().endswith("manifest.json")
    ds = load_dataset(out)
    assert ds.manifest["modality"] == "features"
    assert ds.manifest["feature_names"] == list(FEATURE_NAMES)
    assert ds.manifest["feature_units"]["ri"] == "MOhm" == FEATURE_UNITS["ri"]
    X = np.load(out / "features.npy")
    assert X.shape == (12, len(FEATURE_NAMES))
    assert len(ds.manifest["label_names"]) == 4
    col = {n: k for k, n in enumerate(FEATURE_NAMES)}
    assert np.all(np.isfinite(X[:, col["threshold_i_long_square"]]))
    assert np.all((X[:, col["ri"]] > 10) & (X[:, col["ri"]] < 1000))
    man = json.loads((out / "manifest.json").read_text())
    assert man["provenance"]["cells"][0]["inputs"][0]["sha256"]


def test_cli_prepare_features_bad_input(tmp_path):
    proc = ephys("prepare", "features", tmp_path / "missing", tmp_path / "out", check=2)
    assert proc.stderr.strip().count("\n") == 0 and "no such file or folder" in proc.stderr
    assert not (tmp_path / "out").exists()
    (tmp_path / "junk.nwb").write_text("not hdf5")
    proc = ephys("prepare", "features", tmp_path / "junk.nwb", tmp_path / "out2", check=2)
    assert "junk.nwb" in proc.stderr and "not a readable NWB file" in proc.stderr
    assert proc.stderr.strip().count("\n") == 0
    assert not (tmp_path / "out2" / "manifest.json").exists()
