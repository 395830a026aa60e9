"""ML-STIM signal processing: filters, variance-ratio artifact removal, the 9 segment features.

Two implementations of the same published algorithm (Sciscenti et al. 2025, ML-STIM, J Neural
Eng, doi 10.1088/1741-2552/adf579; code: Biolab-PoliTO/ML-STIM ``lib.py``):

* the **reference** (``*_reference``): the algorithm as published, stage by stage — every filter
  applied causally with ``scipy.signal.lfilter``, one after another, each stage's output rounded
  to float32; the artifact windows walked one by one with ``np.var``; one ``scipy.signal.welch``
  pair per 1-s segment. Kept for tests and ``benchmarks/bench_mer.py``.
* the **fast path** (``*_fast``, used by ``prepare``, ``segment_features`` and the stream):
  the whole filter chain is one linear time-invariant system, so its causal output is the
  convolution of the signal with the chain's impulse response. That response is computed once per
  sampling rate from the chain as one second-order-sections cascade (``sosfilt`` of an impulse),
  truncated where its remaining energy is below 1e-14 of the total (about 1 s at 24 kHz; the
  narrowest notch, 200 Hz at Q = 50, decays slowest), and applied by one FFT convolution. Window
  variances come from cumulative sums (one pass); the Welch periodograms are computed once per
  0.1-s frame — every 1-s segment's frames sit on the same 50-ms grid, so neighbouring segments
  share them — and averaged per segment with a matrix product.

Filter chain (all causal, 24 kHz), as published: **one** 6th-order Butterworth band-pass
250-5000 Hz designed in ``(b, a)`` form (``scipy.signal.butter(6, [250 / nyq, 5000 / nyq],
btype="bandpass")``, 12 poles), applied with ``lfilter``, then IIR notches
(``scipy.signal.iirnotch``, Q = 50) at every multiple of 50 Hz from 200 Hz to 4950 Hz
(``arange(200, 5000, 50)``: 96 notches), each stage's output cast to float32. The ``(b, a)`` form of
this 12-pole band-pass is numerically sound at 24 kHz: it equals the ``sos`` form of the same
design within ~2e-8 of the output's peak, so the fast path uses the ``sos`` form.

Sampling rate: every recording is resampled to 24 kHz (polyphase) **before** it is filtered. The
published script resamples non-24-kHz input but then filters the original signal, with the
24-kHz coefficients (a bug); resampling first is what its design intends.

Artifact removal (ML-STIM): windows of 100 ms, hop 50 ms; a window is an artifact when its
variance is >= 1.33 x the variance of the last window that was not (the first window is clean and
sets the reference); each hop is an artifact when either window covering it is (the mean of the
two labels >= 0.5); artifact samples are cut out and the remaining samples joined.

Features per 1-s segment, 50 % overlap, Welch PSD with 2,400-sample (0.1 s) Hann segments and
scipy's defaults otherwise (50 % overlap, constant detrend, density scaling); band edges
inclusive. See :data:`FEATURE_NAMES`.
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

import numpy as np

from ..core.errors import EphysError

#: ML-STIM's sampling rate; every recording is resampled to it before filtering
FS_HZ = 24000
#: band-pass edges of the published 6th-order Butterworth band-pass
BANDPASS_HZ = (250.0, 5000.0)
HIGHPASS_HZ, LOWPASS_HZ = BANDPASS_HZ
BUTTER_ORDER = 6
NOTCH_Q = 50.0
#: 96 notch frequencies, 200, 250, ..., 4950 Hz
NOTCH_HZ = tuple(float(f) for f in np.arange(200, 5000, 50))
ARTIFACT_WINDOW_S = 0.100
ARTIFACT_THRESHOLD = 1.33
SEGMENT_S = 1.0
SEGMENT_OVERLAP = 0.5
WELCH_NPERSEG_S = 0.1
#: The 9 features, in the published order (units: ``mad`` in the signal's unit, the rest unitless)
FEATURE_NAMES = ("mad", "env_power_8_13hz", "env_power_30_70hz", "skewness", "psd_ratio_3_4k_1p6_2p2k",
                 "zero_crossings", "psd_power_1_2khz", "psd_index", "kurtosis")
#: the 22 bands of ``psd_index``: [255 + 100 j, 345 + 100 j] Hz, j = 0..21
PSD_INDEX_BANDS = tuple((255.0 + 100 * j, 345.0 + 100 * j) for j in range(22))
#: relative tail energy at which the fast path's impulse response is truncated
IR_TAIL = 1e-14


# --------------------------------------------------------------------------------------------
# sampling rate
# --------------------------------------------------------------------------------------------

def resample_ratio(fs_hz: float) -> tuple[int, int]:
    """``(up, down)`` with ``fs_hz * up / down == 24000`` exactly (small integers).

    Raises
    ------
    EphysError
        ``fs_hz`` not a finite number above 10 kHz (the 5 kHz low-pass needs it), or not a rate
        that a ratio of integers up to 10,000 maps onto 24 kHz.
    """
    try:
        fs = float(fs_hz)
    except (TypeError, ValueError):
        raise EphysError(f"unknown sampling rate {fs_hz!r} (expected a number in Hz)") from None
    if not np.isfinite(fs) or fs <= 10000.0:
        raise EphysError(f"unknown sampling rate {fs_hz!r} Hz: MER needs more than 10 kHz (5 kHz low-pass)")
    frac = (Fraction(FS_HZ) / Fraction(fs)).limit_denominator(10000)
    if abs(fs * frac.numerator / frac.denominator - FS_HZ) > 1e-6 * FS_HZ:
        raise EphysError(f"unknown sampling rate {fs_hz!r} Hz: no integer ratio maps it onto 24 kHz")
    return frac.numerator, frac.denominator


def to_24khz(x: np.ndarray, fs_hz: float) -> np.ndarray:
    """Resample one recording to 24 kHz (``scipy.signal.resample_poly``, polyphase, Kaiser
    window); a 24-kHz input is returned as float32 unchanged.

    Parameters
    ----------
    x : (n_samples,) array, any float or int dtype
    fs_hz : its sampling rate (Hz)

    Returns
    -------
    (round(n_samples * 24000 / fs_hz),) float32

    Raises
    ------
    EphysError : see :func:`resample_ratio`.
    """
    up, down = resample_ratio(fs_hz)
    x = np.asarray(x)
    if up == down:
        return x.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    return resample_poly(x.astype(np.float64), up, down).astype(np.float32)


class Resampler:
    """:func:`to_24khz` chunk by chunk: the same polyphase filter as ``scipy.signal.resample_poly``
    (its Kaiser-windowed FIR, beta 5, ``10 * max(up, down)`` taps each side, zeros before the start
    and after the end), its state (the last input samples it still needs) kept across chunks. The
    concatenated output of :meth:`push` and :meth:`finish` equals ``to_24khz`` of the whole signal
    (within float rounding); outputs lag the input by about 10 input samples (the filter's half
    length over ``up``). A 24-kHz input passes through.

    Raises
    ------
    EphysError
        ``fs_hz`` unusable (:func:`resample_ratio`).
    """

    def __init__(self, fs_hz: float = FS_HZ):
        self.up, self.down = resample_ratio(fs_hz)
        self.n_in = 0
        self.m = 0  # next output sample
        if self.up == self.down:
            return
        from scipy.signal import firwin

        max_rate = max(self.up, self.down)
        half_len = 10 * max_rate
        pre = self.down - half_len % self.down
        self.h = np.concatenate([np.zeros(pre), firwin(2 * half_len + 1, 1.0 / max_rate, window=("kaiser", 5.0))
                                 * self.up])
        self.npr = (half_len + pre) // self.down
        self.k0 = 0  # input index of buf[0], a multiple of down
        self.buf = np.zeros(0)

    def _outputs(self, m_end: int) -> np.ndarray:
        from scipy.signal import upfirdn

        if m_end <= self.m:
            return np.zeros(0, dtype=np.float32)
        j0 = self.m + self.npr - self.k0 * self.up // self.down
        y = upfirdn(self.h, self.buf, self.up, self.down)[j0: j0 + m_end - self.m]
        self.m = m_end
        # drop input no later output needs: output m reads x[k] for k*up > (m + npr)*down - len(h)
        need = max(0, ((self.m + self.npr) * self.down - self.h.size) // self.up)
        k0 = need - need % self.down
        if k0 > self.k0:
            self.buf = self.buf[k0 - self.k0:]
            self.k0 = k0
        return y.astype(np.float32)

    def push(self, chunk) -> np.ndarray:
        """Input samples (1-D, any length) -> the 24-kHz samples they complete, float32."""
        x = np.asarray(chunk, dtype=np.float64).ravel()
        self.n_in += x.size
        if self.up == self.down:
            return x.astype(np.float32)
        self.buf = np.concatenate([self.buf, x])
        # output m is complete once its last input sample, floor((m + npr) * down / up), has arrived
        return self._outputs(-(-self.n_in * self.up // self.down) - self.npr)

    def finish(self) -> np.ndarray:
        """End of the signal: the remaining outputs (the signal continues with zeros, as offline)."""
        if self.up == self.down:
            return np.zeros(0, dtype=np.float32)
        n_out = -(-self.n_in * self.up // self.down)
        self.buf = np.concatenate([self.buf, np.zeros(self.h.size // self.up + 2)])
        return self._outputs(n_out)


# --------------------------------------------------------------------------------------------
# filters
# --------------------------------------------------------------------------------------------

def filter_stages_ba(fs_hz: float = FS_HZ) -> list[tuple[np.ndarray, np.ndarray]]:
    """The published filter stages as ``(b, a)`` pairs: the 6th-order Butterworth band-pass
    250-5000 Hz (13 coefficients each), then the 96 notches (:data:`NOTCH_HZ`)."""
    from scipy import signal

    nyq = fs_hz / 2.0
    stages = [signal.butter(BUTTER_ORDER, [BANDPASS_HZ[0] / nyq, BANDPASS_HZ[1] / nyq], btype="bandpass")]
    stages += [signal.iirnotch(f, NOTCH_Q, fs_hz) for f in NOTCH_HZ]
    return stages


@lru_cache(maxsize=4)
def filter_sos(fs_hz: float = FS_HZ) -> np.ndarray:
    """The whole chain as one second-order-sections cascade, shape (102, 6) float64: the same
    band-pass design in ``sos`` form (6 sections), then one section per notch."""
    from scipy import signal

    nyq = fs_hz / 2.0
    sos = [signal.butter(BUTTER_ORDER, [BANDPASS_HZ[0] / nyq, BANDPASS_HZ[1] / nyq], btype="bandpass",
                         output="sos")]
    for f in NOTCH_HZ:
        b, a = signal.iirnotch(f, NOTCH_Q, fs_hz)
        sos.append(np.concatenate([b, a])[None, :])
    return np.vstack(sos)


@lru_cache(maxsize=4)
def impulse_response(fs_hz: float = FS_HZ) -> np.ndarray:
    """The chain's causal impulse response (float64), truncated at :data:`IR_TAIL` tail energy."""
    from scipy.signal import sosfilt

    n = int(4 * fs_hz)
    imp = np.zeros(n)
    imp[0] = 1.0
    h = sosfilt(filter_sos(fs_hz), imp)
    tail = np.cumsum((h * h)[::-1])[::-1] / np.sum(h * h)
    keep = int(np.argmax(tail < IR_TAIL)) or n
    return h[:keep]


