"""The fast CWT against PyWavelets (the reference), on the same wavelet and scales."""

import numpy as np
import pytest

from ephys.pipelines.blocks.signal.cwt import DEFAULT_WAVELET, cwt, cwt_reference, log_scales


def _rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("n", [257, 1200])
def test_fast_cwt_matches_pywt_conv_on_spike_train(n):
    rng = np.random.default_rng(n)
    spikes = (rng.random(n) < 0.03).astype(np.float64)  # a binned spike train
    scales, freqs = log_scales(60, 2.0, 500.0, 1000.0)
    ref = cwt_reference(spikes, scales, method="conv")
    ours = cwt(spikes, scales)
    assert ours.shape == ref.shape == (60, n)
    assert ours.dtype == np.float32
    assert _rel(ours, ref) <= 1e-3
    # every scale row, not just the total, agrees
    rows = np.linalg.norm(ours - ref, axis=1) / np.maximum(np.linalg.norm(ref, axis=1), 1e-12)
    assert rows.max() <= 1e-3


def test_complex_coefficients_match_and_other_wavelet():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(500)
    scales = np.geomspace(1.5, 120, 25)
    for wavelet in (DEFAULT_WAVELET, "cmor1.0-0.5"):
        ref = cwt_reference(x, scales, wavelet, method="conv", magnitude=False)
        ours = cwt(x, scales, wavelet, magnitude=False)
        assert np.iscomplexobj(ours)
        assert _rel(ours, ref) <= 1e-3


def test_batch_equals_single_and_fft_reference():
    rng = np.random.default_rng(2)
    xs = (rng.random((3, 800)) < 0.05).astype(np.float64)
    scales, _ = log_scales(40, 4.0, 400.0, 1000.0)
    batch = cwt(xs, scales)
    assert batch.shape == (3, 40, 800)
    for i in range(3):
        np.testing.assert_allclose(batch[i], cwt(xs[i], scales), rtol=1e-5, atol=1e-6)
        assert _rel(batch[i], cwt_reference(xs[i], scales, method="fft")) <= 1e-3


def test_trim_zero_is_exact_too_and_wrong_input_raises():
    x = np.zeros(300)
    x[150] = 1.0
    scales = np.geomspace(2, 250, 20)
    assert _rel(cwt(x, scales, trim=0.0), cwt_reference(x, scales)) <= 1e-5
    with pytest.raises(ValueError):
        cwt(np.zeros((2, 2, 2)), scales)
    with pytest.raises(ValueError):
        log_scales(10, 600.0, 100.0, 1000.0)


def test_log_scales_map_to_requested_frequencies():
    import pywt

    scales, freqs = log_scales(180, 2.0, 500.0, 1000.0)
    assert scales.shape == freqs.shape == (180,)
    np.testing.assert_allclose(freqs[[0, -1]], [500.0, 2.0])
    back = pywt.scale2frequency(DEFAULT_WAVELET, scales, precision=12) * 1000.0
    np.testing.assert_allclose(back, freqs, rtol=1e-6)


def test_finer_wavelet_integral_matches_pywt_at_the_same_precision():
    rng = np.random.default_rng(4)
    x = (rng.random(1200) < 0.02).astype(np.float64)
    scales, _ = log_scales(30, 2.0, 500.0, 1000.0)
    ref = cwt_reference(x, scales, method="fft", precision=16)
    assert _rel(cwt(x, scales, precision=16), ref) <= 1e-3
    # and the finer grid removes the sample-to-sample speckle of the widest (2 Hz) scale
    coarse, fine = cwt(x, scales[-1:])[0], cwt(x, scales[-1:], precision=16)[0]
    rough = lambda m: np.abs(np.diff(m, 2)).mean() / m.mean()
    assert rough(fine) < 0.3 * rough(coarse)
