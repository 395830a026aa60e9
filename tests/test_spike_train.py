"""Action-potential detection, rheobase / sweep choice and spike-train binning."""

import numpy as np
import pytest

from ephys.pipelines.blocks.signal.spike_train import bin_spike_train, choose_sweeps, detect_spikes
from ephys.pipelines.blocks.readers.sweeps import Sweep


def _ap_trace(spike_times_s, fs_hz=20_000.0, dur_s=1.5, noise_mV=0.3, seed=0, width_ms=0.8,
              rest_mV=-70.0):
    """Membrane potential with stereotyped APs peaking at ``spike_times_s`` plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(dur_s * fs_hz)) / fs_hz
    v = np.full_like(t, rest_mV)
    # slow depolarising drift + noise (filtered, like membrane noise)
    noise = np.convolve(rng.standard_normal(t.size), np.ones(5) / 5, mode="same") * noise_mV * 2
    v += noise
    for ts in spike_times_s:
        rise = np.exp(-0.5 * ((t - ts) / (width_ms * 1e-3 / 4)) ** 2)  # fast rise and fall
        ahp = -8.0 * np.exp(-np.clip(t - ts, 0, None) / 0.01) * (t > ts)
        v += 100.0 * rise + ahp
    return v, fs_hz


@pytest.mark.parametrize("fs_hz", [10_000.0, 20_000.0, 50_000.0])
def test_detects_known_spikes_within_1ms(fs_hz):
    rng = np.random.default_rng(int(fs_hz))
    # irregular train incl. short ISIs (bursts, 4 ms) and long pauses
    isis = np.concatenate([rng.uniform(0.004, 0.2, 60)])
    times = 0.05 + np.cumsum(isis)
    times = times[times < 1.45]
    v, fs = _ap_trace(times, fs_hz=fs_hz, seed=3)
    sp = detect_spikes(v, fs)
    found = sp.peak_s
    # match each true spike to the nearest detection within 1 ms
    d = np.abs(found[:, None] - times[None, :])
    tp = int(((d <= 1e-3).any(axis=0)).sum())
    precision = float(((d <= 1e-3).any(axis=1)).mean()) if found.size else 0.0
    recall = tp / times.size
    assert recall >= 0.99 and precision >= 0.99, (recall, precision, found.size, times.size)


def test_noise_and_subthreshold_bumps_are_not_spikes():
    fs = 20_000.0
    v, _ = _ap_trace([], fs_hz=fs, noise_mV=1.0)
    t = np.arange(v.size) / fs
    v += 6.0 * np.exp(-0.5 * ((t - 0.7) / 0.01) ** 2)  # an EPSP-like slow bump
    assert len(detect_spikes(v, fs)) == 0
    # a recording with a +70 mV offset and steep noise: IPFX's -30 mV peak check cannot help
    v_off, _ = _ap_trace([], fs_hz=10_000.0, noise_mV=2.0, seed=5)
    assert len(detect_spikes(v_off + 70.0, 10_000.0)) == 0
    spikes_off, _ = _ap_trace([0.3, 0.6], fs_hz=10_000.0, noise_mV=2.0, seed=5)
    assert len(detect_spikes(spikes_off + 70.0, 10_000.0)) == 2
    # a fast step artifact that never repolarises is not a spike either
    v2 = np.where(t > 0.5, -20.0, -70.0)
    assert len(detect_spikes(v2, fs)) == 0


def _sweep(k, amp, times, fs=20_000.0):
    v, _ = _ap_trace(times, fs_hz=fs, seed=k)
    i = np.zeros_like(v)
    i[int(0.2 * fs): int(1.2 * fs)] = amp
    return Sweep(f"s{k}", v, i, fs, stim_amp_pA=amp, stim_start_s=0.2, stim_end_s=1.2)


def test_rheobase_and_sweep_choice():
    amps = [-50, 20, 40, 60, 80, 100, 120, 140]
    sweeps = []
    for k, a in enumerate(amps):
        n = 0 if a < 60 else int((a - 40) / 10)  # rheobase 60 pA
        times = np.linspace(0.3, 1.1, n) if n else []
        sweeps.append(_sweep(k, a, times))
    ch = choose_sweeps(sweeps)
    assert ch is not None
    assert ch.rheobase_pA == 60
    assert [sweeps[k].stim_amp_pA for k in ch.chosen] == [60, 100, 120]  # 1x, 1.5x (90->100 tie goes up), 2x
    assert choose_sweeps(sweeps[:3]) is None  # nothing reaches rheobase


def test_bin_spike_train_counts_and_window():
    train = bin_spike_train(np.array([-0.2, -0.05, 0.0, 0.0004, 0.5, 1.0999, 1.2]), (-0.1, 1.1), 0.001)
    assert train.shape == (1200,) and train.dtype == np.float32
    assert train.sum() == 5  # -0.2 and 1.2 are outside
    assert train[100] == 2  # 0.0 and 0.0004 share the bin at step onset