#: a shorter truncation the fast path may use when it makes the FFT a power of two
IR_TAIL_MIN = 1e-12


@lru_cache(maxsize=4)
def _ir_lengths(fs_hz: float) -> tuple[int, int]:
    h = impulse_response(fs_hz)
    tail = np.cumsum((h * h)[::-1])[::-1] / np.sum(h * h)
    return h.size, int(np.argmax(tail < IR_TAIL_MIN)) or h.size


@lru_cache(maxsize=8)
def _ir_spectrum(fs_hz: float, nfft: int, length: int) -> np.ndarray:
    from scipy import fft

    return fft.rfft(impulse_response(fs_hz)[:length].astype(np.float32), nfft)


def filter_reference(x: np.ndarray, fs_hz: float = FS_HZ) -> np.ndarray:
    """Published filtering: the band-pass, then each notch, with ``scipy.signal.lfilter``, each
    stage's output cast to float32.

    Parameters
    ----------
    x : (n_samples,) signal at ``fs_hz``

    Returns
    -------
    (n_samples,) float32
    """
    from scipy.signal import lfilter

    y = np.asarray(x)
    for b, a in filter_stages_ba(fs_hz):
        y = lfilter(b, a, y).astype(np.float32)
    return y


def filter_fast(x: np.ndarray, fs_hz: float = FS_HZ) -> np.ndarray:
    """The same causal chain as :func:`filter_reference` as one FFT convolution with the chain's
    impulse response (float32 FFTs; equal to the reference within ~1e-6 of the signal's peak).
    The response is truncated at 1e-14 tail energy, or at 1e-12 where that makes the FFT length
    a power of two.

    Parameters
    ----------
    x : (n_samples,) signal at ``fs_hz``

    Returns
    -------
    (n_samples,) float32
    """
    from scipy import fft

    x = np.asarray(x, dtype=np.float32)
    n = x.size
    if n == 0:
        return x.copy()
    h_len, h_min = _ir_lengths(float(fs_hz))
    nfft = fft.next_fast_len(n + h_len - 1, real=True)
    pow2 = 1 << (n + h_min - 2).bit_length()  # a power of two is the fastest size: use it when
    if pow2 < nfft:                           # the response still fits at 1e-12 tail energy
        nfft, h_len = pow2, min(h_len, pow2 - n + 1)
    y = fft.irfft(fft.rfft(x, nfft) * _ir_spectrum(float(fs_hz), nfft, h_len), nfft)[:n]
    return y.astype(np.float32, copy=False)


