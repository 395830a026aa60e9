"""Continuous wavelet transform (CWT): a batched FFT fast path and the PyWavelets reference.

The STS pipeline (Amprimo et al., 2025, seed ``spike-trains-scalograms``) turns binned spike
trains into complex-Morlet CWT scalograms. The CWT is the hot path of ``ephys prepare
scalograms``, so this module computes it as one batched FFT product per signal, while
reproducing ``pywt.cwt(..., method="conv")`` (PyWavelets) exactly up to float32 rounding:

* the same filters: PyWavelets integrates the mother wavelet once on a fine grid
  (``pywt.integrate_wavelet``, ``precision=12``), resamples the integral per scale, convolves,
  differentiates and multiplies by ``-sqrt(scale)``; we build that same per-scale filter
  (integral resampled, differentiated, scaled) once and cache its FFT;
* the same alignment: PyWavelets crops ``floor(d)`` samples at the start of the differentiated
  full convolution (``d = (len - n) / 2``); we fold that offset into a circular shift of the
  filter so every scale's output lands at indices ``0 .. n-1`` of one inverse FFT;
* less work: taps whose magnitude is below ``trim`` of the filter's peak, and taps that cannot
  reach any of the ``n`` output samples, are dropped, so the FFT length is
  ``next_fast_len(n + support - 1)`` with ``support <= 2n - 1`` instead of ``n + 16*scale``;
* scales are grouped into a few buckets by the FFT length they need (small scales need little
  more than ``n``); one forward FFT per signal and bucket, one batched inverse FFT per bucket,
  complex64 arithmetic.

``cwt_reference`` calls PyWavelets itself and is what the tests compare against.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from math import floor

import numpy as np
import pywt
import scipy.fft as sfft

#: Default mother wavelet: complex Morlet, bandwidth 1.5, centre frequency 1.0 (PyWavelets name).
DEFAULT_WAVELET = "cmor1.5-1.0"
#: PyWavelets' default integration precision for ``cwt`` (2**12 points over the support).
PYWT_PRECISION = 12


def log_scales(n_scales: int, f_min_hz: float, f_max_hz: float, fs_hz: float,
               wavelet: str = DEFAULT_WAVELET) -> tuple[np.ndarray, np.ndarray]:
    """Log-spaced CWT scales covering ``f_max_hz`` down to ``f_min_hz``.

    Parameters
    ----------
    n_scales : int
        Number of scales (rows of the scalogram), >= 1.
    f_min_hz, f_max_hz : float
        Lowest and highest pseudo-frequency (Hz); ``0 < f_min_hz < f_max_hz <= fs_hz / 2``.
    fs_hz : float
        Sampling rate of the signal (Hz), e.g. 1000 for a spike train in 1 ms bins.
    wavelet : str
        PyWavelets continuous wavelet name.

    Returns
    -------
    scales : np.ndarray, shape (n_scales,), float64, ascending (high frequency first)
    frequencies_hz : np.ndarray, shape (n_scales,), float64, descending

    Raises
    ------
    ValueError
        On an empty or inverted frequency range or one above Nyquist.
    """
    if n_scales < 1:
        raise ValueError("n_scales must be >= 1")
    if not (0 < f_min_hz < f_max_hz <= fs_hz / 2 + 1e-9):
        raise ValueError(f"need 0 < f_min ({f_min_hz}) < f_max ({f_max_hz}) <= fs/2 ({fs_hz / 2})")
    fc = pywt.central_frequency(wavelet, precision=PYWT_PRECISION)
    freqs = np.geomspace(f_max_hz, f_min_hz, n_scales)
    scales = fc * fs_hz / freqs
    return scales.astype(np.float64), freqs.astype(np.float64)


@dataclass(frozen=True)
class _Bucket:
    rows: np.ndarray     # indices of the scales in this bucket
    nfft: int            # FFT length shared by these scales
    spectra: np.ndarray  # (len(rows), nfft) complex64: FFT of the circularly placed filters


def _pywt_filter(int_psi: np.ndarray, x: np.ndarray, scale: float) -> np.ndarray:
    """PyWavelets' per-scale integrated-wavelet filter (same indexing as ``pywt.cwt``)."""
    step = x[1] - x[0]
    j = (np.arange(scale * (x[-1] - x[0]) + 1) / (scale * step)).astype(int)
    j = j[j < int_psi.size]
    return int_psi[j][::-1]


#: A scale joins a bucket whose FFT length is at most this factor above the one it needs.
_BUCKET_SLACK = 1.12


