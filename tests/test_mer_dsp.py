"""mer: the fast ML-STIM path against the plain reference; artifact masks against the simulator."""

from __future__ import annotations

import numpy as np
import pytest

from ephys.pipelines.core.errors import EphysError
from ephys.pipelines.mer import dsp, synthetic


def _close(fast, ref):
    """The issue's tolerance: every feature within 1e-3 relative, except skewness (its published value
    can be near zero): there within 1e-4 absolute."""
    assert fast.shape == ref.shape and ref.shape[0] > 0
    sk = dsp.FEATURE_NAMES.index("skewness")
    for j, name in enumerate(dsp.FEATURE_NAMES):
        if j == sk:
            assert np.all(np.abs(fast[:, j] - ref[:, j]) <= 1e-4), name
        else:
            assert np.all(np.abs(fast[:, j] - ref[:, j]) <= 1e-3 * np.abs(ref[:, j])), name


def _published_filter(x, fs=24000.0):
    """The published filtering, re-stated literally from its description (ML-STIM ``lib.py``): one
    6th-order Butterworth band-pass 250-5000 Hz in (b, a) form applied with lfilter, then IIR notches
    (Q = 50) at arange(200, 5000, 50) Hz, each stage's output cast to float32."""
    from scipy.signal import butter, iirnotch, lfilter

    nyq = fs / 2
    b, a = butter(6, [250 / nyq, 5000 / nyq], btype="bandpass")
    y = lfilter(b, a, x).astype(np.float32)
    for f0 in np.arange(200, 5000, 50):
        bn, an = iirnotch(f0, 50, fs)
        y = lfilter(bn, an, y).astype(np.float32)
    return y


@pytest.fixture(scope="module")
def recordings():
    rng = np.random.default_rng(3)
    out = []
    for region, art in (("stn", True), ("above", False), ("snr", True)):
        x, mask = synthetic.simulate_recording(rng, region, 0.3, 7.31, 1.2, 0.4, art, True)
        out.append((x, mask))
    return out


def test_fast_equals_reference(recordings):
    for x, _ in recordings:
        f_ref, m_ref = dsp.process_reference(x)
        f_fast, m_fast = dsp.process_fast(x)
        assert np.array_equal(m_ref, m_fast)
        _close(f_fast, f_ref)


def test_filters_and_stages():
    x = np.random.default_rng(0).standard_normal(30000).astype(np.float32)
    stages = dsp.filter_stages_ba()
    assert len(stages) == 97 and len(dsp.NOTCH_HZ) == 96 and dsp.NOTCH_HZ[-1] == 4950.0
    assert len(stages[0][0]) == len(stages[0][1]) == 13  # one 12-pole band-pass, not a high-pass + low-pass pair
    y_ref, y_fast = dsp.filter_reference(x), dsp.filter_fast(x)
    assert y_fast.dtype == np.float32 and y_fast.shape == x.shape
    assert np.max(np.abs(y_fast - y_ref)) < 1e-4 * np.max(np.abs(y_ref))
    # causal: samples before a change do not see it
    x2 = x.copy()
    x2[20000:] += 5
    assert np.max(np.abs(dsp.filter_fast(x2)[:20000] - y_fast[:20000])) < 1e-5 * np.max(np.abs(y_fast))


def test_plain_filter_is_the_published_one(recordings):
    """Band-pass fidelity: the plain path equals the published steps restated in this test, and its
    features on that output are those of the published chain (fast = plain is the test above)."""
    from scipy.signal import butter, lfilter, sosfilt

    for x, _ in recordings[:2]:
        lit = _published_filter(x)
        assert np.array_equal(dsp.filter_reference(x), lit)
    # the (b, a) band-pass equals its sos form (the fast path's) to ~1e-8 of the peak
    w = np.random.default_rng(2).standard_normal(48000)
    b, a = butter(6, [250 / 12000, 5000 / 12000], btype="bandpass")
    y_ba, y_sos = lfilter(b, a, w), sosfilt(dsp.filter_sos()[:6], w)
    assert np.max(np.abs(y_ba - y_sos)) < 1e-6 * np.max(np.abs(y_sos))
    # and it is not the old high-pass + low-pass pair: that differs by percents of the peak on white noise
    hp, lp = butter(6, 250, "highpass", fs=24000), butter(6, 5000, "lowpass", fs=24000)
    y_pair = lfilter(*lp, lfilter(*hp, w))
    assert np.max(np.abs(y_pair - y_sos)) > 0.02 * np.max(np.abs(y_sos))