# --------------------------------------------------------------------------------------------
# artifact removal
# --------------------------------------------------------------------------------------------

def _window_hop(fs_hz: float) -> tuple[int, int]:
    w = int(ARTIFACT_WINDOW_S * fs_hz)
    return w, w // 2


def artifact_mask_reference(y: np.ndarray, fs_hz: float = FS_HZ) -> np.ndarray:
    """Published variance-ratio artifact detection, window by window.

    Parameters
    ----------
    y : (n_samples,) filtered signal

    Returns
    -------
    (n_samples,) bool, True = artifact sample
    """
    n = y.size
    w, s = _window_hop(fs_hz)
    mask = np.zeros(n, dtype=bool)
    ref_var = np.inf  # no clean window yet: the first window is clean and sets the reference
    prev_label = None
    start = 0
    while start < n:
        var = float(np.var(y[start:min(start + w, n)]))
        label = var >= ARTIFACT_THRESHOLD * ref_var
        if not label:
            ref_var = var
        if prev_label is None:
            prev_label = label
        if (int(label) + int(prev_label)) / 2 >= 0.5:
            mask[start:start + s] = True
        prev_label = label
        start += s
    return mask


def window_variances(y: np.ndarray, fs_hz: float = FS_HZ) -> np.ndarray:
    """Population variance of every 100-ms window on the 50-ms grid (the last ones clipped at
    the end of the signal), from per-hop sums in float64: shape (ceil(n / hop),)."""
    n = y.size
    w, s = _window_hop(fs_hz)
    if n == 0:
        return np.zeros(0)
    z = np.array(y, dtype=np.float64)  # a copy, centred in place
    z -= z.mean()
    n_hops = -(-n // s)
    full = n // s
    blocks = z[: full * s].reshape(full, s)
    s1 = np.empty(n_hops)
    s2 = np.empty(n_hops)
    s1[:full] = blocks.sum(axis=1)
    s2[:full] = np.einsum("ij,ij->i", blocks, blocks)
    if n_hops > full:
        rest = z[full * s:]
        s1[-1], s2[-1] = rest.sum(), rest @ rest
    cnt = np.full(n_hops, float(s))
    cnt[-1] = n - (n_hops - 1) * s
    if w == 2 * s:  # window k = hops k and k+1
        nxt = lambda v: np.concatenate([v[1:], [0.0]])  # noqa: E731
        m, t1, t2 = cnt + nxt(cnt), s1 + nxt(s1), s2 + nxt(s2)
    else:  # odd window length: exact sums from cumulative sums
        c1 = np.concatenate([[0.0], np.cumsum(z)])
        c2 = np.concatenate([[0.0], np.cumsum(z * z)])
        a = np.arange(0, n, s)
        b = np.minimum(a + w, n)
        m, t1, t2 = (b - a).astype(np.float64), c1[b] - c1[a], c2[b] - c2[a]
    mean = t1 / m
    return np.maximum(t2 / m - mean * mean, 0.0)


def window_labels(variances: np.ndarray, ref_var: float = np.inf) -> tuple[np.ndarray, float]:
    """The sequential rule on given window variances: label k is True when ``variances[k] >=
    1.33 * `` the last clean variance. Returns (labels bool, the reference variance after)."""
    labels = np.zeros(variances.size, dtype=bool)
    thr = ARTIFACT_THRESHOLD
    for k, v in enumerate(variances.tolist()):
        if v >= thr * ref_var:
            labels[k] = True
        else:
            ref_var = v
    return labels, ref_var


def artifact_mask_fast(y: np.ndarray, fs_hz: float = FS_HZ) -> np.ndarray:
    """:func:`artifact_mask_reference` with vectorised window variances; same output."""
    n = y.size
    _, s = _window_hop(fs_hz)
    labels, _ = window_labels(window_variances(y, fs_hz))
    if labels.size == 0:
        return np.zeros(0, dtype=bool)
    hop = labels | np.concatenate([labels[:1], labels[:-1]])
    return np.repeat(hop, s)[:n]


# --------------------------------------------------------------------------------------------
# features
# --------------------------------------------------------------------------------------------

def _segment_starts(n: int, fs_hz: float) -> np.ndarray:
    seg = int(SEGMENT_S * fs_hz)
    step = int(seg * (1 - SEGMENT_OVERLAP))
    return np.arange(0, n - seg + 1, step, dtype=np.int64) if n >= seg else np.zeros(0, dtype=np.int64)


def _band(f: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return (f >= lo) & (f <= hi)


def features_reference(clean: np.ndarray, fs_hz: float = FS_HZ) -> np.ndarray:
    """The 9 features of every 1-s segment (50 % overlap), one Welch pair per segment.

    Parameters
    ----------
    clean : (n_samples,) artifact-free filtered signal

    Returns
    -------
    (n_segments, 9) float64, columns :data:`FEATURE_NAMES`; (0, 9) when shorter than 1 s
    """
    from scipy.signal import welch
    from scipy.stats import kurtosis, skew

    z = np.asarray(clean, dtype=np.float64)
    seg = int(SEGMENT_S * fs_hz)
    nper = int(WELCH_NPERSEG_S * fs_hz)
    rows = []
    for start in _segment_starts(z.size, fs_hz):
        x = z[start:start + seg]
        f, p = welch(x, fs_hz, nperseg=nper)
        fa, pa = welch(np.abs(x), fs_hz, nperseg=nper)
        share, share_a = p / p.sum(), pa / pa.sum()
        psd_index = sum(share[_band(f, lo, hi)].sum() for lo, hi in PSD_INDEX_BANDS)
        rows.append([
            np.mean(np.abs(x - x.mean())),
            share_a[_band(fa, 8, 13)].sum(),
            share_a[_band(fa, 30, 70)].sum(),
            skew(x),
            p[_band(f, 3000, 4000)].sum() / p[_band(f, 1600, 2200)].sum(),
            np.count_nonzero(x[:-1] * x[1:] < 0),
            share[_band(f, 1000, 2000)].sum(),
            psd_index,
            kurtosis(x),
        ])
    return np.asarray(rows, dtype=np.float64).reshape(-1, len(FEATURE_NAMES))


@lru_cache(maxsize=4)
def _welch_constants(fs_hz: float):
    from scipy.signal import get_window

    nper = int(WELCH_NPERSEG_S * fs_hz)
    win = get_window("hann", nper)  # periodic Hann, scipy.signal.welch's default
    f = np.fft.rfftfreq(nper, 1.0 / fs_hz)
    onesided = np.full(f.size, 2.0)
    onesided[0] = 1.0
    if nper % 2 == 0:
        onesided[-1] = 1.0
    scale = 1.0 / (fs_hz * np.sum(win * win))
    weights = onesided * scale
    x_bands = np.stack([_band(f, 3000, 4000), _band(f, 1600, 2200), _band(f, 1000, 2000),
                        np.any([_band(f, lo, hi) for lo, hi in PSD_INDEX_BANDS], axis=0),
                        np.ones(f.size, dtype=bool)], axis=1).astype(np.float64) * weights[:, None]
    # envelope bands: only a few bins, taken with a small real DFT instead of a full FFT
    env_bins = np.flatnonzero(_band(f, 8, 13) | _band(f, 30, 70))
    ang = 2 * np.pi * np.outer(np.arange(nper), env_bins) / nper
    dft = np.ascontiguousarray(np.hstack([np.cos(ang), np.sin(ang)]) * win[:, None])
    env_w = np.stack([_band(f[env_bins], 8, 13), _band(f[env_bins], 30, 70)], axis=1) * weights[env_bins, None]
    # DFT of the window itself at the bins the frame mean leaks into (constant detrend)
    win_dft = np.fft.rfft(win)
    # the band sums applied to the squared real and imaginary parts of a complex64 spectrum
    bands_ri = np.ascontiguousarray(np.repeat(x_bands, 2, axis=0), dtype=np.float32)
    # |x| frames times [Hann^2 | windowed DFT at the envelope bins | 1/nper]: one product
    env_mat = np.ascontiguousarray(np.hstack([(win * win)[:, None], dft, np.full((nper, 1), 1.0 / nper)]),
                                   dtype=np.float32)
    return (nper, win.astype(np.float32), win, x_bands, bands_ri, env_mat, dft.sum(axis=0), env_w, win_dft,
            weights, env_bins)


def features_fast(clean: np.ndarray, fs_hz: float = FS_HZ) -> np.ndarray:
    """:func:`features_reference`, vectorised: periodograms once per 0.1-s frame on the shared
    50-ms grid (float32 FFTs), band sums and per-segment averages as matrix products; the
    constant detrend applied in the frequency domain; the envelope's total power by Parseval and
    its 8-70 Hz bins by a small DFT; moments from power sums per half-segment block. Same
    output within ~1e-5 of each feature's scale.

    Parameters
    ----------
    clean : (n_samples,) artifact-free filtered signal

    Returns
    -------
    (n_segments, 9) float64
    """
    from numpy.lib.stride_tricks import sliding_window_view
    from scipy import fft

    z = np.asarray(clean, dtype=np.float32)
    seg = int(SEGMENT_S * fs_hz)
    starts = _segment_starts(z.size, fs_hz)
    n_seg = starts.size
    if n_seg == 0:
        return np.zeros((0, len(FEATURE_NAMES)))
    (nper, win32, win, x_bands, bands_ri, env_mat, dft_sum, env_w, win_dft, weights,
     env_bins) = _welch_constants(float(fs_hz))
    half = nper // 2
    seg_step = int(seg * (1 - SEGMENT_OVERLAP))
    if nper % 2 or seg % half or seg_step % half:  # frames not on a shared grid: the plain path
        return features_reference(z, fs_hz)
    per_seg = (seg - nper) // half + 1  # 19 Welch frames per 1-s segment
    k = seg_step // half
    n_frames = (n_seg - 1) * k + per_seg
    blocks = z[: (n_frames + 1) * half].reshape(n_frames + 1, half)
    frames = np.concatenate([blocks[:-1], blocks[1:]], axis=1)  # (n_frames, nper) float32
    bmean = blocks.mean(axis=1, dtype=np.float64)
    mu = (bmean[:-1] + bmean[1:]) / 2
    avg = np.zeros((n_seg, n_frames))
    for m in range(n_seg):
        avg[m, m * k: m * k + per_seg] = 1.0 / per_seg

    # signal PSD: one-sided periodogram of every frame, summed over the bands by one product
    # with the squared real / imaginary parts; the constant detrend only changes the bins the
    # window's own spectrum covers (0 and 1 for Hann), corrected there in float64
    spec = fft.rfft(frames * win32, axis=1)
    ri = spec.view(np.float32)
    ri = ri * ri
    frame_bands = (ri @ bands_ri).astype(np.float64)
    head = spec[:, :2].astype(np.complex128) - mu[:, None] * win_dft[None, :2]
    raw_head = ri[:, :4].reshape(-1, 2, 2).sum(axis=2).astype(np.float64)
    frame_bands += (np.abs(head) ** 2 - raw_head) @ x_bands[:2]
    bands = avg @ frame_bands  # (n_seg, 5): 3-4 kHz, 1.6-2.2 kHz, 1-2 kHz, index, total
    # envelope PSD: detrended total power by Parseval and the 8-70 Hz bins by a small DFT, both
    # from one product of |x| with [w^2 | DFT | mean], the frame mean removed afterwards
    a = np.abs(frames)
    r = (a @ env_mat).astype(np.float64)
    mu_a = r[:, -1]
    a2w2 = ((a * a) @ env_mat[:, 0]).astype(np.float64)
    w2_sum = float(np.sum(win * win))
    env_total = weights[1] / 2 * nper * (a2w2 - 2 * mu_a * r[:, 0] + mu_a ** 2 * w2_sum)
    e = r[:, 1:-1] - mu_a[:, None] * dft_sum[None, :]
    nb = env_bins.size
    pe = e[:, :nb] ** 2 + e[:, nb:] ** 2
    env = avg @ (pe @ env_w)
    env_tot = avg @ env_total
    out = np.empty((n_seg, len(FEATURE_NAMES)))
    out[:, 1] = env[:, 0] / env_tot
    out[:, 2] = env[:, 1] / env_tot
    out[:, 4] = bands[:, 0] / bands[:, 1]
    out[:, 6] = bands[:, 2] / bands[:, 4]
    out[:, 7] = bands[:, 3] / bands[:, 4]

    # time-domain features: power sums per half-segment block (float64), two blocks a segment;
    # central moments from them (the band-passed signal has ~zero mean: no cancellation)
    n_blocks = (starts[-1] + seg) // seg_step
    zb = z[: n_blocks * seg_step].astype(np.float64).reshape(n_blocks, seg_step)
    z2 = zb * zb
    sums = np.stack([zb.sum(axis=1), z2.sum(axis=1), np.einsum("ij,ij->i", z2, zb),
                     np.einsum("ij,ij->i", z2, z2)], axis=1)
    per = seg // seg_step
    seg_sums = sum(sums[j:j + n_seg] for j in range(per)) / seg
    mean, e2, e3, e4 = seg_sums.T
    m2 = e2 - mean ** 2
    m3 = e3 - 3 * mean * e2 + 2 * mean ** 3
    m4 = e4 - 4 * mean * e3 + 6 * mean ** 2 * e2 - 3 * mean ** 4
    with np.errstate(divide="ignore", invalid="ignore"):
        out[:, 3] = m3 / m2 ** 1.5
        out[:, 8] = m4 / (m2 * m2) - 3.0
    segs = sliding_window_view(z[: starts[-1] + seg], seg)[::seg_step]
    dev = segs - mean[:, None].astype(np.float32)
    np.abs(dev, out=dev)
    out[:, 0] = dev.sum(axis=1, dtype=np.float64) / seg
    # zero crossings (x[i] * x[i+1] < 0: both non-zero, opposite signs), per half-segment block
    sign = np.signbit(z)
    nz = z != 0
    c = (sign[:-1] != sign[1:]) & nz[:-1] & nz[1:]
    cb = np.zeros(n_blocks * seg_step, dtype=bool)
    lim = min(c.size, cb.size)
    cb[:lim] = c[:lim]
    per_block = cb.reshape(n_blocks, seg_step).sum(axis=1)
    last_pair = starts + seg - 1  # pair (start + seg - 1, start + seg) leaves the segment
    inside = last_pair < c.size
    out[:, 5] = per_block[:n_seg] + per_block[1:n_seg + 1] - np.where(inside, c[np.minimum(last_pair, c.size - 1)], False)
    return out


# --------------------------------------------------------------------------------------------
# one recording, end to end
# --------------------------------------------------------------------------------------------

def process_reference(x: np.ndarray, fs_hz: float = FS_HZ) -> tuple[np.ndarray, np.ndarray]:
    """Plain ML-STIM on one recording: resample -> lfilter chain -> window loop -> per-segment
    Welch. Returns ``(features (n_segments, 9) float64, artifact mask (n_samples_24k,) bool)``."""
    y = filter_reference(to_24khz(x, fs_hz), FS_HZ)
    mask = artifact_mask_reference(y, FS_HZ)
    return features_reference(y[~mask], FS_HZ), mask


def process_fast(x: np.ndarray, fs_hz: float = FS_HZ) -> tuple[np.ndarray, np.ndarray]:
    """Fast ML-STIM on one recording (the production path); same outputs as
    :func:`process_reference` within 1e-3 relative (zero crossings within 0.1 %)."""
    y = filter_fast(to_24khz(x, fs_hz), FS_HZ)
    mask = artifact_mask_fast(y, FS_HZ)
    return features_fast(y[~mask], FS_HZ), mask


def check_recording(x: np.ndarray, where=None) -> np.ndarray:
    """A recording as a finite, non-constant 1-D float array.

    Raises
    ------
    EphysError
        Not 1-D, empty, NaN / Inf samples (the message gives the first index), or all zero.
    """
    x = np.asarray(x)
    if x.ndim != 1 or x.size == 0:
        raise EphysError(f"a recording must be a non-empty 1-D signal, got shape {x.shape}", where)
    if not np.issubdtype(x.dtype, np.number):
        raise EphysError(f"non-numeric samples (dtype {x.dtype})", where)
    bad = ~np.isfinite(x)
    if bad.any():
        raise EphysError(f"NaN or Inf sample at index {int(np.argmax(bad))}", where)
    if not np.any(x):
        raise EphysError("all-zero recording", where)
    return x


def segment_features(signal: np.ndarray, fs_hz: float = FS_HZ) -> np.ndarray:
    """The ML-STIM features of one recording, exactly as ``ephys prepare mer`` computes them.

    Resampled to 24 kHz if needed (polyphase), filtered (band-pass + 96 notches, causal),
    artifacts removed (variance ratio, 100-ms windows), then the 9 features of every 1-s segment
    with 50 % overlap (Sciscenti et al. 2025, ML-STIM).

    Parameters
    ----------
    signal : (n_samples,) array, one microelectrode recording (any unit; ``mad`` is in that unit)
    fs_hz : sampling rate of ``signal`` in Hz (> 10 kHz)

    Returns
    -------
    (n_segments, 9) float64, columns :data:`FEATURE_NAMES`; (0, 9) when less than one second
    is left after artifact removal.

    Raises
    ------
    EphysError
        Not a 1-D signal, NaN / Inf samples, an all-zero recording, an unusable ``fs_hz``.
    """
    x = check_recording(signal)
    return process_fast(x, fs_hz)[0]