@functools.lru_cache(maxsize=16)
def _filter_bank(wavelet: str, scales: tuple[float, ...], n: int, trim: float,
                 precision: int = PYWT_PRECISION) -> tuple[_Bucket, ...]:
    int_psi, x = pywt.integrate_wavelet(pywt.ContinuousWavelet(wavelet), precision=precision)
    int_psi = np.conj(np.asarray(int_psi))
    taps = []  # (k_lo, g) with output[t] = sum_j x[j] * g[t - j - k_lo] over g's taps
    for s in scales:
        h = _pywt_filter(int_psi, x, s)
        L = h.size
        if L < 2:
            raise ValueError(f"scale {s} too small for wavelet {wavelet}")
        # conv(x, h) then diff  ==  conv(x, h2)[k + 1],  h2 = h * [1, -1]
        h2 = -np.sqrt(s) * np.convolve(h, [1.0, -1.0])
        # pywt keeps diff(conv)[floor(d) + t], d = (L - 2) / 2
        off = floor((L - 2) / 2.0) + 1
        # g[k] = h2[k + off] for k in [-(n-1), n-1]: only these taps reach an output sample
        lo = max(-(n - 1), -off)
        hi = min(n - 1, h2.size - 1 - off)
        g = h2[lo + off: hi + off + 1]
        if trim > 0 and g.size:
            keep = np.flatnonzero(np.abs(g) >= trim * np.abs(h2).max())
            if keep.size:
                g = g[keep[0]: keep[-1] + 1]
                lo += int(keep[0])
        taps.append((lo, g))
    # no wrap-around into outputs 0..n-1 needs nfft >= n + len(g) - 1
    need = np.array([sfft.next_fast_len(n + g.size - 1) for _, g in taps])
    buckets = []
    order = np.argsort(-need, kind="stable")
    i = 0
    while i < order.size:
        nfft = int(need[order[i]])
        j = i
        while j < order.size and need[order[j]] * _BUCKET_SLACK >= nfft:
            j += 1
        rows = np.sort(order[i:j])
        placed = np.zeros((rows.size, nfft), dtype=np.complex128)
        for r, row in enumerate(rows):
            lo, g = taps[row]
            placed[r, (lo + np.arange(g.size)) % nfft] = g
        spectra = sfft.fft(placed, axis=-1, workers=1).astype(np.complex64)
        spectra.setflags(write=False)
        buckets.append(_Bucket(rows=rows, nfft=nfft, spectra=spectra))
        i = j
    return tuple(buckets)


def cwt(signals: np.ndarray, scales: np.ndarray, wavelet: str = DEFAULT_WAVELET,
        trim: float = 1e-7, magnitude: bool = True, precision: int = PYWT_PRECISION) -> np.ndarray:
    """Batched FFT continuous wavelet transform, numerically equal to PyWavelets' ``cwt``.

    Parameters
    ----------
    signals : np.ndarray, shape (n,) or (batch, n), real
        Signals sampled evenly (e.g. a binned spike train, spikes per bin).
    scales : np.ndarray, shape (n_scales,)
        Wavelet scales in samples (see :func:`log_scales`).
    wavelet : str
        PyWavelets continuous wavelet name (default complex Morlet ``cmor1.5-1.0``).
    trim : float
        Filter taps below ``trim`` x the filter's peak magnitude are dropped (0 keeps all).
    magnitude : bool
        Return ``|W|`` (float32) when True, else the complex coefficients (complex64).
    precision : int
        The wavelet integral is sampled on 2**precision points (PyWavelets' ``precision``,
        default 12). Scales wider than that grid get a staircase filter whose difference is
        spiky, which shows as speckle in the lowest-frequency rows; 16 removes it.

    Returns
    -------
    np.ndarray, shape (n_scales, n) or (batch, n_scales, n); float32 or complex64
        Same layout as ``pywt.cwt(signal, scales, wavelet, method="conv")[0]`` per signal.

    Notes
    -----
    Agreement with PyWavelets ("conv" and "fft" methods) is tested to <= 1e-3 relative error
    (``tests/test_cwt.py``); speed against both is measured in ``benchmarks/bench_cwt.py``.
    """
    x = np.asarray(signals, dtype=np.float32)
    single = x.ndim == 1
    if single:
        x = x[None, :]
    if x.ndim != 2:
        raise ValueError(f"signals must be 1-D or 2-D, got shape {np.shape(signals)}")
    n = x.shape[-1]
    scales = np.atleast_1d(np.asarray(scales, dtype=np.float64))
    buckets = _filter_bank(wavelet, tuple(float(s) for s in scales), n, float(trim), int(precision))
    out = np.empty((x.shape[0], scales.size, n), dtype=np.float32 if magnitude else np.complex64)
    for bucket in buckets:
        X = sfft.fft(x, n=bucket.nfft, axis=-1, workers=1)  # (batch, nfft) complex64
        for b in range(x.shape[0]):
            w = sfft.ifft(bucket.spectra * X[b], axis=-1, workers=1, overwrite_x=True)[:, :n]
            out[b, bucket.rows] = np.abs(w) if magnitude else w
    return out[0] if single else out


def cwt_reference(signal: np.ndarray, scales: np.ndarray, wavelet: str = DEFAULT_WAVELET,
                  method: str = "conv", magnitude: bool = True,
                  precision: int = PYWT_PRECISION) -> np.ndarray:
    """PyWavelets' CWT (the reference implementation), shape (n_scales, n).

    ``method`` is ``"conv"`` (``np.convolve`` per scale) or ``"fft"``.
    """
    coef, _ = pywt.cwt(np.asarray(signal, dtype=np.float64), np.asarray(scales), wavelet,
                       method=method, precision=precision)
    return np.abs(coef).astype(np.float32) if magnitude else coef