def test_resampled_before_filtering():
    """A 48-kHz input is resampled to 24 kHz first, then filtered with the 24-kHz chain (the published
    script filters the original signal with the 24-kHz coefficients)."""
    rng = np.random.default_rng(6)
    x, _ = synthetic.simulate_recording(rng, "stn", 0.3, 2.0, 1.0, 0.4, False, False)
    from scipy.signal import resample_poly

    x48 = resample_poly(x.astype(np.float64), 2, 1)
    feats, mask = dsp.process_reference(x48, 48000)
    y = _published_filter(dsp.to_24khz(x48, 48000))
    assert mask.size == y.size == x.size
    np.testing.assert_array_equal(feats, dsp.features_reference(y[~dsp.artifact_mask_reference(y)]))


def test_artifact_rule_on_hand_made_variances():
    y = np.ones(12000, dtype=np.float32)
    y[::2] = -1  # variance 1 everywhere
    y[4800:6000] *= 3  # one 50-ms hop of variance 9 -> windows 3 and 4 (covering it) are artifacts
    mask = dsp.artifact_mask_reference(y)
    assert np.array_equal(mask, dsp.artifact_mask_fast(y))
    hops = mask.reshape(-1, 1200).all(axis=1)
    # window 3 = hops 3-4, window 4 = hops 4-5: hops 3, 4, 5 (covered by an artifact window) are cut
    assert hops.tolist() == [False, False, False, True, True, True, False, False, False, False]


def test_artifact_mask_against_simulator_ground_truth():
    data, truth, rows, _ = synthetic.simulate_cohort(
        synthetic.SimParams(n_patients=2, duration_s=3.0, max_electrodes=1, artifact_fraction=0.5), seed=5)
    tp = fn = tn = fp = 0
    for i, r in enumerate(rows):
        _, m = dsp.process_fast(data[i, :r["length"]])
        t = truth[i, :r["length"]]
        tp += np.sum(m & t)
        fn += np.sum(~m & t)
        tn += np.sum(~m & ~t)
        fp += np.sum(m & ~t)
    sens, spec = tp / (tp + fn), tn / (tn + fp)
    print(f"artifact removal vs simulator masks: sensitivity {sens:.3f}, specificity {spec:.3f}")
    assert sens > 0.85 and spec > 0.95


def test_segment_features_public_and_resampling():
    from ephys.pipelines.mer import segment_features

    rng = np.random.default_rng(1)
    x, _ = synthetic.simulate_recording(rng, "stn", 0.2, 3.0, 1.0, 0.3, False, False)
    f24 = segment_features(x)
    assert f24.dtype == np.float64 and f24.shape == (5, 9)
    from scipy.signal import resample_poly

    x48 = resample_poly(x.astype(np.float64), 2, 1)
    f48 = segment_features(x48, fs_hz=48000)
    assert f48.shape == f24.shape
    # the same signal through 48 kHz and back: the spectral shares agree closely
    np.testing.assert_allclose(f48[:, [6, 7]], f24[:, [6, 7]], rtol=0.02)
    assert dsp.resample_ratio(44100) == (80, 147)
    for bad in (5000, 0, float("nan"), "abc"):
        with pytest.raises(EphysError, match="sampling rate"):
            segment_features(x, fs_hz=bad)
    for sig, msg in ((np.zeros(48000), "all-zero"), (np.r_[x[:30000], np.nan], "NaN")):
        with pytest.raises(EphysError, match=msg):
            segment_features(sig)
    assert segment_features(x[:20000]).shape == (0, 9)
